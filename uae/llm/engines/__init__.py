"""Where the teacher's forward passes run: ``llm.engine=hf|ctranslate2|vllm|llamacpp``.

:class:`~uae.llm.scorer.AnswerScorer` owns everything that fixes *what* is scored (the prompt, the
tokens, the truncation, the de-duplication) and hands the token sequences to an engine that says *how*
they are run. ``hf`` is the reference: eager transformers with the home-made prefix sharing
(uae/llm/prefix.py), kept inside the scorer. The others are the inference engines the field runs in
production, each behind :class:`TokenScorer`: given token sequences and where each one's target
starts, the summed log-probability of the target tokens.

``compute_type`` is the one precision knob for every engine: ``auto`` (float32 on the CPU, bfloat16 on
a GPU, as ``dtype=auto`` is), ``float32``, ``bfloat16``/``float16`` (GPU), and for CTranslate2 the
quantised ``int8_float32``, ``int8``, ``int8_bfloat16``, ``int8_float16``; llama.cpp runs the bundled GGUF
as shipped (``gguf``, which ``auto`` means there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from uae.core.choices import COMPUTE_TYPES, ENGINES
from uae.core.errors import UAEError
from uae.llm.loading import parse_dtype

FLOAT_TYPES = ("float32", "bfloat16", "float16")
CT2_TYPES = tuple(t for t in COMPUTE_TYPES if t not in ("auto", "gguf"))  # CTranslate2 runs every other named type
GGUF_TYPES = ("gguf",)  # llama.cpp runs the GGUF's own quantisation, as shipped
GPU_ONLY = ("bfloat16", "float16", "int8_bfloat16", "int8_float16")


class TokenScorer(Protocol):
    """An engine: summed log-probabilities of each sequence's tokens from ``target_start`` on."""

    name: str
    compute_type: str

    def score(self, sequences: Sequence[Sequence[int]], target_starts: Sequence[int]) -> np.ndarray: ...


def cpu_threads() -> int:
    """One thread per core this process may use: the engines' own defaults (CTranslate2's 4, llama.cpp's count
    of hyper-threads) oversubscribe a 2-core machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def require_gpu(cuda: bool) -> None:
    """vLLM has no CPU path worth the name: refused here, before any model is loaded."""
    if not cuda:
        raise UAEError(
            "llm.engine=vllm runs on a CUDA GPU only, and this run has none (no CUDA, or device=cpu). On a CPU "
            "use llm.engine=hf (the reference) or llm.engine=ctranslate2."
        )


def parse_engine(engine: str, compute_type: str, *, dtype: str, device: str, setting: str) -> tuple[str, str]:
    """The engine and its compute type, checked: ``compute_type=auto`` follows ``dtype`` (itself ``auto``:
    float32 on the CPU, bfloat16 on CUDA); a type the engine or device cannot run is an error here, at
    start-up, not an hour into a table."""
    name = str(engine).strip().lower()
    if name not in ENGINES:
        raise UAEError(f"{setting}.engine={engine!r}: use one of {', '.join(ENGINES)} (llm.engine=...).")
    if name == "vllm":
        require_gpu(device == "cuda")
    text = str(compute_type).strip().lower()
    if name == "llamacpp" and text == "auto":
        text = "gguf"
    if text == "auto":  # dtype's own choice, with its aliases and its check (bf16 only where the GPU has it)
        text = str(parse_dtype(dtype, torch.device(device), setting)).replace("torch.", "")
    allowed = {"ctranslate2": CT2_TYPES, "llamacpp": GGUF_TYPES}.get(name, FLOAT_TYPES)
    if text not in allowed:
        hint = " (int8 runs on llm.engine=ctranslate2)" if text.startswith("int") else ""
        hint = " (the GGUF as shipped runs on llm.engine=llamacpp)" if text == "gguf" else hint
        raise UAEError(f"{setting}.compute_type={compute_type!r} for engine {name}: use auto or one of {', '.join(allowed)}{hint}.")
    if device != "cuda" and text in GPU_ONLY and name != "hf":
        raise UAEError(f"{setting}.compute_type={text} needs a GPU for engine {name}; on the CPU use float32 or int8_float32.")
    return name, text

"""Loading a causal LM for the scorer and the reader: one place for devices, dtypes and model errors.

Both LLM users take the same ``device``/``dtype`` settings and must fail the same way when a model
folder is not a causal LM, so the messages name the config node (``setting``) the user should fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from uae.core.errors import ModelNotFoundError, UAEError
from uae.models import resolve_model

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}  # fmt: skip


def parse_device(device: str | torch.device, setting: str) -> torch.device:
    """``auto`` is CUDA when there is one; an explicit ``cuda`` without CUDA is an error, not a fallback."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text in ("auto", ""):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(text)
    except RuntimeError as exc:
        raise UAEError(f"{setting}.device={device!r} is not a device; use auto, cpu, cuda or cuda:N.") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UAEError(f"{setting}.device={device!r} but CUDA is not available here; use device=auto or cpu.")
    return parsed


def parse_dtype(dtype: str | torch.dtype, device: torch.device, setting: str) -> torch.dtype:
    """``auto`` is bf16 on a GPU that has it and fp32 on the CPU (bf16 matmuls are slow without AMX)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    text = str(dtype).strip().lower().replace("torch.", "")
    if text == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.float32
    if text not in _DTYPES:
        raise UAEError(f"{setting}.dtype={dtype!r}: use auto, float32, bfloat16 or float16.")
    return _DTYPES[text]


class Tokenizer(NamedTuple):
    path: Path
    tokenizer: Any
    config: Any


def load_tokenizer(
    model_id: str, *, cache_dir: str | os.PathLike, local_path: str | os.PathLike | None, offline: bool | None, setting: str
) -> Tokenizer:
    """The model's folder, tokenizer and config without its weights: what an inference engine that runs the
    weights itself (uae/llm/engines/) needs from the Hugging Face folder."""
    from transformers import AutoConfig, AutoTokenizer  # deferred: start-up speed

    path = resolve_model(
        model_id, local_path=local_path, cache_dir=cache_dir, offline=offline, setting=f"{setting}.local_path"
    )
    try:
        return Tokenizer(path, AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(
            f"{path} (for {model_id}) has no loadable tokenizer or config ({type(exc).__name__}: {exc}). Point "
            f"{setting}.local_path at a folder saved with save_pretrained from a causal LM with its tokenizer."
        ) from exc


class CausalLM(NamedTuple):
    path: Path
    tokenizer: Any
    model: Any
    device: torch.device
    dtype: torch.dtype


def load_causal_lm(
    model_id: str,
    *,
    cache_dir: str | os.PathLike,
    local_path: str | os.PathLike | None,
    offline: bool | None,
    device: str | torch.device,
    dtype: str | torch.dtype,
    setting: str,
    padding_side: str | None = None,
) -> CausalLM:
    """The model in eval mode on its device, with its tokenizer; a folder that is no causal LM is a model error.

    ``device`` and ``dtype`` are the config values (``auto`` allowed); the parsed ones come back with it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = parse_device(device, setting)
    dtype = parse_dtype(dtype, device, setting)
    path = resolve_model(
        model_id, local_path=local_path, cache_dir=cache_dir, offline=offline, setting=f"{setting}.local_path"
    )
    try:
        kwargs = {"padding_side": padding_side} if padding_side else {}
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelNotFoundError(
            f"{path} (for {model_id}) could not be loaded as a causal language model ({type(exc).__name__}: "
            f"{first_line}). Point {setting}.local_path at a folder saved with save_pretrained from a causal LM "
            "(AutoModelForCausalLM) with its tokenizer."
        ) from exc
    # transformers wraps .to with functools.wraps, which its types cannot bind as a method
    return CausalLM(path, tokenizer, model.to(device).eval(), device, dtype)  # type: ignore[arg-type]

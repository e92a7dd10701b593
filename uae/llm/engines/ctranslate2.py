"""The teacher on CTranslate2: the HF folder converted once, scored with ``Generator.score_batch``.

CTranslate2 is the field's CPU inference engine for transformers (also CUDA). On a CPU in float32 it
computes what eager PyTorch does, at about the same speed; its int8 types quantise the weights on load
and run about 1.5x faster, with utilities that move (RESULTS.md, bench-scorer). It has no prefix cache
for scoring, so a passage shared by several questions is encoded once per question.

The converted model lives in ``paths.cache_dir/models/<hf folder>-ct2-<digest>``: the digest is the
HF folder's content digest, so new weights get a new conversion and a stale one is never used. It is
written whole or not at all, under a lock (:func:`uae.storage.once.build_once`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uae.core.errors import ModelNotFoundError, UAEError
from uae.llm.engines import cpu_threads
from uae.models.folders import first_line
from uae.storage.fingerprint import model_digest
from uae.storage.once import build_once

log = logging.getLogger(__name__)

_MAX_BATCH_TOKENS = 1024  # what score_batch pads per batch on a CPU: larger batches were slower (more padding)


def converted_folder(hf_path: Path, cache_dir: str | os.PathLike) -> Path:
    """The CTranslate2 conversion of ``hf_path`` (float32), made once per weights digest."""
    try:
        # deferred: optional engine (pip install 'uae[engines]')
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:
        raise UAEError("llm.engine=ctranslate2 needs the ctranslate2 package: pip install 'uae[engines]'.") from exc
    target = Path(cache_dir) / "models" / f"{hf_path.name}-ct2-{model_digest(hf_path)[:16]}"

    def convert(tmp: Path) -> None:
        log.info("Converting %s to CTranslate2 once (about 15 s for 135M parameters) -> %s", hf_path, target)
        try:
            TransformersConverter(str(hf_path), load_as_float16=False).convert(str(tmp), force=True)
        except (ValueError, NotImplementedError, OSError) as exc:
            raise ModelNotFoundError(
                f"CTranslate2 cannot convert {hf_path} ({type(exc).__name__}: {first_line(exc)}). Its converter supports "
                "Llama, Mistral, Qwen, Gemma and other common decoders; use llm.engine=hf for this model."
            ) from exc

    return build_once(
        target, lambda: target if (target / "model.bin").is_file() else None, convert,
        what=f"the CTranslate2 conversion of {hf_path.name}",
    )  # fmt: skip


class CTranslate2Engine:
    """:class:`uae.llm.engines.TokenScorer` on ``ctranslate2.Generator``."""

    name = "ctranslate2"

    def __init__(
        self, hf_path: Path, tokenizer: Any, *, cache_dir: str | os.PathLike, device: str, compute_type: str, threads: int = 0
    ) -> None:
        import ctranslate2  # deferred: optional engine

        self.compute_type = compute_type
        self.folder = converted_folder(hf_path, cache_dir)
        self.generator = ctranslate2.Generator(
            str(self.folder), device=device, compute_type=compute_type, intra_threads=threads or cpu_threads()
        )
        self._tokens = tokenizer.convert_ids_to_tokens  # score_batch takes token strings, not ids

    def score(self, sequences: Sequence[Sequence[int]], target_starts: Sequence[int]) -> np.ndarray:
        """Sum of log p(token_t | tokens_<t) for t >= target_starts[i]; ``log_probs[k]`` scores token k + 1."""
        tokens = [self._tokens(list(seq)) for seq in sequences]
        results = self.generator.score_batch(
            tokens, max_batch_size=_MAX_BATCH_TOKENS, batch_type="tokens", max_input_length=0
        )
        sums = np.empty(len(sequences), dtype=np.float64)
        for i, (result, start) in enumerate(zip(results, target_starts, strict=True)):
            logp = result.log_probs
            if len(logp) != len(sequences[i]) - 1:
                raise UAEError(f"CTranslate2 scored {len(logp)} tokens of a {len(sequences[i])}-token sequence; expected all but the first.")
            sums[i] = float(np.sum(np.asarray(logp[start - 1 :], dtype=np.float64)))
        return sums


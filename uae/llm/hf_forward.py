"""The ``hf`` engine's side of :class:`~uae.llm.scorer.AnswerScorer`: the torch model, run batch by batch.

It lives apart from the scorer because it is one job, the reference engine's forward passes, that the
other engines (uae/llm/engines/) replace whole: loading the causal LM and taking it apart into base
model and head, running the planned batches with the out-of-memory back-off (uae/llm/batching.py),
one forward per batch, plain or with shared prefixes (uae/llm/logprobs.py, uae/llm/prefix.py), and the
load-time check of that fast path against full forwards (uae/llm/self_check.py). The scorer keeps
what fixes *what* is scored (prompts, tokens, truncation, de-duplication, the fingerprint) and the
order of the steps.

:class:`HFForward` is a mixin, not an engine object behind :class:`~uae.llm.engines.TokenScorer`:
its methods use the scorer's own state (its stats, its ``share_prefixes`` setting, its batch size),
and ``_forward`` and ``_logits`` stay methods of the scorer so that a test can replace them on an
instance (a simulated out-of-memory error, poisoned logits). The class that callers name and that
committed utility tables record is still ``uae.llm.scorer.AnswerScorer``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from uae.core.errors import UAEError
from uae.llm.batching import back_off, batch_limits, is_oom, next_batch, processing_order
from uae.llm.loading import load_causal_lm
from uae.llm.logprobs import (
    cache_argument,
    decoder_of,
    encode_padded,
    head_logits,
    pad_token_id,
    predicted_tokens,
    target_logprobs,
)
from uae.llm.prefix import MIN_SHARED_TOKENS, PASS_COST_TOKENS, encode_shared
from uae.llm.requests import SETTING, Item, ScorerStats
from uae.llm.self_check import check_fast_path

__all__ = ["HFForward"]


class HFForward:
    """Forward passes of the ``hf`` engine, mixed into :class:`~uae.llm.scorer.AnswerScorer`.

    The scorer sets ``_fixed_batch``, ``share_prefixes``, ``max_length``, ``stats`` and ``progress``;
    :meth:`_load_hf` sets the model and what is taken from it.
    """

    model_id: str
    path: Any
    tokenizer: Any
    model: Any
    base: Any
    head: Any
    config: Any
    device: torch.device
    dtype: Any
    pad_id: int
    share_prefixes: bool
    max_length: int
    progress: bool
    stats: ScorerStats
    _fixed_batch: int | None
    _cache_arg: str

    def _load_hf(
        self,
        model_id: str,
        *,
        cache_dir: str | os.PathLike,
        local_path: str | os.PathLike | None,
        offline: bool | None,
        device: torch.device,
        dtype: str,
    ) -> None:
        """The causal LM and its tokenizer, taken apart into the base model (hidden states) and the head."""
        self.path, self.tokenizer, self.model, self.device, self.dtype = load_causal_lm(
            model_id, cache_dir=cache_dir, local_path=local_path, offline=offline, device=device,
            dtype=dtype, setting=SETTING,
        )  # fmt: skip
        self.config = self.model.config
        self.base = decoder_of(self.model)
        self.head = self.model.get_output_embeddings()
        if self.base is None or self.head is None:
            raise UAEError(
                f"{model_id}: cannot find the base model and output head of {type(self.model).__name__}; "
                "the scorer supports decoder-only causal LMs (Llama, Mistral, Qwen, SmolLM, GPT-2 ...)."
            )
        self._cache_arg = cache_argument(self.base)
        self.pad_id = pad_token_id(self.tokenizer, self.config)

    def _run(self, items: list[Item], sums: np.ndarray) -> None:
        """Score ``items`` batch by batch into ``sums``, backing off on out-of-memory."""
        limits = batch_limits(
            self._fixed_batch, device=self.device, config=self.config, dtype=self.dtype,
            max_length=self.max_length,
        )  # fmt: skip
        pending = processing_order(items, share=self.share_prefixes)
        pending.reverse()  # a stack: pop() takes the next item in processing order
        bar = tqdm(total=len(items), unit="item", desc="LLM scoring", disable=not self.progress, leave=False)
        try:
            with torch.inference_mode():
                while pending:
                    batch = next_batch(pending, items, limits, share=self.share_prefixes)
                    try:
                        self._forward(batch, items, sums)
                    except (torch.OutOfMemoryError, RuntimeError) as exc:
                        if not is_oom(exc):
                            raise
                        self.stats.oom_retries += 1
                        longest = len(items[batch[0]].seq)
                        back_off(exc, batch, pending, limits, longest=longest, device=self.device)
                        continue
                    self.stats.batches += 1
                    bar.update(len(batch))
        finally:
            bar.close()

    def _forward(self, batch: list[int], items: list[Item], sums: np.ndarray) -> None:
        """Score every item of ``batch``, adding its sum of target-token log-probabilities into ``sums``.

        The hidden states that predict the target tokens come from one right-padded forward, or, with
        prefix sharing, from :func:`uae.llm.prefix.encode_shared`; then the LM head runs on those rows
        only.
        """
        seqs = [items[i].seq for i in batch]
        wanted_from = [len(items[i].prompt) - 1 for i in batch]  # the position predicting the 1st target token
        if self.share_prefixes:
            overhead = PASS_COST_TOKENS["cuda" if self.device.type == "cuda" else "cpu"]
            encoding = encode_shared(
                self.base, seqs, wanted_from, pad_id=self.pad_id, cache_arg=self._cache_arg,
                device=self.device, overhead=overhead, min_saving=MIN_SHARED_TOKENS,
            )  # fmt: skip
        else:
            encoding = encode_padded(self.base, seqs, wanted_from, pad_id=self.pad_id, device=self.device)
        self.stats.encoded_tokens += encoding.encoded_tokens
        self.stats.padded_tokens += encoding.padded_tokens
        self.stats.passes += encoding.passes
        targets = torch.tensor(predicted_tokens(seqs, wanted_from), dtype=torch.long, device=self.device)
        owners = np.repeat(np.asarray(batch, dtype=np.int64), [len(items[i].target) for i in batch])
        vocab = int(self.head.weight.shape[0])
        logp = target_logprobs(encoding.rows, targets, vocab=vocab, logits=self._logits)
        np.add.at(sums, owners, logp.double().cpu().numpy())

    def _logits(self, rows: torch.Tensor) -> torch.Tensor:
        """The head as the model applies it, in float32 (a method, so that a test can poison it)."""
        return head_logits(self.head, self.config, rows)

    # ---------------------------------------------------------------------------------------------
    # the load-time check (uae/llm/self_check.py)

    def _self_check(self) -> None:
        """Check the fast path against full forwards; sharing goes off where it fails (see self_check)."""
        self.share_prefixes = check_fast_path(
            self._score_batch, model=self.model, model_id=self.model_id,
            vocab=int(self.head.weight.shape[0]), device=self.device, dtype=self.dtype,
            share=self.share_prefixes,
        )  # fmt: skip

    def _score_batch(self, items: list[Item], share: bool) -> np.ndarray:
        """Sums of target log-probabilities of ``items`` in one batch, sharing on or off, stats untouched."""
        keep_share, keep_stats = self.share_prefixes, self.stats
        self.share_prefixes, self.stats = share, ScorerStats()
        try:
            sums = np.zeros(len(items))
            with torch.inference_mode():
                self._forward(processing_order(items, share=share), items, sums)
            return sums
        finally:
            self.share_prefixes, self.stats = keep_share, keep_stats

"""Batched answer log-likelihood: how well a causal LM predicts a target text after a prompt.

The quantity (DESIGN.md, "answer log-likelihood")::

    ll(a | c) = mean_t log p_LM(a_t | prompt(c, q), a_<t)      over the target's tokens only

:class:`AnswerScorer` computes it for many (context, question, answer) triples at once, and for any
(prompt, target) pair (:meth:`AnswerScorer.score_targets`, e.g. UPR re-ranking's log p(question | passage)).
Both go through one path, :meth:`AnswerScorer.score_requests`. The prompt text comes from a
:class:`~uae.llm.prompt.PromptTemplate` (uae/llm/prompt.py).

How it is fast, and still exact (the tests compare it with one full forward per triple):

* the LM head runs only on the hidden states that predict target tokens: the base model
  (``model.get_decoder()``) gives hidden states, the rows that predict a target token are gathered, and
  ``lm_head`` plus ``logsumexp`` run on those rows alone (a prompt of 150 tokens and an answer of 15
  costs 15 head rows, not 165 rows of a 49k-word vocabulary);
* identical items are scored once;
* with ``share_prefixes`` (the default), every distinct token prefix in a batch is encoded once
  (uae/llm/prefix.py: the system turn shared by all, a passage shared by the questions asked of it, a
  prompt shared by the annotators' answers); without it, a batch is one plain right-padded forward,
  one row per item (causal attention keeps right padding out of real tokens' view);
* items are ordered so that sharing sequences sit together and similar lengths batch together;
* the batch size is a token budget found from the device (or a given number of items), halved on
  out-of-memory, all under ``torch.inference_mode``.

A model whose cache cannot be re-indexed (sliding-window or recurrent layers) fails a check made at load
time on a few random tokens, and is then scored without sharing. Sharing changes only the rounding
(like ``dtype``), so it is not part of :meth:`AnswerScorer.fingerprint_spec`.

Where the forward passes run is ``engine`` (``llm.engine``): ``hf``, the reference described above,
or an inference engine (uae/llm/engines/: CTranslate2 on CPU or CUDA, vLLM on a GPU) that gets the same
token sequences; ``compute_type`` (``llm.compute_type``) is the precision for every engine. An engine or
type whose utilities are not proven equal to the reference's enters :meth:`fingerprint_spec`.

Prompts longer than ``max_length`` lose tokens from the end of the context (the passage) only, never
from the question or the target; :attr:`AnswerScorer.stats` counts those items.

This module holds the public class and the order of the steps; each step has a file of its own
under uae/llm/: the request and stats types and the tokenisation with its truncation (requests.py),
the ``hf`` engine's model loading and batch-by-batch forward passes (hf_forward.py, a mixin of the
class), the batch planning and out-of-memory back-off (batching.py), the forward pass and the
log-probability math (logprobs.py, with prefix.py for shared prefixes), and the load-time check
(self_check.py). The class stays here, named ``uae.llm.scorer.AnswerScorer``: committed utility tables
record that path in their spec (:meth:`AnswerScorer.fingerprint_spec`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from uae.core.choices import engine_spec
from uae.core.errors import UAEError
from uae.llm.batching import parse_batch_size, processing_order
from uae.llm.engines import TokenScorer, parse_engine
from uae.llm.hf_forward import HFForward
from uae.llm.loading import load_tokenizer, parse_device
from uae.llm.prompt import PromptTemplate, fill
from uae.llm.requests import (
    SETTING,
    Item,
    Labels,
    ScoreRequest,
    ScorerStats,
    ScoringError,
    encode_requests,
    short,
    target_requests,
)
from uae.storage.fingerprint import model_digest

__all__ = [
    "AnswerScorer",
    "PromptTemplate",  # re-exported: configs and callers name it uae.llm.scorer.PromptTemplate
    "ScoreRequest",  # re-exported from uae.llm.requests, like the two below: the scorer's public types
    "ScorerStats",
    "ScoringError",
]

log = logging.getLogger(__name__)

SCORER_VERSION = 1  # bump when a change alters the numbers, so that caches made before are refused


class AnswerScorer(HFForward):
    """Mean token log-likelihood of targets under a causal LM, batched and with the head on targets only.

    ``batch_size``: ``"auto"`` packs batches up to a token budget found from the device (halved on
    out-of-memory); an int caps the scored items per batch (``1``: one forward per item, no sharing).
    ``dtype="auto"``: float32 on CPU, bfloat16 on CUDA. ``share_prefixes=False`` turns prefix sharing
    off: plain right-padded batches, one row per distinct item, under the same token budget (counted
    with padding). Like ``dtype``, it changes only the rounding, so it is no part of
    :meth:`fingerprint_spec` and a table scored either way is reused by the other.
    ``engine`` and ``compute_type``: see uae/llm/engines/ (``hf`` and ``auto``: the reference, as before).
    """

    def __init__(
        self,
        model_id: str,
        *,
        cache_dir: str | os.PathLike,
        local_path: str | os.PathLike | None = None,
        template: PromptTemplate | Mapping[str, Any] | None = None,
        max_length: int = 1024,
        batch_size: int | str = "auto",
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        progress: bool = True,
        share_prefixes: bool = True,
        offline: bool | None = None,
        engine: str = "hf",
        compute_type: str = "auto",
    ) -> None:
        self.model_id = model_id
        self.template = PromptTemplate.from_config(template)
        self.progress = bool(progress)
        self._fixed_batch = parse_batch_size(batch_size)
        self.batch_size = batch_size
        parsed = parse_device(device, SETTING)
        self.engine_name, self.compute_type = parse_engine(
            engine, compute_type, dtype=str(dtype), device=parsed.type, setting=SETTING
        )
        self.engine: TokenScorer | None = None
        self._weights_digest: str | None = None
        if self.engine_name != "hf":
            self._init_engine(model_id, cache_dir, local_path, offline, parsed, max_length)
            return
        self._load_hf(  # uae/llm/hf_forward.py: the model, its base and head, the pad id
            model_id, cache_dir=cache_dir, local_path=local_path, offline=offline, device=parsed,
            dtype=self.compute_type,
        )  # fmt: skip
        self._init_common(max_length)
        self.share_prefixes = bool(share_prefixes) and self._fixed_batch != 1
        self._self_check()

    def _init_engine(
        self, model_id: str, cache_dir: Any, local_path: Any, offline: bool | None, device: torch.device, max_length: int
    ) -> None:
        """An inference engine in place of the torch model: it gets the tokenizer's sequences, nothing else."""
        self.path, self.tokenizer, self.config = load_tokenizer(
            model_id, cache_dir=cache_dir, local_path=local_path, offline=offline, setting=SETTING
        )
        self.model = self.base = self.head = None
        self.device, self.dtype = device, self.compute_type
        self.share_prefixes = False  # the engine's own business (vLLM and llama.cpp keep prefixes; CTranslate2 cannot)
        self._init_common(max_length)
        if self.engine_name == "ctranslate2":
            from uae.llm.engines.ctranslate2 import CTranslate2Engine  # deferred: optional engine

            self.engine = CTranslate2Engine(
                self.path, self.tokenizer, cache_dir=cache_dir, device=device.type, compute_type=self.compute_type
            )
        elif self.engine_name == "llamacpp":
            from uae.llm.engines.llamacpp import LlamaCppEngine, bundled_gguf  # deferred: optional engine

            self.engine = LlamaCppEngine(bundled_gguf(model_id, self.path), max_length=self.max_length)
        else:
            from uae.llm.engines.vllm import VLLMEngine  # deferred: optional GPU engine

            self.engine = VLLMEngine(
                self.path, compute_type=self.compute_type, max_length=self.max_length, cuda_available=torch.cuda.is_available()
            )

    def _init_common(self, max_length: int) -> None:
        """What every engine shares: the length limit, the prompt skeletons and the counters."""
        config = self.config
        model_limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if not isinstance(max_length, int) or max_length < 8:
            raise UAEError(
                f"{SETTING}.max_length={max_length!r}: must be a whole number of tokens, at least 8."
            )
        self.max_length = int(min(int(max_length), model_limit)) if model_limit else int(max_length)
        self.bos_text = self.tokenizer.bos_token or None
        self._skeletons: dict[tuple[PromptTemplate, bool], str] = {}
        self.stats = ScorerStats()
        self.last_truncated: list[int] = []  # indices (in the last call) of items whose context was cut

    # ---------------------------------------------------------------------------------------------
    # public entry points

    def score_answers(
        self,
        items: Sequence[tuple[str | None, str, str]],
        *,
        template: PromptTemplate | None = None,
    ) -> np.ndarray:
        """Mean token log-likelihood (float64, nats) of each answer given (context or None, question)."""
        requests = [self.build_request(c, q, a, template=template) for c, q, a in items]
        return self.score_requests(requests, _labels=lambda i: f"question {short(items[i][1])!r}")

    def score_targets(
        self,
        prompts: Sequence[str],
        targets: Sequence[str],
        *,
        contexts: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Mean token log-likelihood of each target after its (already rendered) prompt.

        ``contexts[i]``, if given, is a substring of ``prompts[i]`` (its last occurrence is taken) that
        may be cut when the pair is longer than ``max_length``, e.g. the passage in a UPR prompt.
        """
        return self.score_requests(target_requests(prompts, targets, contexts))

    def build_request(
        self, context: str | None, question: str, answer: str, *, template: PromptTemplate | None = None
    ) -> ScoreRequest:
        """The request that :meth:`score_answers` scores for one (context, question, answer) triple."""
        template = template or self.template
        key = (template, context is not None)
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            skeleton = self._skeletons[key] = template.skeleton(
                self.tokenizer, with_context=context is not None
            )
        prompt, span = fill(skeleton, context, question)
        return ScoreRequest(prompt, template.target_prefix + answer if answer.strip() else answer, span)

    def score_requests(self, requests: Sequence[ScoreRequest], *, _labels: Labels = None) -> np.ndarray:
        """The one scoring path: mean token log-likelihood of every request's target (float64)."""
        n = len(requests)
        self.last_truncated = []
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        items = self._encode(requests, _labels)
        first: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        owner = np.array([first.setdefault((tuple(it.prompt), tuple(it.target)), len(first)) for it in items])
        unique = [items[i] for i in np.unique(owner, return_index=True)[1]]
        sums = np.zeros(len(unique), dtype=np.float64)
        if self.engine is not None:
            self._run_engine(unique, sums)
        else:
            self._run(unique, sums)
        lengths = np.array([len(it.target) for it in items], dtype=np.float64)
        out = sums[owner] / lengths
        self.stats.duplicates += n - len(unique)
        self.stats.prompt_tokens += sum(len(it.prompt) for it in items)
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            i = int(bad[0])
            what = _labels(i) if _labels else f"target {short(requests[i].target)!r}"
            raise ScoringError(
                f"Scoring produced {out[i]} for item {i} ({what})"
                + (f" and {bad.size - 1} more" if bad.size > 1 else "")
                + f". The model's outputs overflowed; run {SETTING}.dtype=float32, or check the model at "
                f"{self.path}."
            )
        self.stats.items += n
        self.stats.target_tokens += int(lengths.sum())
        if self.last_truncated:
            log.info(
                "%d of %d items had their context cut to fit %s.max_length=%d",
                len(self.last_truncated), n, SETTING, self.max_length,
            )  # fmt: skip
        return out

    def fingerprint_spec(self) -> dict[str, Any]:
        """What makes the numbers: for the fingerprints of caches built from this scorer's scores.

        ``"scorer"`` is this class's path as committed utility tables record it: it stays
        ``uae.llm.scorer.AnswerScorer`` whatever module the scorer's parts live in.
        """
        chat = getattr(self.tokenizer, "chat_template", None)
        return {
            "scorer": "uae.llm.scorer.AnswerScorer",
            "version": SCORER_VERSION,
            "model_id": self.model_id,
            "weights": self.weights_digest(),
            "template": self.template.spec(),
            "chat_template": _sha(chat)[:16]
            if (self.template.style == "chat" and isinstance(chat, str))
            else None,
            "max_length": self.max_length,
            "dtype": str(self.dtype).replace("torch.", ""),
        } | engine_spec(self.engine_name, self.compute_type)

    def weights_digest(self) -> str:
        """Content digest of the model folder (:func:`uae.storage.fingerprint.model_digest`), computed once."""
        if self._weights_digest is None:
            self._weights_digest = model_digest(self.path)
        return self._weights_digest

    def reset_stats(self) -> None:
        self.stats = ScorerStats()

    @property
    def truncated(self) -> int:
        """Items whose context was cut to fit ``max_length``, over every call so far."""
        return self.stats.truncated

    # ---------------------------------------------------------------------------------------------
    # the steps of score_requests (uae/llm/requests.py does the encoding; the hf engine's batches run in
    # HFForward._run, uae/llm/hf_forward.py; another engine's in _run_engine)

    def _encode(self, requests: Sequence[ScoreRequest], labels: Labels) -> list[Item]:
        """The requests as token ids, context cut to ``max_length``; the cuts go into the stats."""
        encoded = encode_requests(
            requests, self.tokenizer, max_length=self.max_length, bos_text=self.bos_text,
            model_limit=getattr(self.config, "max_position_embeddings", "?"), labels=labels,
        )  # fmt: skip
        self.stats.truncated += len(encoded.truncated)
        self.stats.truncated_tokens += encoded.dropped_tokens
        self.last_truncated.extend(encoded.truncated)
        return encoded.items

    def _run_engine(self, items: list[Item], sums: np.ndarray, chunk: int = 256) -> None:
        """Score ``items`` on the inference engine, longest first in chunks (a progress bar, bounded memory)."""
        assert self.engine is not None  # only the engine path comes here (_init_engine set it)
        order = processing_order(items, share=getattr(self.engine, "keeps_prefixes", False))
        bar = tqdm(total=len(items), unit="item", desc=f"LLM scoring ({self.engine_name})", disable=not self.progress, leave=False)
        try:
            for k in range(0, len(order), chunk):
                part = order[k : k + chunk]
                seqs = [items[i].seq for i in part]
                sums[part] = self.engine.score(seqs, [len(items[i].prompt) for i in part])
                tokens = sum(len(seq) for seq in seqs)
                self.stats.encoded_tokens += tokens
                self.stats.padded_tokens += tokens
                self.stats.batches += 1
                bar.update(len(part))
        finally:
            bar.close()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

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

Prompts longer than ``max_length`` lose tokens from the end of the context (the passage) only, never
from the question or the target; :attr:`AnswerScorer.stats` counts those items.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from uae.core.errors import UAEError
from uae.llm.loading import load_causal_lm
from uae.llm.prefix import MIN_SHARED_TOKENS, PASS_COST_TOKENS, Encoding, common_prefix, encode_shared
from uae.llm.prompt import PromptTemplate, fill
from uae.storage.fingerprint import model_digest

__all__ = [
    "AnswerScorer",
    "PromptTemplate",  # re-exported: configs and callers name it uae.llm.scorer.PromptTemplate
    "ScoreRequest",
    "ScorerStats",
    "ScoringError",
]

log = logging.getLogger(__name__)

SCORER_VERSION = 1  # bump when a change alters the numbers, so that caches made before are refused
SETTING = "llm.scorer"  # the config node named in messages
_HEAD_CHUNK_ELEMENTS = 1 << 24  # logits computed per head chunk (64 MB in float32)
_CPU_TOKEN_BUDGET = 4096
_MAX_ROWS = 256


class ScoringError(UAEError, ValueError):
    """An item cannot be scored as given (empty target, too long without its context, non-finite result)."""


# --------------------------------------------------------------------------------------------------
# requests and statistics


@dataclass(frozen=True)
class ScoreRequest:
    """One scoring job: the mean log-likelihood of ``target``'s tokens after ``prompt``.

    ``context_span`` is the character span of ``prompt`` that may be cut (from its end) when the whole
    is longer than the scorer's ``max_length``; ``None``: nothing may be cut. ``target`` is tokenised on
    its own (no special tokens) and appended to the prompt's tokens.
    """

    prompt: str
    target: str
    context_span: tuple[int, int] | None = None


@dataclass
class ScorerStats:
    """Running counts over every call of one scorer (see :meth:`AnswerScorer.reset_stats`)."""

    items: int = 0
    target_tokens: int = 0
    prompt_tokens: int = 0  # prompt tokens of the scored items (what a per-item forward would encode)
    encoded_tokens: int = 0  # tokens the model actually ran (after prefix sharing and de-duplication)
    padded_tokens: int = 0  # the same with the padding of each batch: what was computed
    duplicates: int = 0  # items identical to an earlier one of the same call (scored once)
    truncated: int = 0  # items whose context lost tokens to max_length
    truncated_tokens: int = 0  # context tokens dropped, in all
    batches: int = 0
    passes: int = 0  # forward passes (a batch takes one per level of its radix tree, or more)
    oom_retries: int = 0


@dataclass
class _Item:
    prompt: list[int]
    target: list[int]
    head: int = 0  # prompt tokens up to the end of the context (the whole prompt when there is none)

    @property
    def seq(self) -> list[int]:
        return self.prompt + self.target


@dataclass
class _Limits:
    tokens: int | None  # tokens computed per batch (None: no limit)
    rows: int  # items per batch


# --------------------------------------------------------------------------------------------------
# the scorer


class AnswerScorer:
    """Mean token log-likelihood of targets under a causal LM, batched and with the head on targets only.

    ``batch_size``: ``"auto"`` packs batches up to a token budget found from the device (halved on
    out-of-memory); an int caps the scored items per batch (``1``: one forward per item, no sharing).
    ``dtype="auto"``: float32 on CPU, bfloat16 on CUDA. ``share_prefixes=False`` turns prefix sharing
    off: plain right-padded batches, one row per distinct item, under the same token budget (counted
    with padding). Like ``dtype``, it changes only the rounding, so it is no part of
    :meth:`fingerprint_spec` and a table scored either way is reused by the other.
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
    ) -> None:
        self.model_id = model_id
        self.template = PromptTemplate.from_config(template)
        self.progress = bool(progress)
        self._fixed_batch = _parse_batch_size(batch_size)
        self.batch_size = batch_size
        self.path, self.tokenizer, self.model, self.device, self.dtype = load_causal_lm(
            model_id, cache_dir=cache_dir, local_path=local_path, offline=offline, device=device, dtype=dtype, setting=SETTING
        )
        self.base = _decoder(self.model)
        self.head = self.model.get_output_embeddings()
        if self.base is None or self.head is None:
            raise UAEError(
                f"{model_id}: cannot find the base model and output head of {type(self.model).__name__}; "
                "the scorer supports decoder-only causal LMs (Llama, Mistral, Qwen, SmolLM, GPT-2 ...)."
            )
        # transformers >= 5.x names the cache argument `cache`; earlier versions `past_key_values`
        self._cache_arg = (
            "cache" if "cache" in inspect.signature(self.base.forward).parameters else "past_key_values"
        )
        config = self.model.config
        model_limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if not isinstance(max_length, int) or max_length < 8:
            raise UAEError(
                f"{SETTING}.max_length={max_length!r}: must be a whole number of tokens, at least 8."
            )
        self.max_length = int(min(int(max_length), model_limit)) if model_limit else int(max_length)
        self.pad_id = _pad_id(self.tokenizer, config)
        self.bos_text = self.tokenizer.bos_token or None
        self._skeletons: dict[tuple[PromptTemplate, bool], str] = {}
        self._weights_digest: str | None = None
        self.stats = ScorerStats()
        self.last_truncated: list[int] = []  # indices (in the last call) of items whose context was cut
        self.share_prefixes = bool(share_prefixes) and self._fixed_batch != 1
        self._self_check()

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
        return self.score_requests(requests, _labels=lambda i: f"question {_short(items[i][1])!r}")

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
        if len(prompts) != len(targets) or (contexts is not None and len(contexts) != len(prompts)):
            raise ValueError(
                f"score_targets: {len(prompts)} prompts, {len(targets)} targets"
                + (f", {len(contexts)} contexts" if contexts is not None else "")
                + "; they must have the same length"
            )
        requests = []
        for i, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
            span = None
            context = contexts[i] if contexts is not None else None
            if context is not None:
                start = prompt.rfind(context)
                if start < 0:
                    raise ScoringError(
                        f"score_targets item {i}: its context is not a substring of its prompt."
                    )
                span = (start, start + len(context))
            requests.append(ScoreRequest(prompt, target, span))
        return self.score_requests(requests)

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

    def score_requests(self, requests: Sequence[ScoreRequest], *, _labels: Any = None) -> np.ndarray:
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
        self._run(unique, sums)
        lengths = np.array([len(it.target) for it in items], dtype=np.float64)
        out = sums[owner] / lengths
        self.stats.duplicates += n - len(unique)
        self.stats.prompt_tokens += sum(len(it.prompt) for it in items)
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            i = int(bad[0])
            what = _labels(i) if _labels else f"target {_short(requests[i].target)!r}"
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
        """What makes the numbers: for the fingerprints of caches built from this scorer's scores."""
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
        }

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
    # tokenisation and truncation

    def _encode(self, requests: Sequence[ScoreRequest], labels: Any) -> list[_Item]:
        tok = self.tokenizer
        for i, r in enumerate(requests):
            if not isinstance(r.target, str) or not r.target.strip():
                what = labels(i) if labels else f"prompt ending {_short(r.prompt[-60:])!r}"
                raise ScoringError(
                    f"Item {i} ({what}) has an empty target/answer: there is nothing to score. Leave out "
                    "unanswerable or empty answers before scoring."
                )
        targets = tok([r.target for r in requests], add_special_tokens=False)["input_ids"]
        prompts = [r.prompt for r in requests]
        # The prompt gets the tokenizer's special tokens (a BOS) unless its text already starts with them.
        special = [not (self.bos_text and p.startswith(self.bos_text)) for p in prompts]
        fast = bool(getattr(tok, "is_fast", False))
        encoded: list[Any] = [None] * len(requests)  # (ids, offsets or None) per request
        for flag in (True, False):
            idx = [i for i in range(len(requests)) if special[i] == flag]
            if not idx:
                continue
            if fast:
                enc = tok([prompts[i] for i in idx], add_special_tokens=flag, return_offsets_mapping=True)
                for j, i in enumerate(idx):
                    encoded[i] = (list(enc["input_ids"][j]), [tuple(o) for o in enc["offset_mapping"][j]])
            else:
                enc = tok([prompts[i] for i in idx], add_special_tokens=flag)
                for j, i in enumerate(idx):
                    encoded[i] = (list(enc["input_ids"][j]), None)
        items: list[_Item] = []
        for i, r in enumerate(requests):
            ids, offsets = encoded[i]
            target = list(targets[i])
            if not target:
                raise ScoringError(
                    f"Item {i}: the target {r.target!r} tokenises to no tokens; nothing to score."
                )
            head = len(ids)
            if r.context_span is not None and offsets is not None:
                cs, ce = r.context_span
                inside = [k for k, (s, e) in enumerate(offsets) if e > s and s < ce and e > cs]
                head = inside[-1] + 1 if inside else head
            excess = len(ids) + len(target) - self.max_length
            if excess > 0:
                ids, head = self._truncate(i, r, ids, offsets, target, excess, special[i], labels)
            items.append(_Item(ids, target, head))
        return items

    def _truncate(
        self,
        i: int,
        r: ScoreRequest,
        ids: list[int],
        offsets: list[tuple[int, int]] | None,
        target: list[int],
        excess: int,
        special: bool,
        labels: Any,
    ) -> tuple[list[int], int]:
        """Drop ``excess`` tokens from the end of the context span of the prompt; the new ids and the
        number of tokens up to the end of what is left of the context."""
        if r.context_span is not None:
            cs, ce = r.context_span
            if offsets is not None:
                ctx = [k for k, (s, e) in enumerate(offsets) if e > s and s < ce and e > cs]
                first, count = (ctx[0], len(ctx)) if ctx else (0, 0)
            else:  # a slow tokenizer: tokenise before / context / after separately
                tok = self.tokenizer
                before = tok(r.prompt[:cs], add_special_tokens=special)["input_ids"]
                middle = tok(r.prompt[cs:ce], add_special_tokens=False)["input_ids"]
                after = tok(r.prompt[ce:], add_special_tokens=False)["input_ids"]
                ids = list(before) + list(middle) + list(after)
                excess = len(ids) + len(target) - self.max_length
                first, count = len(before), len(middle)
            if count >= excess:
                self.stats.truncated += 1
                self.stats.truncated_tokens += excess
                self.last_truncated.append(i)
                return ids[: first + count - excess] + ids[first + count :], first + count - excess
        what = labels(i) if labels else f"target {_short(r.target)!r}"
        rest = len(ids) - (0 if r.context_span is None else count)
        limit = getattr(self.model.config, "max_position_embeddings", "?")
        raise ScoringError(
            f"Item {i} ({what}) does not fit {SETTING}.max_length={self.max_length} even without its "
            f"context: the prompt without context is {rest} tokens and the target {len(target)}. Raise "
            f"{SETTING}.max_length (the model allows {limit}) "
            "or shorten the question/answer."
        )

    # ---------------------------------------------------------------------------------------------
    # batching

    def _order(self, items: list[_Item]) -> list[int]:
        """Processing order: longest first; with sharing, items with the same context (and then the same
        prompt) next to each other, so that a batch holds whole groups that share their prefixes."""
        if not self.share_prefixes:
            return sorted(range(len(items)), key=lambda i: -len(items[i].prompt) - len(items[i].target))
        return sorted(
            range(len(items)),
            key=lambda i: (
                -items[i].head,
                items[i].prompt[: items[i].head],
                items[i].prompt,
                -len(items[i].target),
            ),
        )

    def _limits(self) -> _Limits:
        if self._fixed_batch is not None:
            return _Limits(tokens=None, rows=self._fixed_batch)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            config = self.model.config
            hidden = int(getattr(config, "hidden_size", 1024))
            inter = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
            per_token = (3 * inter + 8 * hidden) * torch.finfo(self.dtype).bits // 8 * 2
            budget = int(0.4 * free / max(per_token, 1))
            return _Limits(tokens=max(self.max_length, min(budget, 1 << 17)), rows=_MAX_ROWS * 4)
        return _Limits(tokens=max(self.max_length, _CPU_TOKEN_BUDGET), rows=_MAX_ROWS)

    def _next_batch(self, pending: list[int], items: list[_Item], limits: _Limits) -> list[int]:
        """Take items off the end of ``pending`` (a stack in processing order) while they fit the limits.

        A batch's cost is the tokens it computes. With sharing, the tokens it adds to the radix tree: a
        sequence's tokens beyond its common prefix with the previous one (the order puts sharing
        sequences next to each other). Without: rows x the longest row, padding included.
        """
        batch = [pending.pop()]
        previous = items[batch[0]].seq
        cost = width = len(previous)
        while pending and len(batch) < limits.rows:
            seq = items[pending[-1]].seq
            if self.share_prefixes:
                add = len(seq) - common_prefix([previous, seq])
            else:
                add = max(width, len(seq)) * (len(batch) + 1) - cost
            if limits.tokens is not None and cost + add > limits.tokens:
                break
            batch.append(pending.pop())
            cost += add
            width = max(width, len(seq))
            previous = seq
        return batch

    def _run(self, items: list[_Item], sums: np.ndarray) -> None:
        from tqdm.auto import tqdm

        limits = self._limits()
        pending = self._order(items)
        pending.reverse()  # a stack: pop() takes the next item in processing order
        bar = tqdm(total=len(items), unit="item", desc="LLM scoring", disable=not self.progress, leave=False)
        try:
            with torch.inference_mode():
                while pending:
                    batch = self._next_batch(pending, items, limits)
                    try:
                        self._forward(batch, items, sums)
                    except (torch.OutOfMemoryError, RuntimeError) as exc:
                        if not _is_oom(exc):
                            raise
                        self._on_oom(exc, batch, pending, limits, items)
                        continue
                    self.stats.batches += 1
                    bar.update(len(batch))
        finally:
            bar.close()

    def _on_oom(
        self, exc: BaseException, batch: list[int], pending: list[int], limits: _Limits, items: list[_Item]
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.stats.oom_retries += 1
        if len(batch) == 1:
            raise UAEError(
                f"Out of memory scoring a single item of {len(items[batch[0]].seq)} tokens on {self.device} "
                f"({type(exc).__name__}). Lower {SETTING}.max_length, use {SETTING}.dtype=bfloat16 on a "
                "GPU, or free memory on the device."
            ) from exc
        if limits.tokens is not None:
            limits.tokens = max(1, limits.tokens // 2)
        limits.rows = max(1, min(limits.rows, len(batch)) // 2)
        log.warning("Out of memory on %s; retrying with smaller batches (%s)", self.device, limits)
        pending.extend(reversed(batch))

    # ---------------------------------------------------------------------------------------------
    # the model

    def _forward(self, batch: list[int], items: list[_Item], sums: np.ndarray) -> None:
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
            encoding = self._encode_padded(seqs, wanted_from)
        self.stats.encoded_tokens += encoding.encoded_tokens
        self.stats.padded_tokens += encoding.padded_tokens
        self.stats.passes += encoding.passes
        # the rows come sequence by sequence, each from its first wanted position on
        targets = [s[p + 1] for s, start in zip(seqs, wanted_from, strict=True) for p in range(start, len(s) - 1)]
        owners = np.repeat(np.asarray(batch, dtype=np.int64), [len(items[i].target) for i in batch])
        logp = self._target_logprobs(encoding.rows, torch.tensor(targets, dtype=torch.long, device=self.device))
        np.add.at(sums, owners, logp.double().cpu().numpy())

    def _encode_padded(self, seqs: list[list[int]], wanted_from: list[int]) -> Encoding:
        """Plain padded batch: one forward, one row per sequence, padded on the right (no mask needed:
        causal attention keeps the padding out of real tokens' view); the hidden states at the wanted
        positions, in the order of :class:`uae.llm.prefix.Encoding`."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        positions = torch.arange(width, dtype=torch.long).expand(len(seqs), width)
        out = self.base(input_ids=ids.to(self.device), position_ids=positions.to(self.device), use_cache=False)
        hidden = out.last_hidden_state
        select = [r * width + p for r, (s, start) in enumerate(zip(seqs, wanted_from, strict=True))
                  for p in range(start, len(s) - 1)]  # fmt: skip
        rows = hidden.reshape(-1, hidden.shape[-1])[torch.tensor(select, device=self.device)]
        return Encoding(rows, sum(len(s) for s in seqs), ids.numel(), 1)

    def _target_logprobs(self, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target | row) for hidden-state rows: the LM head on these rows only, in chunks."""
        vocab = int(self.head.weight.shape[0])
        chunk = max(1, _HEAD_CHUNK_ELEMENTS // vocab)
        out = []
        for s in range(0, rows.shape[0], chunk):
            logits = self._logits(rows[s : s + chunk])
            picked = logits.gather(1, targets[s : s + chunk, None]).squeeze(1)
            out.append(picked - torch.logsumexp(logits, dim=-1))
        return torch.cat(out)

    def _logits(self, rows: torch.Tensor) -> torch.Tensor:
        """The head as the model applies it (with the logit scaling some architectures add), in float32."""
        logits = self.head(rows).float()
        config = self.model.config
        scale = getattr(config, "logit_scale", None)  # Cohere multiplies
        if isinstance(scale, (int, float)) and scale != 1:
            logits = logits * scale
        scaling = getattr(config, "logits_scaling", None)  # Granite divides
        if isinstance(scaling, (int, float)) and scaling != 1:
            logits = logits / scaling
        cap = getattr(config, "final_logit_softcapping", None)  # Gemma 2/3
        if isinstance(cap, (int, float)) and cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _self_check(self) -> None:
        """Compare the fast path with plain full forwards on a few short items (milliseconds).

        A mismatch with sharing on but not off turns sharing off (an architecture whose cache cannot
        be re-indexed, e.g. sliding-window or recurrent layers); a mismatch without sharing is an error.
        """
        vocab = int(self.head.weight.shape[0])
        rng = np.random.default_rng(0)
        low = min(10, vocab - 1)
        draw = lambda n: [int(x) for x in rng.integers(low, vocab, size=n)]
        shared = draw(2 * MIN_SHARED_TOKENS)
        prompts = [shared + draw(2), shared + draw(3), draw(4)]
        answer = draw(3)
        items = [_Item(prompts[0], answer), _Item(prompts[1], draw(2)), _Item(prompts[0], answer[:1]),
                 _Item(prompts[0], answer[:1] + draw(2)), _Item(prompts[2], draw(2))]  # fmt: skip
        with torch.inference_mode():
            expected = np.array([self._reference(it) for it in items])
        tolerance = 1e-3 if self.dtype == torch.float32 else 0.1
        lengths = np.array([len(it.target) for it in items], dtype=np.float64)

        def fast(share: bool) -> np.ndarray:
            keep_share, keep_stats = self.share_prefixes, self.stats
            self.share_prefixes, self.stats = share, ScorerStats()
            try:
                sums = np.zeros(len(items))
                with torch.inference_mode():
                    self._forward(self._order(items), items, sums)
                return sums / lengths
            finally:
                self.share_prefixes, self.stats = keep_share, keep_stats

        plain = fast(False)
        if not np.allclose(plain, expected, atol=tolerance, rtol=0):
            raise UAEError(
                f"{self.model_id} ({type(self.model).__name__}): the scorer's output head does not reproduce "
                f"the model's own logits (max difference {np.abs(plain - expected).max():.3g}); this "
                "architecture is not supported by uae.llm.scorer."
            )
        if self.share_prefixes:
            try:
                ok = np.allclose(fast(True), expected, atol=tolerance, rtol=0)
            except Exception as exc:  # noqa: BLE001 - a cache that cannot be re-indexed
                log.debug("prefix sharing failed its check: %s", exc)
                ok = False
            if not ok:
                log.warning(
                    "%s: prefix sharing does not reproduce plain forwards for this architecture; scoring "
                    "every item with its own prompt (slower, same numbers).",
                    self.model_id,
                )
                self.share_prefixes = False

    def _reference(self, item: _Item) -> float:
        """One full forward of prompt + target, log_softmax over the vocabulary: the definition."""
        ids = torch.tensor([item.prompt + item.target], dtype=torch.long, device=self.device)
        logits = self.model(input_ids=ids).logits[0].float()
        p = len(item.prompt)
        logp = torch.log_softmax(logits[p - 1 : p - 1 + len(item.target)], dim=-1)
        picked = logp.gather(1, torch.tensor(item.target, device=self.device)[:, None])
        return float(picked.double().mean())


# --------------------------------------------------------------------------------------------------
# helpers


def _parse_batch_size(batch_size: int | str) -> int | None:
    if isinstance(batch_size, str) and batch_size.strip().lower() == "auto":
        return None
    try:
        value = int(batch_size)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or (isinstance(batch_size, float) and batch_size != value):
        raise UAEError(
            f"{SETTING}.batch_size={batch_size!r}: use a positive number of items per batch, or auto."
        )
    return value


def _decoder(model: Any) -> Any:
    try:
        decoder = model.get_decoder()
    except (AttributeError, NotImplementedError):
        decoder = None
    if decoder is None or decoder is model:
        decoder = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    return decoder if decoder is not model else None


def _pad_id(tokenizer: Any, config: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, getattr(config, "pad_token_id", None)):
        if isinstance(value, int):
            return value
        if isinstance(value, (list, tuple)) and value:
            return int(value[0])
    return 0  # padding is never attended by real tokens, so any id does


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def _short(text: Any, limit: int = 60) -> str:
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()



"""Batched answer log-likelihood: how well a causal LM predicts a target text after a prompt.

The quantity (DESIGN.md, "answer log-likelihood")::

    ll(a | c) = mean_t log p_LM(a_t | prompt(c, q), a_<t)      over the target's tokens only

:class:`AnswerScorer` computes it for many (context, question, answer) triples at once, and for any
(prompt, target) pair (:meth:`AnswerScorer.score_targets`, e.g. UPR re-ranking's log p(question | passage)).
Both go through one path, :meth:`AnswerScorer.score_requests`.

How it is fast, and still exact (the tests compare it with one full forward per triple):

* the LM head runs only on the hidden states that predict target tokens: the base model
  (``model.get_decoder()``) gives hidden states, the rows that predict a target token are gathered, and
  ``lm_head`` plus ``logsumexp`` run on those rows alone (a prompt of 150 tokens and an answer of 15
  costs 15 head rows, not 165 rows of a 49k-word vocabulary);
* every distinct token prefix in a batch is encoded once: the batch's sequences (prompt + target) form
  a radix tree (the system turn shared by all, a passage shared by the questions asked of it, a prompt
  shared by the annotators' answers), encoded in passes, one forward per pass, each pass continuing
  the rows of the previous one through the key/value cache (re-indexed by parent), with attention
  masks that hide padding and siblings, and explicit position ids. Identical items are scored once;
* items are ordered so that sharing sequences sit together and similar lengths batch together; rows are
  padded on the right within a pass only, and the pass widths are chosen to trade padding against the
  fixed cost of a pass (causal attention keeps right padding out of real tokens' view);
* the batch size is a token budget found from the device (or a given number of items), halved on
  out-of-memory, all under ``torch.inference_mode``.

A model whose cache cannot be re-indexed (sliding-window or recurrent layers) fails a check made at load
time on a few random tokens, and is then scored without sharing (a plain right-padded batch).

Prompts longer than ``max_length`` lose tokens from the end of the context (the passage) only, never
from the question or the target; :attr:`AnswerScorer.stats` counts those items.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from uae.cache import model_digest
from uae.errors import UAEError
from uae.llm.loading import load_causal_lm

__all__ = [
    "AnswerScorer",
    "PromptTemplate",
    "ScoreRequest",
    "ScorerStats",
    "ScoringError",
]

log = logging.getLogger(__name__)

SCORER_VERSION = 1  # bump when a change alters the numbers, so that caches made before are refused
SETTING = "llm.scorer"  # the config node named in messages
_CONTEXT_MARK = "\ue000UAE-CONTEXT\ue000"  # private-use code points: no template or tokenizer alters them
_QUESTION_MARK = "\ue000UAE-QUESTION\ue000"
_HEAD_CHUNK_ELEMENTS = 1 << 24  # logits computed per head chunk (64 MB in float32)
_CPU_TOKEN_BUDGET = 4096
_MAX_ROWS = 256
# The fixed cost of one forward pass in tokens' worth of compute (on CPU, mostly streaming the weights
# from memory: ~70 ms for SmolLM2-135M in float32 on 2 cores, the time of ~32 tokens; on a GPU, kernel
# launches): pass widths and tree levels are chosen against it.
_PASS_COST_TOKENS = {"cpu": 32, "cuda": 1024}
_MIN_SHARED_TOKENS = 8  # a shared run saving fewer tokens than this is repeated rather than given a level


class ScoringError(UAEError, ValueError):
    """An item cannot be scored as given (empty target, too long without its context, non-finite result)."""


# --------------------------------------------------------------------------------------------------
# prompt template


@dataclass(frozen=True)
class PromptTemplate:
    """How (context, question) becomes the text after which the answer is scored.

    ``style="chat"`` renders through the tokenizer's chat template: an optional system message, a user
    message made from ``context_prompt`` (or ``closed_book_prompt`` when there is no context), then the
    assistant turn whose content is the target. ``style="plain"`` concatenates ``system`` (if any, then
    a blank line) and the user text. ``answer_prefix`` is appended to the rendered prompt in both styles
    (e.g. ``"\\nAnswer:"`` for plain prompts); ``target_prefix`` is put before every answer before it is
    tokenised (e.g. ``" "`` after ``"Answer:"``) and its tokens are scored with the answer's.

    All fields are plain strings, so a Hydra node maps onto it (:meth:`from_config`); :meth:`spec` is
    what cache fingerprints hold.
    """

    style: Literal["chat", "plain"] = "chat"
    system: str | None = None  # chat: None keeps the chat template's own default system turn, if any
    context_prompt: str = "Context: {context}\n\nQuestion: {question}"
    closed_book_prompt: str = "Question: {question}"
    answer_prefix: str = ""
    target_prefix: str = ""

    def __post_init__(self) -> None:
        where = f"{SETTING}.template"
        if self.style not in ("chat", "plain"):
            raise UAEError(
                f"{where}.style={self.style!r}: use 'chat' (the tokenizer's chat template) or 'plain'."
            )
        for name, text, needs_context in (
            ("context_prompt", self.context_prompt, True),
            ("closed_book_prompt", self.closed_book_prompt, False),
        ):
            if not isinstance(text, str):
                raise UAEError(f"{where}.{name} must be a string, got {type(text).__name__}.")
            try:
                fields = _format_fields(text)
            except ValueError as exc:
                raise UAEError(
                    f"{where}.{name}={text!r} is not a valid template ({exc}). Write literal braces as "
                    "{{ and }}; the placeholders are {context} and {question}."
                ) from exc
            unknown = sorted(set(fields) - {"context", "question"})
            if unknown:
                raise UAEError(
                    f"{where}.{name}={text!r} has unknown placeholder(s) {unknown}; only {{context}} and "
                    "{question} are filled (write literal braces as {{ and }})."
                )
            n_context = fields.count("context")
            if needs_context and n_context != 1:
                raise UAEError(
                    f"{where}.{name}={text!r} must hold {{context}} exactly once (it has {n_context}): the "
                    "passage goes there, and it is the part cut when a prompt is too long."
                )
            if not needs_context and n_context:
                raise UAEError(
                    f"{where}.{name}={text!r} is the closed-book prompt: remove {{context}} from it."
                )

    @classmethod
    def from_config(cls, config: PromptTemplate | Mapping[str, Any] | None) -> PromptTemplate:
        """A template from a config mapping (a Hydra node); ``None`` gives the default."""
        if config is None:
            return cls()
        if isinstance(config, PromptTemplate):
            return config
        if not isinstance(config, Mapping):
            try:  # an OmegaConf DictConfig
                from omegaconf import OmegaConf

                config = OmegaConf.to_container(config, resolve=True)  # type: ignore[assignment]
            except Exception as exc:  # noqa: BLE001 - not a DictConfig either: reported just below
                log.debug("template config %r is not an OmegaConf node: %s", config, exc)
        if not isinstance(config, Mapping):
            raise UAEError(
                f"{SETTING}.template must be a mapping of template fields, got {type(config).__name__}."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise UAEError(f"{SETTING}.template has unknown key(s) {unknown}; the keys are {sorted(names)}.")
        return cls(**{str(k): v for k, v in config.items()})

    def spec(self) -> dict[str, Any]:
        """The template as a plain dict (for cache fingerprints and logs)."""
        return dataclasses.asdict(self)

    def skeleton(self, tokenizer: Any, *, with_context: bool) -> str:
        """The rendered prompt with marker strings in place of the context and the question."""
        user = (self.context_prompt if with_context else self.closed_book_prompt).format(
            context=_CONTEXT_MARK, question=_QUESTION_MARK
        )
        if self.style == "plain":
            text = (f"{self.system}\n\n" if self.system else "") + user
        else:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                name = getattr(tokenizer, "name_or_path", "the tokenizer")
                raise UAEError(
                    f"{SETTING}.template.style=chat needs a chat template, and {name} has none. Set "
                    f"{SETTING}.template.style=plain (with e.g. answer_prefix='\\nAnswer:' and "
                    "target_prefix=' '), or use an instruction-tuned model."
                )
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
                {"role": "user", "content": user}
            ]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if not isinstance(text, str):  # some versions return a list for a single conversation
                text = text[0]
        text += self.answer_prefix
        expected = 1 if with_context else 0
        if text.count(_CONTEXT_MARK) != expected:
            raise UAEError(
                f"The chat template of {getattr(tokenizer, 'name_or_path', 'the tokenizer')} altered the "
                f"user message, so the context cannot be located in the rendered prompt. Use "
                f"{SETTING}.template.style=plain."
            )
        return text

    def render(
        self, context: str | None, question: str, tokenizer: Any = None
    ) -> tuple[str, tuple[int, int] | None]:
        """The prompt text and the character span of the context in it (``None`` when closed-book)."""
        return _fill(self.skeleton(tokenizer, with_context=context is not None), context, question)


def _format_fields(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _fill(skeleton: str, context: str | None, question: str) -> tuple[str, tuple[int, int] | None]:
    if context is None:
        return skeleton.replace(_QUESTION_MARK, question), None
    before, after = skeleton.split(_CONTEXT_MARK)
    before = before.replace(_QUESTION_MARK, question)
    after = after.replace(_QUESTION_MARK, question)
    start = len(before)
    return before + context + after, (start, start + len(context))


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
class _Node:
    """A run of tokens in the radix tree of a batch: encoded once for every sequence that passes through."""

    tokens: list[int]
    start: int  # position of the first token in its sequences
    parent: int  # index of the parent node, -1 for a root
    level: int  # number of ancestors: the forward pass that encodes it
    row: int = -1  # its row in that pass


@dataclass
class _Limits:
    tokens: int | None  # unique tokens per batch (None: no limit)
    rows: int  # items per batch


# --------------------------------------------------------------------------------------------------
# the scorer


class AnswerScorer:
    """Mean token log-likelihood of targets under a causal LM, batched and with the head on targets only.

    ``batch_size``: ``"auto"`` packs batches up to a token budget found from the device (halved on
    out-of-memory); an int caps the scored items per batch (``1``: one forward per item, no sharing).
    ``dtype="auto"``: float32 on CPU, bfloat16 on CUDA. ``share_prefixes=False`` turns prefix sharing
    off (every item is encoded with its own prompt, as a per-item forward would).
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
        prompt, span = _fill(skeleton, context, question)
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
        """Content digest of the model folder (:func:`uae.cache.model_digest`), computed once."""
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

        A batch's cost is the tokens it adds to the radix tree: a sequence's tokens beyond its common
        prefix with the previous one (the order puts sharing sequences next to each other).
        """
        batch = [pending.pop()]
        previous = items[batch[0]].seq
        cost = len(previous)
        while pending and len(batch) < limits.rows:
            seq = items[pending[-1]].seq
            add = len(seq) - _common_prefix([previous, seq])
            if limits.tokens is not None and cost + add > limits.tokens:
                break
            batch.append(pending.pop())
            cost += add
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

        The batch's sequences (prompt + target) form a radix tree: a run of tokens that several
        sequences share is one node, encoded once. The tree is encoded in passes, one forward each,
        right-padded: a pass's row continues a row of the previous pass (the key/value cache is
        re-indexed to follow), attends to its ancestors' tokens and its own, never to padding, and its
        position ids continue its sequence's. A pass encodes up to ``width`` tokens of each row (the
        width that wastes least on padding); what is left of a longer node goes on in the next pass,
        and a finished node's children start there. Without sharing: one pass, a plain right-padded
        batch. Then the LM head runs on the hidden states that predict target tokens only.
        """
        dev = self.device
        seqs = [items[i].seq for i in batch]
        nodes, paths = _radix_tree(seqs, share=self.share_prefixes, min_saving=_MIN_SHARED_TOKENS)
        children: list[list[int]] = [[] for _ in nodes]
        for n, node in enumerate(nodes):
            if node.parent >= 0:
                children[node.parent].append(n)
        # per node: (token index in the node, the target token it predicts, item) for each target token
        wanted: list[list[tuple[int, int, int]]] = [[] for _ in nodes]
        for b, i in enumerate(batch):
            path, k = paths[b], 0
            for pos in range(len(items[i].prompt) - 1, len(seqs[b]) - 1):
                while pos >= nodes[path[k]].start + len(nodes[path[k]].tokens):
                    k += 1
                wanted[path[k]].append((pos - nodes[path[k]].start, seqs[b][pos + 1], i))

        gathered: list[torch.Tensor] = []
        tok_ids: list[int] = []
        owners: list[int] = []
        cache = None
        mask: torch.Tensor | None = None
        frontier = [
            (n, 0, -1) for n, node in enumerate(nodes) if node.parent < 0
        ]  # (node, offset, parent row)
        while frontier:
            width = self._pass_width([len(nodes[n].tokens) - o for n, o, _ in frontier])
            ids = torch.full((len(frontier), width), self.pad_id, dtype=torch.long)
            pos = torch.empty((len(frontier), width), dtype=torch.long)
            own = torch.zeros((len(frontier), width), dtype=torch.long)
            select: list[int] = []
            following: list[tuple[int, int, int]] = []
            for r, (n, o, _) in enumerate(frontier):
                node = nodes[n]
                k = min(width, len(node.tokens) - o)
                ids[r, :k] = torch.tensor(node.tokens[o : o + k], dtype=torch.long)
                pos[r] = torch.arange(node.start + o, node.start + o + width)
                own[r, :k] = 1
                for j, token, owner in wanted[n]:
                    if o <= j < o + k:
                        select.append(r * width + j - o)
                        tok_ids.append(token)
                        owners.append(owner)
                if o + k < len(node.tokens):
                    following.append((n, o + k, r))
                else:
                    following.extend((c, 0, r) for c in children[n])
            kwargs: dict[str, Any] = {}
            if cache is not None:
                parents = torch.tensor([p for _, _, p in frontier], dtype=torch.long)
                if len(parents) != len(mask) or not torch.equal(parents, torch.arange(len(mask))):
                    cache.reorder_cache(parents.to(dev))  # rows follow their parents (copies the cache)
                    mask = mask[parents]
                mask = torch.cat([mask, own], dim=1)
                kwargs["attention_mask"] = mask.to(dev)
            else:  # the first pass: causal attention alone keeps right padding out of real tokens' view
                mask = own
            out = self.base(
                input_ids=ids.to(dev),
                position_ids=pos.to(dev),
                use_cache=bool(following) or cache is not None,
                **kwargs,
                **{self._cache_arg: cache},
            )
            cache = _out_cache(out) if following else None
            if select:
                hidden = out.last_hidden_state
                gathered.append(hidden.reshape(-1, hidden.shape[-1])[torch.tensor(select, device=dev)])
            self.stats.encoded_tokens += int(own.sum())
            self.stats.padded_tokens += own.numel()
            self.stats.passes += 1
            del out
            frontier = following

        rows = torch.cat(gathered) if len(gathered) > 1 else gathered[0]
        logp = self._target_logprobs(rows, torch.tensor(tok_ids, dtype=torch.long, device=dev))
        np.add.at(sums, np.asarray(owners, dtype=np.int64), logp.double().cpu().numpy())

    def _pass_width(self, remaining: list[int]) -> int:
        """Tokens per row for the next pass.

        Rows longer than the width go on in the next pass, so a set of rows is covered by a staircase
        of passes; this finds the staircase of least cost (tokens computed, padding included, plus a
        fixed cost per pass, by dynamic programming over the rows' lengths) and returns its first step.
        Without sharing: one pass as wide as the longest row.
        """
        if not self.share_prefixes or len(remaining) == 1:
            return max(remaining)
        overhead = _PASS_COST_TOKENS["cuda" if self.device.type == "cuda" else "cpu"]
        lengths = np.sort(np.asarray(remaining))
        steps = np.unique(lengths)  # a staircase steps at some of these
        bounds = np.concatenate([[0], steps])
        alive = len(lengths) - np.searchsorted(lengths, bounds, side="right")  # rows longer than each bound
        best = np.zeros(len(bounds))  # least cost from each bound to the longest row
        first = np.zeros(len(bounds), dtype=np.int64)
        for a in range(len(bounds) - 2, -1, -1):
            cost = alive[a] * (bounds[a + 1 :] - bounds[a]) + overhead + best[a + 1 :]
            k = int(np.argmin(cost))
            best[a], first[a] = cost[k], a + 1 + k
        return int(bounds[first[0]])

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
        shared = draw(2 * _MIN_SHARED_TOKENS)
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


def _out_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _pad_id(tokenizer: Any, config: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, getattr(config, "pad_token_id", None)):
        if isinstance(value, int):
            return value
        if isinstance(value, (list, tuple)) and value:
            return int(value[0])
    return 0  # padding is never attended by real tokens, so any id does


def _radix_tree(
    seqs: Sequence[list[int]], *, share: bool, min_saving: int = 0
) -> tuple[list[_Node], list[list[int]]]:
    """The radix tree of ``seqs``: a node per run of tokens shared by the same sequences, split where
    they branch; and each sequence's path of node indices, root first. Nodes come level by level.

    A branch point that would save fewer than ``min_saving`` tokens (run length x (branches - 1)) is
    not worth a level of its own: its run is repeated in each branch instead. ``share=False``: one
    root node per sequence.
    """
    if not share:
        return [_Node(list(s), 0, -1, 0) for s in seqs], [[b] for b in range(len(seqs))]
    nodes: list[_Node] = []
    paths: list[list[int]] = [[] for _ in seqs]

    def by_token(members: list[int], at: int) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for b in members:
            groups.setdefault(seqs[b][at], []).append(b)
        return list(groups.values())

    frontier: list[tuple[list[int], int, int]] = [(list(range(len(seqs))), 0, -1)]  # (members, start, parent)
    level = 0
    while frontier:
        following: list[tuple[list[int], int, int]] = []
        for members, start, parent in frontier:
            work = by_token(members, start)
            while work:
                group = work.pop()
                first = seqs[group[0]]
                end = min(len(seqs[b]) for b in group)
                for b in group[1:]:
                    end = start + _common_prefix([first[start:end], seqs[b][start:end]])
                rest = [b for b in group if len(seqs[b]) > end]
                branches = by_token(rest, end)
                if len(branches) > 1 and (end - start) * (len(branches) - 1) < min_saving:
                    branches[0] += [b for b in group if len(seqs[b]) == end]
                    work.extend(branches)  # each branch repeats tokens start..end in its own node
                    continue
                node = len(nodes)
                nodes.append(_Node(first[start:end], start, parent, level))
                for b in group:
                    paths[b].append(node)
                if rest:
                    following.append((rest, end, node))
        frontier = following
        level += 1
    return nodes, paths


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for k in range(n):
        tok = first[k]
        if any(s[k] != tok for s in seqs):
            return k
    return n


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



"""Scoring requests: the (prompt, target) jobs the scorer takes, and how they become token ids.

It lives apart from the scorer because turning texts into the token sequences the model runs needs
the tokenizer alone, no model, and because it is where the rules on length live: a prompt too long
for ``max_length`` loses tokens from the end of its context only, never from the question or the
target. The prompt text and the context's character span come from uae/llm/prompt.py
(:func:`~uae.llm.prompt.fill`); the :class:`Item` token sequences made here go to the batch planning
(uae/llm/batching.py) and the forward pass (uae/llm/logprobs.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from uae.core.errors import UAEError

__all__ = [
    "SETTING",
    "Encoded",
    "Item",
    "Labels",
    "ScoreRequest",
    "ScorerStats",
    "ScoringError",
    "encode_requests",
    "short",
    "target_ids",
    "target_requests",
]

SETTING = "llm.scorer"  # the config node named in messages

# Names item i in messages (e.g. "question 'What color ...'"); None: the messages name its texts.
Labels = Callable[[int], str] | None


class ScoringError(UAEError, ValueError):
    """An item cannot be scored as given (empty target, too long without its context, non-finite result)."""


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
class Item:
    """A request as token ids: what the batch planning orders and the forward pass scores."""

    prompt: list[int]
    target: list[int]
    head: int = 0  # prompt tokens up to the end of the context (the whole prompt when there is none)

    @property
    def seq(self) -> list[int]:
        return self.prompt + self.target


class Encoded(NamedTuple):
    """The items of one call, and what truncation took from them (the scorer adds it to its stats)."""

    items: list[Item]
    truncated: list[int]  # indices of the requests whose context was cut
    dropped_tokens: int  # context tokens cut, in all


def target_requests(
    prompts: Sequence[str], targets: Sequence[str], contexts: Sequence[str | None] | None
) -> list[ScoreRequest]:
    """The requests of :meth:`AnswerScorer.score_targets`: ``contexts[i]`` (if given) located in
    ``prompts[i]`` by its last occurrence, so that its span is what a too-long pair loses tokens from."""
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
                raise ScoringError(f"score_targets item {i}: its context is not a substring of its prompt.")
            span = (start, start + len(context))
        requests.append(ScoreRequest(prompt, target, span))
    return requests


def target_ids(tokenizer: Any, targets: Sequence[str]) -> list[list[int]]:
    """The token ids the scorer scores for each target: no special tokens, the target alone (its prompt
    cannot change them). A summed log-likelihood is the per-token mean times their number."""
    return [list(ids) for ids in tokenizer(list(targets), add_special_tokens=False)["input_ids"]]


def encode_requests(
    requests: Sequence[ScoreRequest],
    tokenizer: Any,
    *,
    max_length: int,
    bos_text: str | None,
    model_limit: int | str,
    labels: Labels = None,
) -> Encoded:
    """Tokenise every request, cutting the end of its context where prompt + target exceed ``max_length``.

    The prompt gets the tokenizer's special tokens (a BOS) unless its text already starts with
    ``bos_text``; the target none. ``model_limit`` is only named in the message of an item too long
    even without its context.
    """
    tok = tokenizer
    for i, r in enumerate(requests):
        if not isinstance(r.target, str) or not r.target.strip():
            what = labels(i) if labels else f"prompt ending {short(r.prompt[-60:])!r}"
            raise ScoringError(
                f"Item {i} ({what}) has an empty target/answer: there is nothing to score. Leave out "
                "unanswerable or empty answers before scoring."
            )
    targets = target_ids(tok, [r.target for r in requests])
    prompts = [r.prompt for r in requests]
    special = [not (bos_text and p.startswith(bos_text)) for p in prompts]
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
    items: list[Item] = []
    truncated: list[int] = []
    dropped = 0
    for i, r in enumerate(requests):
        ids, offsets = encoded[i]
        target = list(targets[i])
        if not target:
            raise ScoringError(f"Item {i}: the target {r.target!r} tokenises to no tokens; nothing to score.")
        head = len(ids)
        if r.context_span is not None and offsets is not None:
            cs, ce = r.context_span
            inside = [k for k, (s, e) in enumerate(offsets) if e > s and s < ce and e > cs]
            head = inside[-1] + 1 if inside else head
        excess = len(ids) + len(target) - max_length
        if excess > 0:
            ids, head, excess = _cut_context(
                i, r, ids, offsets, target, excess, tokenizer=tok, special=special[i],
                max_length=max_length, model_limit=model_limit, labels=labels,
            )  # fmt: skip
            truncated.append(i)
            dropped += excess
        items.append(Item(ids, target, head))
    return Encoded(items, truncated, dropped)


def _cut_context(
    i: int,
    r: ScoreRequest,
    ids: list[int],
    offsets: list[tuple[int, int]] | None,
    target: list[int],
    excess: int,
    *,
    tokenizer: Any,
    special: bool,
    max_length: int,
    model_limit: int | str,
    labels: Labels,
) -> tuple[list[int], int, int]:
    """Drop ``excess`` tokens from the end of the context span of the prompt: the new ids, the number of
    tokens up to the end of what is left of the context, and the tokens dropped."""
    if r.context_span is not None:
        cs, ce = r.context_span
        if offsets is not None:
            ctx = [k for k, (s, e) in enumerate(offsets) if e > s and s < ce and e > cs]
            first, count = (ctx[0], len(ctx)) if ctx else (0, 0)
        else:  # a slow tokenizer: tokenise before / context / after separately
            before = tokenizer(r.prompt[:cs], add_special_tokens=special)["input_ids"]
            middle = tokenizer(r.prompt[cs:ce], add_special_tokens=False)["input_ids"]
            after = tokenizer(r.prompt[ce:], add_special_tokens=False)["input_ids"]
            ids = list(before) + list(middle) + list(after)
            excess = len(ids) + len(target) - max_length
            first, count = len(before), len(middle)
        if count >= excess:
            return ids[: first + count - excess] + ids[first + count :], first + count - excess, excess
    what = labels(i) if labels else f"target {short(r.target)!r}"
    rest = len(ids) - (0 if r.context_span is None else count)
    raise ScoringError(
        f"Item {i} ({what}) does not fit {SETTING}.max_length={max_length} even without its "
        f"context: the prompt without context is {rest} tokens and the target {len(target)}. Raise "
        f"{SETTING}.max_length (the model allows {model_limit}) "
        "or shorten the question/answer."
    )


def short(text: Any, limit: int = 60) -> str:
    """``text`` on one line and at most ``limit`` characters, for naming an item in a message."""
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Batch planning: in what order the scorer's items run, how many go into one forward, and the back-off.

It lives apart from the scorer because planning needs only the items' token ids and the device's
memory, never a forward pass, so its rules read (and test) on their own. They follow the cost model
of uae/llm/prefix.py: with prefix sharing a batch costs the tokens it adds to the batch's radix tree,
so items that share a context, then a prompt, are ordered next to each other and a batch takes whole
groups of them; without sharing a batch costs its rows times its longest row, padding included, so
items are ordered by length. A batch is capped by a token budget found from the device (or by a given
number of items), and both caps are halved when a batch runs out of memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from uae.core.errors import UAEError
from uae.llm.prefix import common_prefix
from uae.llm.requests import SETTING, Item

__all__ = [
    "Limits", "back_off", "batch_limits", "is_oom", "next_batch", "parse_batch_size", "processing_order",
]  # fmt: skip

log = logging.getLogger(__name__)

_CPU_TOKEN_BUDGET = 4096
_MAX_ROWS = 256


@dataclass
class Limits:
    """What one batch may hold; mutable, since out-of-memory halves it for the rest of the call."""

    tokens: int | None  # tokens computed per batch (None: no limit)
    rows: int  # items per batch


def parse_batch_size(batch_size: int | str) -> int | None:
    """The ``batch_size`` setting: ``None`` for ``"auto"`` (a token budget), else a cap on items per batch."""
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


def batch_limits(
    fixed: int | None, *, device: torch.device, config: Any, dtype: torch.dtype, max_length: int
) -> Limits:
    """The limits a call starts from: ``fixed`` items per batch if given, else a token budget.

    On CUDA the budget is 40% of the free memory over a rough per-token cost of the activations
    (MLP and attention widths from ``config``); on the CPU a fixed one. Either way it holds at least
    one item of ``max_length`` tokens.
    """
    if fixed is not None:
        return Limits(tokens=None, rows=fixed)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        hidden = int(getattr(config, "hidden_size", 1024))
        inter = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
        per_token = (3 * inter + 8 * hidden) * torch.finfo(dtype).bits // 8 * 2
        budget = int(0.4 * free / max(per_token, 1))
        return Limits(tokens=max(max_length, min(budget, 1 << 17)), rows=_MAX_ROWS * 4)
    return Limits(tokens=max(max_length, _CPU_TOKEN_BUDGET), rows=_MAX_ROWS)


def processing_order(items: Sequence[Item], *, share: bool) -> list[int]:
    """Processing order: longest first; with sharing, items with the same context (and then the same
    prompt) next to each other, so that a batch holds whole groups that share their prefixes."""
    if not share:
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


def next_batch(pending: list[int], items: Sequence[Item], limits: Limits, *, share: bool) -> list[int]:
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
        if share:
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


def is_oom(exc: BaseException) -> bool:
    """Whether a forward failed for memory (CUDA raises OutOfMemoryError, the CPU a RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def back_off(
    exc: BaseException,
    batch: list[int],
    pending: list[int],
    limits: Limits,
    *,
    longest: int,
    device: torch.device,
) -> None:
    """After ``batch`` ran out of memory: halve the limits and put the batch back on ``pending``.

    A single item that does not fit cannot be split further: that is the user's error to fix, and
    ``longest`` (its tokens) goes into the message.
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if len(batch) == 1:
        raise UAEError(
            f"Out of memory scoring a single item of {longest} tokens on {device} "
            f"({type(exc).__name__}). Lower {SETTING}.max_length, use {SETTING}.dtype=bfloat16 on a "
            "GPU, or free memory on the device."
        ) from exc
    if limits.tokens is not None:
        limits.tokens = max(1, limits.tokens // 2)
    limits.rows = max(1, min(limits.rows, len(batch)) // 2)
    log.warning("Out of memory on %s; retrying with smaller batches (%s)", device, limits)
    pending.extend(reversed(batch))

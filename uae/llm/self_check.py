"""The scorer's load-time self-check: its fast path against the definition, on a few random tokens.

It exists because the fast path takes the model apart (uae/llm/logprobs.py: the base model, then the
head on chosen rows) and, with prefix sharing, re-indexes its key/value cache (uae/llm/prefix.py).
An architecture whose head or cache does not survive that (logit scaling the head misses, a
sliding-window or recurrent layer whose cache cannot be re-indexed) would otherwise give wrong numbers
without a word. So when a scorer loads, a handful of short items built to exercise sharing (a common
prefix, two answers to one prompt, a target that is a prefix of another) is scored both ways and by
one plain full forward each: milliseconds. It lives apart because it is a check of the scorer, not a
part of the scoring path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from uae.core.errors import UAEError
from uae.llm.prefix import MIN_SHARED_TOKENS
from uae.llm.requests import Item

__all__ = ["check_fast_path", "probe_items", "reference_score"]

log = logging.getLogger(__name__)

# Scores the items in one batch with prefix sharing on (True) or off; returns their sums of target
# log-probabilities.
FastPath = Callable[[list[Item], bool], np.ndarray]


def probe_items(vocab: int) -> list[Item]:
    """Five short items of random tokens (seeded) that share what real batches share."""
    rng = np.random.default_rng(0)
    low = min(10, vocab - 1)

    def draw(n: int) -> list[int]:
        return [int(x) for x in rng.integers(low, vocab, size=n)]

    shared = draw(2 * MIN_SHARED_TOKENS)
    prompts = [shared + draw(2), shared + draw(3), draw(4)]
    answer = draw(3)
    return [Item(prompts[0], answer), Item(prompts[1], draw(2)), Item(prompts[0], answer[:1]),
            Item(prompts[0], answer[:1] + draw(2)), Item(prompts[2], draw(2))]  # fmt: skip


def reference_score(model: Any, item: Item, device: torch.device) -> float:
    """One full forward of prompt + target, log_softmax over the vocabulary: the definition."""
    ids = torch.tensor([item.prompt + item.target], dtype=torch.long, device=device)
    logits = model(input_ids=ids).logits[0].float()
    p = len(item.prompt)
    logp = torch.log_softmax(logits[p - 1 : p - 1 + len(item.target)], dim=-1)
    picked = logp.gather(1, torch.tensor(item.target, device=device)[:, None])
    return float(picked.double().mean())


def check_fast_path(
    fast: FastPath,
    *,
    model: Any,
    model_id: str,
    vocab: int,
    device: torch.device,
    dtype: torch.dtype,
    share: bool,
) -> bool:
    """Compare the fast path with plain full forwards; whether prefix sharing may stay on.

    A mismatch with sharing on but not off turns sharing off (an architecture whose cache cannot be
    re-indexed, e.g. sliding-window or recurrent layers); a mismatch without sharing is an error.
    ``share=False``: sharing is off anyway and only the plain fast path is checked.
    """
    items = probe_items(vocab)
    with torch.inference_mode():
        expected = np.array([reference_score(model, it, device) for it in items])
    tolerance = 1e-3 if dtype == torch.float32 else 0.1
    lengths = np.array([len(it.target) for it in items], dtype=np.float64)

    plain = fast(items, False) / lengths
    if not np.allclose(plain, expected, atol=tolerance, rtol=0):
        raise UAEError(
            f"{model_id} ({type(model).__name__}): the scorer's output head does not reproduce "
            f"the model's own logits (max difference {np.abs(plain - expected).max():.3g}); this "
            "architecture is not supported by uae.llm.scorer."
        )
    if not share:
        return False
    try:
        ok = np.allclose(fast(items, True) / lengths, expected, atol=tolerance, rtol=0)
    except Exception as exc:  # noqa: BLE001 - a cache that cannot be re-indexed
        log.debug("prefix sharing failed its check: %s", exc)
        ok = False
    if not ok:
        log.warning(
            "%s: prefix sharing does not reproduce plain forwards for this architecture; scoring "
            "every item with its own prompt (slower, same numbers).",
            model_id,
        )
    return ok

"""Target-token log-probabilities from a causal LM taken apart: the base model, then the head on chosen rows.

It lives apart from the scorer because this is the numerical core, where exactness is decided: the
base model (``model.get_decoder()``) gives hidden states, only the rows that predict target tokens
are kept, and the LM head plus ``logsumexp`` run on those rows alone, in chunks (a prompt of 150
tokens and an answer of 15 costs 15 head rows, not 165 rows of a 49k-word vocabulary). The hidden
rows come from one plain right-padded forward (:func:`encode_padded`, here) or from prefix sharing
(:func:`uae.llm.prefix.encode_shared`); both return an :class:`~uae.llm.prefix.Encoding` with the
rows in the same order, which :func:`predicted_tokens` matches. The scorer's self-check
(uae/llm/self_check.py) holds all of it to one full forward per item.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from uae.llm.prefix import Encoding

__all__ = [
    "cache_argument",
    "decoder_of",
    "encode_padded",
    "head_logits",
    "pad_token_id",
    "predicted_tokens",
    "target_logprobs",
]

_HEAD_CHUNK_ELEMENTS = 1 << 24  # logits computed per head chunk (64 MB in float32)


def decoder_of(model: Any) -> Any:
    """The model without its LM head (``None`` when it cannot be found): it gives the hidden states."""
    try:
        decoder = model.get_decoder()
    except (AttributeError, NotImplementedError):
        decoder = None
    if decoder is None or decoder is model:
        decoder = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    return decoder if decoder is not model else None


def cache_argument(base: Any) -> str:
    """The keyword under which ``base`` takes a key/value cache back (for prefix sharing).

    transformers >= 5.x names it ``cache``; earlier versions ``past_key_values``.
    """
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def pad_token_id(tokenizer: Any, config: Any) -> int:
    """A token id to pad with: the tokenizer's pad or end token, else the model's pad token, else 0."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, getattr(config, "pad_token_id", None)):
        if isinstance(value, int):
            return value
        if isinstance(value, (list, tuple)) and value:
            return int(value[0])
    return 0  # padding is never attended by real tokens, so any id does


def encode_padded(
    base: Callable[..., Any],
    seqs: list[list[int]],
    wanted_from: list[int],
    *,
    pad_id: int,
    device: torch.device,
) -> Encoding:
    """Plain padded batch: one forward, one row per sequence, padded on the right (no mask needed:
    causal attention keeps the padding out of real tokens' view); the hidden states at the wanted
    positions, in the order of :class:`uae.llm.prefix.Encoding`."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
    positions = torch.arange(width, dtype=torch.long).expand(len(seqs), width)
    out = base(input_ids=ids.to(device), position_ids=positions.to(device), use_cache=False)
    hidden = out.last_hidden_state
    select = [r * width + p for r, (s, start) in enumerate(zip(seqs, wanted_from, strict=True))
              for p in range(start, len(s) - 1)]  # fmt: skip
    rows = hidden.reshape(-1, hidden.shape[-1])[torch.tensor(select, device=device)]
    return Encoding(rows, sum(len(s) for s in seqs), ids.numel(), 1)


def predicted_tokens(seqs: Sequence[list[int]], wanted_from: Sequence[int]) -> list[int]:
    """The token each row of an :class:`~uae.llm.prefix.Encoding` predicts: the next one of its sequence,
    sequence by sequence, each from its first wanted position on."""
    return [s[p + 1] for s, start in zip(seqs, wanted_from, strict=True) for p in range(start, len(s) - 1)]


def head_logits(
    head: Callable[[torch.Tensor], torch.Tensor], config: Any, rows: torch.Tensor
) -> torch.Tensor:
    """The head as the model applies it (with the logit scaling some architectures add), in float32."""
    logits = head(rows).float()
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


def target_logprobs(
    rows: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab: int,
    logits: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """log p(target | row) for hidden-state rows: ``logits`` (the head) on these rows only, in chunks
    of about ``_HEAD_CHUNK_ELEMENTS`` logits, so that memory stays flat however many rows there are."""
    chunk = max(1, _HEAD_CHUNK_ELEMENTS // vocab)
    out = []
    for s in range(0, rows.shape[0], chunk):
        chunk_logits = logits(rows[s : s + chunk])
        picked = chunk_logits.gather(1, targets[s : s + chunk, None]).squeeze(1)
        out.append(picked - torch.logsumexp(chunk_logits, dim=-1))
    return torch.cat(out)

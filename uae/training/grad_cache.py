"""GradCache: a contrastive step whose memory does not grow with the batch (Gao et al. 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup"; sentence-transformers'
CachedMultipleNegativesRankingLoss and Tevatron's ``--grad_cache`` do the same).

A plain step keeps the activations of every question and passage of the batch until backward, so memory
grows with the batch, and the in-batch negatives the field trains with are out of reach on one device. The
loss, though, only needs the embeddings. So the step runs in three parts:

1. every micro-batch is embedded without a graph (the random state before each one is kept);
2. the loss is computed on those embeddings as leaves, and its gradient with respect to each embedding taken
   (under DDP through the differentiable gather, so cross-device negatives are unchanged);
3. when Lightning back-propagates the returned loss, a hook embeds each micro-batch again with a graph, under
   its kept random state (the same dropout) and the step's autocast, and back-propagates that micro-batch's
   slice of the cached gradient; only one micro-batch's activations are alive at a time.

The parameters' gradients are summed with :func:`torch.autograd.grad` and handed over in one last backward,
so each parameter receives its gradient once: DDP's reducer, which all-reduces on that event, then
averages over processes exactly as in a plain step. The gradients equal the plain step's up to float
rounding (tests/training/test_grad_cache.py); the price is a second forward pass of every micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from uae.retrieval.encoder import DualEncoder

Tokens = dict[str, Tensor]


def split_tokens(tokens: Tokens, size: int) -> list[Tokens]:
    """Rows of a tokenized batch in pieces of at most ``size``, each cut to its own longest row (less padding)."""
    n = next(iter(tokens.values())).shape[0]
    pieces = []
    for start in range(0, n, size):
        piece = {k: v[start : start + size] for k, v in tokens.items()}
        mask = piece.get("attention_mask")
        if mask is not None and mask.dim() == 2 and mask.shape[1] > 0:
            width = int(mask.sum(dim=1).max().item()) if bool(mask.any()) else 1
            # right padding: the columns past the longest row hold only padding
            if bool((mask[:, width:] == 0).all()):
                piece = {k: v[:, :width] if v.dim() == 2 and v.shape[1] == mask.shape[1] else v for k, v in piece.items()}
        pieces.append(piece)
    return pieces


@dataclass
class _Piece:
    side: str
    tokens: Tokens
    rng: tuple[Tensor, list[Tensor]]


def _rng_state(device: torch.device) -> tuple[Tensor, list[Tensor]]:
    cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
    return torch.get_rng_state(), cuda


@contextmanager
def _restored(state: tuple[Tensor, list[Tensor]], device: torch.device) -> Iterator[None]:
    """Run with a kept random state, and leave the global one as it was (the replay must not shift later draws)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if devices:
            torch.cuda.set_rng_state(state[1][0], device)
        yield


def cached_step_loss(
    encoder: DualEncoder,
    queries: Tokens,
    passage_chunks: list[Tokens],
    passage_order: Tensor,
    loss_of: Callable[[Tensor, Tensor], Tensor],
    micro_batch: int,
) -> Tensor:
    """The step's loss (a leaf: the parameters' gradients arrive through its hook), as ``loss_of(queries,
    passages)`` on the whole batch's embeddings, with memory for one micro-batch of ``micro_batch`` texts."""
    device = next(encoder.parameters()).device
    texts = [("query", t) for t in split_tokens(queries, micro_batch)]
    texts += [("passage", t) for chunk in passage_chunks for t in split_tokens(chunk, micro_batch)]
    pieces, embedded = [], []
    with torch.no_grad():
        for side, tokens in texts:  # in the plain step's order, so that dropout draws what it would draw
            pieces.append(_Piece(side, tokens, _rng_state(device)))
            embedded.append(encoder(tokens, side))
    leaves = [e.detach().requires_grad_() for e in embedded]
    n_query_pieces = sum(p.side == "query" for p in pieces)
    q = torch.cat(leaves[:n_query_pieces])
    sorted_passages = torch.cat(leaves[n_query_pieces:])
    passages = torch.empty_like(sorted_passages)
    passages[passage_order.to(sorted_passages.device)] = sorted_passages  # flat batch order, as encode_chunks
    with torch.enable_grad():
        loss = loss_of(q, passages)
        grads = torch.autograd.grad(loss, leaves)
    autocast = (device.type, torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
    out = loss.detach().requires_grad_()
    out.register_hook(lambda scale: _replay(encoder, pieces, grads, scale, autocast, device))
    return out


def _replay(
    encoder: DualEncoder,
    pieces: list[_Piece],
    grads: tuple[Tensor, ...],
    scale: Tensor,
    autocast: tuple[str, bool, torch.dtype],
    device: torch.device,
) -> None:
    """Back-propagate each micro-batch's slice of the cached gradient through a fresh forward of that micro-batch."""
    params = [p for p in encoder.parameters() if p.requires_grad]
    total: list[Tensor | None] = [None] * len(params)
    last = len(pieces) - 1
    for i, (piece, grad) in enumerate(zip(pieces, grads, strict=True)):
        # the autograd engine runs hooks with gradients off: this micro-batch's graph is built explicitly
        with torch.enable_grad():
            with _restored(piece.rng, device), torch.autocast(autocast[0], dtype=autocast[2], enabled=autocast[1]):
                embedding = encoder(piece.tokens, piece.side)
            surrogate = (embedding * (grad * scale).to(embedding.dtype)).sum()
            if i < last:
                for j, g in enumerate(torch.autograd.grad(surrogate, params, allow_unused=True)):
                    before = total[j]
                    if g is not None:
                        total[j] = g if before is None else before + g
            else:  # one backward that hands every parameter its summed gradient once (DDP reduces on that)
                carried = [(p * t).sum() for p, t in zip(params, total, strict=True) if t is not None]
                torch.autograd.backward(surrogate + sum(carried, torch.zeros((), device=surrogate.device)))

"""Prefix sharing: encode a batch of token sequences so that a run several of them share runs once.

Why it exists: utility scoring asks the LM about the same texts again and again. Every item of a
batch starts with the same system turn, a passage is asked about by several questions, and a prompt
is shared by its annotators' answers; a plain padded batch encodes each of these runs once per item.
Here the batch's sequences form a radix tree (:func:`radix_tree`), and each node, a run of tokens
shared by the same sequences, is encoded once (:func:`encode_shared`): level by level, one forward
per pass, each row continuing its parent's row through the key/value cache (re-indexed by parent),
with attention masks that hide padding and siblings, and explicit position ids. The numbers are
those of one full forward per sequence, to rounding (the scorer's self-check and tests hold it to
that; ``benchmarks/scorer.py`` measures what it saves against plain padded batches).

Nothing here knows about prompts, answers or the LM head: it takes token sequences and, per
sequence, the first position whose hidden state is wanted, and returns those hidden states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["Encoding", "Node", "common_prefix", "encode_shared", "pass_width", "radix_tree"]

# The fixed cost of one forward pass in tokens' worth of compute (on CPU, mostly streaming the weights
# from memory: ~70 ms for SmolLM2-135M in float32 on 2 cores, the time of ~32 tokens; on a GPU, kernel
# launches): pass widths and tree levels are chosen against it.
PASS_COST_TOKENS = {"cpu": 32, "cuda": 1024}
MIN_SHARED_TOKENS = 8  # a shared run saving fewer tokens than this is repeated rather than given a level


class Encoding(NamedTuple):
    """Hidden states of the wanted positions, and what it took to get them.

    ``rows`` holds, sequence by sequence in the order given, the hidden state at every wanted position
    (from the sequence's first wanted position to its second-to-last token: the positions that predict
    its target tokens), ascending.
    """

    rows: torch.Tensor
    encoded_tokens: int  # real tokens run through the model
    padded_tokens: int  # the same with padding: what was computed
    passes: int  # forward passes


@dataclass
class Node:
    """A run of tokens in the radix tree of a batch: encoded once for every sequence that passes through."""

    tokens: list[int]
    start: int  # position of the first token in its sequences
    parent: int  # index of the parent node, -1 for a root
    level: int  # number of ancestors: the forward pass that encodes it
    row: int = -1  # its row in that pass


def radix_tree(seqs: Sequence[list[int]], *, min_saving: int = 0) -> tuple[list[Node], list[list[int]]]:
    """The radix tree of ``seqs``: a node per run of tokens shared by the same sequences, split where
    they branch; and each sequence's path of node indices, root first. Nodes come level by level.

    A branch point that would save fewer than ``min_saving`` tokens (run length x (branches - 1)) is
    not worth a level of its own: its run is repeated in each branch instead.
    """
    nodes: list[Node] = []
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
                    end = start + common_prefix([first[start:end], seqs[b][start:end]])
                rest = [b for b in group if len(seqs[b]) > end]
                branches = by_token(rest, end)
                if len(branches) > 1 and (end - start) * (len(branches) - 1) < min_saving:
                    branches[0] += [b for b in group if len(seqs[b]) == end]
                    work.extend(branches)  # each branch repeats tokens start..end in its own node
                    continue
                node = len(nodes)
                nodes.append(Node(first[start:end], start, parent, level))
                for b in group:
                    paths[b].append(node)
                if rest:
                    following.append((rest, end, node))
        frontier = following
        level += 1
    return nodes, paths


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """The length of the longest prefix that all of ``seqs`` share."""
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for k in range(n):
        tok = first[k]
        if any(s[k] != tok for s in seqs):
            return k
    return n


def pass_width(remaining: list[int], overhead: int) -> int:
    """Tokens per row for the next pass, given each row's tokens still to encode.

    Rows longer than the width go on in the next pass, so a set of rows is covered by a staircase
    of passes; this finds the staircase of least cost (tokens computed, padding included, plus
    ``overhead`` tokens per pass, by dynamic programming over the rows' lengths) and returns its
    first step.
    """
    if len(remaining) == 1:
        return remaining[0]
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


def encode_shared(
    base: Callable[..., Any],
    seqs: Sequence[list[int]],
    wanted_from: Sequence[int],
    *,
    pad_id: int,
    cache_arg: str,
    device: torch.device,
    overhead: int,
    min_saving: int = MIN_SHARED_TOKENS,
) -> Encoding:
    """Hidden states of ``seqs[b]`` at positions ``wanted_from[b] .. len(seqs[b]) - 2``, every shared
    run of tokens encoded once.

    ``base`` is the LM without its head (it returns ``last_hidden_state`` and a key/value cache, passed
    back under the keyword ``cache_arg``). The tree is encoded in passes, one forward each,
    right-padded: a pass's row continues a row of the previous pass (the cache is re-indexed to
    follow), attends to its ancestors' tokens and its own, never to padding, and its position ids
    continue its sequence's. A pass encodes up to :func:`pass_width` tokens of each row; what is left
    of a longer node goes on in the next pass, and a finished node's children start there.
    """
    nodes, paths = radix_tree(seqs, min_saving=min_saving)
    children: list[list[int]] = [[] for _ in nodes]
    for n, node in enumerate(nodes):
        if node.parent >= 0:
            children[node.parent].append(n)
    # per node: (token index in the node, index of the row in the returned order) for each wanted position
    wanted: list[list[tuple[int, int]]] = [[] for _ in nodes]
    out_index = 0
    for b, seq in enumerate(seqs):
        path, k = paths[b], 0
        for pos in range(wanted_from[b], len(seq) - 1):
            while pos >= nodes[path[k]].start + len(nodes[path[k]].tokens):
                k += 1
            wanted[path[k]].append((pos - nodes[path[k]].start, out_index))
            out_index += 1

    gathered: list[torch.Tensor] = []
    placed: list[int] = []  # where each gathered row goes in the returned order
    encoded = padded = passes = 0
    cache = None
    mask: torch.Tensor | None = None
    frontier = [(n, 0, -1) for n, node in enumerate(nodes) if node.parent < 0]  # (node, offset, parent row)
    while frontier:
        width = pass_width([len(nodes[n].tokens) - o for n, o, _ in frontier], overhead)
        ids = torch.full((len(frontier), width), pad_id, dtype=torch.long)
        position_ids = torch.empty((len(frontier), width), dtype=torch.long)
        own = torch.zeros((len(frontier), width), dtype=torch.long)
        select: list[int] = []
        following: list[tuple[int, int, int]] = []
        for r, (n, o, _) in enumerate(frontier):
            node = nodes[n]
            k = min(width, len(node.tokens) - o)
            ids[r, :k] = torch.tensor(node.tokens[o : o + k], dtype=torch.long)
            position_ids[r] = torch.arange(node.start + o, node.start + o + width)
            own[r, :k] = 1
            for j, index in wanted[n]:
                if o <= j < o + k:
                    select.append(r * width + j - o)
                    placed.append(index)
            if o + k < len(node.tokens):
                following.append((n, o + k, r))
            else:
                following.extend((c, 0, r) for c in children[n])
        kwargs: dict[str, Any] = {}
        if cache is not None:
            assert mask is not None  # set by the first pass, the one without a cache
            parents = torch.tensor([p for _, _, p in frontier], dtype=torch.long)
            if len(parents) != len(mask) or not torch.equal(parents, torch.arange(len(mask))):
                cache.reorder_cache(parents.to(device))  # rows follow their parents (copies the cache)
                mask = mask[parents]
            mask = torch.cat([mask, own], dim=1)
            kwargs["attention_mask"] = mask.to(device)
        else:  # the first pass: causal attention alone keeps right padding out of real tokens' view
            mask = own
        out = base(
            input_ids=ids.to(device),
            position_ids=position_ids.to(device),
            use_cache=bool(following) or cache is not None,
            **kwargs,
            **{cache_arg: cache},
        )
        cache = _out_cache(out) if following else None
        if select:
            hidden = out.last_hidden_state
            gathered.append(hidden.reshape(-1, hidden.shape[-1])[torch.tensor(select, device=device)])
        encoded += int(own.sum())
        padded += own.numel()
        passes += 1
        del out
        frontier = following

    rows = torch.cat(gathered) if len(gathered) > 1 else gathered[0]
    ordered = torch.empty_like(rows)
    ordered[torch.tensor(placed, dtype=torch.long, device=device)] = rows
    return Encoding(ordered, encoded, padded, passes)


def _out_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)

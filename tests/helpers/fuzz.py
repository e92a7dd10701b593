"""Hypothesis strategies shared by the loaders' fuzz tests: random JSON, and random edits of a document."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

leaves = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=12))
json_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in a JSON tree (dict keys and list indices)."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, prefix + (i,))
    return out


def mutate(document: Any, data: st.DataObject, n: int) -> Any:
    """``document`` with ``n`` random locations replaced by random JSON or deleted."""
    document = copy.deepcopy(document)
    for _ in range(n):
        locations = [p for p in paths(document) if p]
        if not locations:
            break
        where = data.draw(st.sampled_from(locations))
        parent = document
        for key in where[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            parent[where[-1]] = data.draw(json_values)
        elif isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent.pop(where[-1])
    return document

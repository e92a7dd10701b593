"""Changing a config dict by dotted keys from test parameters (``train__lr=5e-5``: ``__`` for the dot, so that
the keys are Python names)."""

from __future__ import annotations

from typing import Any


def set_settings(config: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``config`` with each change set in place (missing sections made), returned for chaining."""
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config

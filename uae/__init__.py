"""UAE: Utility-Aligned Embeddings. Dense retrievers trained to rank passages the way an LLM uses them.

``from uae import Retriever`` is the Python API for a trained model (uae/api.py); it is imported on
first use, so importing UAE stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Hit", "Retriever", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Retriever", "Hit"):
        from uae import api  # deferred: start-up speed

        return getattr(api, name)
    raise AttributeError(f"module 'uae' has no attribute {name!r}")

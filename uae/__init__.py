"""UAE: Utility-Aligned Embeddings. Dense retrievers trained to rank passages the way an LLM uses them.

``from uae import Retriever`` is the Python API for a trained model (uae/api.py); it is imported on
first use, so importing UAE stays cheap.
"""

from __future__ import annotations

import os
from typing import Any

# JAX (which bm25s brings in) reserves 75% of a GPU's memory when its GPU backend starts, unless this
# is in the environment by then. Set in uae.retrieval.bm25 it was not enough on the lent H200: one run
# held 105 GB and the others sharing the card ran out of memory. The package is imported before
# anything else of UAE's, so this is the one place that always comes first.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

__version__ = "0.1.0"
__all__ = ["Hit", "Retriever", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Retriever", "Hit"):
        from uae import api  # deferred: start-up speed

        return getattr(api, name)
    raise AttributeError(f"module 'uae' has no attribute {name!r}")

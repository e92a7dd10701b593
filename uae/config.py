"""OmegaConf resolvers that the configs use (registered once, before Hydra composes)."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

ROOT_DIR = Path(__file__).resolve().parents[1]


def project_path(path: str | Path) -> str:
    """A file's path inside the project when it lies there (absolute otherwise): results name the same
    committed table from any checkout or snapshot of the repository."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT_DIR)) if resolved.is_relative_to(ROOT_DIR) else str(path)


def register_resolvers() -> None:
    """``${uae_root:}`` is the repository root, so paths work from any working directory;
    ``${uae_slug:PATH}`` names a folder after a path (``/data/my qa`` -> ``data_my_qa``), so that caches
    of two data folders never share a file name."""
    if not OmegaConf.has_resolver("uae_root"):
        OmegaConf.register_new_resolver("uae_root", lambda: str(ROOT_DIR))
    if not OmegaConf.has_resolver("uae_slug"):
        OmegaConf.register_new_resolver("uae_slug", slug)


def slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(Path(path).expanduser().resolve())).strip("_") or "root"

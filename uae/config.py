"""OmegaConf resolvers that the configs use (registered once, before Hydra composes)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

ROOT_DIR = Path(__file__).resolve().parents[1]


def register_resolvers() -> None:
    """``${uae_root:}`` is the repository root, so paths work from any working directory."""
    if not OmegaConf.has_resolver("uae_root"):
        OmegaConf.register_new_resolver("uae_root", lambda: str(ROOT_DIR))

"""The project's settings: where it lives, the OmegaConf resolvers its configs use (registered once,
before Hydra composes), and composing a run's config outside ``python -m uae.run``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uae.core.errors import UAEError

ROOT_DIR = Path(__file__).resolve().parents[2]  # uae/core/config.py -> the repository


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
    if not OmegaConf.has_resolver("uae_data"):
        OmegaConf.register_new_resolver("uae_data", data_dir)


# Where a dataset's files are looked for when no environment variable names a folder, in this order: a
# git-ignored data/ inside the repository (where `make data` fetches QASPER), then the team's shared
# folder beside the checkout.
DATA_PLACES = ("{root}/data/{name}", "{root}/../shared/data/{name}")


def data_dir(name: str) -> str:
    """``${uae_data:NAME}``: the first of :data:`DATA_PLACES` that exists, else the first (data/NAME in
    the repository), which is where the loaders' messages and `make data` tell a user to put the files."""
    places = [Path(p.format(root=ROOT_DIR, name=name)) for p in DATA_PLACES]
    return str(next((p for p in places if p.is_dir()), places[0]).resolve())


def slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(Path(path).expanduser().resolve())).strip("_") or "root"


def compose(overrides: list[str], *, job_name: str = "compose") -> DictConfig:
    """The run config for these overrides, composed as ``python -m uae.run`` would (without a run folder),
    for the tools that load data or models the way a run does."""
    from hydra import compose as hydra_compose  # deferred: start-up speed (Hydra's composition API)
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(ROOT_DIR / "conf"), version_base="1.3", job_name=job_name):
            return hydra_compose(config_name="config", overrides=overrides)
    except HydraException as exc:
        causes = [str(c) for c in _causes(exc)]  # Hydra's "Could not override" hides the reason in its cause
        raise UAEError(f"the overrides {overrides} do not compose: {' '.join(causes)}") from exc


def _causes(exc: BaseException | None) -> list[BaseException]:
    found = []
    while exc is not None:
        found.append(exc)
        exc = exc.__cause__
    return found


def dotted(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.lr": 2e-05, ...}``: one entry per leaf, so that two configs compare, and a
    table of runs shows them, key by key (a list is one leaf)."""
    if isinstance(config, Mapping):
        return {k: v for key, value in config.items() for k, v in dotted(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: config}

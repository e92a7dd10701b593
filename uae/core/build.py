"""Building objects from config nodes (Hydra ``instantiate``), with our errors kept clear."""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from uae.core.errors import UAEError


def build(node: DictConfig, where: str, **kwargs: Any) -> Any:
    """Hydra instantiate, unwrapping its InstantiationException so our clear errors stay clear."""
    from hydra.errors import InstantiationException  # deferred: start-up speed
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, UAEError):
            cause = cause.__cause__
        if isinstance(cause, UAEError):
            raise cause from None
        raise UAEError(f"{where} could not be built from the config: {exc}") from exc


def to_dict(node: DictConfig, *, resolve: bool = True) -> dict[str, Any]:
    """``OmegaConf.to_container`` of a mapping node: the plain dict it returns, typed as one (omegaconf
    types it as any container, a list or a string included)."""
    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=resolve))

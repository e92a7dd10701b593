"""Helpers the stages share: loading a split and building objects from config nodes."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from uae.data.qasper import load_qasper
from uae.data.records import QasperSplit
from uae.errors import UAEError

log = logging.getLogger("uae.run")


def load_split(cfg: DictConfig, name: str) -> QasperSplit:
    split = load_qasper(
        name, cfg.data.dir, version=cfg.data.version, max_papers=cfg.data.max_papers, allow_hub=cfg.data.allow_hub
    )
    log.info(split.summary())
    return split


def build(node: DictConfig, where: str, **kwargs: Any) -> Any:
    """Hydra instantiate, unwrapping its InstantiationException so our clear errors stay clear."""
    from hydra.errors import InstantiationException
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

"""Helpers the stages share: loading a split and building objects from config nodes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uae.data.qasper import load_qasper
from uae.data.records import QasperSplit
from uae.errors import UAEError

log = logging.getLogger("uae.run")


def max_papers_for(cfg: DictConfig, split_name: str) -> int | None:
    """``data.max_papers``: one number for every split, or a mapping such as ``{train: 89, dev: 28}``."""
    value = cfg.data.max_papers
    if isinstance(value, Mapping):
        value = value.get(split_name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise UAEError(f"data.max_papers={cfg.data.max_papers!r}: use a positive integer, a per-split mapping, or null.")
    return value


def load_split(cfg: DictConfig, name: str) -> QasperSplit:
    split = load_qasper(
        name, cfg.data.dir, version=cfg.data.version, max_papers=max_papers_for(cfg, name), allow_hub=cfg.data.allow_hub
    )
    log.info(split.summary())
    return split


def run_split(result: Mapping[str, Any], rankings: Mapping[str, Any], where: str, data_dir: str | None = None) -> QasperSplit:
    """The split a finished run (its results.json ``result``) was evaluated on, for tools that read runs.

    Loaded with the run's own data settings (``data_dir`` moves the files: a run made on another
    machine), and checked: the same data file by fingerprint, and ``rankings`` ranking exactly the
    split's counted questions, so numbers recomputed from the run's files belong to that run.
    """
    if not {"split", "metrics", "data", "config"} <= set(result) or "data" not in result["config"]:
        raise UAEError(f"{where}/results.json lacks split, metrics, data or config: not a finished run of this version.")
    cfg = OmegaConf.create(result["config"])
    name = result["split"]
    split = load_qasper(
        name, data_dir or cfg.data.dir, version=cfg.data.version, max_papers=max_papers_for(cfg, name),
        allow_hub=cfg.data.get("allow_hub"),
    )
    if split.fingerprint != result["data"]["fingerprint"]:
        raise UAEError(
            f"{where}: the data file {split.source} is not the one this run scored (fingerprint "
            f"{split.fingerprint[:12]}... against {result['data']['fingerprint'][:12]}...); point the data folder "
            "option at the files the run used."
        )
    counted = {q.question_id for q in split.evaluable_questions}
    if set(rankings) != counted:
        raise UAEError(f"{where}/rankings.json does not rank exactly the split's {len(counted)} counted questions.")
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

"""Helpers the stages share: loading a split through the dataset's configured loader, building objects."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uae.data.records import Split
from uae.errors import UAEError

log = logging.getLogger("uae.run")


def max_documents_for(data: DictConfig, split_name: str) -> int | None:
    """``data.max_documents``: one number for every split, or a mapping such as ``{train: 89, dev: 28}``."""
    value = data.max_documents
    if isinstance(value, Mapping):
        value = value.get(split_name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise UAEError(f"data.max_documents={data.max_documents!r}: use a positive integer, a per-split mapping, or null.")
    return value


def load_split(cfg: DictConfig, name: str) -> Split:
    """Split ``name`` of the configured dataset, through its loader (``data.loader._target_``)."""
    split = load_from(cfg.data, name)
    log.info(split.summary())
    return split


def load_from(data: DictConfig, name: str, data_dir: str | None = None) -> Split:
    """Call ``data.loader`` for one split; ``data_dir`` moves the files (a run made on another machine)."""
    if "loader" not in data:
        raise UAEError(
            f"data={data.get('name')!r} has no loader: a dataset config needs loader._target_ (see conf/data/qasper.yaml)."
        )
    if data_dir is not None:
        data = OmegaConf.merge(data, {"dir": data_dir, "loader": {"data_dir": data_dir}})
    loader = build(data.loader, "data.loader")
    return loader(name, max_documents=max_documents_for(data, name))


def run_split(result: Mapping[str, Any], rankings: Mapping[str, Any], where: str, data_dir: str | None = None) -> Split:
    """The split a finished run (its results.json ``result``) was evaluated on, for tools that read runs.

    Loaded with the run's own data settings (``data_dir`` moves the files: a run made on another
    machine), and checked: the same data file by fingerprint, and ``rankings`` ranking exactly the
    split's counted questions, so numbers recomputed from the run's files belong to that run.
    """
    if not {"split", "metrics", "data", "config"} <= set(result) or "loader" not in result["config"].get("data", {}):
        raise UAEError(f"{where}/results.json lacks split, metrics, data or config: not a finished run of this version.")
    cfg = OmegaConf.create(result["config"])
    split = load_from(cfg.data, result["split"], data_dir)
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

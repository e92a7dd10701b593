"""Helpers the stages share: loading a split through the dataset's configured loader, building objects."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import cast

from omegaconf import DictConfig, OmegaConf

from uae.core.build import build
from uae.core.errors import UAEError
from uae.data.records import Split

log = logging.getLogger("uae.run")


def max_documents_for(data: DictConfig, split_name: str) -> int | None:
    """``data.max_documents``: one number for every split, or a mapping such as ``{train: 89, dev: 28}``."""
    value = data.max_documents
    if isinstance(value, Mapping):
        value = value.get(split_name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise UAEError(f"data.max_documents={data.max_documents!r}: use a positive integer, a per-split mapping, or null.")
    return value


def load_split(cfg: DictConfig, name: str, loaded: dict[str, Split] | None = None) -> Split:
    """Split ``name`` of the configured dataset, through its loader (``data.loader._target_``).

    ``loaded`` holds the splits already loaded for this config: the stages of one run pass the same
    dict, so a split is parsed once per run however many stages read it (train and dev were parsed
    twice in a full run, each parse seconds to a minute).
    """
    if loaded is not None and name in loaded:
        return loaded[name]
    split = load_from(cfg.data, name)
    log.info(split.summary())
    if loaded is not None:
        loaded[name] = split
    return split


def load_from(data: DictConfig, name: str, data_dir: str | None = None) -> Split:
    """Call ``data.loader`` for one split; ``data_dir`` moves the files (a run made on another machine)."""
    if "loader" not in data:
        raise UAEError(
            f"data={data.get('name')!r} has no loader: a dataset config needs loader._target_ (see conf/data/qasper.yaml)."
        )
    if data_dir is not None:
        data = cast(DictConfig, OmegaConf.merge(data, {"dir": data_dir, "loader": {"data_dir": data_dir}}))  # a mapping stays one
    loader = build(data.loader, "data.loader")
    return loader(name, max_documents=max_documents_for(data, name))



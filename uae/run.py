"""The one entry point: ``python -m uae.run +experiment=NAME [overrides]``.

Stages are flags (``stages=[evaluate]``) over one Hydra config, so a sweep, a Makefile target and a
notebook all drive the same code. Each run prints its resolved config, writes it with results.json
into its Hydra run folder, and turns any :class:`UAEError` into a one-paragraph message and exit
status 2 instead of a traceback.

Examples::

    python -m uae.run +experiment=qasper_minilm stages=[evaluate]
    python -m uae.run +experiment=qasper_minilm model=bm25
    python -m uae.run +experiment=qasper_minilm data.eval_split=test data.max_papers=20
    python -m uae.run --help            # Hydra's help: config groups and overrides
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from uae.config import register_resolvers
from uae.errors import UAEError

log = logging.getLogger("uae.run")
register_resolvers()


def stage_evaluate(cfg: DictConfig, state: dict[str, Any]) -> None:
    """Rank ``data.eval_split`` with ``model.retriever`` and write results.json into the run folder."""
    from hydra.utils import instantiate

    from uae.cache import write_json
    from uae.data.qasper import load_qasper
    from uae.evaluation.evaluate import evaluate_retriever

    split = load_qasper(
        cfg.data.eval_split,
        cfg.data.dir,
        version=cfg.data.version,
        max_papers=cfg.data.max_papers,
        allow_hub=cfg.data.allow_hub,
    )
    log.info(split.summary())
    retriever = _instantiate(instantiate, cfg.model.retriever, "model.retriever")
    result = evaluate_retriever(split, retriever, scope=cfg.retrieval.scope, top_k=cfg.retrieval.top_k)
    out_dir = Path(cfg.paths.output_dir)
    payload = {
        "experiment": cfg.experiment,
        "split": result.split,
        "retriever": cfg.model.name,
        "n_questions": result.n_questions,
        "metrics": result.metrics,
        "latency_ms_per_query": result.latency_ms_per_query,
        "index_seconds": result.index_seconds,
        "retriever_details": result.retriever,
        "data": {"source": split.source, "fingerprint": split.fingerprint, "alignment": vars(split.alignment)},
        "machine": machine_description(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / "rankings.json", dict(zip(result.question_ids, result.ranked_ids)))
    write_json(out_dir / "results.json", payload)
    state["results"] = payload
    table = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    log.info(
        "%s on %s (%d questions): %s  latency=%.2f ms/query  -> %s",
        cfg.model.name,
        result.split,
        result.n_questions,
        table,
        result.latency_ms_per_query,
        out_dir / "results.json",
    )


STAGES: dict[str, Callable[[DictConfig, dict[str, Any]], None]] = {"evaluate": stage_evaluate}


def machine_description() -> dict[str, Any]:
    import os

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _instantiate(instantiate: Callable[..., Any], node: DictConfig, where: str) -> Any:
    """Hydra instantiate, unwrapping its InstantiationException so our clear errors stay clear."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, UAEError):
            cause = cause.__cause__
        if isinstance(cause, UAEError):
            raise cause from None
        raise UAEError(f"{where} could not be built from the config: {exc}") from exc


def validate(cfg: DictConfig) -> None:
    """Refuse settings that would fail late or silently, before any work starts."""
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise UAEError(f"stages={list(cfg.stages)}: unknown stage(s) {unknown}. Known stages: {list(STAGES)}.")
    if cfg.retrieval.scope not in ("paper", "corpus"):
        raise UAEError(f"retrieval.scope={cfg.retrieval.scope!r}: use 'paper' or 'corpus'.")
    if int(cfg.retrieval.top_k) < 1 or int(cfg.retrieval.batch_size) < 1:
        raise UAEError("retrieval.top_k and retrieval.batch_size must be positive integers.")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured stages in order; returns what they produced (results, checkpoints)."""
    import random

    import numpy as np
    import torch

    print(OmegaConf.to_yaml(cfg, resolve=True), flush=True)
    validate(cfg)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    state: dict[str, Any] = {}
    for stage in cfg.stages:
        log.info("stage %s", stage)
        STAGES[stage](cfg, state)
    return state


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except UAEError as exc:
        log.error("%s", exc)
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

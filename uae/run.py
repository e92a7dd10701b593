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

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from uae.config import register_resolvers
from uae.errors import UAEError
from uae.stages import STAGES

log = logging.getLogger("uae.run")
register_resolvers()


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
    for stage in STAGES:  # canonical order, whatever order the list was written in
        if stage in cfg.stages:
            log.info("stage %s", stage)
            STAGES[stage](cfg, state)
    return state


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """One job. In a multirun a failed job is recorded (status.json) and the others go on; the sweep
    summary lists it and the multirun exits 1. A single run exits 2 on a UAEError, with its message."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        run(cfg)
    except UAEError as exc:
        log.error("%s", exc)
        _write_status(out_dir, "failed", str(exc))
        if multirun:
            return
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - a bug in one job must not stop a sweep; a single run re-raises
        _write_status(out_dir, "failed", f"{type(exc).__name__}: {exc}")
        if not multirun:
            raise
        log.exception("job failed")
        return
    _write_status(out_dir, "ok", None)


def _write_status(out_dir: Path, status: str, error: str | None) -> None:
    from uae.cache import write_json

    try:
        write_json(out_dir / "status.json", {"status": status, "error": error})
    except UAEError as exc:  # an unwritable run folder is reported, never hides the job's own outcome
        log.error("could not record the job status: %s", exc)


if __name__ == "__main__":
    main()

"""The one entry point: ``python -m uae.run +experiment=NAME [overrides]``.

Stages are flags (``stages=[evaluate]``) over one Hydra config, so a sweep, a Makefile target and a
notebook all drive the same code. Each run prints its resolved config, writes it with results.json
into its Hydra run folder, and turns any :class:`UAEError` into a one-paragraph message and exit
status 2 instead of a traceback.

Examples::

    python -m uae.run +experiment=qasper_minilm stages=[evaluate]
    python -m uae.run +experiment=qasper_minilm model=bm25
    python -m uae.run +experiment=qasper_minilm data.eval_split=test data.max_documents=20
    python -m uae.run --help            # Hydra's help: config groups and overrides
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from uae.core.config import compose, register_resolvers
from uae.core.errors import UAEError
from uae.core.keys import override_problem
from uae.core.schema import Config, check
from uae.results.read import job_settings
from uae.storage.atomic import write_json
from uae.storage.tmpfiles import remove_stale

log = logging.getLogger("uae.run")
register_resolvers()


def validate(cfg: DictConfig) -> None:
    """Refuse settings that would fail late or silently, before any work starts and whatever the stages:
    every value's type and range (:mod:`uae.core.schema`), so that no run writes a config it could not have run."""
    check(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured stages in order; returns what they produced (results, checkpoints)."""
    validate(cfg)  # first: printing resolves every value, and an unresolvable one must be our error
    # Deferred: start-up speed. A refused config is answered before torch, Lightning and transformers
    # load (seconds), so a typo costs no more than Hydra's composition.
    import random

    import numpy as np
    import torch

    from uae.stages import STAGES

    print(OmegaConf.to_yaml(cfg, resolve=True), flush=True)
    remove_stale_tmp(cfg)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    state: dict[str, Any] = {}
    for stage in STAGES:  # canonical order, whatever order the list was written in
        if stage in cfg.stages:
            log.info("stage %s", stage)
            STAGES[stage](cfg, state)
            if state.get("is_global_zero") is False:  # a DDP worker: rank 0 alone evaluates and reports
                break
    return state


def remove_stale_tmp(cfg: DictConfig) -> None:
    """Delete the temporary files that killed writers left where this run writes (never a live writer's)."""

    for path in remove_stale(dict.fromkeys([str(cfg.paths.cache_dir), str(cfg.utility.table_dir)])):
        log.info("removed %s: a temporary file whose writer is gone", path)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """One job. In a multirun a failed job is recorded (status.json) and the others go on; the sweep
    summary lists it and the multirun exits 1. A single run exits 2 on a UAEError, with its message.
    With ``skip_done=true`` a job that already finished in this folder with this config is not rerun."""
    from hydra.core.hydra_config import HydraConfig  # deferred: start-up speed
    from hydra.types import RunMode

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    overrides = list(HydraConfig.get().overrides.task)  # kept in status.json: Hydra rewrites .hydra/ on every start
    try:
        done = bool(cfg.get("skip_done")) and already_done(cfg, out_dir)
    except UAEError as exc:  # stops a multirun too, and writes no status.json: that one is the earlier job's
        log.error("%s", exc)
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if done:
        log.info("%s holds this config's results.json: skipped (skip_done=true)", out_dir)
        return
    try:
        run(cfg)
    except UAEError as exc:
        log.error("%s", exc)
        _write_status(out_dir, "failed", str(exc), overrides)
        if multirun:
            return
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as exc:  # a bug in one job must not stop a sweep; a single run re-raises
        _write_status(out_dir, "failed", f"{type(exc).__name__}: {exc}", overrides)
        if not multirun:
            raise
        log.exception("job failed")
        return
    _write_status(out_dir, "ok", None, overrides)


def already_done(cfg: DictConfig, out_dir: Path) -> bool:
    """True when ``out_dir`` finished this exact job before; a different config there is an error,
    because silently mixing two configs' results in one sweep folder would corrupt its summary."""
    try:
        status = json.loads((out_dir / "status.json").read_text(encoding="utf-8"))
        result = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if status.get("status") != "ok":
        return False
    ours = job_settings(OmegaConf.to_container(cfg, resolve=True))
    theirs = job_settings(dict(result.get("config") or {}))
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        raise UAEError(
            f"{out_dir} holds a finished job made with a different config (top-level keys {differ} differ). "
            "Give this run another folder (hydra.run.dir / hydra.sweep.dir) or delete that one. Its "
            "results.json and status.json (which holds its own overrides) are untouched."
        )
    return True


def _write_status(out_dir: Path, status: str, error: str | None, overrides: list[str]) -> None:
    try:
        write_json(out_dir / "status.json", {"status": status, "error": error, "overrides": overrides})
    except UAEError as exc:  # an unwritable run folder is reported, never hides the job's own outcome
        log.error("could not record the job status: %s", exc)


def mapping_override_problem(argv: list[str]) -> str | None:
    """Our message for ``KEY={a: 1, b: 2}`` where the config already sets KEY to a mapping without ``b``.

    Hydra merges a mapping override into the mapping there and cannot add keys to it, so it stops with
    "Key 'b' is not in struct" before any code of ours runs (``data.max_documents={train: 120, test: 100}``
    on an experiment that sets ``{train: 120}``). Checked before Hydra starts, and only when an override
    assigns a mapping: it costs one composition (under a second). None when there is nothing to say.
    """
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "hydra.", "+hydra.", "~hydra."))]
    if not any(re.match(r"^[\w.]+=\{", o) for o in overrides):
        return None
    try:
        compose(overrides)
    except UAEError as exc:
        found = re.search(r"Key '([^']+)' is not in struct\s+full_key: (\S+)", str(exc))
        if found is None:
            return None  # another problem: Hydra says it in its own words
        key, parent = found.group(1), found.group(2).rpartition(".")[0]
        override = next((o for o in overrides if o.split("=", 1)[0] == parent), None)
        if override is None:
            return None
        value = OverridesParser.create().parse_overrides([override])[0].value()
        own = [f"++{parent}.{k}={v}" for k, v in value.items()] if isinstance(value, dict) else [f"++{parent}.{key}=VALUE"]
        return (
            f"{override}: the config already sets {parent} to a mapping without {key!r}, and Hydra merges a mapping "
            f"into it without adding keys. Set each key on its own instead: {' '.join(own)} (++ sets a key whether "
            "or not the config has it; +KEY adds a new one)."
        )
    return None


if __name__ == "__main__":
    # An unknown key is refused before Hydra composes: Hydra would answer one form (KEY=VALUE) with advice to
    # add a +, and accept the other (+KEY=VALUE), which nothing reads.
    if (problem := override_problem(sys.argv[1:], Config) or mapping_override_problem(sys.argv[1:])) is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()

"""``python -m uae.analysis.read RUN_DIR... [overrides]``: answers and token F1 for runs evaluated without a reader.

A run made with ``reader=none`` (on a GPU machine where the LLM was not at hand, or a sweep where
answers were not wanted yet) keeps its rankings.json. This gives each ranking's top paragraphs to the
reader of ``+experiment=qasper_minilm`` (the prompts and answer cache every other row of the tables
uses), writes answers.json beside the rankings and adds ``token_f1`` to results.json, with a note of
when, where and with which reader. The data file (``data.dir``, default the usual data folder) is
checked against the run's fingerprint and the rankings against the split's counted questions first
(``run_split``, as ``uae.analysis.compare`` does), so the F1 belongs to exactly those rankings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uae.core.config import compose
from uae.core.errors import UAEError, cli_main
from uae.results import machine
from uae.results.read import read_rankings, run_split
from uae.stages.evaluate import reader_token_f1
from uae.storage.atomic import write_json

log = logging.getLogger("uae.analysis.read")


def compose_config(overrides: list[str]) -> DictConfig:
    """The experiment's config with its reader, as `python -m uae.run +experiment=qasper_minilm` composes it."""
    return compose(["+experiment=qasper_minilm", "reader=smollm2", *overrides], job_name="read")


def read_run(run_dir: Path, cfg: DictConfig, state: dict[str, Any], *, force: bool = False, data_dir: str | None = None) -> float:
    """Add the reader's token F1 to one run folder; returns it. The run's own data settings load its
    split (any dataset); ``data_dir`` moves its files (a run made on another machine)."""
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UAEError(f"{run_dir}: needs a readable results.json from `uae.run` ({exc}).") from exc
    rankings = read_rankings(run_dir)  # its own error names the file
    if "token_f1" in results.get("metrics", {}) and not force:
        raise UAEError(f"{run_dir} already has token_f1; --force replaces it (answers are cached, so it is cheap).")
    split = run_split(results, rankings, str(run_dir), data_dir)
    question_ids = list(rankings)
    answers, f1 = reader_token_f1(cfg, state, split, question_ids, [rankings[q] for q in question_ids])
    results["metrics"]["token_f1"] = f1
    results["reader"] = {
        "added_by": "python -m uae.analysis.read",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "answerer": OmegaConf.to_container(cfg.reader.answerer, resolve=True),
    }
    write_json(run_dir / "answers.json", answers)
    write_json(run_dir / "results.json", results)  # last: a run killed before this has no token_f1 yet
    log.info("%s: token_f1=%.4f (%d questions)", run_dir, f1, len(question_ids))
    return f1


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.analysis.read",
        description="Add the reader's answers and token F1 to runs evaluated with reader=none.",
        epilog="Overrides (key=value) change the composed config, e.g. reader.answerer.batch_size=16 data.dir=...",
    )
    parser.add_argument("items", nargs="+", help="run folders (with results.json and rankings.json), then overrides")
    parser.add_argument("--force", action="store_true", help="replace a token_f1 the run already has")
    args = parser.parse_intermixed_args(argv)
    runs = [Path(i) for i in args.items if Path(i).is_dir()]
    overrides = [i for i in args.items if not Path(i).is_dir()]
    if not runs or any("=" not in o for o in overrides):
        missing = [o for o in overrides if "=" not in o]
        print(f"error: not run folders: {missing or 'none given'} (a run folder holds results.json and rankings.json)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    cfg = compose_config(overrides)  # overrides that do not compose: a UAEError, printed by cli_main
    state: dict[str, Any] = {}  # one reader for all the runs
    data_dir = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("data.dir=")), None)
    for run_dir in runs:
        f1 = read_run(run_dir, cfg, state, force=args.force, data_dir=data_dir)
        print(f"{run_dir}\ttoken_f1={f1:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

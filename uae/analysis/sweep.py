"""Sweep summaries: when a Hydra multirun ends, one table of all its jobs (markdown and CSV).

Registered as a Hydra callback (conf/hydra/default.yaml), so every multirun gets
``<sweep dir>/summary.md`` and ``summary.csv``: one row per job with its overrides, its status and its
results.json metrics (and one more for its base encoder when the job evaluated it zero-shot). A job
that failed is a row with its error (``uae.run`` records it in the job's ``status.json`` and lets the
other jobs run); the multirun then exits with status 1.

``python -m uae.analysis.sweep DIR`` writes the same summary for any folder of run folders: a multirun that
was killed before its end, or runs started by hand side by side (``DIR/uae-seed1/``, ...).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from uae.analysis.jobs import job_overrides
from uae.evaluation.names import RETRIEVAL_METRICS
from uae.storage.atomic import atomic_path

log = logging.getLogger("uae.analysis.sweep")

METRIC_COLUMNS = (*RETRIEVAL_METRICS, "token_f1")


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (``<sweep dir>/<n>/`` in job order, then named run folders by name); a job
    that also evaluated its base encoder (``evaluate.zero_shot=true``) adds that row right before its
    own, so each gain is in view."""
    rows = []
    for job in run_folders(sweep_dir):
        status = _read_json(job / "status.json") or {"status": "unknown", "error": "no status.json (killed?)"}
        overrides = " ".join(o for o in job_overrides(job) if not o.startswith(("hydra.", "+experiment")))
        zero_shot = _read_json(job / "zero_shot" / "results.json")
        if zero_shot:
            rows.append(_row(job, overrides, status, zero_shot))
        rows.append(_row(job, overrides, status, _read_json(job / "results.json") or {}))
    return rows


def _row(job: Path, overrides: str, status: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    metrics = result.get("metrics", {})
    return {
        "job": int(job.name) if job.name.isdigit() else job.name,
        "overrides": overrides,
        "status": status.get("status", "unknown"),
        "retriever": result.get("retriever", ""),
        **{m: metrics.get(m, "") for m in METRIC_COLUMNS},
        "ms_per_query": result.get("latency_ms_per_query", ""),
        "train_minutes": result["train_seconds"] / 60 if result.get("train_seconds") else "",
        "error": (status.get("error") or "")[:300],
        "run_dir": str(job),
    }


def summary_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The table of jobs; overrides that every job shares are said once above it, so that the column
    shows what the jobs differ in (the CSV keeps each job's full list)."""
    columns = ["job", "overrides", "status", "retriever", *[m for m in METRIC_COLUMNS if any(r[m] != "" for r in rows)],
               "ms_per_query", "train_minutes"]
    common = shared_overrides([r["overrides"] for r in rows])

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value).replace("|", "\\|")

    def own(overrides: str) -> str:
        return " ".join(o for o in overrides.split() if o not in common)

    lines = [f"# {title}", ""]
    if common and len({r["job"] for r in rows}) > 1:
        lines += ["Every job: `" + " ".join(common) + "`", ""]
        rows = [{**r, "overrides": own(r["overrides"])} for r in rows]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    failed = list({r["job"]: r for r in rows if r["status"] != "ok"}.values())
    if failed:
        lines += ["", "Failed jobs:", ""] + [f"- job {r['job']} ({r['overrides']}): {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, title: str) -> list[dict[str, Any]]:
    rows = job_rows(sweep_dir)
    with atomic_path(sweep_dir / "summary.md") as tmp:
        tmp.write_text(summary_markdown(rows, title), encoding="utf-8")
    with atomic_path(sweep_dir / "summary.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        fields = ["job", "overrides", "status", "retriever", *METRIC_COLUMNS, "ms_per_query", "train_minutes", "error", "run_dir"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return rows


class SweepSummary(Callback):
    """Writes the summary when a multirun ends; exits 1 if any job failed (after the summary is written)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = write_summary(sweep_dir, f"{config.get('experiment', 'sweep')}: {sweep_dir.name}")
        print("\n" + (sweep_dir / "summary.md").read_text(encoding="utf-8"), flush=True)
        failed = sorted({r["job"] for r in rows if r["status"] != "ok"}, key=str)
        if failed:
            n_jobs = len({r["job"] for r in rows})
            log.error("%d of %d jobs failed (%s); see %s", len(failed), n_jobs, failed, sweep_dir / "summary.md")
            raise SystemExit(1)


def shared_overrides(overrides: list[str]) -> list[str]:
    """The overrides present in every job's list, in the first job's order."""
    lists = [o.split() for o in overrides]
    return [o for o in lists[0] if all(o in other for other in lists[1:])] if lists else []


def run_folders(folder: Path) -> list[Path]:
    """The job folders of a multirun (``<n>/``, in job order), then run folders started by hand beside
    them, by name; a named folder counts when it has .hydra/ (a run killed before status.json does)."""
    def is_run(p: Path) -> bool:
        return p.name.isdigit() or any((p / name).exists() for name in ("results.json", "status.json", ".hydra"))

    runs = [p for p in folder.iterdir() if p.is_dir() and is_run(p)]
    return sorted(runs, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.analysis.sweep",
        description="Write summary.md and summary.csv for a folder of runs (a multirun's, or runs side by side).",
    )
    parser.add_argument("folder", type=Path, help="folder whose subfolders are runs (0/, 1/, ... or named)")
    parser.add_argument("--title", help="the summary's title (default: the folder's name)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    if not run_folders(args.folder):
        print(f"error: {args.folder} holds no run folders (subfolders with .hydra/, status.json or results.json)", file=sys.stderr)
        return 2
    rows = write_summary(args.folder, args.title or args.folder.name)
    print((args.folder / "summary.md").read_text(encoding="utf-8"), end="")
    return 1 if any(r["status"] != "ok" for r in rows) else 0  # as a multirun with a failed job exits


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())

"""Run folders as pandas tables: what notebooks/inspect_runs.ipynb shows, usable from any notebook.

A run folder (``logs/<experiment>/runs/<time>``) or a sweep folder (``.../multiruns/<time>``, one
sub-folder per job) holds everything needed: results.json (metrics, latency, training time), the
resolved config and overrides (``.hydra/``), and the CSV logger's metrics (``csv/metrics.csv``).
Reading our own files works offline; W&B offline runs keep no summary that can be read back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from uae.core.config import dotted
from uae.evaluation.names import RETRIEVAL_METRICS

METRICS = (*RETRIEVAL_METRICS, "token_f1")


def job_dirs(folder: str | Path) -> list[Path]:
    """Every job folder under ``folder`` (itself, sweep sub-folders, zero_shot/ beside a fine-tuned run)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such run or sweep folder")
    found = {p.parent for p in folder.rglob("results.json")} | {p.parent for p in folder.rglob("status.json")}
    return sorted(found, key=lambda p: (len(p.relative_to(folder).parts), str(p)))


def latest_folder(logs: str | Path) -> Path:
    """The newest run under ``logs`` (by its results.json), or its sweep folder when it is a multirun job."""
    results = sorted(Path(logs).rglob("results.json"), key=lambda p: p.stat().st_mtime)
    if not results:
        raise FileNotFoundError(f"no run with a results.json under {logs}; run `make run` first or set UAE_RUN_DIR")
    folder = results[-1].parent
    if folder.name == "zero_shot":  # the base-encoder evaluation beside a fine-tuned one
        folder = folder.parent
    if (folder.parent / "multirun.yaml").is_file():  # Hydra writes it in every sweep folder
        folder = folder.parent
    return folder


def job_overrides(job: Path) -> list[str]:
    """The job's command-line overrides: from its status.json (written when it ended) before Hydra's
    .hydra/ copy, which the next start in the same folder rewrites; a zero_shot/ folder has its parent's."""
    for folder in (job, job.parent):
        status = folder / "status.json"
        items = json.loads(status.read_text()).get("overrides") if status.is_file() else None
        if items is None and (folder / ".hydra" / "overrides.yaml").is_file():
            items = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
        if items is not None:
            return list(items)
    return []


def _overrides(job: Path) -> dict[str, str]:
    items = job_overrides(job)
    return dict(item.lstrip("+").split("=", 1) for item in items if "=" in item and not item.startswith("hydra."))


def load_runs(folder: str | Path) -> pd.DataFrame:
    """One row per evaluated retriever: metrics, latency, training time, status and the job's overrides."""
    rows = []
    for job in job_dirs(folder):
        result = json.loads((job / "results.json").read_text()) if (job / "results.json").is_file() else {}
        status = json.loads((job / "status.json").read_text()) if (job / "status.json").is_file() else {}
        row: dict[str, Any] = {
            "job": str(job.relative_to(folder)) if job != Path(folder) else ".",
            "retriever": result.get("retriever"),
            "split": result.get("split"),
            "n_questions": result.get("n_questions"),
            **{m: result.get("metrics", {}).get(m) for m in METRICS},
            "ms_per_query": result.get("latency_ms_per_query"),
            "train_minutes": (result.get("train_seconds") or 0) / 60 or None,
            "status": status.get("status", "ok" if result else "unknown"),
            "error": status.get("error"),
        }
        row.update({f"override:{k}": v for k, v in _overrides(job).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.dropna(axis=1, how="all") if not table.empty else table


def load_config(job: str | Path) -> dict[str, Any]:
    """The job's resolved config, flattened to dotted keys (``loss.temperature``: 0.05)."""
    job = Path(job)
    results = job / "results.json"
    if results.is_file():
        return dotted(json.loads(results.read_text()).get("config", {}))
    hydra_config = job / ".hydra" / "config.yaml"
    return dotted(yaml.safe_load(hydra_config.read_text())) if hydra_config.is_file() else {}


def load_curves(folder: str | Path) -> pd.DataFrame:
    """The CSV logger's metrics of every job (step, train/loss, val/map, ...) with a ``job`` column."""
    frames = []
    for csv_file in sorted(Path(folder).rglob("csv/metrics.csv")):
        frame = pd.read_csv(csv_file)
        frame.insert(0, "job", str(csv_file.parent.parent.relative_to(folder)) if csv_file.parent.parent != Path(folder) else ".")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def swept_keys(table: pd.DataFrame) -> list[str]:
    """Override columns whose value differs between jobs: the axes of a sweep."""
    columns = [c for c in table.columns if c.startswith("override:")]
    return [c for c in columns if table[c].nunique(dropna=False) > 1]

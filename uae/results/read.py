"""Reading finished runs back: their results.json as table rows, and the split a run was evaluated on.

results.json is the source of truth that tables, notebooks and RESULTS.md are made from, so a table
can always be regenerated from the runs that produced it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from uae.core.errors import UAEError
from uae.data.loading import load_from
from uae.data.records import Split
from uae.evaluation.names import RETRIEVAL_METRICS
from uae.results.machine import label as machine_label

# A run writes rankings.json; its committed record keeps the same JSON gzipped (a 61k-passage corpus's top 100 for
# 1,539 questions is 3.8 MB as JSON, 0.5 MB gzipped), so that the records stay small enough to travel with the
# working tree (the GPU machine's calls carry at most 64 MiB of it).
RANKINGS = "rankings.json"
RANKINGS_RECORD = "rankings.json.gz"

# How a run is saved and logged, not what it computes: a run that checkpoints every 10 steps to survive a kill, or that
# an older version's checkpoint callback kept, trains and scores the same (tests/stages/test_reliability.py).
NOT_SETTINGS = frozenset({"paths", "skip_done", "logger", "callbacks.model_checkpoint", "callbacks.step_checkpoint",
                          "callbacks.lr_monitor", "train.checkpoint_every_steps"})
PROGRESS_BARS = frozenset({"progress", "enable_progress_bar"})  # leaf names, in whichever section has one

# The machine-readable table (experiments/*/results.csv): one row per retriever and split.
COLUMNS = ("retriever", "split", "n_questions", *RETRIEVAL_METRICS, "token_f1", "ms_per_query")


def load_results(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run folder (a folder, or a results.json path), in the order given."""
    rows = []
    for run_dir in run_dirs:
        path = run_dir if run_dir.name == "results.json" else run_dir / "results.json"
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UAEError(f"{path}: no readable results.json ({exc}). Did that run finish?") from exc
        rows.append(
            {
                "date": result.get("date", ""),
                "machine": machine_label(result.get("machine", {})),
                "retriever": result["retriever"],
                "split": result["split"],
                "n_questions": result["n_questions"],
                **{m: result["metrics"][m] for m in RETRIEVAL_METRICS},
                "token_f1": result["metrics"].get("token_f1", ""),
                "ms_per_query": result["latency_ms_per_query"],
                "train_minutes": result["train_seconds"] / 60 if result.get("train_seconds") else "",
                "device": result.get("machine", {}).get("gpu") or "CPU",
            }
        )
    return rows


# Relative gains of UAE over the zero-shot base encoder that the paper reports (BGE-Base on QASPER).
PAPER_GAINS = {"recall@1": 30.59, "map": 30.16, "token_f1": 17.3}


def add_speedup(rows: list[dict[str, Any]], reference: str) -> None:
    """A ``speedup`` column: the reference retriever's ms/query over each row's (how many times faster).

    Only rows timed on the reference's device get one: a GPU row's milliseconds against a CPU
    re-ranker's would be a ratio of machines, not of methods.
    """
    ref = next((r for r in rows if r["retriever"] == reference), None)
    if ref is None:
        raise UAEError(f"--speedup-against {reference}: no such retriever among {[r['retriever'] for r in rows]}")
    for row in rows:
        same_device = row.get("device") == ref.get("device")
        row["speedup"] = ref["ms_per_query"] / row["ms_per_query"] if row["ms_per_query"] and same_device else ""


def gains_line(rows: list[dict[str, Any]], pair: str) -> str:
    """``minilm+uae over minilm: recall@1 +x% (paper +30.59%), ...``."""
    name, _, base_name = pair.partition(":")
    by_name = {r["retriever"]: r for r in rows}
    if name not in by_name or base_name not in by_name:
        raise UAEError(f"--gains {pair}: both retrievers must be in the table ({sorted(by_name)})")
    row, base = by_name[name], by_name[base_name]
    parts = []
    for metric, paper in PAPER_GAINS.items():
        if isinstance(row.get(metric), float) and isinstance(base.get(metric), float) and base[metric] > 0:
            parts.append(f"{metric} {100 * (row[metric] / base[metric] - 1):+.2f}% (paper {paper:+.2f}%)")
    return f"\nRelative gains of {name} over {base_name}: " + ", ".join(parts) + ".\n"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float) and value >= 100:
            return f"{value:.0f}"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    columns = [c for c in COLUMNS if any(row.get(c, "") != "" for row in rows)]
    if any(row.get("speedup") for row in rows):
        columns.append("speedup")
    if any(row.get("train_minutes") for row in rows):
        columns.append("train_minutes")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    made = sorted({f"{row['date'][:10]} on {row['machine']}" for row in rows})
    note = ""
    devices = {row.get("device", "CPU") for row in rows}
    if len(devices) > 1:  # ms_per_query and train_minutes of different devices are not comparable
        by_device = {d: ", ".join(r["retriever"] for r in rows if r.get("device", "CPU") == d) for d in sorted(devices)}
        note = " Timed on different devices, so ms_per_query and train_minutes compare only within one: " + "; ".join(
            f"{device}: {names}" for device, names in by_device.items()
        ) + "."
    return "\n".join(lines) + f"\n\nRuns made {'; '.join(made)}.{note}\n"


def _rankings_file(run_dir: Path) -> Path:
    """The run folder's rankings.json, else its record's rankings.json.gz; the former when neither exists."""
    packed = run_dir / RANKINGS_RECORD
    return packed if packed.is_file() and not (run_dir / RANKINGS).is_file() else run_dir / RANKINGS


def has_rankings(run_dir: Path) -> bool:
    """Whether ``run_dir`` (a run folder, or its committed record) holds its rankings."""
    return _rankings_file(run_dir).is_file()


def read_rankings(run_dir: Path) -> dict[str, list[str]]:
    """{question id: passage ids, best first} of a run folder (rankings.json) or of its record (rankings.json.gz)."""
    path = _rankings_file(run_dir)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name == RANKINGS_RECORD else path.read_bytes()
        rankings = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UAEError(f"{path}: not readable ({exc}). A run folder holds {RANKINGS}, a committed record {RANKINGS_RECORD}; "
                       "did that run finish?") from exc  # fmt: skip
    if not isinstance(rankings, dict):
        raise UAEError(f"{path}: not a ranking per question (a JSON object of passage id lists).")
    return rankings


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


def job_settings(config: Any, key: str = "") -> Any:
    """A resolved config as the job it describes, for ``skip_done`` and for the seeds a comparison pairs: without
    where its files are (a sweep resumed from another checkout, node or data mount is the same job: ``paths`` and
    absolute file locations read as ``<path>``) and without how it is saved, logged and shown (``NOT_SETTINGS``,
    progress bars). ``train.ckpt_path=last``, a resume from the run's own checkpoint, reads as none; a checkpoint
    path counts, as it may hold another run's weights. ``key``: the dotted key of ``config``."""
    if isinstance(config, dict):
        found = {}
        for name, value in config.items():
            path = f"{key}.{name}" if key else str(name)
            if path not in NOT_SETTINGS and name not in PROGRESS_BARS:
                found[name] = job_settings(value, path)
        return found
    if isinstance(config, list):
        return [job_settings(v, key) for v in config]
    if key == "train.ckpt_path" and config == "last":
        return None
    return "<path>" if isinstance(config, str) and config.startswith("/") else config

"""Every label-free UAE variant in one table, each paired against the free baselines.

    python -m uae.analysis.variants experiments/qasper/runs/label_free \\
        --into experiments/qasper/RESULTS.md --section label-free-variants

Issue 22 asks one question of each variant: does the teacher's signal beat what costs nothing? So each
row (a run that ``uae.analysis.label_efficiency`` files as ``uae...`` at label fraction 0) is paired,
question by question, with answer overlap and with the teacher's argmax as a hard label (InfoNCE on
each), by the same tests as ``uae.analysis.compare`` (bootstrap interval and randomization p), and its
recall@1 gain over zero-shot is given as a share of InfoNCE's with every evidence label. The baselines
are found by what their results.json says, not by folder name; a missing one is an error, not a blank.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from uae.analysis.compare import per_question_scores
from uae.analysis.label_efficiency import classify, run_folders
from uae.analysis.report import emit
from uae.core.errors import UAEError, cli_main
from uae.evaluation.significance import randomization_p_value
from uae.results.read import has_rankings

BASELINES = ("answer_overlap", "teacher_argmax")
METRICS = ("recall@1", "map")


def is_label_free_variant(method: str, fraction: float) -> bool:
    """UAE trained without any evidence label: plain (``uae``) or a variant (``uae+...``)."""
    return fraction == 0.0 and method.split("+")[0] == "uae"


def _runs(folder: Path) -> dict[tuple[str, float], tuple[Path, dict[str, Any]]]:
    """{(method, fraction): (run folder, its results.json)}, as ``label_efficiency`` files them."""
    found: dict[tuple[str, float], tuple[Path, dict[str, Any]]] = {}
    for run in run_folders(folder):
        result = json.loads((run / "results.json").read_text(encoding="utf-8"))
        key = classify(result)
        if key in found:
            raise UAEError(f"{run} and {found[key][0]} are both {key[0]} at label fraction {key[1]}: keep one")
        found[key] = (run, result)
    return found


def paired_cell(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str, *, samples: int, seed: int) -> str:
    """``+0.0081 (p 0.1282)``: mean B - A over the questions both scored, and the randomization p."""
    qids = sorted(a)
    xa = np.array([a[q][metric] for q in qids])
    xb = np.array([b[q][metric] for q in qids])
    return f"{xb.mean() - xa.mean():+.4f} (p {randomization_p_value(xa, xb, samples=samples, seed=seed):.4f})"


def full_label_share(value: float, zero_shot: float | None, full_labels: float | None) -> str:
    """The variant's gain over zero-shot as a share of InfoNCE's with all the labels: issue 22 asks a
    label-free recipe for 90% of it. ``n/a`` without both reference runs."""
    if zero_shot is None or full_labels is None or full_labels == zero_shot:
        return "n/a"
    return f"{(value - zero_shot) / (full_labels - zero_shot):.0%}"


def table(folder: Path, *, samples: int = 10_000, seed: int = 0, data_dir: str | None = None) -> str:
    """The markdown table and its note. Every run it pairs is re-scored from its own rankings
    (``compare.per_question_scores``), so a record whose rankings do not back its metrics is refused."""
    runs = _runs(folder)
    missing = [b for b in BASELINES if (b, 0.0) not in runs]
    if missing:
        raise UAEError(f"{folder}: no run of {', '.join(missing)} (the free baselines); run `make label-efficiency` first")
    variants = sorted(k for k in runs if is_label_free_variant(*k))
    if not variants:
        raise UAEError(f"{folder}: no label-free UAE run (a uae run at label fraction 0) to compare")
    paired = [*[(b, 0.0) for b in BASELINES], *variants]
    lacking = [str(runs[k][0]) for k in paired if not has_rankings(runs[k][0])]
    if lacking:
        raise UAEError(f"no rankings (rankings.json, or a record's rankings.json.gz) in {', '.join(lacking)}: a run record is its results.json and rankings.json.gz")
    scores: dict[tuple[str, float], tuple[dict[str, Any], dict[str, dict[str, float]]]] = {}
    for key in paired:
        result, per_question, _ = per_question_scores(runs[key][0], data_dir)
        if key != paired[0] and (result["split"], set(per_question)) != (scores[paired[0]][0]["split"], set(scores[paired[0]][1])):
            raise UAEError(f"{runs[key][0]} and {runs[paired[0]][0]} did not score the same questions of the same split: nothing to pair.")
        scores[key] = (result, per_question)
    reference = {k: runs[k][1]["metrics"]["recall@1"] for k in (("zero_shot", 0.0), ("infonce", 1.0)) if k in runs}

    head = ["method", "hard labels"]
    for metric in METRICS:
        head += [metric, *(f"vs {b.replace('_', ' ')}" for b in BASELINES)]
    head.append("recall@1 gain, share of InfoNCE's with all labels")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in [(BASELINES[1], 0.0), *variants]:
        result, per_question = scores[key]
        labels = result.get("labels") or {}
        hard = "" if labels.get("with_positive") is None or labels.get("source") == "none" else f"{labels['with_positive']} of {labels['groups']}"
        cells = [key[0], hard]
        for metric in METRICS:
            cells.append(f"{result['metrics'][metric]:.4f}")
            for b in BASELINES:
                cells.append("" if key == (b, 0.0) else paired_cell(scores[(b, 0.0)][1], per_question, metric, samples=samples, seed=seed))
        cells.append(full_label_share(result["metrics"]["recall@1"], reference.get(("zero_shot", 0.0)), reference.get(("infonce", 1.0))))
        lines.append("| " + " | ".join(cells) + " |")
    n = len(scores[(BASELINES[0], 0.0)][1])
    overlap = scores[(BASELINES[0], 0.0)][0]["metrics"]
    note = (
        f"\nAnswer overlap (InfoNCE on the paragraph holding the answer): recall@1 {overlap['recall@1']:.4f}, map "
        f"{overlap['map']:.4f}. Each \"vs\" cell is B - A over the same {n} {scores[(BASELINES[0], 0.0)][0]['split']} "
        f"questions and the two-sided p of a paired randomization test ({samples:,} samples, seed {seed}; the smallest "
        f"p it can give is {1 / (samples + 1):.4f}); `python -m uae.analysis.compare` gives the intervals.\n"
    )
    return "\n".join(lines) + "\n" + note


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.analysis.variants",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="the folder holding one sub-folder per run (results.json + rankings.json)")
    parser.add_argument("--samples", type=int, default=10_000, help="randomization samples per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="the data folder (data.dir), if not where the runs read it")
    parser.add_argument("--into", type=Path, help="a RESULTS.md to write the table into, between section markers")
    parser.add_argument("--section", default="label-free-variants")
    args = parser.parse_args(argv)
    emit(table(args.folder, samples=args.samples, seed=args.seed, data_dir=args.data_dir), args.into, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

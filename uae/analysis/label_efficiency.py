"""The label-efficiency table, CSV and plot from the runs of ``make label-efficiency``.

    python -m uae.analysis.label_efficiency logs/results/label_free --csv experiments/qasper/label_efficiency.csv \
        --into experiments/qasper/RESULTS.md --section label-efficiency --plot experiments/qasper/plots/label_efficiency.png

Each run folder's results.json says what it is: its retriever (a base encoder alone is zero-shot),
its loss and the ``labels`` record the fit stage wrote (source and label fraction). Nothing is read
from folder names, so a renamed folder cannot land in the wrong row.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from uae.analysis.plots import _save
from uae.analysis.report import emit
from uae.core.choices import engine_spec
from uae.core.errors import UAEError, cli_main
from uae.storage.atomic import atomic_path

COLUMNS = ("method", "label_fraction", "split", "n_questions", "hit@1", "recall@1", "map", "mrr", "token_f1")
METHODS = ("zero_shot", "answer_overlap", "teacher_argmax", "infonce", "uae")
# Hard-label sources that need no annotation: their runs are label-free (fraction 0).
_PSEUDO = ("answer_overlap", "teacher_argmax")
REFERENCE_TEACHER = "smollm2"  # conf/config.yaml's llm: a run with another teacher says so in its row
REFERENCE_SHARPNESS = 0.5  # conf/loss/uae.yaml's beta: a run with another says so in its row


def uae_variant(result: dict[str, Any]) -> str:
    """``uae`` and what a label-free variant changed, e.g. ``uae+overlap-sets+answer_overlap-mix0.5``:
    another teacher or an engine whose utilities are not the reference's, sets holding the answer-overlap
    paragraph, pseudo-labels mixed in, teacher-confidence filtering, a sharpness other than the default.
    Two runs that differ only in something left out of the name would collide, which collect() refuses."""
    config, labels = result["config"], result["labels"]
    loss = config["loss"]
    parts = []
    llm = config.get("llm") or {}
    if llm.get("name", REFERENCE_TEACHER) != REFERENCE_TEACHER:
        parts.append(f"{llm['name']}-teacher")
    parts.extend(engine_spec(llm.get("engine", "hf"), llm.get("compute_type", "auto")).values())
    if (config.get("candidates") or {}).get("answer_overlap"):
        parts.append("overlap-sets")
    if labels["source"] in _PSEUDO:
        parts.append(f"{labels['source']}-mix{loss.get('mix', 0.0):g}")
    if loss.get("min_confidence"):
        parts.append(f"confidence>={loss['min_confidence']:g}")
    if loss.get("confidence_weight"):
        parts.append("confidence-weighted")
    if loss.get("denoise_margin") is not None:
        parts.append(f"denoise-margin{loss['denoise_margin']:g}")
    if loss.get("sharpness", REFERENCE_SHARPNESS) != REFERENCE_SHARPNESS:
        parts.append(f"beta{loss['sharpness']:g}")
    if (config.get("train") or {}).get("utility_scale", "per_token") != "per_token":
        parts.append(f"{config['train']['utility_scale']}-utilities")
    skipped = (config.get("train") or {}).get("skip_answer_types")
    if skipped:
        parts.append("without-" + "-".join(skipped))
    return "+".join(["uae", *parts])


def _uses_evidence(labels: dict[str, Any]) -> bool:
    """Whether a run read evidence annotations: ``source=evidence`` at fraction 0 (how a plain label-free
    run records itself) reads none, the same as ``source=none``."""
    return labels["source"] == "evidence" and float(labels["fraction"]) > 0.0


def classify(result: dict[str, Any]) -> tuple[str, float]:
    """(method, label fraction) of one run's results.json; label-free UAE variants are ``uae+...`` at 0."""
    labels = result.get("labels")
    if labels is None:
        if "+" in result["retriever"]:
            raise UAEError(f"{result['retriever']}: a fine-tuned run without a labels record (made before train.labels)")
        return "zero_shot", 0.0
    loss = result["config"]["loss"]["name"]
    if loss == "uae" and not _uses_evidence(labels):
        return uae_variant(result), 0.0
    if labels["source"] in _PSEUDO:
        return labels["source"], 0.0
    if loss not in ("infonce", "uae"):
        raise UAEError(f"{result['retriever']}: loss {loss} is not one of the label-efficiency methods (infonce, uae)")
    return loss, float(labels["fraction"]) if _uses_evidence(labels) else 0.0


def collect(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run, sorted by method then fraction; two runs of one (method, fraction) are an error."""
    rows: dict[tuple[str, float], dict[str, Any]] = {}
    where: dict[tuple[str, float], Path] = {}
    for run in run_dirs:
        result = json.loads((run / "results.json").read_text(encoding="utf-8"))
        method, fraction = classify(result)
        if (method, fraction) in rows:
            raise UAEError(f"{run} and {where[(method, fraction)]} are both {method} at label fraction {fraction}: keep one")
        metrics = result["metrics"]
        rows[(method, fraction)] = {
            "method": method,
            "label_fraction": fraction,
            "split": result["split"],
            "n_questions": result["n_questions"],
            **{m: metrics[m] for m in ("hit@1", "recall@1", "map", "mrr")},
            "token_f1": metrics.get("token_f1", ""),
            "train_groups": (result.get("labels") or {}).get("groups"),
            "with_positive": (result.get("labels") or {}).get("with_positive"),
        }
        where[(method, fraction)] = run
    return [rows[k] for k in sorted(rows, key=lambda k: (METHODS.index(k[0].split("+")[0]), k[1], k[0]))]


def run_folders(folder: Path) -> list[Path]:
    """Run folders directly under ``folder`` that hold a results.json (teacher folders hold none)."""
    found = sorted(p.parent for p in folder.glob("*/results.json"))
    if not found:
        raise UAEError(f"{folder}: no run folder with a results.json; run `make label-efficiency` first")
    return found


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| method | label fraction | hard labels | n_questions | hit@1 | recall@1 | map | mrr |\n|---|---|---|---|---|---|---|---|\n"
    body = ""
    for r in rows:
        labels = "" if r["with_positive"] is None else f"{r['with_positive']} of {r['train_groups']}"
        body += (
            f"| {r['method']} | {r['label_fraction']:g} | {labels} | {r['n_questions']} | {r['hit@1']:.4f} | "
            f"{r['recall@1']:.4f} | {r['map']:.4f} | {r['mrr']:.4f} |\n"
        )
    return head + body


def gain_share(rows: list[dict[str, Any]], metric: str = "recall@1") -> str:
    """Label-free UAE's gain over zero-shot as a share of InfoNCE's with all labels (the issue's 85% goal)."""
    by = {(r["method"], r["label_fraction"]): r for r in rows}
    zero, uae, full = by.get(("zero_shot", 0.0)), by.get(("uae", 0.0)), by.get(("infonce", 1.0))
    if not (zero and uae and full) or full[metric] == zero[metric]:
        return ""
    share = (uae[metric] - zero[metric]) / (full[metric] - zero[metric])
    return (
        f"\nLabel-free UAE gains {uae[metric] - zero[metric]:+.4f} {metric} over zero-shot, "
        f"{share:.0%} of InfoNCE's {full[metric] - zero[metric]:+.4f} with all the labels.\n"
    )


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """recall@1 and MAP against the label fraction: InfoNCE and UAE curves, zero-shot and the label-free baselines as lines."""
    import matplotlib  # deferred: start-up speed

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: start-up speed

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("recall@1", "map"), strict=True):
        for method, style in (("infonce", "s-"), ("uae", "o-")):
            points = [(r["label_fraction"], r[metric]) for r in rows if r["method"] == method]
            if method == "infonce":
                points = [(0.0, r[metric]) for r in rows if r["method"] == "zero_shot"] + points  # f = 0: no labels, no training
            if points:
                ax.plot(*zip(*sorted(points), strict=True), style, label=method)
        for method, style in (("zero_shot", "k--"), ("answer_overlap", "g:"), ("teacher_argmax", "m:")):
            for r in rows:
                if r["method"] == method:
                    ax.axhline(r[metric], linestyle=style[1:], color=style[0], label=method.replace("_", " "))
        ax.set(xlabel="label fraction f", ylabel=f"dev {metric}", title=metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")

    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.analysis.label_efficiency",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="the folder holding one sub-folder per run (logs/results/label_free)")
    parser.add_argument("--csv", type=Path, help="write the rows here (method,label_fraction,split,...)")
    parser.add_argument("--into", type=Path, help="a RESULTS.md to write the table into, between section markers")
    parser.add_argument("--section", default="label-efficiency")
    parser.add_argument("--plot", type=Path, help="a PNG of recall@1 and MAP against the label fraction")
    args = parser.parse_args(argv)

    rows = collect(run_folders(args.folder))
    if args.csv:
        write_csv(rows, args.csv)
    if args.plot:
        plot(rows, args.plot)
    emit(markdown(rows) + gain_share(rows) + gain_share(rows, "map"), args.into, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Is run B better than run A, or is the gap noise? Paired tests over the questions both ranked.

    python -m uae.analysis.compare logs/results/infonce logs/results/uae
    python -m uae.analysis.compare A B --metrics recall@1 map --into experiments/qasper/RESULTS.md --section compare-x

Per-question metrics are recomputed from each run's rankings.json (and answers.json for token F1)
against the gold evidence of the data file its results.json names; the file's fingerprint must match,
and the recomputed means must equal the run's own metrics, so a table can only pair what the runs
really scored. Then, per metric: both means, the difference B - A, its bootstrap 95% interval and the
two-sided p of a paired randomization test (uae/evaluation/significance.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from uae.analysis.report import emit
from uae.core.errors import UAEError
from uae.evaluation.metrics import RETRIEVAL_METRICS, answer_f1, per_query_retrieval_metrics
from uae.evaluation.significance import bootstrap_interval, randomization_p_value
from uae.results.read import run_split

DEFAULT_METRICS = ("hit@1", "recall@1", "map", "token_f1")


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UAEError(f"{path}: not readable ({exc}). Did that run finish?") from exc


def per_question_scores(
    run_dir: Path, data_dir: str | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, list[str]]]:
    """The run's results.json, {question id: {metric: value}} recomputed from its own files, and its rankings."""

    result = _read(run_dir / "results.json")
    rankings = _read(run_dir / "rankings.json")
    split = run_split(result, rankings, str(run_dir), data_dir)
    questions = {q.question_id: q for q in split.evaluable_questions}
    answers = _read(run_dir / "answers.json") if (run_dir / "answers.json").is_file() else None
    if answers is not None and not set(questions) <= set(answers):
        raise UAEError(f"{run_dir}/answers.json lacks answers to {len(set(questions) - set(answers))} counted questions.")
    scores = {}
    for qid, ranked in rankings.items():
        scores[qid] = per_query_retrieval_metrics(ranked, questions[qid].gold_ids)
        if answers is not None:
            scores[qid]["token_f1"] = answer_f1(answers[qid], [a.text for a in questions[qid].answers])
    for metric in next(iter(scores.values())):  # every metric recomputed here must match the run's own
        mean, value = float(np.mean([s[metric] for s in scores.values()])), result["metrics"].get(metric)
        if not (isinstance(value, (int, float)) and abs(mean - value) <= 1e-9):
            raise UAEError(f"{run_dir}: {metric} recomputed from its files is {mean:.6f}, its results.json says {value}.")
    return result, scores, rankings


def ranking_agreement(rankings_a: dict[str, list[str]], rankings_b: dict[str, list[str]]) -> str:
    """How many questions two runs rank identically, and where the others first part: equal metrics can
    hide reordered rankings, and a runtime that claims the same numbers as torch must show both."""
    first = []
    for qid in sorted(rankings_a):
        a, b = rankings_a[qid], rankings_b[qid]
        if a != b:
            first.append(next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))) + 1)
    line = f"Rankings: {len(rankings_a) - len(first)} of {len(rankings_a)} questions ranked identically by A and B"
    if first:
        line += f"; the others first differ at rank {min(first)} (best), {float(np.median(first)):g} (median), {max(first)} (worst)"
    return line + "."


def compare(
    run_a: Path, run_b: Path, metrics: tuple[str, ...], *, samples: int, seed: int, data_dir: str | None = None
) -> str:
    """The markdown table: one row per metric."""
    result_a, a, rankings_a = per_question_scores(run_a, data_dir)
    result_b, b, rankings_b = per_question_scores(run_b, data_dir)
    if result_a["split"] != result_b["split"] or set(a) != set(b):
        raise UAEError(f"{run_a} and {run_b} did not score the same questions of the same split: nothing to pair.")
    qids = sorted(a)
    header = (
        f"A = {result_a['retriever']} (`{run_a}`), B = {result_b['retriever']} (`{run_b}`): {len(qids)} "
        f"{result_a['split']} questions, paired; 95% bootstrap interval of B - A and two-sided p of a paired "
        f"randomization test, {samples:,} samples each, seed {seed} (the smallest p it can give is "
        f"{1 / (samples + 1):.4f})."
    )
    lines = [header, "", "| metric | A | B | B - A | 95% interval | p |", "|---|---|---|---|---|---|"]
    for metric in metrics:
        if metric not in a[qids[0]] or metric not in b[qids[0]]:
            raise UAEError(f"metric {metric!r} is not in both runs (token_f1 needs a reader: answers.json).")
        xa = np.array([a[q][metric] for q in qids])
        xb = np.array([b[q][metric] for q in qids])
        low, high = bootstrap_interval(xa, xb, samples=samples, seed=seed)
        p = randomization_p_value(xa, xb, samples=samples, seed=seed)
        lines.append(
            f"| {metric} | {xa.mean():.4f} | {xb.mean():.4f} | {xb.mean() - xa.mean():+.4f} | "
            f"[{low:+.4f}, {high:+.4f}] | {p:.4f} |"
        )
    lines += ["", ranking_agreement(rankings_a, rankings_b)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path, help="run folder of the reference (results.json + rankings.json)")
    parser.add_argument("run_b", type=Path, help="run folder compared against it")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help=f"default: {' '.join(DEFAULT_METRICS)} (token_f1 only when both runs have answers)")
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap and randomization samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="the data folder (data.dir), if not where the runs read it")
    parser.add_argument("--into", type=Path, help="markdown file whose --section is replaced by the table")
    parser.add_argument("--section", help="marker name of that section")
    args = parser.parse_args(argv)
    if bool(args.into) != bool(args.section):
        parser.error("--into and --section go together")
    metrics = tuple(args.metrics or DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in (*RETRIEVAL_METRICS, "token_f1")]
    if unknown:
        parser.error(f"unknown metric(s) {unknown}; known: {' '.join((*RETRIEVAL_METRICS, 'token_f1'))}")
    if args.metrics is None and not all((r / "answers.json").is_file() for r in (args.run_a, args.run_b)):
        metrics = tuple(m for m in metrics if m != "token_f1")
    try:
        table = compare(args.run_a, args.run_b, metrics, samples=args.samples, seed=args.seed, data_dir=args.data_dir)
        emit(table, args.into, args.section)
    except (UAEError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Is run B better than run A, or is the gap noise? Paired tests over the questions both ranked.

    python -m uae.analysis.compare logs/results/infonce logs/results/uae
    python -m uae.analysis.compare A B --metrics recall@1 map --into experiments/qasper/RESULTS.md --section compare-x
    python -m uae.analysis.compare --a A_seed42 --a A_seed1 --a A_seed2 --b B_seed42 --b B_seed1 --b B_seed2

Per-question metrics are recomputed from each run's rankings.json (and answers.json for token F1)
against the gold evidence of the data file its results.json names; the file's fingerprint must match,
and the recomputed means must equal the run's own metrics, so a table can only pair what the runs
really scored. recall@10 and recall@100 (what an approximate index costs at the depth a reader reads) are
computed from the rankings alone, as the runs do not store them. Then, per metric: both means, the difference B - A, its bootstrap 95% interval and the
two-sided p of a paired randomization test (uae/evaluation/significance.py).

With several runs per side (one per training seed, ``--a``/``--b`` once each), each seed's own value, the
seed-to-seed standard deviation, the paired tests on the per-question means over seeds, and a two-level
bootstrap that resamples seeds and questions: the paired tests alone say nothing of what another seed
would do, and on QASPER dev a seed moves recall@1 by about as much as the gaps we report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from uae.analysis.report import emit
from uae.core.config import dotted
from uae.core.errors import UAEError
from uae.evaluation.metrics import RETRIEVAL_METRICS, answer_f1, per_query_retrieval_metrics, recall_at
from uae.evaluation.significance import bootstrap_interval, randomization_p_value, two_level_bootstrap
from uae.results.read import job_settings, read_rankings, run_split

DEFAULT_METRICS = ("hit@1", "recall@1", "map", "token_f1")
DEPTHS = (10, 100)  # recall@K computed here only
# Settings that change a run by float rounding only, as other hardware does, while another setting holds a value:
# GradCache with its micro-batch left at the passage chunk draws the plain step's dropout masks and gives its loss
# and gradients to 1e-5 (tests/training/test_grad_cache.py). The table says so when the runs differ in one.
ROUNDING = {"train.grad_cache": ("train.micro_batch", None)}


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
    rankings = read_rankings(run_dir)
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
    for qid, ranked in rankings.items():
        scores[qid].update({f"recall@{k}": recall_at(ranked, questions[qid].gold_ids, k) for k in DEPTHS})
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


def compare_seeds(
    runs_a: list[Path], runs_b: list[Path], metrics: tuple[str, ...], *, samples: int, seed: int, data_dir: str | None = None
) -> str:
    """The markdown table of several seeds per side: one row per metric."""
    read = [[(run, *per_question_scores(run, data_dir)[:2]) for run in runs] for runs in (runs_a, runs_b)]
    first_result, first_scores = read[0][0][1], read[0][0][2]
    for run, result, scores in (r for side in read for r in side):
        if result["split"] != first_result["split"] or set(scores) != set(first_scores):
            raise UAEError(f"{run} and {read[0][0][0]} did not score the same questions of the same split: nothing to pair.")
    seeds = [[result.get("config", {}).get("seed") for _, result, _ in side] for side in read]
    for side, runs in zip(seeds, (runs_a, runs_b), strict=True):
        if None in side or len(set(side)) < len(side):
            raise UAEError(f"the runs {[str(r) for r in runs]} must each record a different training seed (config.seed); "
                           f"they record {side}. Two runs of one seed are not two samples of the seed variance.")
    settings = [[dotted(job_settings(result.get("config", {}))) for _, result, _ in side] for side in read]
    rounded: set[str] = set()
    for side, flats in zip(read, settings, strict=True):
        differ, rounding = _settings_apart(flats)
        rounded |= set(rounding)
        if differ:
            raise UAEError(f"the runs {[str(run) for run, _, _ in side]} differ in {differ}, not only in seed: they are "
                           "not seeds of one method (candidates.seed=42 keeps the candidate sets of the seed-42 run).")
    qids = sorted(first_scores)
    names = [", ".join(f"`{run}`" for run, _, _ in side) for side in read]
    header = (
        f"A = {first_result['retriever']} at seeds {', '.join(map(str, seeds[0]))} ({names[0]}), "
        f"B = {read[1][0][1]['retriever']} at seeds {', '.join(map(str, seeds[1]))} ({names[1]}): {len(qids)} "
        f"{first_result['split']} questions. A and B are means over seeds; sd is the seed-to-seed standard deviation "
        f"(n - 1). Questions: the paired bootstrap interval and randomization p over the per-question means over seeds, "
        f"which leave out the seed variance. Seeds and questions: a bootstrap that resamples the seeds of each side and "
        f"the questions (uae/evaluation/significance.py; resampling {min(map(len, seeds))} seeds keeps only "
        f"{(min(map(len, seeds)) - 1) / min(map(len, seeds)):.0%} of the seed variance), interval and shifted-null p. {samples:,} samples "
        f"each, seed {seed} (the smallest p is {1 / (samples + 1):.4f})."
    )
    for key in sorted(rounded):
        values = ", ".join(f"`{run}` {flat.get(key)}" for side, flats in zip(read, settings, strict=True)
                           for (run, _, _), flat in zip(side, flats, strict=True))
        header += (f" The runs differ in {key} ({values}), which changes a run by float rounding only "
                   f"(ROUNDING in uae/analysis/compare.py says why).")
    columns = ("metric", "A per seed", "B per seed", "A", "B", "B - A", "sd A", "sd B", "questions: 95% interval", "p",
               "seeds and questions: 95% interval", "p")
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for metric in metrics:
        if any(metric not in scores[qids[0]] for side in read for _, _, scores in side):
            raise UAEError(f"metric {metric!r} is not in every run (token_f1 needs a reader: answers.json).")
        xa, xb = (np.array([[scores[q][metric] for q in qids] for _, _, scores in side]) for side in read)
        low, high = bootstrap_interval(xa.mean(axis=0), xb.mean(axis=0), samples=samples, seed=seed)
        p = randomization_p_value(xa.mean(axis=0), xb.mean(axis=0), samples=samples, seed=seed)
        low2, high2, p2 = two_level_bootstrap(xa, xb, samples=samples, seed=seed)
        per_seed = [", ".join(f"{v:.4f}" for v in x.mean(axis=1)) for x in (xa, xb)]
        sd = [f"{x.mean(axis=1).std(ddof=1):.4f}" if len(x) > 1 else "" for x in (xa, xb)]
        lines.append(
            f"| {metric} | {per_seed[0]} | {per_seed[1]} | {xa.mean():.4f} | {xb.mean():.4f} | {xb.mean() - xa.mean():+.4f} "
            f"| {sd[0]} | {sd[1]} | [{low:+.4f}, {high:+.4f}] | {p:.4f} | [{low2:+.4f}, {high2:+.4f}] | {p2:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _settings_apart(flats: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The settings (dotted :func:`uae.results.read.job_settings`) in which runs of one side differ besides the
    training seed, in two lists: those that make them other methods, and those that change a run by float rounding
    only (``ROUNDING``). Only the settings both configs hold count, since later versions of UAE add settings with
    defaults."""
    found = set()
    for other in flats[1:]:
        found |= {k for k in flats[0].keys() & other.keys() if flats[0][k] != other[k] and k != "seed"}
    rounding = {k for k in found & ROUNDING.keys() if all(f.get(ROUNDING[k][0]) == ROUNDING[k][1] for f in flats)}
    return sorted(found - rounding), sorted(rounding)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path, nargs="?", help="run folder of the reference (results.json + rankings.json)")
    parser.add_argument("run_b", type=Path, nargs="?", help="run folder compared against it")
    parser.add_argument("--a", type=Path, action="append", default=[], metavar="RUN",
                        help="a run folder of the reference, once per training seed (instead of run_a)")
    parser.add_argument("--b", type=Path, action="append", default=[], metavar="RUN",
                        help="a run folder compared against it, once per training seed (instead of run_b)")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help=f"default: {' '.join(DEFAULT_METRICS)} (token_f1 only when both runs have answers)")
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap and randomization samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="the data folder (data.dir), if not where the runs read it")
    parser.add_argument("--into", type=Path, help="markdown file whose --section is replaced by the table")
    parser.add_argument("--section", help="marker name of that section")
    args = parser.parse_args(argv)
    if (args.run_a is None) == (not args.a) or (args.run_b is None) == (not args.b) or (args.run_a is None) != (args.run_b is None):
        parser.error("give two run folders (run_a run_b), or --a and --b, each once per seed")
    runs_a, runs_b = args.a or [args.run_a], args.b or [args.run_b]
    if bool(args.into) != bool(args.section):
        parser.error("--into and --section go together")
    metrics = tuple(args.metrics or DEFAULT_METRICS)
    known = (*RETRIEVAL_METRICS, *(f"recall@{k}" for k in DEPTHS), "token_f1")
    unknown = [m for m in metrics if m not in known]
    if unknown:
        parser.error(f"unknown metric(s) {unknown}; known: {' '.join(known)}")
    if args.metrics is None and not all((r / "answers.json").is_file() for r in (*runs_a, *runs_b)):
        metrics = tuple(m for m in metrics if m != "token_f1")
    try:
        if len(runs_a) == len(runs_b) == 1:
            table = compare(runs_a[0], runs_b[0], metrics, samples=args.samples, seed=args.seed, data_dir=args.data_dir)
        else:
            table = compare_seeds(runs_a, runs_b, metrics, samples=args.samples, seed=args.seed, data_dir=args.data_dir)
        emit(table, args.into, args.section)
    except (UAEError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Utility targets: the formula, the chunked cache (resume after SIGKILL, shards, merge) and refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from uae.core.errors import CacheMismatchError, UAEError
from uae.core.shard import Shard
from uae.data.candidates import build_candidates
from uae.data.qasper import load_qasper
from uae.table.build import compute_utilities, merge_utilities
from uae.table.format import utility_spec
from uae.table.read import load_utility_table

ROOT = Path(__file__).resolve().parents[1]


class OverlapScorer:
    """ll(a | c) = -1 + 0.1 * |words(a) & words(c)|, ll(a | none) = -1: utilities computable by hand."""

    def __init__(self, delay: float = 0.0, poison: str | None = None) -> None:
        self.delay, self.poison, self.calls = delay, poison, 0

    def score_answers(self, items):
        self.calls += 1
        time.sleep(self.delay)
        out = []
        for context, question, answer in items:
            if self.poison and self.poison in answer:
                out.append(float("nan"))
                continue
            words = set(answer.lower().replace(",", " ").split())
            overlap = len(words & set((context or "").lower().rstrip(".").split())) if context else 0
            out.append(-1.0 + 0.1 * overlap)
        return np.array(out)

    def fingerprint_spec(self):
        return {"scorer": "overlap"}


def _setup(tiny_raw_dir: Path):
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    questions = [q for q in split.questions if q.answerable]
    sets = build_candidates(split, questions, size=3, seed=0)
    spec = utility_spec(split, sets, OverlapScorer().fingerprint_spec(), {"size": 3, "seed": 0})
    return split, sets, spec


def _scoring_process(tiny_raw_dir: Path, work: Path, delay: float) -> subprocess.Popen:
    """A separate process scoring the tiny split one question per chunk, ``delay`` seconds per chunk."""
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_utility import OverlapScorer, _setup
        from uae.table.build import compute_utilities
        split, sets, spec = _setup(Path({str(tiny_raw_dir)!r}))
        compute_utilities(split, sets, OverlapScorer(delay={delay}), Path({str(work)!r}), spec,
                          chunk_questions=1, progress=False)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)


def test_utilities_by_hand(tiny_raw_dir: Path, tmp_path: Path) -> None:
    split, sets, spec = _setup(tiny_raw_dir)
    compute_utilities(split, sets, OverlapScorer(), tmp_path / "work", spec, chunk_questions=2, progress=False)
    table = merge_utilities(tmp_path / "work", len(sets), 2, tmp_path / "u.parquet").to_pylist()
    rows = {(r["question_id"], r["passage_id"]): r for r in table}
    # q4 "three days" vs "Training took three days on one GPU." -> overlap {three, days} = 2 -> u = 0.2
    assert rows[("q4", "p2/1")]["utility"] == pytest.approx(0.2)
    assert rows[("q4", "p2/1")]["is_gold"] and rows[("q4", "p2/1")]["source"] == "gold"
    # q1 has two answers: "with a camera, at night" and "using a camera".
    # p1/2 "We count sleeping cats with a camera.": overlaps {with, a, camera}=3 and {a, camera}=2 -> mean 0.25
    assert rows[("q1", "p1/2")]["utility"] == pytest.approx(0.25)
    assert rows[("q1", "p1/2")]["ll_closed"] == pytest.approx(-1.0) and rows[("q1", "p1/2")]["n_answers"] == 2
    assert len(table) == sum(len(s.passage_ids) for s in sets)


def test_resume_after_sigkill_gives_the_uninterrupted_table(tiny_raw_dir: Path, tmp_path: Path) -> None:
    split, sets, spec = _setup(tiny_raw_dir)
    compute_utilities(split, sets, OverlapScorer(), tmp_path / "clean", spec, chunk_questions=1, progress=False)
    expected = merge_utilities(tmp_path / "clean", len(sets), 1, tmp_path / "clean.parquet")

    proc = _scoring_process(tiny_raw_dir, tmp_path / "work", delay=1.0)
    work = tmp_path / "work"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(work.glob("chunk-*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in work.glob("chunk-*.parquet"))
    assert 2 <= len(done_before) < len(sets), done_before  # killed mid-way

    scorer = OverlapScorer()
    compute_utilities(split, sets, scorer, work, spec, chunk_questions=1, progress=False)
    assert scorer.calls == len(sets) - len(done_before)  # only the missing chunks were scored
    resumed = merge_utilities(work, len(sets), 1, tmp_path / "resumed.parquet")
    assert resumed.equals(expected)
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no temp files left


def test_shards_write_disjoint_chunks_and_merge(tiny_raw_dir: Path, tmp_path: Path) -> None:
    split, sets, spec = _setup(tiny_raw_dir)
    work = tmp_path / "work"
    first = compute_utilities(split, sets, OverlapScorer(), work, spec, shard=Shard.parse("0/2"), chunk_questions=1, progress=False)
    with pytest.raises(UAEError, match="chunks are missing"):
        merge_utilities(work, len(sets), 1, tmp_path / "u.parquet")
    assert not (tmp_path / "u.parquet").exists()
    second = compute_utilities(split, sets, OverlapScorer(), work, spec, shard=Shard.parse("1/2"), chunk_questions=1, progress=False)
    assert not set(first) & set(second)
    merged = merge_utilities(work, len(sets), 1, tmp_path / "u.parquet")
    compute_utilities(split, sets, OverlapScorer(), tmp_path / "one", spec, chunk_questions=1, progress=False)
    assert merged.equals(merge_utilities(tmp_path / "one", len(sets), 1, tmp_path / "one.parquet"))
    with pytest.raises(UAEError, match="utility.shard"):
        Shard.parse("2/2")


def test_nan_is_refused_and_nothing_is_written(tiny_raw_dir: Path, tmp_path: Path) -> None:
    split, sets, spec = _setup(tiny_raw_dir)
    with pytest.raises(UAEError, match="non-finite log-likelihood"):
        compute_utilities(split, sets, OverlapScorer(poison="three"), tmp_path / "w", spec, chunk_questions=4, progress=False)
    assert not list((tmp_path / "w").glob("chunk-*"))


def test_table_is_refused_for_other_settings_or_rows(tiny_raw_dir: Path, tmp_path: Path) -> None:
    split, sets, spec = _setup(tiny_raw_dir)
    compute_utilities(split, sets, OverlapScorer(), tmp_path / "w", spec, chunk_questions=1, progress=False)
    merge_utilities(tmp_path / "w", len(sets), 1, tmp_path / "u.parquet")
    assert load_utility_table(tmp_path / "u.parquet", spec, sets).num_rows == sum(len(s.passage_ids) for s in sets)
    other = {**spec, "candidates": {"size": 4, "seed": 0}}
    with pytest.raises(CacheMismatchError, match="differs in: candidates"):
        load_utility_table(tmp_path / "u.parquet", other, sets)
    with pytest.raises(CacheMismatchError, match="rows do not match"):
        load_utility_table(tmp_path / "u.parquet", spec, sets[:-1])
    with pytest.raises(CacheMismatchError, match="no utility table"):
        load_utility_table(tmp_path / "absent.parquet", spec, sets)
    with pytest.raises(CacheMismatchError, match="other settings"):
        compute_utilities(split, sets, OverlapScorer(), tmp_path / "w", other, chunk_questions=1, progress=False)
    # The chunking fixes the work folder, not the table: chunks of 2 merge into the same table.
    compute_utilities(split, sets, OverlapScorer(), tmp_path / "w2", spec, chunk_questions=2, progress=False)
    assert merge_utilities(tmp_path / "w2", len(sets), 2, tmp_path / "u2.parquet").equals(pq.read_table(tmp_path / "u.parquet"))
    with pytest.raises(CacheMismatchError, match="another utility.chunk_questions"):
        merge_utilities(tmp_path / "w2", len(sets), 1, tmp_path / "u3.parquet")


@pytest.mark.parametrize("trial", range(3))
def test_sigkill_at_a_random_moment_then_resume_gives_the_uninterrupted_table(
    trial: int, tiny_raw_dir: Path, tmp_path: Path
) -> None:
    """The kill lands anywhere: during start-up, while scoring, between or inside chunk writes."""
    import random

    split, sets, spec = _setup(tiny_raw_dir)
    compute_utilities(split, sets, OverlapScorer(), tmp_path / "clean", spec, chunk_questions=1, progress=False)
    expected = merge_utilities(tmp_path / "clean", len(sets), 1, tmp_path / "clean.parquet")
    proc = _scoring_process(tiny_raw_dir, tmp_path / "work", delay=0.2)
    time.sleep(random.Random(trial).uniform(2.0, 6.0))  # start-up takes ~3 s, scoring ~1 s more
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    work = tmp_path / "work"
    compute_utilities(split, sets, OverlapScorer(), work, spec, chunk_questions=1, progress=False)
    assert merge_utilities(work, len(sets), 1, tmp_path / "resumed.parquet").equals(expected)
    # A kill inside a write can leave that write's hidden temp file (SIGKILL runs no clean-up); it is
    # never read: only complete chunk files, renamed into place, count.
    assert all(p.name.endswith(".tmp") for p in work.iterdir() if p.name.startswith("."))

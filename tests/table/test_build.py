"""Utility targets (uae.table.build): the formula, the chunked cache (resume after SIGKILL, shards, merge),
a damaged chunk scored again, and refusals."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.damage import utility_exponent_byte, xor_byte
from tests.helpers.paths import ROOT
from tests.helpers.scorers import OverlapScorer, overlap_setup
from uae.core.errors import CacheMismatchError, UAEError
from uae.core.shard import Shard
from uae.table.build import compute_utilities, merge_utilities
from uae.table.read import load_utility_table


def _scoring_process(tiny_raw_dir: Path, work: Path, delay: float) -> subprocess.Popen:
    """A separate process scoring the tiny split one question per chunk, ``delay`` seconds per chunk."""
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from tests.helpers.scorers import OverlapScorer, overlap_setup
        from uae.table.build import compute_utilities
        split, sets, spec = overlap_setup(Path({str(tiny_raw_dir)!r}))
        compute_utilities(split, sets, OverlapScorer(delay={delay}), Path({str(work)!r}), spec,
                          chunk_questions=1, progress=False)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)


def test_utilities_by_hand(tiny_raw_dir: Path, tmp_path: Path) -> None:
    split, sets, spec = overlap_setup(tiny_raw_dir)
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
    split, sets, spec = overlap_setup(tiny_raw_dir)
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
    split, sets, spec = overlap_setup(tiny_raw_dir)
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
    split, sets, spec = overlap_setup(tiny_raw_dir)
    with pytest.raises(UAEError, match="non-finite log-likelihood"):
        compute_utilities(split, sets, OverlapScorer(poison="three"), tmp_path / "w", spec, chunk_questions=4, progress=False)
    assert not list((tmp_path / "w").glob("chunk-*"))


def test_table_is_refused_for_other_settings_or_rows(tiny_raw_dir: Path, tmp_path: Path) -> None:
    split, sets, spec = overlap_setup(tiny_raw_dir)
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

    split, sets, spec = overlap_setup(tiny_raw_dir)
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


def test_flipped_byte_in_a_utility_chunk_is_scored_again(tiny_raw_dir: Path, tmp_path: Path, caplog) -> None:
    """A real chunk with one utility changed was counted as done and merged into the table."""
    from uae.table.build import chunk_path

    split, sets, spec = overlap_setup(tiny_raw_dir)
    work = tmp_path / "work"
    compute_utilities(split, sets, OverlapScorer(), work, spec, chunk_questions=2, progress=False)
    clean = merge_utilities(work, len(sets), 2, tmp_path / "clean.parquet")
    chunk = chunk_path(work, 0)
    before = pq.read_table(chunk)["utility"].to_pylist()
    xor_byte(chunk, utility_exponent_byte(chunk), 0x10)
    after = pq.read_table(chunk)["utility"].to_pylist()
    assert after != before and all(math.isfinite(v) for v in after)  # pyarrow reads it, finite and wrong

    scorer = OverlapScorer()
    compute_utilities(split, sets, scorer, work, spec, chunk_questions=2, progress=False)
    assert scorer.calls == 1  # that chunk alone was scored again
    assert str(chunk) in caplog.text and "scoring that chunk again" in caplog.text
    assert merge_utilities(work, len(sets), 2, tmp_path / "again.parquet").equals(clean)


def test_shards_that_finish_together_write_the_table_once(tiny_raw_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Two shards (a joblib multirun's, two SLURM jobs) that both find every chunk and merge at the same moment:
    one writes the table, the other waits on the merge lock, finds that table and leaves it as it is."""
    import threading

    from uae.table import build

    split, sets, spec = overlap_setup(tiny_raw_dir)
    work, dest = tmp_path / "work", tmp_path / "tables" / "dev.parquet"
    for shard in ("0/2", "1/2"):
        compute_utilities(split, sets, OverlapScorer(), work, spec, shard=Shard.parse(shard), chunk_questions=1, progress=False)
    writes: list[Path] = []
    write_parquet = build.write_parquet

    def slow_write(table, path, **kwargs):  # a write that takes long enough for the other shard to arrive
        writes.append(path)
        time.sleep(0.5)
        write_parquet(table, path, **kwargs)

    monkeypatch.setattr(build, "write_parquet", slow_write)
    start, merged = threading.Barrier(2), {}

    def shard(name: str) -> None:
        start.wait()
        merged[name] = merge_utilities(work, len(sets), 1, dest)

    threads = [threading.Thread(target=shard, args=(name,)) for name in ("0/2", "1/2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert writes == [dest]  # written once
    assert merged["0/2"].equals(merged["1/2"]) and pq.read_table(dest).equals(merged["0/2"])
    inode = dest.stat().st_ino
    merge_utilities(work, len(sets), 1, dest)  # a rerun leaves the sound table in place
    assert writes == [dest] and dest.stat().st_ino == inode
    xor_byte(dest, utility_exponent_byte(dest), 0x10)  # a damaged one is merged again
    assert merge_utilities(work, len(sets), 1, dest).equals(merged["0/2"]) and writes == [dest, dest]
    assert load_utility_table(dest, spec, sets).equals(merged["0/2"])

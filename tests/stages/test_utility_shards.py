"""The utility stage split over processes: ``utility.shard=i/n`` runs one after the other in this process, and
``utility.shard=0/2,1/2`` as one Hydra multirun through the joblib launcher (two processes on this machine at
the same time; slow), each against the one-process table of the session (tests/conftest.py ``tiny_tables``).
That two shards finishing together write the table once is checked in tests/table/test_build.py."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.paths import ROOT
from tests.helpers.runs import ENV, run_stages


def _rows(path: Path) -> dict[tuple[str, str], float]:
    table = pq.read_table(path, columns=["question_id", "passage_id", "utility"]).to_pylist()
    return {(r["question_id"], r["passage_id"]): r["utility"] for r in table}


@pytest.mark.slow  # three Python processes, two of them loading torch (about a minute on 2 cores)
def test_joblib_multirun_of_shards_makes_the_one_process_table(tmp_path: Path, tiny_tables) -> None:
    from uae.table.read import read_table_spec

    assert importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher"), "pip install -e '.[dev]' (hydra-joblib-launcher)"
    sweep, tables = tmp_path / "sweep", tmp_path / "tables"
    command = [
        sys.executable, "-m", "uae.run", "--multirun", "+experiment=qasper_minilm", "stages=[utility]",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "utility.shard=0/2,1/2", f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={tmp_path / 'cache'}", "retrieval.progress=false", "reader=none",
        f"utility.table_dir={tables}", *tiny_tables.args,  # 4 questions in chunks of 2: one chunk per shard
    ]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr  # the joblib launcher ran the jobs

    # Each job has its own folder, with Hydra's config, its run.log (${hydra:runtime.output_dir}) and its status.
    logs = []
    for job in ("0", "1"):
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "ok"
        assert f"utility.shard={job}/2" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        logs.append((sweep / job / "run.log").read_text())
        assert f"1 chunks for shard {job}/2, 0 already done" in logs[-1]  # its own chunk, scored by this job
    # One job wrote the table: the other stopped before all chunks were there, or found the table written.
    wrote = [log for log in logs if "utility table dev: 12 rows" in log and "merged by another process" not in log]
    assert len(wrote) == 1, logs
    assert (sweep / "summary.md").is_file()

    table, one_process = tables / "dev.parquet", tiny_tables.table
    assert _rows(table).keys() == _rows(one_process).keys()
    assert _rows(table) == pytest.approx(_rows(one_process), abs=1e-6)
    assert read_table_spec(table) == read_table_spec(one_process)


def test_shards_merge_once_all_chunks_are_there_and_a_rerun_merges_what_none_did(tmp_path: Path, tiny_tables) -> None:
    common = [*tiny_tables.args, f"utility.table_dir={tmp_path / 'tables'}", "stages=[utility]"]
    table = tmp_path / "tables" / "dev.parquet"
    first = run_stages(tmp_path, *common, "utility.shard=0/2", run_dir="shard0")
    assert "shard 0/2 done; not merging yet" in first.output and not table.exists()
    second = run_stages(tmp_path, *common, "utility.shard=1/2", run_dir="shard1")
    assert "utility table dev: 12 rows" in second.output
    assert _rows(table) == pytest.approx(_rows(tiny_tables.table), abs=1e-6)
    merged = pq.read_table(table)
    # Both shards' chunks are there but nothing merged (both killed right after their last chunk, or a shared
    # disk that showed a shard the other's last chunk late): a rerun of any shard scores nothing and merges.
    table.unlink()
    again = run_stages(tmp_path, *common, "utility.shard=0/2", run_dir="rerun")
    assert "1 chunks for shard 0/2, 1 already done" in again.output and "utility table dev: 12 rows" in again.output
    assert pq.read_table(table).equals(merged)

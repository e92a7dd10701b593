"""`python -m uae.run` as a process, where the process is the point: its exit status and stderr when it
refuses (a bad setting, before torch is imported; a run folder that cannot be written), a Hydra multirun
with a failing job, and Lightning's DDP launcher. What the stages do, and what they refuse, is checked in
this process in tests/stages/ (a UAEError there is what main turns into exit 2 and one ``error:``
paragraph, as here); the config check in tests/core/test_config.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.runs import ENV, tiny_llm, tiny_model, uae_run


def _imported(stderr: str) -> set[str]:
    """The modules a process imported, from its ``python -X importtime`` report."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture(scope="module")
def refused_top_k(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``retrieval.top_k=abc``, refused by the config check: one process, with ``-X importtime``."""
    tmp = tmp_path_factory.mktemp("refused")
    return uae_run(tmp, "model=bm25", "stages=[evaluate]", "retrieval.top_k=abc", python=("-X", "importtime")), tmp


def test_bad_value_exits_2_naming_the_key(refused_top_k) -> None:
    done, tmp_path = refused_top_k
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "retrieval.top_k must be an integer >= 1, got 'abc'" in done.stderr
    assert not (tmp_path / "run" / "results.json").exists()
    assert "uae.core.schema" in _imported(done.stderr)  # the report is there: the next test reads it


def test_a_refused_config_exits_before_torch_is_imported(refused_top_k) -> None:
    done, _ = refused_top_k
    assert done.returncode == 2
    assert not _imported(done.stderr) & {"torch", "lightning", "transformers"}


@pytest.mark.slow  # the same path as top-k-abc above; tests/core/test_config.py checks their messages in-process
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stages=[fit,evaluate]", "loss.sharpness=abc"], "loss.sharpness must be a number > 0, got 'abc'"),
        (["stages=[evaluate]", "loss.temperature=-0.5"], "loss.temperature must be a number > 0, got -0.5"),
    ],
    ids=["sharpness-abc", "evaluate-only-temperature"],
)
def test_bad_values_exit_2_naming_the_key_whatever_the_stages(tmp_path: Path, overrides: list[str], message: str) -> None:
    done = uae_run(tmp_path, "model=bm25", *overrides)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert message in done.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_unwritable_run_folder_is_a_clear_error(tmp_path: Path, tiny_raw_dir: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the run folder's parent should be")  # refuses even root, unlike chmod
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", "model=bm25", run_dir="blocker/run")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert str(blocker / "run") in done.stderr and "hydra.run.dir" in done.stderr


def test_multirun_summary_lists_every_job_and_a_failed_one_does_not_stop_the_others(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path
) -> None:
    env = {**os.environ, **ENV}
    sweep = tmp_path / "sweep"
    args = [
        sys.executable, "-m", "uae.run", "-m", "+experiment=qasper_minilm", "stages=[evaluate]",
        f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}", "retrieval.progress=false",
        f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir),
        "model.encoder.pooling=mean,bogus,cls", "reader=none",  # the middle job fails its config check
    ]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stderr[-3000:]  # a failed job makes the sweep fail, after the summary
    results = {n: sweep / str(n) / "results.json" for n in range(3)}
    assert results[0].is_file() and results[2].is_file() and not results[1].exists()

    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "model.encoder.pooling=bogus" in rows[1]["overrides"] and "pooling" in rows[1]["error"]
    for n in (0, 2):  # the summary holds each job's own numbers
        metrics = json.loads(results[n].read_text())["metrics"]
        assert float(rows[n]["map"]) == pytest.approx(metrics["map"]) and float(rows[n]["hit@1"]) == pytest.approx(metrics["hit@1"])
    assert json.loads(results[0].read_text())["metrics"] != json.loads(results[2].read_text())["metrics"]  # mean != cls
    summary = (sweep / "summary.md").read_text()
    assert "Failed jobs" in summary and "| failed |" in summary

    # The same sweep again with skip_done=true: the finished jobs are not rerun, the failed one is. Where
    # files live is not a setting: another cache folder (a resumed sweep on another node) is the same job.
    before = {n: results[n].stat().st_mtime_ns for n in (0, 2)}
    moved = [f"paths.cache_dir={tmp_path / 'cache2'}" if a.startswith("paths.cache_dir=") else a for a in args]
    again = subprocess.run(moved + ["skip_done=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert again.returncode == 1, again.stderr[-3000:]
    assert {n: results[n].stat().st_mtime_ns for n in (0, 2)} == before
    assert (again.stdout + again.stderr).count("skipped (skip_done=true)") == 2
    with open(sweep / "summary.csv") as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["ok", "failed", "ok"]

    # Another config pointed at the same folder stops with a clear error and leaves the results alone.
    other = [a for a in args if not a.startswith("model.encoder.pooling=")] + ["model.encoder.pooling=mean", "seed=7"]
    clash = subprocess.run(other + ["skip_done=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert clash.returncode == 2 and "different config" in clash.stderr and "'seed']" in clash.stderr, clash.stderr[-3000:]
    assert results[0].stat().st_mtime_ns == before[0] and json.loads((sweep / "0" / "status.json").read_text())["status"] == "ok"
    from uae.analysis.jobs import load_runs

    # job 0 keeps its own overrides (status.json), though Hydra rewrote .hydra/
    assert "seed=7" in (sweep / "0" / ".hydra" / "overrides.yaml").read_text()
    job0 = load_runs(sweep).set_index("job").loc["0"]
    assert job0["override:model.encoder.pooling"] == "mean" and "override:seed" not in job0.dropna().index


def test_lightning_ddp_on_two_cpu_processes_end_to_end(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trainer=ddp through Lightning's launcher and Hydra: rank 0 alone exports, evaluates and reports."""
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    done = uae_run(
        tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *tiny_llm(tiny_lm_dir), f"utility.table_dir={tmp_path / 'tables'}",
        "stages=[utility,fit,evaluate]", "data.train_split=dev", "utility.splits=[dev]", "candidates.size=3",
        "train.batch_size=1", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2",
        "logger=csv",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("fit: 4 training groups") == 2  # both processes joined the fit
    assert output.count("minilm+uae on dev") == 1  # ... and only rank 0 went on to evaluate
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["retriever"] == "minilm+uae" and Path(result["checkpoint"]).is_file()
    with open(tmp_path / "run" / "csv" / "metrics.csv") as handle:
        assert sum(1 for row in csv.DictReader(handle) if row.get("val/map")) == 2

"""Faults and determinism of the whole pipeline, on the tiny fixture with tiny models (CPU).

- a training run killed (SIGKILL) after a checkpoint resumes with ``train.ckpt_path=last`` and ends
  with the same metrics and weights as an uninterrupted run of the same seed (tolerance 1e-6: CPU
  kernels are deterministic here, and the checkpoint carries the RNG states and the epoch-seeded order);
- two runs with the same seed give identical results.json metrics and training curves; ``seed=``
  changes the training.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path):
    tmp = tmp_path_factory.mktemp("reliability")

    def run(run_dir: str, *extra: str) -> subprocess.CompletedProcess[str]:
        args = [
            sys.executable, "-m", "uae.run", "+experiment=qasper_minilm", "stages=[utility,fit,evaluate]",
            f"hydra.run.dir={tmp / run_dir}", f"paths.cache_dir={tmp / 'cache'}", "retrieval.progress=false",
            f"data.dir={tiny_raw_dir}", "data.train_split=dev", "utility.splits=[dev]", f"utility.table_dir={tmp / 'tables'}",
            f"model.encoder.local_path={tiny_encoder_dir}", "model.encoder.model_id=tiny-bert",
            f"candidates.base.encoder.local_path={tiny_encoder_dir}", "candidates.base.encoder.model_id=tiny-bert",
            f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama", "candidates.size=3",
            "train.batch_size=2", "train.lr=1e-3", "trainer.max_epochs=3", "trainer.log_every_n_steps=1",
            "logger=csv", "reader=none", "evaluate.zero_shot=false", *extra,
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)

    return tmp, run


def metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "results.json").read_text())["metrics"]


def losses(run_dir: Path) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / "encoder" / "model.safetensors")


def test_killed_training_resumes_from_last_checkpoint_to_the_uninterrupted_result(pipeline) -> None:
    tmp, run = pipeline
    whole = run("whole")
    assert whole.returncode == 0, whole.stderr[-3000:]

    killer = ["+callbacks.killer._target_=tests.helpers.faults.KillAtEpoch", "+callbacks.killer.epoch=2"]
    killed = run("resumed", *killer)
    assert killed.returncode == -9  # SIGKILL, as a crash or a preempted job
    assert (tmp / "resumed" / "checkpoints" / "last.ckpt").is_file() and not (tmp / "resumed" / "results.json").exists()
    assert not list((tmp / "resumed").rglob("*.tmp"))  # nothing half-written

    resumed = run("resumed", "train.ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, value in metrics(tmp / "whole").items():
        assert metrics(tmp / "resumed")[name] == pytest.approx(value, abs=1e-6)
    a, b = weights(tmp / "whole"), weights(tmp / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    # the resumed process logged the steps of the last epoch exactly as the uninterrupted one
    assert losses(tmp / "resumed")[-2:] == pytest.approx(losses(tmp / "whole")[-2:], abs=1e-6)


def test_same_seed_same_results_other_seed_other_training(pipeline) -> None:
    tmp, run = pipeline
    if not (tmp / "whole" / "results.json").is_file():
        assert run("whole").returncode == 0
    again = run("again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics(tmp / "again") == metrics(tmp / "whole")
    assert losses(tmp / "again") == losses(tmp / "whole")
    other = run("other-seed", "seed=7", "candidates.seed=42")  # same candidate sets (the same utility table)
    assert other.returncode == 0, other.stderr[-3000:]
    assert losses(tmp / "other-seed") != losses(tmp / "whole")
    assert any(not torch.equal(w, weights(tmp / "other-seed")[k]) for k, w in weights(tmp / "whole").items())

"""``job_settings``: what makes two configs the same job, for ``skip_done`` (``uae.run.already_done``) and for the
seeds ``uae.analysis.compare`` pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.helpers.configs import set_settings


def _config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "seed": 42, "skip_done": False, "paths": {"output_dir": "/a/run"},
        "train": {"lr": 2e-5, "ckpt_path": None, "checkpoint_every_steps": None},
        "callbacks": {"step_checkpoint": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "dirpath": "/a/run/ck"},
                      "model_checkpoint": {"save_top_k": 1}, "lr_monitor": {"logging_interval": "step"}},
        "logger": {"wandb": {"mode": "offline"}}, "retrieval": {"progress": True},
        "model": {"retriever": {"progress": True, "cache_dir": "/a/cache"}}, "trainer": {"enable_progress_bar": True},
        "data": {"dir": "/a/data"},
    }
    return set_settings(config, **changes)


SAME_JOB = {  # where files are, how the run is saved, logged and shown, and a resume from its own checkpoint
    "paths__output_dir": "/b/run", "data__dir": "/b/data", "skip_done": True, "train__ckpt_path": "last",
    "train__checkpoint_every_steps": 10, "callbacks__step_checkpoint___target_": "uae.training.checkpoints.StepCheckpoint",
    "callbacks__model_checkpoint__save_top_k": 0, "logger__wandb__mode": "online", "retrieval__progress": False,
    "model__retriever__progress": False, "trainer__enable_progress_bar": False,
}


@pytest.mark.parametrize("change", [{k: v} for k, v in SAME_JOB.items()] + [SAME_JOB], ids=[*SAME_JOB, "all"])
def test_where_and_how_a_run_is_kept_is_not_the_job(change: dict[str, Any]) -> None:
    from uae.results.read import job_settings

    assert job_settings(_config(**change)) == job_settings(_config())


@pytest.mark.parametrize("change", [{"seed": 1}, {"train__lr": 5e-5}, {"train__ckpt_path": "/other/run/last.ckpt"}],
                         ids=["seed", "lr", "another-runs-checkpoint"])
def test_a_setting_or_another_runs_weights_is_another_job(change: dict[str, Any]) -> None:
    from uae.results.read import job_settings

    assert job_settings(_config(**change)) != job_settings(_config())


def test_skip_done_takes_a_resumed_checkpointed_run_as_done_and_refuses_another_setting(tmp_path: Path) -> None:
    from uae.core.errors import UAEError
    from uae.run import already_done

    (tmp_path / "status.json").write_text(json.dumps({"status": "ok"}))
    (tmp_path / "results.json").write_text(json.dumps({"config": _config()}))
    assert already_done(OmegaConf.create(_config(**SAME_JOB)), tmp_path)
    with pytest.raises(UAEError, match=r"different config \(top-level keys \['train'\]"):
        already_done(OmegaConf.create(_config(train__lr=5e-5)), tmp_path)

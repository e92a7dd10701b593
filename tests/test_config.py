"""The composed configs: every group option composes, and bad values are refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from uae.errors import UAEError
from uae.run import validate

CONF = Path(__file__).resolve().parents[1] / "conf"


def make(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stages=[fit]", "loss.temperature=-0.1"], "loss.temperature=-0.1"),
        (["stages=[fit]", "loss.temperature=0"], "loss.temperature=0"),
        (["stages=[fit]", "loss.sharpness=0"], "loss.sharpness=0"),
        (["stages=[fit]", "loss.mix=1.5"], "loss.mix=1.5"),
        (["stages=[fit]", "train.batch_size=0"], "train.batch_size=0"),
        (["stages=[fit]", "train.lr=0"], "train.lr=0"),
        (["stages=[fit]", "train.warmup_ratio=1.0"], "train.warmup_ratio=1.0"),
        (["stages=[utility]", "candidates.size=0"], "candidates.size=0"),
        (["stages=[utility]", "candidates.hard_negatives.bm25=-1"], "counts must be 0 or more"),
        (["stages=[evaluate]", "retrieval.scope=world"], "retrieval.scope='world'"),
        (["stages=[train]"], "unknown stage"),
    ],
)
def test_bad_values_are_refused_with_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(UAEError, match=message.replace("[", r"\[").replace("(", r"\(")):
        validate(make(*overrides))


@pytest.mark.parametrize("experiment", ["qasper_minilm", "qasper_bge", "quickstart"])
@pytest.mark.parametrize("loss", ["uae", "infonce", "atlas_kl", "replug_lsr"])
def test_every_experiment_and_loss_composes_and_validates(experiment: str, loss: str) -> None:
    cfg = make(f"+experiment={experiment}", f"loss={loss}", "hydra.run.dir=/tmp/x")
    validate(cfg)
    assert cfg.loss.name == loss and cfg.loss.fn._target_.startswith("uae.training.losses.")
    assert cfg.candidates.base.encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2"  # shared utility tables


def test_unknown_loss_is_hydras_error_naming_the_options() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="loss"):
        make("loss=bogus")

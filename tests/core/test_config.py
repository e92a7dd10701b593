"""The composed configs: every group option composes, and bad values are refused before any work
(uae.core.schema.check, which `python -m uae.run` calls before any stage: tests/cli/test_run_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.runs import refused_config
from uae.core.config import compose
from uae.core.errors import UAEError
from uae.core.schema import check as validate


def make(*overrides: str):
    return compose(list(overrides))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stages=[fit]", "loss.temperature=-0.1"], "loss.temperature must be a number > 0, got -0.1"),
        (["stages=[fit]", "loss.temperature=0"], "loss.temperature must be a number > 0, got 0"),
        (["stages=[fit]", "loss.sharpness=0"], "loss.sharpness must be a number > 0, got 0"),
        (["stages=[fit]", "loss.mix=1.5"], "loss.mix must be a number in [0, 1], got 1.5"),
        (["stages=[fit]", "train.batch_size=0"], "train.batch_size must be an integer >= 1, got 0"),
        (["stages=[fit]", "train.lr=0"], "train.lr must be a number > 0, got 0"),
        (["stages=[fit]", "train.warmup_ratio=1.0"], "train.warmup_ratio must be a number in [0, 1), got 1.0"),
        (["stages=[utility]", "candidates.size=0"], "candidates.size must be an integer >= 1, got 0"),
        (["stages=[utility]", "candidates.hard_negatives.bm25=-1"], "candidates.hard_negatives.bm25 must be an integer >= 0, got -1"),
        (["stages=[evaluate]", "retrieval.scope=world"], "retrieval.scope must be one of document, corpus, got 'world'"),
        (["stages=[train]"], "stages[0] must be one of utility, fit, evaluate, report, got 'train'"),
        # issue 17: non-numeric values were a traceback (float()/int() unguarded), whatever the stage
        (["stages=[fit,evaluate]", "loss.sharpness=abc"], "loss.sharpness must be a number > 0, got 'abc'"),
        (["stages=[evaluate]", "retrieval.top_k=abc"], "retrieval.top_k must be an integer >= 1, got 'abc'"),
        # issue 17: an evaluate-only run accepted a bad loss setting and wrote it into results.json
        (["stages=[evaluate]", "loss.temperature=-0.5"], "loss.temperature must be a number > 0, got -0.5"),
        (["stages=[evaluate]", "train.labels.source=gold"], "train.labels.source must be one of evidence, answer_overlap, teacher_argmax, none, got 'gold'"),
        (["stages=[evaluate]", "train.labels.fraction=1.5"], "train.labels.fraction must be a number in [0, 1], got 1.5"),
        (["stages=[evaluate]", "train.labels.min_overlap=-1"], "train.labels.min_overlap must be a number in [0, 1], got -1"),
        (["stages=[evaluate]", "train.labels.max_positives=0"], "train.labels.max_positives must be an integer >= 1, got 0"),
        (["stages=[evaluate]", "train.labels.seed=x"], "train.labels.seed must be an integer, got 'x'"),
        (["stages=[evaluate]", "train.labels.table=3"], "train.labels.table must be a string or null, got 3"),
        (["stages=[evaluate]", "candidates.gold=maybe"], "candidates.gold must be true or false, got 'maybe'"),
        (["stages=[evaluate]", "data.max_documents={train: 0}"], "data.max_documents must be a positive integer, a per-split mapping"),
        (["stages=[evaluate]", "utility.shard=2/2"], "utility.shard='2/2': write it as i/n"),
        (["stages=[evaluate]", "retrieval.device=gpu"], "retrieval.device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        (["stages=[evaluate]", "+train.lrr=1"], "train.lrr is not a setting UAE knows"),
        (["stages=[evaluate]", "rerank=llm", "rerank.k=0"], "rerank.k must be an integer >= 1, got 0"),
        (["stages=[evaluate]", "data=beir"], "data.dir is not set"),
    ],
)
def test_bad_values_are_refused_with_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(UAEError) as error:
        validate(make(*overrides))
    assert message in str(error.value)


def test_every_bad_value_is_listed_in_one_error() -> None:
    with pytest.raises(UAEError, match="2 settings are invalid") as error:
        validate(make("loss.sharpness=abc", "retrieval.top_k=0"))
    assert "loss.sharpness must be" in str(error.value) and "retrieval.top_k must be" in str(error.value)


def test_the_label_settings_of_issue_15_are_accepted() -> None:
    validate(make("candidates.gold=false", "train.labels.source=answer_overlap", "train.labels.fraction=0.25",
                  "train.labels.seed=3", "train.labels.table=/x/train.parquet", "train.labels.min_overlap=1",
                  "train.labels.max_positives=2"))
    for source in ("evidence", "answer_overlap", "teacher_argmax", "none"):
        validate(make(f"train.labels.source={source}", "train.labels.table=null", "train.labels.fraction=0"))


@pytest.mark.parametrize("experiment", ["qasper_minilm", "qasper_bge", "quickstart", "qasper_label_free", "squad_minilm"])
@pytest.mark.parametrize("loss", ["uae", "infonce", "atlas_kl", "replug_lsr"])
def test_every_experiment_and_loss_composes_and_validates(experiment: str, loss: str) -> None:
    cfg = make(f"+experiment={experiment}", f"loss={loss}", "hydra.run.dir=/tmp/x")
    validate(cfg)
    assert cfg.loss.name == loss and cfg.loss.fn._target_.startswith("uae.training.losses.")
    assert cfg.candidates.base.encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2"  # shared utility tables


def test_unknown_loss_is_hydras_error_naming_the_options() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(UAEError, match="loss") as error:
        make("loss=bogus")
    assert isinstance(error.value.__cause__, MissingConfigException) and "loss" in str(error.value.__cause__)


def test_the_schema_knows_exactly_the_stages_that_exist() -> None:
    import typing

    from uae.core.schema import Stage
    from uae.stages import STAGES

    assert typing.get_args(Stage) == tuple(STAGES)


# Refusals that tests/test_run_cli.py checked by starting `python -m uae.run` (exit 2, nothing written):
# the same config check, in this process. The exit status, stderr and the absence of torch are checked
# once for all in tests/cli/test_run_cli.py.


def test_unknown_stage() -> None:
    message = refused_config("model=bm25", "stages=[evaluate,fly]")
    assert "stages[1] must be one of utility, fit, evaluate, report, got 'fly'" in message


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stages=[fit]", "loss.temperature=-0.05"], "loss.temperature must be a number > 0, got -0.05"),
        (["stages=[utility]", "candidates.size=0"], "candidates.size must be an integer >= 1, got 0"),
    ],
    ids=["negative-temperature", "no-candidates"],
)
def test_bad_training_config_is_refused_with_the_key(overrides: list[str], message: str) -> None:
    assert message in refused_config(*overrides)


def test_recorded_table_path_is_relative_to_the_project_inside_it(tmp_path: Path) -> None:
    from uae.core.config import ROOT_DIR, project_path

    assert project_path(ROOT_DIR / "experiments" / "qasper" / "utilities" / "train.parquet") == "experiments/qasper/utilities/train.parquet"
    assert project_path(tmp_path / "elsewhere.parquet") == str(tmp_path / "elsewhere.parquet")


@pytest.mark.parametrize("loss", ["infonce", "atlas_kl", "replug_lsr"])
def test_a_loss_knob_its_objective_never_reads_is_refused(loss: str) -> None:
    # loss.mix is a known key with a valid value, but only uae's fn reads it: with these losses it would do nothing
    with pytest.raises(UAEError, match=rf"loss.mix=0.5 does nothing with loss={loss}"):
        validate(make(f"loss={loss}", "+loss.mix=0.5"))
    validate(make("loss=uae", "loss.mix=0.5"))  # read by utility_infonce


def test_the_open_corpus_experiments_compose_and_validate() -> None:
    for experiment in ("squad_open", "squad_open_label_free"):
        cfg = make(f"+experiment={experiment}", "hydra.run.dir=/tmp/x")
        validate(cfg)
        assert cfg.retrieval.scope == "corpus" and list(cfg.candidates.rank_range) == [2, 100]
    with pytest.raises(UAEError, match="candidates.rank_range must be two ranks"):
        validate(make("candidates.rank_range=[5,3]"))

"""No setting is silently ignored (issue 33): an unknown key, with or without Hydra's ``+``, is refused before
torch loads, with the closest known keys or a renamed key's new name; legitimate new keys still pass."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf

from tests.helpers.paths import ROOT
from uae.core.config import compose
from uae.core.errors import UAEError
from uae.core.keys import RENAMED, call_problems, known_keys, override_problem, parameters
from uae.core.schema import Config, check

BASE = "+experiment=quickstart"


def _refused(*overrides: str) -> str:
    """The composed config's refusal (the check every run makes after Hydra composes)."""
    with pytest.raises(UAEError) as caught:
        check(compose([BASE, "hydra.run.dir=/tmp/x", *overrides]))
    return str(caught.value)


@pytest.mark.parametrize("override", ["train.lrr=1e-5", "+train.lrr=1e-5"])
def test_a_typo_is_refused_with_the_closest_key_in_either_form(override: str) -> None:
    problem = override_problem([BASE, override], Config)
    assert problem is not None and problem.startswith(f"{override}: train.lrr is not a setting UAE knows")
    assert "did you mean train.lr " in problem  # the closest key comes first


@pytest.mark.parametrize("override", ["data.max_papers=3", "+data.max_papers=3"])
def test_a_renamed_key_gets_its_new_name_in_either_form(override: str) -> None:
    problem = override_problem([BASE, override, "stages=[evaluate]"], Config)
    assert problem == f"{override}: data.max_papers was renamed data.max_documents: give data.max_documents=3 instead."
    cfg = compose([BASE, "data.max_documents=3"])  # the advice composes and passes
    check(cfg)
    assert cfg.data.max_documents == 3


def test_every_renamed_key_names_a_key_the_schema_knows() -> None:
    known = set(known_keys(Config))
    assert all(new in known and old not in known for old, new in RENAMED.items())


def test_a_plus_key_the_schema_does_not_know_is_refused_on_the_command_line_and_once_composed() -> None:
    problem = override_problem([BASE, "+data.shuffle=true"], Config)
    assert problem is not None and "data.shuffle is not a setting UAE knows" in problem and "nothing would read it" in problem
    assert "data.shuffle is not a setting UAE knows" in _refused("+data.shuffle=true")  # e.g. from a sweep's params
    assert "foo is not a setting UAE knows; the keys of the config are experiment, stages" in _refused("+foo=1")


@pytest.mark.parametrize("override", ["+data.max_documents.test=100", "data.max_documents={train:3,dev:2}", "seed=3",
                                      "model=bm25", "model@candidates.base=mpnet", "trainer.max_epochs=2", "+trainer.foo=1",
                                      "hydra.run.dir=/tmp/y", "loss.fn.temperature=0.1", "hydra/launcher=joblib"])
def test_legitimate_overrides_are_accepted(override: str) -> None:
    assert override_problem([BASE, override], Config) is None


def test_a_new_key_of_a_free_mapping_passes_the_composed_check() -> None:
    cfg = compose([BASE, "hydra.run.dir=/tmp/x", "+data.max_documents.test=100"])
    check(cfg)
    assert OmegaConf.to_container(cfg.data.max_documents) == {"train": 89, "dev": 28, "test": 100}


@pytest.mark.parametrize("override", ["model.encoder.poolin=cls", "+model.encoder.poolin=cls"])
def test_an_argument_of_an_instantiated_mapping_is_checked_against_its_target(override: str) -> None:
    problem = override_problem([BASE, override], Config)
    assert problem == (f"{override}: model.encoder.poolin is not a setting UAE knows: uae.retrieval.encoder.DualEncoder "
                       "has no argument 'poolin'; did you mean model.encoder.pooling?")


def test_the_composed_check_refuses_an_argument_the_target_does_not_take() -> None:
    assert "llm.scorer.batchsize is not a setting UAE knows" in _refused("+llm.scorer.batchsize=4")
    assert call_problems({"fn": {"_target_": "uae.training.losses.infonce", "_partial_": True, "temperature": 0.1}}) == []


def _targets(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return found + [t for value in node.values() for t in _targets(value)]
    return [t for value in node for t in _targets(value)] if isinstance(node, list) else []


def test_the_arguments_read_from_source_are_the_signatures_of_every_configured_target() -> None:
    """The source reading (no import, so no torch before the check) against Python's own signature."""
    targets = set()
    for group in ("data", "model", "llm", "reader", "loss"):
        for option in sorted((ROOT / "conf" / group).glob("*.yaml")):
            targets |= {t for t in _targets(OmegaConf.to_container(OmegaConf.load(option))) if t.startswith("uae.")}
    assert len(targets) >= 8
    for target in sorted(targets):
        signature = inspect.signature(get_method(target))
        if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            assert parameters(target) is None
        else:
            assert parameters(target) == set(signature.parameters) - {"self"}, target


@pytest.mark.parametrize("group", ["data", "model", "llm", "reader", "rerank", "loss"])
def test_every_option_of_every_group_passes_the_key_check(group: str) -> None:
    for option in sorted((ROOT / "conf" / group).glob("*.yaml")):
        extra = ["data.dir=/tmp"] if option.stem == "beir" else []
        check(compose([BASE, "hydra.run.dir=/tmp/x", f"{group}={option.stem}", *extra]))


def test_the_new_users_command_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "uae.run", "+experiment=qasper_minilm", "+data.max_papers=3",
         "stages=[evaluate]", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        "error: +data.max_papers=3: data.max_papers was renamed data.max_documents: give data.max_documents=3 instead."]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "uae.core.keys" in imported and not imported & {"torch", "lightning", "transformers"}
    assert not (tmp_path / "run").exists()

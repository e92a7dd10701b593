"""Settings: where the data is looked for, composing a config, and Hydra's mapping overrides answered
in the project's words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from uae.core import config
from uae.core.config import compose, data_dir
from uae.core.errors import UAEError
from uae.run import mapping_override_problem


def test_data_folders_are_looked_for_in_the_repository_then_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setattr(config, "ROOT_DIR", repo)
    # nothing anywhere: the repository's data/ folder, where `make data` fetches QASPER and messages point
    assert data_dir("qasper") == str(repo / "data" / "qasper")
    shared = tmp_path / "shared" / "data" / "qasper"
    shared.mkdir(parents=True)
    assert data_dir("qasper") == str(shared)
    own = repo / "data" / "qasper"
    own.mkdir(parents=True)
    assert data_dir("qasper") == str(own)  # a copy inside the repository wins over the shared one
    assert data_dir("squad") == str(repo / "data" / "squad")


def test_the_data_folder_setting_follows_the_environment_then_the_places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UAE_DATA_DIR", raising=False)
    monkeypatch.delenv("UAE_SQUAD_DIR", raising=False)
    cfg = compose(["+experiment=quickstart"])
    assert cfg.data.dir == data_dir("qasper")
    assert compose(["+experiment=squad_minilm"]).data.dir == data_dir("squad")
    monkeypatch.setenv("UAE_DATA_DIR", str(tmp_path))
    assert compose(["+experiment=quickstart"]).data.dir == str(tmp_path)


def test_a_config_that_does_not_compose_says_why() -> None:
    with pytest.raises(UAEError, match="not in struct") as caught:
        compose(["+experiment=qasper_label_free", "data.max_documents={train:120,test:100}"])
    assert "data.max_documents" in str(caught.value)


def test_a_mapping_override_with_a_new_key_gets_advice_that_composes() -> None:
    argv = ["+experiment=qasper_label_free", "data.max_documents={train:120,test:100}", "stages=[evaluate]"]
    problem = mapping_override_problem(argv)
    assert problem is not None and "'test'" in problem
    advice = [word for word in problem.split() if word.startswith("++data.max_documents.")]
    assert sorted(advice) == ["++data.max_documents.test=100", "++data.max_documents.train=120"]
    cfg = compose([argv[0], *advice, argv[2]])  # the advice works
    assert dict(cfg.data.max_documents) == {"train": 120, "test": 100}


@pytest.mark.parametrize(
    "argv",
    [
        ["+experiment=qasper_label_free", "stages=[evaluate]"],  # no mapping override: nothing composed
        ["+experiment=qasper_label_free", "data.max_documents={train:120}"],  # a mapping that fits
        ["+experiment=qasper_minilm", "data.max_documents={train:3,dev:2}"],  # null before: any keys
        ["+experiment=qasper_label_free", "data.max_documents={train:120,test:100}", "-m"],  # flags ignored
        ["+experiment=no_such_experiment", "data.max_documents={train:1}"],  # Hydra says that one itself
    ][:4] + [["+experiment=no_such_experiment", "data.max_documents={train:1}"]],
)
def test_no_advice_where_hydra_has_nothing_to_refuse_or_says_it_better(argv: list[str]) -> None:
    expected_none = "test:100" not in " ".join(argv)
    assert (mapping_override_problem(argv) is None) == expected_none


def test_the_refusal_is_an_exit_2_before_torch_is_imported() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "uae.run", "+experiment=qasper_label_free",
         "data.max_documents={train:120,test:100}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2
    message = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(message) == 1 and "++data.max_documents.test=100" in message[0]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported and not imported & {"torch", "lightning", "transformers"}

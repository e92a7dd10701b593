"""What the Makefile hands the commands it runs: the data folder's places, a relative run folder made
absolute for the notebook (which runs from notebooks/). Read with `make -n`, which runs nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.helpers.paths import ROOT


def _copy_makefile(repo: Path) -> None:
    for name in ("Makefile", "pyproject.toml"):  # the set-up target depends on both
        shutil.copy(ROOT / name, repo / name)


def _dry(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("UAE_DATA_DIR", "UAE_RUN_DIR", "MAKEFLAGS")}
    done = subprocess.run(["make", "-n", *args], cwd=repo, env={**base, **(env or {})}, capture_output=True, text=True, check=True)
    return done.stdout


def _data_dir(repo: Path, env: dict[str, str] | None = None) -> str:
    found = re.search(r'uae\.data\.download --dir "([^"]+)"', _dry(repo, "run", env=env))
    assert found is not None
    return found.group(1)


def test_make_run_looks_for_qasper_in_the_same_places_as_the_configs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_makefile(repo)
    assert _data_dir(repo) == str(repo / "data" / "qasper")  # nothing anywhere: where it will be fetched
    shared = tmp_path / "shared" / "data" / "qasper"
    shared.mkdir(parents=True)
    assert _data_dir(repo) == str(shared)
    (repo / "data" / "qasper").mkdir(parents=True)
    assert _data_dir(repo) == str(repo / "data" / "qasper")
    assert _data_dir(repo, {"UAE_DATA_DIR": "/somewhere/else"}) == "/somewhere/else"
    run = _dry(repo, "run")
    assert f'UAE_DATA_DIR="{repo / "data" / "qasper"}"' in run  # the run reads the folder that was checked


def test_make_notebook_makes_a_relative_run_folder_absolute(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_makefile(repo)
    given = _dry(repo, "notebook", "UAE_RUN_DIR=logs/results/minilm")
    assert f'UAE_RUN_DIR="{repo / "logs" / "results" / "minilm"}"' in given
    assert "UAE_RUN_DIR=" not in _dry(repo, "notebook")  # unset: the notebook picks the newest run itself


def test_every_recorded_run_spec_is_a_name_and_whole_overrides(tmp_path: Path) -> None:
    """NAME/OVERRIDE/... lists of the resumable targets: an override variable used before it is defined
    (:= expands it on the spot) leaves an empty part, and that run trains with the defaults instead."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_makefile(repo)
    lists = re.findall(r"for run in (.*?); do name=", _dry(repo, "label-efficiency", "squad-label-free", "tuning"))
    # the label-free seeds, label-free, overlap sets (+ beta; again in the loop of their paired tables), overlap-set
    # baseline, Gemma 3, SQuAD, tuning (its seed runs, then its learning-rate runs)
    assert len(lists) == 9
    specs = [spec for found in lists for spec in found.split()]
    assert any(spec.startswith("overlap-uae-mix0.5-beta") for spec in specs)
    # a seed run moves the training seed only: the candidate sets (and so the utility table) stay seed 42's
    seeded = [spec for spec in specs if "/seed=" in spec]
    assert len(seeded) == 12 and all("/candidates.seed=42/" in spec for spec in seeded)
    for spec in specs:
        name, *overrides = spec.split("/")
        assert re.fullmatch(r"[\w.-]+", name), spec
        assert all(re.fullmatch(r"[\w.+]+=\S+", o) for o in overrides), spec

"""`make clean` in a copy of the repository: it removes what UAE made (run folders, caches, temporary files
of killed writers, also outside the caches) and nothing else (data, results, a live writer's file, .venv)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers.damage import killed_writer
from tests.helpers.paths import ROOT
from uae.storage.tmpfiles import locked_tmp

KEPT = ("notes.txt", "experiments/qasper/RESULTS.md", "experiments/qasper/utilities/dev.parquet", "data/qasper.json", ".venv/keep")


def test_make_clean_removes_only_what_uae_made_and_dead_writers_tmp_outside_the_caches(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "uae" / "storage").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    for name in ("__init__.py", "storage/__init__.py", "storage/tmpfiles.py"):  # what make clean runs (standard library only)
        shutil.copy(ROOT / "uae" / name, repo / "uae" / name)
    for made in ("logs/run/results.json", ".cache/embeddings/x.pt", ".pytest_cache/v", "uae/__pycache__/m.pyc"):
        (repo / made).parent.mkdir(parents=True, exist_ok=True)
        (repo / made).write_text("x")
    for kept in KEPT:
        (repo / kept).parent.mkdir(parents=True, exist_ok=True)
        (repo / kept).write_text("mine")
    tables = repo / "experiments" / "qasper" / "utilities"
    dead = killed_writer(tables / "train.parquet")  # outside the caches: a killed writer's temporary file
    live_fd, live = locked_tmp(tables / "dev.parquet")  # and one this process is writing now
    try:
        done = subprocess.run(["make", "-s", "clean"], cwd=repo, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert not (repo / "logs").exists() and not (repo / ".cache").exists() and not (repo / ".pytest_cache").exists()
        assert not (repo / "uae" / "__pycache__").exists()
        for kept in KEPT:
            assert (repo / kept).read_text() == "mine"
        assert not dead.exists() and live.exists()
    finally:
        os.close(live_fd)

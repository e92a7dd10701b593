"""Expensive test inputs made once per test session, also across pytest-xdist workers.

The file-lock pattern of the pytest-xdist docs: every worker's base temporary folder lies in one
session folder (``getbasetemp().parent``); the first worker to take the lock builds the folder there,
the others wait and then use it. A folder is built in place (what is inside may record its own path,
as a run's results.json does) and counts as made once its marker ``.NAME.complete`` beside it exists,
so a worker that failed half-way leaves a folder that the next one rebuilds. Tests must treat what they get as
read-only: copy it before changing anything in it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every worker of this session sees (the base temporary folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """``session_root/shared-NAME``, made by ``build(folder)`` once per session whichever worker asks first."""
    root = session_root(tmp_path_factory)
    folder = root / f"shared-{name}"
    marker = root / f".{name}.complete"
    with FileLock(str(root / f".{name}.lock")):
        if not marker.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            marker.touch()
    return folder


def copy_of(folder: Path, to: Path, *names: str) -> Path:
    """A private copy of ``names`` (all of ``folder`` when none) under ``to``, to change freely."""
    for name in names or [p.name for p in folder.iterdir()]:
        source = folder / name
        if source.is_dir():
            shutil.copytree(source, to / name, symlinks=True)
        else:
            to.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to

"""Running the pipeline from tests, on the tiny fixture with tiny models.

Two ways, with the same settings: ``uae_run`` starts ``python -m uae.run`` where the process is the
point (exit status, stderr, Hydra's run folder and callbacks, a kill, DDP); ``run_stages`` runs the
same composed config in this process (``uae.run.run``), where what the stages do is the point, which
saves a Python start and the torch / Lightning imports per run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import ROOT

ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
TRAINED_STAGES = "stages=[report,evaluate,fit,utility]"  # the session's trained run (tests/conftest.py): any order


def tiny_model(path: Path) -> list[str]:
    """The tiny BERT as the trained/evaluated encoder and as the source of dense hard negatives."""
    return [
        f"model.encoder.local_path={path}", "model.encoder.model_id=tiny-bert",
        f"candidates.base.encoder.local_path={path}", "candidates.base.encoder.model_id=tiny-bert",
    ]


def tiny_llm(path: Path) -> list[str]:
    """The tiny Llama as the utility scorer (and the reader's model, which follows llm.scorer)."""
    return [f"llm.scorer.local_path={path}", "llm.scorer.model_id=tiny-llama"]


def _overrides(tmp_path: Path, overrides: tuple[str, ...]) -> list[str]:
    args = [
        "+experiment=qasper_minilm", "stages=[evaluate]", f"paths.cache_dir={tmp_path / 'cache'}",
        "retrieval.progress=false", *overrides,
    ]
    if not any(o.startswith("reader=") for o in overrides):
        args.append("reader=none")  # the reader is tested where a test asks for it
    return args


# --------------------------------------------------------------------------------------------------
# as a process


def uae_run(
    tmp_path: Path, *overrides: str, run_dir: str = "run", python: tuple[str, ...] = (), timeout: int = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python [python...] -m uae.run`` with the tests' defaults (and ``env``), the run folder ``tmp_path/run_dir``."""
    args = [sys.executable, *python, "-m", "uae.run", f"hydra.run.dir={tmp_path / run_dir}", *_overrides(tmp_path, overrides)]
    return subprocess.run(args, cwd=ROOT, env={**os.environ, **ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout,
                          check=False)


def cli(module: str, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` (offline), for the checks of a command's own process: exit status, stderr."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=300, check=False)


def assert_cli_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A command stopped the way every UAE command stops on bad input: exit 2, one ``error:`` paragraph."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: ")
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)


def assert_nothing_left(tmp_path: Path, run_dir: str = "run") -> None:
    """A refused run wrote no results and left no partial cache (converted models aside)."""
    assert not (tmp_path / run_dir / "results.json").exists()
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "models" not in p.parts]
    assert leftovers == []


# --------------------------------------------------------------------------------------------------
# in this process


@dataclass
class Ran:
    """What ``run_stages`` gives back: the stages' state and what the run printed and logged."""

    state: dict[str, Any]
    output: str


@contextlib.contextmanager
def _captured():
    """Collect what a run prints and what the uae loggers say at INFO (Hydra's job logging, in a process)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
    logger = logging.getLogger("uae")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        sys.stdout.write(buffer.getvalue())  # shown by pytest when the test fails


def compose_run(tmp_path: Path, *overrides: str, run_dir: str = "run"):
    """The config ``uae_run`` would run, composed here, its run folder ``tmp_path/run_dir``."""
    from uae.core.config import compose

    return compose([*_overrides(tmp_path, overrides), f"paths.output_dir={tmp_path / run_dir}"])


def run_stages(tmp_path: Path, *overrides: str, run_dir: str = "run") -> Ran:
    """The stages of ``uae_run(tmp_path, *overrides, run_dir=...)`` run in this process; raises what they raise."""
    from uae.run import run

    cfg = compose_run(tmp_path, *overrides, run_dir=run_dir)
    (tmp_path / run_dir).mkdir(parents=True, exist_ok=True)  # Hydra makes it before the job
    environment = dict(os.environ)  # Lightning's seed_everything sets PL_GLOBAL_SEED, ...: not for later tests
    try:
        with _captured() as buffer:
            state = run(cfg)
    finally:
        os.environ.clear()
        os.environ.update(environment)
    return Ran(state, buffer.getvalue())


def refused_run(tmp_path: Path, *overrides: str, run_dir: str = "run") -> str:
    """The message of the UAEError a run of these overrides stops with (in this process)."""
    from uae.core.errors import UAEError

    with pytest.raises(UAEError) as error:
        run_stages(tmp_path, *overrides, run_dir=run_dir)
    return str(error.value)


def refused_config(*overrides: str) -> str:
    """The message with which the config check refuses these overrides, before any stage (no process)."""
    from uae.core.config import compose
    from uae.core.errors import UAEError
    from uae.core.schema import check

    cfg = compose(["+experiment=qasper_minilm", *overrides])
    with pytest.raises(UAEError) as error:
        check(cfg)
    return str(error.value)


def assert_main_error(code: int, captured: Any, *needles: str) -> None:
    """An entry point's ``main(argv)`` refused, as its process would: 2 and one ``error:`` paragraph on stderr."""
    assert code == 2, (code, captured.out[-2000:], captured.err[-2000:])
    assert "Traceback" not in captured.err and captured.err.startswith("error: "), captured.err
    for needle in needles:
        assert needle in captured.err, (needle, captured.err)

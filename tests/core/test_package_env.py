"""Importing the package keeps JAX from taking the GPU (uae/__init__.py): a run that shares a GPU with
others must not find 75% of it reserved by a library it never asked for."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.paths import ROOT


def _preallocate_after_import(env: dict[str, str]) -> str:
    code = "import os, uae; print(os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE', '<unset>'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_uae_turns_jax_preallocation_off_unless_the_user_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    assert _preallocate_after_import(env) == "false"
    assert _preallocate_after_import(env | {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}) == "true"

"""Counting the processes the tests start: with ``UAE_TEST_SUBPROCESS_LOG=FILE`` every ``subprocess.Popen``
of a test process appends a line (the test, the command's first words) to FILE (safe across xdist workers:
one short append per line, a JSON object each)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def counting_subprocesses(log: str, current_test: callable) -> Iterator[None]:
    real_init = subprocess.Popen.__init__

    def init(self, args, *a, **k):
        words = [str(w)[:80] for w in (args if isinstance(args, (list, tuple)) else [args])][:4]
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": current_test(), "command": words}) + "\n")
        real_init(self, args, *a, **k)

    subprocess.Popen.__init__ = init
    try:
        yield
    finally:
        subprocess.Popen.__init__ = real_init


def current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]

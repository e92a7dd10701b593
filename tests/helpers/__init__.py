"""Helpers shared by the tests (no test file imports another test file), and the ones test subprocesses
import (``python -m uae.run`` runs from the repository root, so ``tests.helpers.faults`` is importable)."""

"""Helpers that test subprocesses import (``python -m uae.run`` runs from the repository root)."""

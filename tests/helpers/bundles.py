"""Fake bundled packages for the model-build tests: a file cut into parts, each in a package of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from uae.models.registry import PackageFile


def split_into_packages(
    data: bytes, site: Path, rel: Callable[[int], str], distribution: Callable[[int], str], parts: int = 3
) -> tuple[PackageFile, ...]:
    """``data`` cut into ``parts`` byte ranges, part i written at ``site / rel(i)`` and named as a file of the
    distribution ``distribution(i)`` (put ``site`` on sys.path to make them importable)."""
    cuts = [len(data) * i // parts for i in range(parts + 1)]
    files = []
    for i in range(parts):
        (site / rel(i)).parent.mkdir(parents=True)
        (site / rel(i)).write_bytes(data[cuts[i] : cuts[i + 1]])
        files.append(PackageFile(distribution(i), rel(i)))
    return tuple(files)

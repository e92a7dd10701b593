"""Fingerprints, digests and atomic writes: the three rules every UAE cache follows.

A cache is keyed by a fingerprint of everything that made it, carries a digest of its content
(:mod:`uae.storage.digest`) that every read checks, and is only ever seen complete: writers fill a
temporary file in the same directory and rename it into place, so a run killed mid-write leaves the
old file (or none), never a truncated one that a later run would read. The temporary file stays
locked while its writer lives (:mod:`uae.storage.tmpfiles`), so the one a killed writer leaves can be removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uae.core.errors import UAEError
from uae.storage.tmpfiles import locked_tmp

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = locked_tmp(path)  # locked until this block ends: see uae.storage.tmpfiles
    except OSError as exc:
        raise UAEError(
            f"Cannot write to {path.parent} ({exc.strerror}). Make it writable or point the setting "
            "that chose it (paths.cache_dir, hydra.run.dir) elsewhere."
        ) from exc
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        raise UAEError(
            f"Writing {path} failed ({exc.strerror}); nothing was left in its place. Free disk space or "
            "make the folder writable, then run again."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")



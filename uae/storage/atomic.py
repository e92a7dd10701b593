"""Atomic writes: a file or folder UAE writes is only ever seen complete.

Every cache follows three rules: it is keyed by a fingerprint of everything that made it
(:mod:`uae.storage.fingerprint`), carries a digest of its content that every read checks
(:mod:`uae.storage.digest`), and is only ever seen complete (here): writers fill a temporary file or
folder in the same directory and rename it into place, so a run killed mid-write leaves the
old file (or none), never a truncated one that a later run would read. The temporary file stays
locked while its writer lives (:mod:`uae.storage.tmpfiles`), so the one a killed writer leaves can be removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
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


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; it becomes ``path`` only if the block succeeds.

    A folder (an encoder, an export, a converted model) is many files, and a reader must never see some
    of them: the new folder is filled under a hidden name, what was at ``path`` is moved aside, the new
    one renamed in, the old one deleted. A failure anywhere leaves ``path`` as it was; a killed writer
    leaves hidden ``.NAME.tmp-*`` / ``.NAME.old-*`` folders that :func:`remove_folder_leftovers` deletes.
    """
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise UAEError(
            f"Cannot write to {path.parent} ({exc.strerror}). Make it writable or choose another folder."
        ) from exc
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # a finished folder gets the usual mode
        old = None
        if path.exists() or path.is_symlink():
            old = _sibling(path, "old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            _remove(old)
    finally:
        _remove(tmp)


def remove_folder_leftovers(parent: Path, name: str) -> list[Path]:
    """Delete the hidden folders that killed :func:`atomic_folder` writers of ``parent/name`` left; the
    caller makes sure no writer of that name is alive (a lock, or a single process)."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-\d+-[0-9a-f]{{8}}$")
    removed = [child for child in parent.iterdir() if pattern.match(child.name)] if parent.is_dir() else []
    for child in removed:
        _remove(child)
    return removed


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")



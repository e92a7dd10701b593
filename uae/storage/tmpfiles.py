"""Temporary files of atomic writes: made so that a live writer's can be told from a dead one's.

Every atomic write (:func:`uae.storage.atomic.atomic_path`) fills ``.<name>.<random>.uae.tmp`` beside its target
and renames it into place. A process killed mid-write leaves that file behind. To remove such files
without ever touching one that is being written, the writer holds an exclusive ``flock`` on its
temporary file for as long as the file exists. The kernel drops the lock when the process dies, however
it dies (``kill -9`` included), so a temporary file whose lock can be taken has no writer left: that is
the whole test, with no PIDs (reused, or from another container) and no clock involved.

Files named the way earlier versions named them (``.<name>.<random>.tmp``, no lock) are removed only
when their lock is free and nobody has written to them for an hour: no write takes that long.

Standard library only, so that ``make clean`` can run it before any virtualenv exists::

    python3 -m uae.storage.tmpfiles [FOLDER ...]     # default: the current folder, recursively
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

SUFFIX = ".uae.tmp"
_LOCKED = re.compile(r"^\..+\.[a-z0-9_]{8}\.uae\.tmp$")
_LEGACY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # mkstemp's 8 random characters, before locks
LEGACY_AGE_S = 3600.0
_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__"}
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def locked_tmp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, and an open descriptor holding its lock (close it last).

    A cleaner may find the file between its creation and our lock, take the lock and delete it; the
    link count tells, and a fresh file is made. After that, nobody else can take the lock.
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=path.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno in _NO_LOCKS:  # a filesystem without flock: no cleaner can lock it either, so none removes it
                return fd, Path(name)
            os.close(fd)
            raise
        if os.fstat(fd).st_nlink:
            return fd, Path(name)
        os.close(fd)


def is_ours(name: str) -> bool:
    return bool(_LOCKED.match(name) or _LEGACY.match(name))


def remove_if_dead(path: Path, *, now: float | None = None) -> bool:
    """Delete ``path`` if no live process is writing it; True when it was deleted."""
    legacy = not _LOCKED.match(path.name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # gone already, or not ours to open
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it (or the filesystem has no locks: then nothing is removed)
        if legacy and (now or time.time()) - os.fstat(fd).st_mtime < LEGACY_AGE_S:
            return False
        os.unlink(path)  # while holding the lock: a writer that made it a moment ago sees the unlink
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale(folders: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Remove the temporary files of dead writers under ``folders`` (recursively); returns them."""
    removed: list[Path] = []
    now = time.time()
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            for name in files:
                if is_ours(name) and remove_if_dead(Path(root) / name, now=now):
                    removed.append(Path(root) / name)
    return removed


def main(argv: list[str] | None = None) -> int:
    folders = (sys.argv[1:] if argv is None else argv) or ["."]
    removed = remove_stale(folders)
    for path in removed:
        print(f"removed {path} (its writer is gone)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

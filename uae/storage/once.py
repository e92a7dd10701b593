"""Build a cache folder once, whoever asks first: a converted model, an ONNX export, a CTranslate2 model.

The three follow one protocol, here: use the folder when its own check accepts it; otherwise take a file
lock beside it (two processes starting together build once: the second waits, then finds it done), check
again, remove what a killed builder left, and fill the folder beside its final name so that it appears
complete or not at all (:func:`uae.storage.atomic.atomic_folder`). What "done" means (a marker, a digest
of the content) is the caller's ``ready``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from uae.core.errors import UAEError
from uae.storage.atomic import atomic_folder, remove_folder_leftovers

log = logging.getLogger(__name__)

T = TypeVar("T")


def build_once(
    target: Path,
    ready: Callable[[], T | None],
    build: Callable[[Path], str | None],
    *,
    what: str,
    error: type[UAEError] = UAEError,
) -> T | Path:
    """``ready()`` if it accepts ``target``; else ``target`` built by ``build(tmp)`` under a lock.

    ``build`` fills the empty folder it is given and returns the name of the file in it that the caller
    wants back (``target / name``), or None for the folder itself. ``what`` names the content in messages
    ("the ONNX export of ..."); an unwritable cache is refused as ``error`` in those words.
    """
    found = ready()
    if found is not None:
        return found
    from filelock import FileLock  # deferred: start-up speed

    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(parent / f".{target.name}.lock"))
        try:
            lock.acquire(timeout=1)
        except TimeoutError:
            log.info("Waiting for another process preparing %s in %s", what, target)
            lock.acquire()
    except OSError as exc:
        raise error(
            f"Cannot write {what} into {parent} ({exc.strerror or exc}). Make it writable or point "
            "paths.cache_dir (UAE_CACHE_DIR) elsewhere."
        ) from exc
    try:
        found = ready()  # another process finished it while we waited
        if found is not None:
            return found
        for leftover in remove_folder_leftovers(parent, target.name):  # we hold the lock: none is live
            log.info("Removed %s, left by an interrupted build", leftover)
        with atomic_folder(target) as tmp:
            name = build(tmp)
    finally:
        lock.release()
    return target if name is None else target / name

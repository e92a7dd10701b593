"""Tensor caches (``.pt``): saved with the fingerprint of what made them and a digest of their content,
so that a damaged or foreign cache is rebuilt or refused, never read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uae.core.errors import CacheMismatchError, DamagedFileError
from uae.storage.atomic import atomic_path
from uae.storage.digest import payload_digest

log = logging.getLogger(__name__)


def save_tensors(path: str | os.PathLike, key: str, payload: Mapping[str, Any]) -> None:
    """Save a dict of tensors and metadata, stamped with the fingerprint ``key`` and its content digest."""
    import torch  # deferred: start-up speed

    stored = {"fingerprint": key, **payload}
    with atomic_path(path) as tmp:
        torch.save({**stored, "digest": payload_digest(stored)}, tmp)


def read_tensors(path: str | os.PathLike) -> dict[str, Any]:
    """A file written by :func:`save_tensors`, its digest checked when it records one (older files do not);
    :class:`DamagedFileError` when it cannot be read or its content is not what was written."""
    import torch  # deferred: start-up speed

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a zoo of types for a damaged zip or pickle
        raise DamagedFileError(f"{path}: not a readable UAE cache ({type(exc).__name__}).") from exc
    if not isinstance(payload, dict):
        raise DamagedFileError(f"{path}: not a UAE cache (it holds a {type(payload).__name__}).")
    recorded = payload.get("digest")
    if recorded is not None and payload_digest({k: v for k, v in payload.items() if k != "digest"}) != recorded:
        raise DamagedFileError(f"{path}: its content does not match the digest written with it (damaged).")
    return payload


def load_tensors(path: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """Load a cache written by :func:`save_tensors`.

    ``None`` when there is nothing usable to load, so that the caller rebuilds it: no file, a damaged
    one, or one written before caches carried digests (its content cannot be checked). Each case but
    the first is logged with the path. A sound file made with other settings is an error: it is not
    this run's to overwrite.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = read_tensors(path)
    except DamagedFileError as exc:
        log.warning("%s It is a cache: rebuilding it.", exc)
        return None
    if "digest" not in payload:
        log.warning("%s was written before caches carried content digests, so it cannot be checked: rebuilding it.", path)
        return None
    if payload.get("fingerprint") != key:
        raise CacheMismatchError(
            f"{path} was made with other settings than this run (fingerprint mismatch). Delete it, or "
            "point paths.cache_dir elsewhere; the next run rebuilds it."
        )
    return payload

"""Fingerprints, digests and atomic writes: the three rules every UAE cache follows.

A cache is keyed by a fingerprint of everything that made it, carries a digest of its content
(:mod:`uae.integrity`) that every read checks, and is only ever seen complete: writers fill a
temporary file in the same directory and rename it into place, so a run killed mid-write leaves the
old file (or none), never a truncated one that a later run would read. The temporary file stays
locked while its writer lives (:mod:`uae.tmpfiles`), so the one a killed writer leaves can be removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from uae.errors import CacheMismatchError, DamagedFileError, UAEError
from uae.tmpfiles import locked_tmp

log = logging.getLogger(__name__)


def fingerprint(spec: Mapping[str, Any]) -> str:
    """Stable hash of a JSON-able description of what made a cache (key order does not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = locked_tmp(path)  # locked until this block ends: see uae.tmpfiles
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


# Written by save_pretrained but not part of what a model computes: leaving them out keeps caches valid
# across transformers releases and copies of a folder.
_VOLATILE_KEYS = ("transformers_version", "_name_or_path")
_MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".jinja", ".tiktoken")


def model_digest(folder: str | os.PathLike) -> str:
    """Content hash of a model folder (weights, config, tokenizer), for the keys of caches it makes.

    Weights are hashed in full: a fine-tuned checkpoint has the shape and often the first bytes of its
    base model. JSON files are hashed without version stamps; UAE's own provenance marker is skipped.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name == "uae_source.json":
            continue
        if not path.name.endswith(_MODEL_FILE_SUFFIXES):
            continue
        digest.update(path.name.encode() + b"\0")
        if path.suffix == ".json":
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                content = None
            if isinstance(content, dict):
                content = {k: v for k, v in content.items() if k not in _VOLATILE_KEYS}
                digest.update(json.dumps(content, sort_keys=True).encode())
                continue
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def save_tensors(path: str | os.PathLike, key: str, payload: Mapping[str, Any]) -> None:
    """Save a dict of tensors and metadata, stamped with the fingerprint ``key`` and its content digest."""
    import torch

    from uae.integrity import payload_digest

    stored = {"fingerprint": key, **payload}
    with atomic_path(path) as tmp:
        torch.save({**stored, "digest": payload_digest(stored)}, tmp)


def read_tensors(path: str | os.PathLike) -> dict[str, Any]:
    """A file written by :func:`save_tensors`, its digest checked when it records one (older files do not);
    :class:`DamagedFileError` when it cannot be read or its content is not what was written."""
    import torch

    from uae.integrity import payload_digest

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

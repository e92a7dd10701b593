"""Turning an installed bundled package into a loadable folder, once: ``cache_dir/models/<id>/``.

A package holding a ready HF folder is used in place. One holding a GGUF file, a split zip or a split
GGUF is converted by :mod:`uae.models.gguf`, :mod:`uae.models.split_zip` or :mod:`uae.models.split_gguf`
into a folder that is, like every UAE cache, only ever seen complete and checked on every read: it is
built under a file lock (two runs starting together convert once), filled beside its final name and
renamed into place (:func:`uae.storage.atomic.atomic_folder`), and stamped with ``uae_source.json``,
which records the package files it came from and a content digest of each file it holds. A folder
without a marker that matches today's packages and contents is converted again, so a killed or damaged
conversion is never loaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from uae.core.errors import ModelNotFoundError, UAEError
from uae.models.folders import DEFAULT_SETTING, first_line, folder_problem
from uae.models.gguf import convert_gguf
from uae.models.registry import BundledModel
from uae.models.split_gguf import convert_split_gguf
from uae.models.split_zip import unzip_split
from uae.storage.digest import file_digest
from uae.storage.once import build_once

__all__ = ["MARKER_NAME", "from_bundle"]

log = logging.getLogger(__name__)

MARKER_NAME = "uae_source.json"
MARKER_FORMAT = 1
#: UAE's own GGUF converters (uae/models/split_gguf.py and what it calls): bump when a change alters the
#: folder they write, so that folders converted before are converted again.
SPLIT_GGUF_CONVERTER = 1

#: A converter: fills the empty folder ``out`` (its last argument) from the package files.
Builder = Callable[[BundledModel, list[Path], Path], None]

#: The converter for each kind of bundled package that is not a ready folder.
_BUILDERS: dict[str, Builder] = {
    "gguf": convert_gguf,
    "split_zip": unzip_split,
    "split_gguf": convert_split_gguf,
}


def from_bundle(entry: BundledModel, sources: list[Path], cache_dir: Path) -> Path:
    """The loadable folder for an installed bundled model: the package's own folder, or the one
    converted from its files into ``cache_dir/models/`` (converted now if there is none yet)."""
    if entry.kind == "folder":
        folder = sources[0]
        problem = folder_problem(folder)
        if problem is not None:
            raise ModelNotFoundError(
                f"The bundled package {entry.requirements[0]} for {entry.model_id} is installed, but "
                f"{folder} {problem}. Reinstall it with `{entry.install_message} --force-reinstall`."
            )
        return folder
    return _materialize(entry, sources, cache_dir, _BUILDERS[entry.kind])


def _materialize(entry: BundledModel, sources: list[Path], cache_dir: Path, builder: Builder) -> Path:
    """``cache_dir/models/<id>/`` built once from ``sources``, atomically and under a file lock."""
    target = cache_dir / "models" / entry.folder_name
    expected = _expected_marker(entry, sources)
    return build_once(
        target,
        lambda: target if _accepted(target, expected) else None,
        lambda tmp: _build(entry, sources, tmp, target, expected, builder),
        what=f"the bundled {entry.model_id}",
        error=ModelNotFoundError,
    )


def _build(
    entry: BundledModel, sources: list[Path], tmp: Path, target: Path, expected: dict[str, object], builder: Builder
) -> None:
    """Run ``builder`` into ``tmp`` (the folder that becomes ``target`` once complete) and stamp it.

    Any failure leaves ``target`` as it was (:func:`uae.storage.once.build_once`); one that is not already
    a :class:`UAEError` becomes a :class:`ModelNotFoundError` saying what to do.
    """
    started = time.monotonic()
    try:
        builder(entry, sources, tmp)
        problem = folder_problem(tmp)
        if problem is not None:
            raise ModelNotFoundError(
                f"Preparing {entry.model_id} from {sources[0]} gave a folder that {problem}; the "
                f"bundled package may be damaged: reinstall it with `{entry.install_message} "
                "--force-reinstall`."
            )
        marker = dict(expected)
        marker["source_paths"] = [str(s) for s in sources]
        marker["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        marker["seconds"] = round(time.monotonic() - started, 1)
        marker["digests"] = _file_digests(tmp)
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    except UAEError:
        raise
    except Exception as exc:
        hint = (
            "Free disk space or point paths.cache_dir (UAE_CACHE_DIR) elsewhere"
            if isinstance(exc, OSError)
            else f"Reinstall it with `{entry.install_message} --force-reinstall`"
        )
        raise ModelNotFoundError(
            f"Preparing the bundled {entry.model_id} from {sources[0]} into {target} failed "
            f"({type(exc).__name__}: {first_line(exc)}); nothing was left in the cache. {hint}, "
            f"or set {DEFAULT_SETTING}= to a folder holding the model."
        ) from exc
    log.info("Prepared %s in %.1f s: %s", entry.model_id, time.monotonic() - started, target)


def _expected_marker(entry: BundledModel, sources: Sequence[Path]) -> dict[str, object]:
    """What a converted folder's marker must say to be reused: the format, the id, and the package
    files' names, sizes and times (a reinstalled package is converted again)."""
    expected: dict[str, object] = {
        "format": MARKER_FORMAT,
        "model_id": entry.model_id,
        "kind": entry.kind,
        "sources": _stat_sources(sources),
    }
    if entry.kind in ("gguf", "split_gguf"):  # the de-quantised folder is what this transformers wrote
        expected["transformers_version"] = _transformers_version()
    if entry.kind == "split_gguf":  # ... and what this gguf and this converter of ours made of the file
        expected |= {
            "gguf_version": _version("gguf"),
            "converter": SPLIT_GGUF_CONVERTER,
            "sha256": entry.sha256,
        }
    return expected


def _stat_sources(sources: Sequence[Path]) -> list[dict[str, object]]:
    out = []
    for src in sources:
        st = src.stat()
        out.append({"name": src.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def _transformers_version() -> str:
    return _version("transformers")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _accepted(target: Path, expected: dict[str, object]) -> bool:
    """A converted folder counts only with a marker matching today's sources, and its files: all there,
    and each with the content digest the marker recorded when the folder was made (else it is converted
    again, with a warning naming what differs; a folder from before digests is converted once more)."""
    try:
        marker = json.loads((target / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or any(marker.get(k) != v for k, v in expected.items()):
        return False
    if folder_problem(target) is not None:
        return False
    recorded = marker.get("digests")
    if not isinstance(recorded, dict):
        log.warning(
            "%s was converted before model caches carried content digests: converting it again", target
        )
        return False
    actual = _file_digests(target)
    if actual != recorded:
        differ = sorted(
            name for name in set(recorded) | set(actual) if recorded.get(name) != actual.get(name)
        )
        log.warning(
            "%s: %s do not match the digests written with them (damaged): converting it again",
            target,
            ", ".join(differ),
        )
        return False
    return True


def _file_digests(folder: Path) -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MARKER_NAME}

"""Passage embeddings in shards: memory-mapped ``.npy`` files in one folder, each recorded with its digest.

A corpus of millions of passages takes hours to encode and more float32 than a machine's memory, so its
embeddings are written ``shard_size`` rows at a time (float32, or float16 on request: half the disk and page
cache) and read back memory-mapped (``np.load(mmap_mode="r")``): nothing holds the whole array unless asked
(:meth:`ShardSet.to_array`), and a FAISS index fills from them shard by shard
(:func:`uae.retrieval.ann.index_from_shards`).

The folder follows the cache rules of :mod:`uae.storage`. Its manifest (``manifest.json``, with its own
digest) records what made the shards (the encoder's passage-side fingerprint, digests of the passage ids
and texts, the shard size and dtype) and, per finished shard, its file, row range and content digest. A
shard is written to a temporary file, renamed into place, and only then recorded; the manifest is rewritten
atomically under a file lock, so the processes of one encoding (workers, DDP ranks) record side by side. A
kill at any point leaves recorded shards that are complete, shard files not yet recorded (encoded again)
and temporary files of dead writers (removed): the next encoding keeps every recorded shard whose digest
still matches and encodes the rest. Reading checks each shard's digest first and refuses a damaged one.

What encodes the shards (in this process, worker processes, Lightning's predict loop) is
:mod:`uae.retrieval.shard_encoding`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from uae.core.choices import SHARD_DTYPES
from uae.core.errors import CacheMismatchError, DamagedFileError, UAEError
from uae.storage.atomic import atomic_path, write_json
from uae.storage.digest import file_digest, json_digest
from uae.storage.tmpfiles import is_ours, remove_stale

log = logging.getLogger(__name__)

FORMAT = "uae-shards/1"
MANIFEST = "manifest.json"
IDS = "passage_ids.txt"
LOCK = ".manifest.lock"
_SHARD_FILE = re.compile(r"^shard-\d{5,}\.npy$")
_REDO = "Run the same encoding again: it starts the folder anew (every shard is encoded again)."


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the ids joined by newlines: the passage-id digest :class:`uae.retrieval.dense.DenseRetriever` keys on too."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of the corpus, the ``index``-th shard."""

    index: int
    start: int
    stop: int

    @property
    def file(self) -> str:
        return f"shard-{self.index:05d}.npy"


@dataclass(frozen=True)
class ShardSpec:
    """What a folder's shards are made from and how they are cut: the head of its manifest."""

    encoder: str  # fingerprint of the encoder's passage side (weights, pooling, instruction, max length, runtime)
    passages: str  # ids_digest of the passage ids
    texts: str  # strings_digest of the passage texts
    count: int
    dimension: int
    shard_size: int
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in SHARD_DTYPES:
            raise UAEError(f"dtype={self.dtype!r}: shards are stored as {' or '.join(SHARD_DTYPES)}.")
        if int(self.shard_size) < 1:
            raise UAEError(f"shard_size={self.shard_size}: must be a positive number of passages per shard.")

    @property
    def shards(self) -> list[Shard]:
        """Every shard of the corpus, in row order (the last one may be shorter)."""
        return [Shard(i, start, min(start + self.shard_size, self.count))
                for i, start in enumerate(range(0, self.count, self.shard_size))]

    def differences(self, other: ShardSpec) -> list[str]:
        """The fields in which ``other`` differs from this spec, in words, for a refusal."""
        return [f"{f.name} {getattr(other, f.name)!r:.40} (here: {getattr(self, f.name)!r:.40})"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def _spec_of(manifest: Mapping[str, Any], path: Path) -> ShardSpec:
    try:
        return ShardSpec(**{f.name: manifest[f.name] for f in fields(ShardSpec)})
    except (KeyError, TypeError) as exc:
        raise DamagedFileError(f"{path}: not a manifest of embedding shards (missing {exc}). {_REDO}") from None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, its digest checked; None when there is none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise DamagedFileError(f"{path}: not readable JSON ({exc}). {_REDO}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DamagedFileError(f"{path}: not a manifest of embedding shards (format {FORMAT}). {_REDO}")
    recorded = manifest.pop("digest", None)
    if recorded != json_digest(manifest):
        raise DamagedFileError(f"{path}: its content does not match the digest written with it (damaged or edited). {_REDO}")
    return manifest


def _write_manifest(folder: Path, spec: ShardSpec, entries: Mapping[int, Mapping[str, Any]]) -> None:
    manifest = {"format": FORMAT, **asdict(spec), "shards": [dict(entries[i]) for i in sorted(entries)]}
    write_json(folder / MANIFEST, {**manifest, "digest": json_digest(manifest)})


class ShardFolder:
    """The writing side: a folder prepared for one spec, its missing shards, and how a shard is written and recorded.

    Small and picklable (a path and a spec), so worker processes and DDP ranks each hold one.
    """

    def __init__(self, folder: Path, spec: ShardSpec) -> None:
        self.folder = folder
        self.spec = spec

    @classmethod
    def prepare(cls, folder: str | Path, spec: ShardSpec, ids: Sequence[str]) -> ShardFolder:
        """``folder`` ready to encode into: made when new; when it holds shards of the same spec, the recorded ones
        whose digest still matches are kept and the others forgotten (they are encoded again). A folder of another
        spec is refused (CacheMismatchError, with the fields that differ), and so is one holding other files."""
        self = cls(Path(folder), spec)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UAEError(f"Cannot make the shard folder {folder} ({exc.strerror}); choose a writable one.") from exc
        with self._lock():
            remove_stale([self.folder])  # temporary files of killed writers (a live writer's stay)
            try:
                manifest = read_manifest(self.folder)
                found = None if manifest is None else _spec_of(manifest, self.folder / MANIFEST)
            except DamagedFileError as exc:
                log.warning("%s", exc)
                manifest = found = None
            if manifest is None or found is None:
                self._refuse_foreign_files()
                entries: dict[int, dict[str, Any]] = {}
            else:
                if found != spec:
                    raise CacheMismatchError(
                        f"{self.folder} holds embedding shards made otherwise than this encoding asks "
                        f"({'; '.join(spec.differences(found))}). Delete the folder, or encode into another one."
                    )
                entries = self._sound_entries(manifest["shards"])
            ids_path = self.folder / IDS
            if not ids_path.is_file() or ids_digest(ids_path.read_text(encoding="utf-8").split("\n")) != spec.passages:
                with atomic_path(ids_path) as tmp:
                    tmp.write_text("\n".join(ids), encoding="utf-8")
            _write_manifest(self.folder, spec, entries)
        return self

    def _refuse_foreign_files(self) -> None:
        """A new shard set goes into an empty folder (or one an interrupted first start left): never among files of
        someone else's, which a later ``rm -r`` of the shard folder would take with it."""
        ours = {MANIFEST, IDS, LOCK}
        foreign = sorted(p.name for p in self.folder.iterdir()
                         if p.name not in ours and not _SHARD_FILE.match(p.name) and not is_ours(p.name))
        if foreign:
            raise UAEError(f"{self.folder} holds files that are not embedding shards ({', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}); give an empty or new folder for the shards.")

    def _sound_entries(self, recorded: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
        """The recorded shards that are what the manifest says: the right rows, the file there, its digest matching."""
        expected = {s.index: s for s in self.spec.shards}
        sound: dict[int, dict[str, Any]] = {}
        for entry in recorded:
            shard = expected.get(entry.get("index", -1))
            path = self.folder / str(entry.get("file"))
            if shard is None or entry.get("file") != shard.file or (entry.get("start"), entry.get("stop")) != (shard.start, shard.stop):
                log.warning("%s: shard entry %s does not fit the shard size; encoding it again.", self.folder / MANIFEST, entry)
            elif not path.is_file():
                log.warning("%s is recorded but missing; encoding it again.", path)
            elif file_digest(path) != entry.get("digest"):
                log.warning("%s does not match the digest recorded for it (damaged or changed); encoding it again.", path)
            else:
                sound[shard.index] = dict(entry)
        return sound

    def missing(self) -> list[Shard]:
        """The shards the manifest does not record (yet), in row order."""
        manifest = read_manifest(self.folder) or {"shards": []}
        done = {entry["index"] for entry in manifest["shards"]}
        return [s for s in self.spec.shards if s.index not in done]

    def write(self, shard: Shard, embeddings: np.ndarray) -> dict[str, Any]:
        """Write one shard's embeddings (cast to the spec's dtype) atomically; its manifest entry, for :meth:`record`."""
        array = np.ascontiguousarray(embeddings, dtype=self.spec.dtype)
        if array.shape != (shard.stop - shard.start, self.spec.dimension):
            raise ValueError(f"shard {shard.index}: embeddings of shape {array.shape}, expected "
                             f"{(shard.stop - shard.start, self.spec.dimension)}")
        if not np.isfinite(array).all():
            raise UAEError(f"shard {shard.index} (rows {shard.start}:{shard.stop}) holds embeddings that are not finite "
                           f"(NaN or inf{', too large for float16' if self.spec.dtype == 'float16' else ''}); nothing was written.")
        with atomic_path(self.folder / shard.file) as tmp:
            with open(tmp, "wb") as handle:  # a handle: np.save would add ".npy" to the temporary name
                np.save(handle, array, allow_pickle=False)
            digest = file_digest(tmp)
        return {"index": shard.index, "file": shard.file, "start": shard.start, "stop": shard.stop, "digest": digest}

    def record(self, entry: Mapping[str, Any]) -> None:
        """Add a written shard to the manifest (re-read under the lock, so concurrent writers' entries are kept)."""
        with self._lock():
            manifest = read_manifest(self.folder)
            if manifest is None or _spec_of(manifest, self.folder / MANIFEST) != self.spec:
                raise CacheMismatchError(f"{self.folder / MANIFEST} was removed or replaced while shards were being encoded "
                                         "into it; encode again into a folder nothing else writes to.")
            entries = {e["index"]: e for e in manifest["shards"]}
            entries[int(entry["index"])] = dict(entry)
            _write_manifest(self.folder, self.spec, entries)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        from filelock import FileLock  # deferred: start-up speed

        with FileLock(str(self.folder / LOCK)):
            yield


class ShardSet:
    """The reading side: a complete folder of shards, memory-mapped, searchable by row.

    ``shards[rows]`` (any integer array) gathers rows as float32, so it stands in for the array of vectors where
    :func:`uae.retrieval.ann.search` re-scores exactly.
    """

    def __init__(self, folder: Path, spec: ShardSpec, arrays: list[np.ndarray]) -> None:
        self.folder = folder
        self.spec = spec
        self.arrays = arrays
        self.encoded: tuple[int, ...] = ()  # the shards the call that returned this set encoded (the others were kept)

    @classmethod
    def load(cls, folder: str | Path, *, verify: bool = True, spec: ShardSpec | None = None) -> ShardSet:
        """Map every shard of ``folder``. ``verify`` (default) checks each shard's digest first, which reads it
        once; ``verify=False`` trusts the files (only for a folder checked or written just now, as the encoders do).
        ``spec``: what the shards must have been made from (another encoder or corpus is refused).
        A damaged, missing or unfinished shard is a :class:`UAEError` that names it and what to do."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest is None:
            raise UAEError(f"{folder} has no {MANIFEST}: it is not a folder of embedding shards, or their encoding never "
                           "started. Encode into it first (python -m uae.encode MODEL --passages FILE --to FOLDER).")
        found = _spec_of(manifest, folder / MANIFEST)
        if spec is not None and found != spec:
            raise CacheMismatchError(f"{folder} holds embedding shards made otherwise than asked "
                                     f"({'; '.join(spec.differences(found))}). Encode the corpus with this encoder into another folder.")
        entries = {e["index"]: e for e in manifest["shards"]}
        if len(entries) < len(found.shards):
            raise UAEError(f"{folder}: {len(entries)} of {len(found.shards)} shards are encoded (the encoding stopped before "
                           "the end). Run the same encoding again: it keeps these and encodes the rest.")
        arrays = [_map(folder, shard, entries[shard.index], found, verify) for shard in found.shards]
        return cls(folder, found, arrays)

    def verify(self) -> None:
        """Check every shard's digest now (after a ``load(verify=False)``)."""
        ShardSet.load(self.folder, verify=True, spec=self.spec)

    def __len__(self) -> int:
        return self.spec.count

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, shard as float32) in row order: one shard in memory at a time."""
        for shard, array in zip(self.spec.shards, self.arrays, strict=True):
            yield shard.start, np.asarray(array, dtype=np.float32)

    def __getitem__(self, rows: Any) -> np.ndarray:
        """The vectors of ``rows`` (an integer or an array of any shape of them) as float32, read from their shards."""
        index = np.asarray(rows, dtype=np.int64)
        flat = index.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.spec.count):
            raise IndexError(f"rows outside 0..{self.spec.count - 1}")
        out = np.empty((flat.size, self.spec.dimension), dtype=np.float32)
        which = flat // self.spec.shard_size
        for shard in np.unique(which):
            picked = which == shard
            out[picked] = self.arrays[shard][flat[picked] - shard * self.spec.shard_size]
        return out.reshape(*index.shape, self.spec.dimension)

    def to_array(self, dtype: str = "float32") -> np.ndarray:
        """Every embedding in one in-memory array (what an exact in-memory index needs; mind the size)."""
        out = np.empty((self.spec.count, self.spec.dimension), dtype=dtype)
        for start, array in zip((s.start for s in self.spec.shards), self.arrays, strict=True):
            out[start : start + len(array)] = array
        return out

    def ids(self) -> list[str]:
        """The passage ids, row by row (checked against the manifest's digest)."""
        path = self.folder / IDS
        ids = path.read_text(encoding="utf-8").split("\n") if path.is_file() else None
        if ids is None or ids_digest(ids) != self.spec.passages:
            raise DamagedFileError(f"{path} is missing or does not hold the passage ids the manifest records. Run the "
                                   "same encoding again: it writes the ids anew and keeps the shards.")
        return ids


def _map(folder: Path, shard: Shard, entry: Mapping[str, Any], spec: ShardSpec, verify: bool) -> np.ndarray:
    """One shard memory-mapped, its digest (when ``verify``), shape and dtype checked."""
    path = folder / shard.file
    fix = "Delete it and run the same encoding again: only this shard is encoded again."
    if not path.is_file():
        raise DamagedFileError(f"{path} is recorded in {MANIFEST} but missing. Run the same encoding again: only this shard is encoded again.")
    if verify and file_digest(path) != entry.get("digest"):
        raise DamagedFileError(f"{path}: its content does not match the digest {MANIFEST} records for it (damaged or "
                               f"changed after it was written). {fix}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DamagedFileError(f"{path}: not a readable .npy file ({exc}). {fix}") from None
    if array.shape != (shard.stop - shard.start, spec.dimension) or array.dtype != np.dtype(spec.dtype):
        raise DamagedFileError(f"{path} holds {array.dtype} {array.shape}, not the {spec.dtype} "
                               f"{(shard.stop - shard.start, spec.dimension)} its manifest says. {fix}")
    return array

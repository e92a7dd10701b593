"""Content digests: every cache and table carries a hash of its bytes, checked each time it is read.

A fingerprint says which settings made a file; it says nothing about whether the bytes are still the
ones written. A bad block, a copy cut short or a stray edit leaves the fingerprint intact and the
content wrong, and nothing downstream can tell a damaged utility from a surprising one. So each file
UAE writes also records a digest of its content, and every reader recomputes it first:

- tensor caches (``.pt``): a digest of every tensor's dtype, shape and bytes and of the other
  values, stored in the saved dict next to them (:func:`payload_digest`);
- parquet files (utility tables and chunks): a digest of every byte before the parquet footer (all
  row groups: data, dictionaries, page headers), stored in the footer's key-value metadata, which
  cannot hold a hash of itself (:func:`write_parquet`, :func:`check_parquet`);
- JSON caches: a digest of the canonical JSON of their content (:func:`json_digest`);
- models converted into ``paths.cache_dir/models``: a digest of each file, in the folder's marker
  (``uae_source.json``; :func:`file_digest`).

The hash is xxh3-128 (xxhash): ~10 GB/s on one core, so checking costs a fraction of reading the file.
It guards against damage, not against someone forging a file (use a cryptographic hash for that).

``python -m uae.table.integrity check FILE...`` checks files by hand; ``stamp TABLE...`` gives a utility table
written before digests existed its digest, after the consistency check that stands in for one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import xxhash

from uae.core.errors import DamagedFileError
from uae.storage.atomic import atomic_path

ALGORITHM = "xxh3_128"
DIGEST_KEY = b"uae_digest"  # parquet footer metadata
_BLOCK = 1 << 22
_PARQUET_MAGIC = b"PAR1"


def _hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


def _tag(hexdigest: str) -> str:
    """Digests are stored with their algorithm's name, so that another one can be introduced later."""
    return f"{ALGORITHM}:{hexdigest}"


def payload_digest(payload: Mapping[str, Any]) -> str:
    """Digest of a dict of tensors and JSON-able values (what :func:`uae.storage.tensors.save_tensors` stores)."""
    import torch  # deferred: start-up speed

    digest = _hasher()
    for key in sorted(payload):
        value = payload[key]
        digest.update(key.encode() + b"\0")
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"tensor {value.dtype} {tuple(value.shape)}\0".encode())
            if flat.numel():
                digest.update(flat.view(torch.uint8).numpy().data)
        else:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode() + b"\0")
    return _tag(digest.hexdigest())


def file_digest(path: str | os.PathLike) -> str:
    """Digest of a whole file's bytes (the files of a converted model folder)."""
    digest = _hasher()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return _tag(digest.hexdigest())


def json_digest(value: Any) -> str:
    """Digest of a JSON-able value, independent of key order and formatting."""
    return _tag(xxhash.xxh3_128_hexdigest(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()))


def strings_digest(values: Iterable[str]) -> str:
    """Digest of a sequence of strings (a corpus's passage texts), each preceded by its length so that no two
    different sequences give the same bytes; streamed, so the texts are never joined into one string."""
    digest = _hasher()
    for value in values:
        data = value.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little") + data)
    return _tag(digest.hexdigest())


# ---------------------------------------------------------------------------------------------------
# parquet


def parquet_data_digest(path: str | os.PathLike) -> str:
    """Digest of every byte of a parquet file before its footer; :class:`DamagedFileError` if the file
    does not end the way a parquet file does (cut short, overwritten, not parquet)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 12:
                raise DamagedFileError(f"{path}: {size} bytes, too short to be a parquet file (cut short?).")
            handle.seek(size - 8)
            tail = handle.read(8)
            footer = int.from_bytes(tail[:4], "little")
            end = size - 8 - footer
            if tail[4:] != _PARQUET_MAGIC or end < 4:
                raise DamagedFileError(f"{path}: does not end like a parquet file (cut short or overwritten).")
            handle.seek(0)
            digest, left = _hasher(), end
            while left:
                block = handle.read(min(_BLOCK, left))
                if not block:
                    raise DamagedFileError(f"{path}: shorter than its footer says (cut short?).")
                digest.update(block)
                left -= len(block)
    except OSError as exc:
        raise DamagedFileError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    return _tag(digest.hexdigest())


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The digest a parquet file's footer records, None when it records none (written before digests)."""
    import pyarrow as pa  # deferred: start-up speed
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(os.fspath(path)).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise DamagedFileError(f"{path}: its parquet footer cannot be read ({type(exc).__name__}: {exc}).") from exc
    value = metadata.get(DIGEST_KEY)
    return None if value is None else value.decode(errors="replace")


def check_parquet(path: str | os.PathLike) -> bool:
    """True when the file's content matches the digest in its footer; False when it records none;
    :class:`DamagedFileError` naming the file when it is damaged or unreadable."""
    recorded = recorded_digest(path)
    if recorded is None:
        return False
    actual = parquet_data_digest(path)
    if actual != recorded:
        raise DamagedFileError(
            f"{path}: its content does not match the digest written with it (recorded {recorded}, now "
            f"{actual}): the file was damaged or changed after it was written."
        )
    return True


def write_parquet(table: Any, path: str | os.PathLike, **options: Any) -> None:
    """Write ``table`` atomically with the digest of its data in the footer metadata.

    The digest covers bytes the writer has not produced yet when it writes the footer, so the table is
    encoded twice: once to memory to hash, then to the file with the digest added. Encoding is
    deterministic, and the file's digest is recomputed before it is renamed into place, so a writer
    that ever encoded differently would fail here, never leave a file that reads as damaged.
    """
    import pyarrow as pa  # deferred: start-up speed
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    digest = _buffer_data_digest(sink.getvalue().to_pybytes())
    metadata = {**(table.schema.metadata or {}), DIGEST_KEY: digest.encode()}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp, **options)
        if parquet_data_digest(tmp) != digest:
            raise RuntimeError(f"pyarrow encoded {path} differently twice; its digest would not match.")


def _buffer_data_digest(data: bytes) -> str:
    footer = int.from_bytes(data[-8:-4], "little")
    return _tag(xxhash.xxh3_128_hexdigest(data[: len(data) - 8 - footer]))

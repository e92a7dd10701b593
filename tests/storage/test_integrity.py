"""Issue 17: caches that cannot be silently wrong, and the temporary files of dead writers.

Each damage case is made on real files written by the code: a damaged tensor cache is reported with
its path and not used, a parquet file's digest covers every byte before its footer, and the temporary
files of killed writers are removed, never a live writer's. The same damage met by a run is checked in
tests/stages/test_integrity.py, tables in tests/table/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tests.helpers.damage import killed_writer, tensor_bytes, writer, xor_byte, zero
from tests.helpers.paths import COMMITTED
from uae.core.errors import CacheMismatchError, DamagedFileError
from uae.storage.digest import check_parquet, write_parquet
from uae.storage.tensors import load_tensors, save_tensors
from uae.storage.tmpfiles import locked_tmp, remove_stale

# --------------------------------------------------------------------------------------------------
# tensor caches


def test_tensor_cache_with_damaged_content_is_reported_and_not_used(tmp_path: Path, caplog) -> None:
    path = tmp_path / "emb.pt"
    embeddings = torch.randn(50, 16)
    save_tensors(path, "key", {"embeddings": embeddings, "passage_ids": [f"p{i}" for i in range(50)]})
    assert torch.equal(load_tensors(path, "key")["embeddings"], embeddings)
    with pytest.raises(CacheMismatchError, match="other settings"):  # sound, made otherwise: not ours to replace
        load_tensors(path, "other-key")

    start, size = tensor_bytes(path)
    zero(path, start + size // 4, size // 2)
    assert torch.load(path, weights_only=True)["embeddings"].shape == (50, 16)  # torch reads it without a word
    assert load_tensors(path, "key") is None
    assert str(path) in caplog.text and "does not match the digest" in caplog.text

    path.write_bytes(b"PK\x03\x04 not a zip any more")
    assert load_tensors(path, "key") is None and "not a readable UAE cache" in caplog.text

    torch.save({"fingerprint": "key", "embeddings": embeddings}, path)  # a cache from before digests
    assert load_tensors(path, "key") is None and "written before caches carried content digests" in caplog.text


def test_cache_refuses_other_fingerprint(tmp_path: Path) -> None:
    save_tensors(tmp_path / "c.pt", "key-a", {"x": torch.ones(2)})
    assert torch.equal(load_tensors(tmp_path / "c.pt", "key-a")["x"], torch.ones(2))
    with pytest.raises(CacheMismatchError, match="fingerprint mismatch"):
        load_tensors(tmp_path / "c.pt", "key-b")
    assert load_tensors(tmp_path / "absent.pt", "key-a") is None


# --------------------------------------------------------------------------------------------------
# parquet: tables and utility chunks


def test_parquet_digest_covers_every_byte_before_the_footer(tmp_path: Path) -> None:
    table = pq.read_table(COMMITTED[0])
    path = tmp_path / "t.parquet"
    write_parquet(table, path, compression="zstd")
    assert check_parquet(path) and pq.read_table(path).equals(table)
    assert pq.read_schema(path).metadata[b"uae_fingerprint"] == table.schema.metadata[b"uae_fingerprint"]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
    footer_start = path.stat().st_size - 8 - int.from_bytes(path.read_bytes()[-8:-4], "little")
    pristine = path.read_bytes()
    for offset in (0, 4, footer_start // 3, footer_start // 2, footer_start - 1):
        xor_byte(path, offset, 0x40)
        with pytest.raises(DamagedFileError, match="does not match the digest"):
            check_parquet(path)
        path.write_bytes(pristine)
    path.write_bytes(pristine[: len(pristine) // 2])
    with pytest.raises(DamagedFileError, match=str(path)):
        check_parquet(path)


# --------------------------------------------------------------------------------------------------
# temporary files of dead writers


def test_dead_writers_tmp_files_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead = killed_writer(tmp_path / "sub" / "a.parquet")
    live = writer(tmp_path / "b.json", "time.sleep(120)")
    try:
        (live_tmp,) = tmp_path.glob(".b.json.*.tmp")
        old_style = tmp_path / ".c.json.abcd1234.tmp"  # named as before locks: judged by age
        old_style.write_text("x")
        os.utime(old_style, (time.time() - 7200, time.time() - 7200))
        fresh_old_style = tmp_path / ".d.json.abcd1234.tmp"
        fresh_old_style.write_text("x")
        other = tmp_path / ".notes.tmp"  # not a name UAE makes
        other.write_text("mine")
        removed = remove_stale([tmp_path])
        assert sorted(removed) == sorted([dead, old_style])
        assert live_tmp.exists() and fresh_old_style.exists() and other.exists()
        assert live.poll() is None
    finally:
        live.kill()
        live.wait()


def test_a_writer_whose_new_tmp_was_removed_makes_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cleaner can find a temporary file between its creation and its writer's lock; the writer notices."""
    import fcntl

    from uae.storage import tmpfiles

    real_flock, removed = fcntl.flock, []

    def cleaner_gets_there_first(fd: int, operation: int) -> None:
        if not removed:
            for path in tmp_path.glob(".t.json.*.uae.tmp"):
                path.unlink()
                removed.append(path)
        real_flock(fd, operation)

    monkeypatch.setattr(tmpfiles.fcntl, "flock", cleaner_gets_there_first)
    fd, path = locked_tmp(tmp_path / "t.json")
    try:
        assert len(removed) == 1 and path != removed[0] and path.exists()
        assert [p.name for p in tmp_path.iterdir()] == [path.name]
    finally:
        os.close(fd)

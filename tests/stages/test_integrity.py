"""Issue 17 through the stages (in this process, tiny models on the tiny fixture): a damaged embedding cache
is reported and rebuilt, a damaged utility table is refused with the command that replaces it,
``utility.overwrite=true`` replaces a table that cannot be read, a damaged utility chunk is scored again;
and a run removes the temporary files that killed writers left where it writes (never a live writer's)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tests.helpers.damage import killed_writer, tensor_bytes, utility_exponent_byte, xor_byte, zero
from tests.helpers.runs import refused_run, run_stages, tiny_model, uae_run
from tests.helpers.shared import copy_of
from uae.storage.digest import check_parquet
from uae.storage.tensors import load_tensors
from uae.storage.tmpfiles import locked_tmp


def test_zeroed_embedding_cache_is_rebuilt_and_the_next_run_removes_dead_writers_tmp(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path
) -> None:
    """Zeroing the passage embeddings inside a real cache file gave exit 0, 'from cache' and other rankings."""
    args = [f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir)]
    run_stages(tmp_path, *args)
    (cache,) = (tmp_path / "cache" / "embeddings").glob("*.pt")
    start, size = tensor_bytes(cache)
    zero(cache, start, min(size, 4096))

    folder = cache.parent
    dead = killed_writer(folder / "x.json")  # a writer killed mid-write left its temporary file
    live_fd, live = locked_tmp(folder / "y.json")  # this process is writing y.json right now
    try:
        log = run_stages(tmp_path, *args, run_dir="run2").output
        assert "passage embeddings from cache" not in log
        assert str(cache) in log and "does not match the digest" in log and "rebuilding" in log
        rankings = json.loads((tmp_path / "run" / "rankings.json").read_text())
        assert json.loads((tmp_path / "run2" / "rankings.json").read_text()) == rankings
        assert load_tensors(cache, torch.load(cache, weights_only=True)["fingerprint"]) is not None  # rebuilt, sound
        assert not dead.exists() and f"removed {dead}" in log
        assert live.exists()  # never a live writer's
    finally:
        os.close(live_fd)
        live.unlink()


def _copy(tiny_tables, tmp_path: Path) -> tuple[list[str], Path, object]:
    """A private copy of the session's utility stage (cache and table): its overrides, table and rows."""
    copy_of(tiny_tables.folder, tmp_path, "cache", "tables")
    table = tmp_path / "tables" / "dev.parquet"
    return [*tiny_tables.args, f"utility.table_dir={tmp_path / 'tables'}"], table, pq.read_table(table)


@pytest.mark.slow  # the same case as tests/table/test_build.py test_flipped_byte_in_a_utility_chunk_is_scored_again, through the CLI
def test_cli_flipped_chunk_is_scored_again_not_merged(tiny_tables, tmp_path: Path) -> None:
    args, table, clean = _copy(tiny_tables, tmp_path)
    (chunk,) = (tmp_path / "cache" / "utility").glob("dev-*/chunk-00000.parquet")
    xor_byte(chunk, utility_exponent_byte(chunk), 0x10)
    table.unlink()
    done = uae_run(tmp_path, *args, "stages=[utility]")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert str(chunk) in log and "scoring that chunk again" in log and "1 already done" in log
    assert pq.read_table(table).equals(clean)


def test_damaged_table_is_refused_with_the_command_that_replaces_it(tiny_tables, tmp_path: Path) -> None:
    """A table whose utility changed was trained on without a warning."""
    args, table, _ = _copy(tiny_tables, tmp_path)
    xor_byte(table, utility_exponent_byte(table), 0x10)
    message = refused_run(tmp_path, *args, "stages=[fit]", "logger=none")
    assert str(table) in message and "utility.overwrite=true" in message and "git restore" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_overwrite_replaces_a_table_that_cannot_be_read(tiny_tables, tmp_path: Path) -> None:
    """A truncated table stopped even utility.overwrite=true, with advice to run the command that failed."""
    args, table, clean = _copy(tiny_tables, tmp_path)
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    replaced = run_stages(tmp_path, *args, "stages=[utility]", "utility.overwrite=true", run_dir="replaced")
    assert "this run replaces it" in replaced.output
    assert pq.read_table(table).equals(clean) and check_parquet(table)

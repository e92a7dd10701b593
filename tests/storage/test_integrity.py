"""Issue 17: caches and tables that cannot be silently wrong, and the temporary files of dead writers.

Each damage case is made on real files written by the code (the CLI with tiny models, or the utility
cache with a scorer computable by hand): a damaged cache is reported with its path and rebuilt, a
damaged table is refused with the command that replaces it, and ``utility.overwrite=true`` replaces a
table that cannot be read.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from test_run_cli import tiny_model, uae_run

from uae.core.errors import CacheMismatchError, DamagedFileError
from uae.storage.digest import check_parquet, write_parquet
from uae.storage.tensors import load_tensors, save_tensors
from uae.storage.tmpfiles import locked_tmp, remove_stale
from uae.table.integrity import main as integrity_main

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "experiments").glob("*/utilities/*.parquet"))


def xor_byte(path: Path, offset: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def zero(path: Path, start: int, size: int) -> None:
    data = bytearray(path.read_bytes())
    data[start : start + size] = bytes(size)
    path.write_bytes(bytes(data))


def tensor_bytes(path: Path) -> tuple[int, int]:
    """Where the largest tensor's bytes lie inside a torch.save zip: (offset, size)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    header = path.read_bytes()[info.header_offset : info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    return start, info.file_size


def utility_exponent_byte(path: Path) -> int:
    """A byte of the last utility value a parquet file stores: the lowest exponent bit sits in it (0x10),
    so flipping it doubles or halves that utility, a finite number that no reader can tell is wrong."""
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(0).column(meta.schema.names.index("utility"))
    end = column.data_page_offset if column.has_dictionary_page else column.data_page_offset + column.total_compressed_size
    return end - 2  # little-endian doubles: the last byte is sign + 7 exponent bits, this one 4 exponent + 4 mantissa


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


def test_zeroed_embedding_cache_is_rebuilt_and_the_next_run_removes_dead_writers_tmp(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path
) -> None:
    """Zeroing the passage embeddings inside a real cache file gave exit 0, 'from cache' and other rankings."""
    args = [f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir)]
    clean = uae_run(tmp_path, *args)
    assert clean.returncode == 0, clean.stderr[-3000:]
    (cache,) = (tmp_path / "cache" / "embeddings").glob("*.pt")
    start, size = tensor_bytes(cache)
    zero(cache, start, min(size, 4096))

    folder = cache.parent
    dead = _killed_writer(folder / "x.json")  # a writer killed mid-write left its temporary file
    live_fd, live = locked_tmp(folder / "y.json")  # this process is writing y.json right now
    try:
        again = uae_run(tmp_path, *args, run_dir="run2")
        assert again.returncode == 0, again.stderr[-3000:]
        log = again.stdout + again.stderr
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


@pytest.mark.parametrize("table", COMMITTED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_committed_tables_without_digests_are_read_and_checked_by_consistency(table: Path, tmp_path: Path) -> None:
    """Tables written before digests keep their fingerprints and are checked by utility = ll_context - ll_closed."""
    from uae.table.read import read_table, read_table_spec, verify_table

    assert verify_table(table) is False  # no digest recorded: the consistency check stood in
    rows = read_table(table)
    spec = read_table_spec(table)

    damaged = tmp_path / table.name  # a changed utility, rewritten without a digest like the committed files
    raw = pq.read_table(table)
    utility = raw["utility"].to_pylist()
    utility[7] += 1.0
    pq.write_table(raw.set_column(raw.schema.get_field_index("utility"), "utility", [utility]), damaged, compression="zstd")
    with pytest.raises(DamagedFileError, match=r"row 7.*git restore"):
        read_table(damaged)

    # python -m uae.table.integrity stamp gives it a digest; rows, fingerprint and spec stay as they were
    stamped = tmp_path / "stamped.parquet"
    shutil.copy(table, stamped)
    assert integrity_main(["stamp", str(stamped)]) == 0
    assert verify_table(stamped) is True and read_table(stamped).equals(rows) and read_table_spec(stamped) == spec
    assert integrity_main(["check", str(stamped), str(table)]) == 0
    assert integrity_main(["check", str(damaged)]) == 1


def test_flipped_byte_in_a_utility_chunk_is_scored_again(tiny_raw_dir: Path, tmp_path: Path, caplog) -> None:
    """A real chunk with one utility changed was counted as done and merged into the table."""
    from test_utility import OverlapScorer, _setup

    from uae.table.build import chunk_path, compute_utilities, merge_utilities

    split, sets, spec = _setup(tiny_raw_dir)
    work = tmp_path / "work"
    compute_utilities(split, sets, OverlapScorer(), work, spec, chunk_questions=2, progress=False)
    clean = merge_utilities(work, len(sets), 2, tmp_path / "clean.parquet")
    chunk = chunk_path(work, 0)
    before = pq.read_table(chunk)["utility"].to_pylist()
    xor_byte(chunk, utility_exponent_byte(chunk), 0x10)
    after = pq.read_table(chunk)["utility"].to_pylist()
    assert after != before and all(math.isfinite(v) for v in after)  # pyarrow reads it, finite and wrong

    scorer = OverlapScorer()
    compute_utilities(split, sets, scorer, work, spec, chunk_questions=2, progress=False)
    assert scorer.calls == 1  # that chunk alone was scored again
    assert str(chunk) in caplog.text and "scoring that chunk again" in caplog.text
    assert merge_utilities(work, len(sets), 2, tmp_path / "again.parquet").equals(clean)


@pytest.fixture(scope="module")
def utility_run(tmp_path_factory, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path):
    """One utility stage with tiny models on the tiny fixture (2 chunks), made once; tests copy it."""
    base = tmp_path_factory.mktemp("utility")
    args = [
        f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), f"llm.scorer.local_path={tiny_lm_dir}",
        "llm.scorer.model_id=tiny-llama", "utility.splits=[dev]", "data.train_split=dev", "candidates.size=3",
        "utility.chunk_questions=2",
    ]
    done = uae_run(base, *args, f"utility.table_dir={base / 'tables'}", "stages=[utility]")
    assert done.returncode == 0, done.stderr[-3000:]
    return base, args


def _copy(utility_run, tmp_path: Path) -> tuple[list[str], Path, Path]:
    base, args = utility_run
    for name in ("cache", "tables"):
        shutil.copytree(base / name, tmp_path / name)
    table = tmp_path / "tables" / "dev.parquet"
    return [*args, f"utility.table_dir={tmp_path / 'tables'}"], table, pq.read_table(table)


@pytest.mark.slow  # the same case as test_flipped_byte_in_a_utility_chunk_is_scored_again, through the CLI
def test_cli_flipped_chunk_is_scored_again_not_merged(utility_run, tmp_path: Path) -> None:
    args, table, clean = _copy(utility_run, tmp_path)
    (chunk,) = (tmp_path / "cache" / "utility").glob("dev-*/chunk-00000.parquet")
    xor_byte(chunk, utility_exponent_byte(chunk), 0x10)
    table.unlink()
    done = uae_run(tmp_path, *args, "stages=[utility]")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert str(chunk) in log and "scoring that chunk again" in log and "1 already done" in log
    assert pq.read_table(table).equals(clean)


def test_damaged_table_is_refused_with_the_command_that_replaces_it(utility_run, tmp_path: Path) -> None:
    """A table whose utility changed was trained on without a warning."""
    args, table, _ = _copy(utility_run, tmp_path)
    xor_byte(table, utility_exponent_byte(table), 0x10)
    done = uae_run(tmp_path, *args, "stages=[fit]", "logger=none")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    message = done.stderr.split("error: ", 1)[-1]
    assert str(table) in message and "utility.overwrite=true" in message and "git restore" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_overwrite_replaces_a_table_that_cannot_be_read(utility_run, tmp_path: Path) -> None:
    """A truncated table stopped even utility.overwrite=true, with advice to run the command that failed."""
    args, table, clean = _copy(utility_run, tmp_path)
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    replaced = uae_run(tmp_path, *args, "stages=[utility]", "utility.overwrite=true", run_dir="replaced")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert "this run replaces it" in replaced.stdout + replaced.stderr
    assert pq.read_table(table).equals(clean) and check_parquet(table)


def test_a_table_that_cannot_be_read_names_the_command_that_replaces_it(tiny_raw_dir: Path, tmp_path: Path) -> None:
    from uae.data.qasper import load_qasper
    from uae.table.find import find_table

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    table = tmp_path / "dev.parquet"
    table.write_bytes(COMMITTED[0].read_bytes()[:5000])  # cut short
    settings = {"scorer": {}, "candidates": {}}
    for writing in (False, True):
        with pytest.raises(DamagedFileError, match=r"utility\.overwrite=true") as error:
            find_table(tmp_path, split, ["q1"], settings, limit=None, writing=writing)
        assert str(table) in str(error.value) and "git restore" in str(error.value)
    assert find_table(tmp_path, split, ["q1"], settings, limit=None, writing=True, overwrite=True) is None  # replaced


# --------------------------------------------------------------------------------------------------
# reader cache


def test_reader_cache_with_a_changed_answer_is_not_used(tmp_path: Path, caplog) -> None:
    from uae.llm.reader import _read_cache, _write_cache

    path = tmp_path / "answers.json"
    _write_cache(path, "key", {"q1": "Yes", "q2": "BERT"})
    assert _read_cache(path, "key") == {"q1": "Yes", "q2": "BERT"}
    path.write_text(path.read_text().replace("BERT", "BART"))  # valid JSON, another answer
    assert _read_cache(path, "key") == {} and "does not match the digest" in caplog.text
    path.write_text(json.dumps({"fingerprint": "key", "answers": {"q1": "Yes"}}))  # before digests
    assert _read_cache(path, "key") == {}


# --------------------------------------------------------------------------------------------------
# temporary files of dead writers


def _writer(target: Path, then: str) -> subprocess.Popen:
    """A process writing ``target`` through atomic_path, which ``then`` (python) inside the write."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        from uae.storage.atomic import atomic_path
        with atomic_path(Path({str(target)!r})) as tmp:
            tmp.write_text("half a file")
            print("writing", flush=True)
            {then}
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _killed_writer(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = _writer(target, "os.kill(os.getpid(), signal.SIGKILL)")
    proc.wait()
    (left,) = target.parent.glob(f".{target.name}.*.tmp")
    return left


def test_dead_writers_tmp_files_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead = _killed_writer(tmp_path / "sub" / "a.parquet")
    live = _writer(tmp_path / "b.json", "time.sleep(120)")
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


def test_make_clean_removes_dead_writers_tmp_outside_the_caches(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "uae" / "storage").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    for name in ("__init__.py", "storage/__init__.py", "storage/tmpfiles.py"):
        shutil.copy(ROOT / "uae" / name, repo / "uae" / name)
    tables = repo / "experiments" / "qasper" / "utilities"
    dead = _killed_writer(tables / "train.parquet")
    live_fd, live = locked_tmp(tables / "dev.parquet")
    try:
        done = subprocess.run(["make", "-s", "clean"], cwd=repo, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert not dead.exists() and live.exists()
    finally:
        os.close(live_fd)


# --------------------------------------------------------------------------------------------------
# errors before any work


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stages=[evaluate]", "retrieval.top_k=abc"], "retrieval.top_k must be an integer >= 1, got 'abc'"),
        # the others of issue 17 (loss.sharpness=abc with fit, loss.temperature=-0.5 evaluate-only) fail the
        # same way before any stage: test_config.py checks their messages without starting a process
        pytest.param(["stages=[fit,evaluate]", "loss.sharpness=abc"], "loss.sharpness must be a number > 0, got 'abc'",
                     marks=pytest.mark.slow),
        pytest.param(["stages=[evaluate]", "loss.temperature=-0.5"], "loss.temperature must be a number > 0, got -0.5",
                     marks=pytest.mark.slow),
    ],
    ids=["top-k-abc", "sharpness-abc", "evaluate-only-temperature"],
)
def test_bad_values_exit_2_naming_the_key_whatever_the_stages(tmp_path: Path, overrides: list[str], message: str) -> None:
    done = uae_run(tmp_path, "model=bm25", *overrides)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert message in done.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_unwritable_run_folder_is_a_clear_error(tmp_path: Path, tiny_raw_dir: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the run folder's parent should be")  # refuses even root, unlike chmod
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", "model=bm25", run_dir="blocker/run")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert str(blocker / "run") in done.stderr and "hydra.run.dir" in done.stderr


def test_missing_data_folder_fails_at_once_without_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HF_HUB_OFFLINE unset, a missing data.dir spent ~24 s in hub retries; the hub is now opt-in."""
    from hydra import compose, initialize_config_dir

    from uae.core.errors import DataError
    from uae.data import qasper
    from uae.data.loading import load_from

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    asked = []
    monkeypatch.setattr(qasper, "_load_from_hub", lambda split: asked.append(split) or pytest.fail("the hub was tried"))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"data.dir={tmp_path / 'nowhere'}"])
    with pytest.raises(DataError) as error:
        load_from(cfg.data, "dev")
    message = str(error.value)
    assert not asked
    for looked in ("qasper-dev-v0.3.json", "dev.jsonl", "dev.parquet", "validation.jsonl", "validation.parquet"):
        assert str(tmp_path / "nowhere" / looked) in message
    assert "does not exist" in message and "allow_hub=true" in message

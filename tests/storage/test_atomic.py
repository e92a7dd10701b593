"""Caches and checkpoints are only ever seen complete; fingerprints change with what changes content."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from uae.core.errors import CacheMismatchError, UAEError
from uae.storage.atomic import atomic_path, write_json
from uae.storage.fingerprint import fingerprint
from uae.storage.tensors import load_tensors, save_tensors

ROOT = Path(__file__).resolve().parents[1]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json(target, {"old": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"new": ')  # half a file, then the process "dies"
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_full_disk_is_a_clear_error_and_nothing_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "emb.pt"
    save_tensors(target, "key-1", {"embeddings": torch.ones(2, 3)})
    real_replace = os.replace

    def disk_full(src, dst):  # the data was written, the rename is where ENOSPC surfaces here
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(UAEError, match="No space left on device.*nothing was left in its place"):
        save_tensors(target, "key-2", {"embeddings": torch.zeros(2, 3)})
    monkeypatch.setattr(os, "replace", real_replace)
    assert torch.equal(load_tensors(target, "key-1")["embeddings"], torch.ones(2, 3))  # the old cache, intact
    with pytest.raises(CacheMismatchError):  # and never mistaken for the new one
        load_tensors(target, "key-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.pt"]


def test_unwritable_folder_names_the_folder_and_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")  # refuses writes even to root, unlike chmod
    with pytest.raises(UAEError, match="Cannot write to .*not-a-folder.*paths.cache_dir"):
        write_json(blocker / "sub" / "x.json", {})


def test_lightning_checkpoints_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning saves through an fsspec transaction (temp file, then move): a failed write leaves nothing."""
    from fsspec.implementations import local
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    io = TorchCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    real_write = local.LocalFileOpener.write

    def dies_half_way(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local.LocalFileOpener, "write", dies_half_way)
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_utility_table_fingerprint_covers_data_llm_template_and_candidates() -> None:
    from uae.table.find import differences

    class Split:
        name, fingerprint = "dev", "data-1"

    scorer = {"model_id": "llm", "weights": "w", "template": {"context_prompt": "C: {context}"}, "max_length": 1024, "dtype": "float32"}
    candidates = {"size": 8, "hard_negatives": {"bm25": 2, "dense": 2}, "seed": 42, "dense": {"weights": "e"}}
    made = {"split": "dev", "data": "data-1", "scorer": scorer, "candidates": candidates}
    same = {"scorer": scorer, "candidates": candidates}
    assert differences(made, Split, same) == []
    assert differences(made, Split, {**same, "scorer": {**scorer, "dtype": "bfloat16"}}) == []  # precision only
    changes = {
        "scorer": [{**scorer, "model_id": "other"}, {**scorer, "template": {"context_prompt": "X {context}"}},
                   {**scorer, "max_length": 512}, {**scorer, "weights": "w2"}],
        "candidates": [{**candidates, "size": 4}, {**candidates, "seed": 1}, {**candidates, "dense": {"weights": "e2"}},
                       {**candidates, "hard_negatives": {"bm25": 0, "dense": 2}}],
    }
    for key, variants in changes.items():
        for variant in variants:
            assert differences(made, Split, {**same, key: variant}) == [key]

    class OtherData:
        name, fingerprint = "dev", "data-2"

    assert differences(made, OtherData, same) == ["data"]
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1}) != fingerprint({"a": 1, "b": [2, 1]})


def test_make_clean_removes_only_what_uae_made(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "uae" / "storage").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    for name in ("__init__.py", "storage/__init__.py", "storage/tmpfiles.py"):  # what make clean runs (standard library only)
        shutil.copy(ROOT / "uae" / name, repo / "uae" / name)
    for made in ("logs/run/results.json", ".cache/embeddings/x.pt", ".pytest_cache/v", "uae/__pycache__/m.pyc"):
        (repo / made).parent.mkdir(parents=True, exist_ok=True)
        (repo / made).write_text("x")
    for kept in ("notes.txt", "experiments/qasper/RESULTS.md", "experiments/qasper/utilities/dev.parquet", "data/qasper.json", ".venv/keep"):
        (repo / kept).parent.mkdir(parents=True, exist_ok=True)
        (repo / kept).write_text("mine")
    subprocess.run(["make", "-s", "clean"], cwd=repo, check=True, capture_output=True)
    assert not (repo / "logs").exists() and not (repo / ".cache").exists() and not (repo / ".pytest_cache").exists()
    assert not (repo / "uae" / "__pycache__").exists()
    for kept in ("notes.txt", "experiments/qasper/RESULTS.md", "experiments/qasper/utilities/dev.parquet", "data/qasper.json", ".venv/keep"):
        assert (repo / kept).read_text() == "mine"

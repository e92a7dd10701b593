"""Files are only ever seen complete (uae.storage.atomic): a failed or full-disk write leaves the old file, an
unwritable folder is a clear error. Lightning's checkpoints: tests/training/test_checkpoints.py; what a
utility table's fingerprint covers: tests/table/test_find.py."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from uae.core.errors import CacheMismatchError, UAEError
from uae.storage.atomic import atomic_path, write_json
from uae.storage.tensors import load_tensors, save_tensors


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

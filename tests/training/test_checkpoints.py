"""Checkpoints are only ever seen complete: Lightning saves through an fsspec transaction."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch


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



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




class _Tiny:
    """A one-layer LightningModule over 8 random rows, 2 a batch: 4 training steps an epoch."""

    @staticmethod
    def make(validate: bool):
        import lightning as L
        from torch.utils.data import DataLoader, TensorDataset

        class Module(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

            def training_step(self, batch, batch_idx):
                return self.layer(batch[0]).pow(2).mean()

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

            def train_dataloader(self):
                return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)

        if validate:
            Module.validation_step = lambda self, batch, batch_idx: None
            Module.val_dataloader = lambda self: DataLoader(TensorDataset(torch.randn(2, 2)), batch_size=2)
        return Module()


@pytest.mark.parametrize(
    ("val_check_interval", "validate", "saved_after"),
    [
        (1.0, False, [1, 2, 3, 5, 6, 7]),  # not after the epochs' last batches (steps 4 and 8)
        (0.5, True, [1, 3, 5, 7]),  # not after steps 2 and 4 of each epoch: validation follows them
        (1.0, True, [1, 2, 3, 5, 6, 7]),
    ],
)
def test_a_step_checkpoint_is_never_written_just_before_validation_or_an_epoch_end(
    tmp_path: Path, val_check_interval: float, validate: bool, saved_after: list[int]
) -> None:
    """A step checkpoint written before the validation that follows its batch would resume past that validation."""
    import lightning as L

    from uae.training.checkpoints import StepCheckpoint

    steps: list[int] = []

    class Spy(StepCheckpoint):
        def _save_checkpoint(self, trainer, filepath):  # every save of this callback passes here
            steps.append(trainer.global_step)
            super()._save_checkpoint(trainer, filepath)

    spy = Spy(dirpath=tmp_path, every_n_train_steps=1, save_top_k=0, save_last=True, enable_version_counter=False)
    trainer = L.Trainer(
        max_epochs=2, callbacks=[spy], logger=False, enable_progress_bar=False, enable_model_summary=False,
        val_check_interval=val_check_interval, num_sanity_val_steps=0, enable_checkpointing=True, accelerator="cpu",
    )
    trainer.fit(_Tiny.make(validate))
    assert steps == saved_after

"""last.ckpt every N training steps, but never on a step that validation follows (``train.checkpoint_every_steps``)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint saving every ``every_n_train_steps``, except after a batch that validation
    (or the epoch's end) follows.

    A step checkpoint is written before the validation that follows its batch. A run killed during that
    validation would resume from it as if validation had run: Lightning skips ahead, so that epoch's
    ``val/map`` is never computed (the best checkpoint can change) and the random states continue from
    before the validation loader drew its seed. The checkpoint written after validation (or at the epoch's
    end) covers that step, so leaving this one out costs nothing.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not validation_or_epoch_end_follows(trainer, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def validation_or_epoch_end_follows(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether the epoch ends, or validation runs, after this training batch (Lightning's rule for an epoch
    of known length, with ``val_check_interval`` as a fraction of the epoch or a number of batches)."""
    if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
        return True
    every = trainer.val_check_batch
    if not trainer.enable_validation or not isinstance(every, int) or every < 1:
        return False
    count = trainer.fit_loop.epoch_loop.total_batch_idx if trainer.check_val_every_n_epoch is None else batch_idx
    return (count + 1) % every == 0

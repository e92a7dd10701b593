"""Lightning callbacks that kill their own process the way a crash (SIGKILL) or a scheduler (SIGTERM) would."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtEpoch(L.Callback):
    """SIGKILL at the start of epoch ``epoch`` (after the previous epoch's checkpoints are on disk)."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(L.Callback):
    """Signal ``signum`` (SIGKILL: a crash; SIGTERM: a scheduler preempting the job) to this process before the
    batch that would make optimizer step ``step + 1`` (after step ``step``'s checkpoint)."""

    def __init__(self, step: int = 1, signum: int = signal.SIGKILL) -> None:
        self.step = step
        self.signum = signum

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)

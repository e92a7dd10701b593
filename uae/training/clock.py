"""The fit's wall clock, kept across resumes: results.json's ``train_seconds`` is the whole fit's, not the last process's."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class FitClock(Callback):
    """Seconds spent in ``trainer.fit``, summed over the processes that made the checkpoint it resumed from.

    Each checkpoint stores the seconds up to its save; a resumed process adds its own to those. Work done
    after the last checkpoint by a killed process is not counted (the resumed process does it again and
    counts it once). A run resumed from a checkpoint that has no clock (saved before this callback
    existed) cannot know its total: :meth:`seconds` is then ``None``, and results.json says nothing
    rather than a number that is too small.
    """

    def __init__(self) -> None:
        self._before: float | None = 0.0
        self._start: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._start = time.perf_counter()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # load_state_dict is called only when this callback's state is in the checkpoint: mark it unknown first
        self._before = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._before = float(state_dict["seconds"])

    def state_dict(self) -> dict[str, Any]:
        seconds = self.seconds()
        return {} if seconds is None else {"seconds": seconds}

    def seconds(self) -> float | None:
        """The fit's seconds so far (this process's and those before the checkpoint it resumed from)."""
        if self._before is None:
            return None
        return self._before + (time.perf_counter() - self._start if self._start is not None else 0.0)

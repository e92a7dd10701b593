"""The ``lightning`` engine of :func:`uae.retrieval.shard_encoding.encode_shards`: Lightning's predict loop.

Lightning already knows how to put a model on each GPU of a machine or a cluster (DDP, SLURM) and how to hand
predictions to a callback as they come (``BasePredictionWriter``), so the GPU path is those two pieces: one
predict step encodes one shard, and a writer callback writes and records it at once, so a stopped job keeps
every shard it finished. Each rank takes the missing shards whose index is its rank modulo the world size,
a split that does not depend on when each rank looked at the manifest (a rank that starts late sees shards
the others already recorded), so no shard is written twice. Lightning's own distributed sampler is off: it
pads the ranks to equal length by repeating items, which would write a shard from two processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from uae.retrieval.encoder import DualEncoder
from uae.retrieval.shards import Shard, ShardFolder


class _ShardTexts(Dataset):
    """One item per shard: its place and its texts."""

    def __init__(self, texts: Sequence[str], shards: Sequence[Shard]) -> None:
        self.texts = texts
        self.shards = list(shards)

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int) -> dict[str, Any]:
        shard = self.shards[i]
        return {"index": shard.index, "start": shard.start, "stop": shard.stop, "texts": list(self.texts[shard.start : shard.stop])}


def _only(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of one shard is that shard (batches of one, rather than none, so that Lightning tracks their indices)."""
    return items[0]


class ShardPredictor(L.LightningModule):
    """The encoder as a LightningModule whose predict step embeds one shard's passages (float32, on the CPU)."""

    def __init__(self, encoder: DualEncoder, texts: Sequence[str], todo: Sequence[Shard], batch_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.texts = texts
        self.todo = list(todo)
        self.batch_size = batch_size

    def predict_dataloader(self) -> DataLoader:
        """This rank's shards (called once the strategy knows the ranks)."""
        rank, world = self.trainer.global_rank, self.trainer.world_size
        mine = [s for s in self.todo if s.index % world == rank]
        return DataLoader(_ShardTexts(self.texts, mine), batch_size=1, shuffle=False, collate_fn=_only)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self.encoder.encode(batch["texts"], "passage", batch_size=self.batch_size, progress=False)


class ShardWriter(BasePredictionWriter):
    """Writes each predicted shard and records it in the manifest, as soon as the predict step returns it."""

    def __init__(self, target: ShardFolder) -> None:
        super().__init__(write_interval="batch")
        self.target = target

    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any, batch_indices: Sequence[int] | None,
        batch: Any, batch_idx: int, dataloader_idx: int,
    ) -> None:
        shard = Shard(int(batch["index"]), int(batch["start"]), int(batch["stop"]))
        self.target.record(self.target.write(shard, prediction.float().cpu().numpy()))


def predict_shards(
    encoder: DualEncoder, texts: Sequence[str], target: ShardFolder, todo: Sequence[Shard], *,
    batch_size: int, trainer: Mapping[str, Any], progress: bool,
) -> None:
    """Encode ``todo`` with ``lightning.Trainer(**trainer).predict``; returns once every rank has recorded its shards."""
    options: dict[str, Any] = {
        "logger": False, "enable_checkpointing": False, "enable_model_summary": False, "enable_progress_bar": progress,
        "use_distributed_sampler": False, "default_root_dir": str(target.folder), **trainer,
    }
    options["callbacks"] = [*options.get("callbacks", []), ShardWriter(target)]
    runner = L.Trainer(**options)
    runner.predict(ShardPredictor(encoder, texts, todo, batch_size), return_predictions=False)
    runner.strategy.barrier("shards written")

"""The LightningModule: a dual encoder trained with one of the losses of ``uae.training.losses``.

The loss is a Hydra-built partial with the signature ``loss(scores, owner, utility, gold)``, so every
method (UAE, InfoNCE, Atlas, REPLUG) shares the encoder, the batch, the optimizer and the validation.
Under DDP the passages of every process are gathered with gradients flowing back, so each query sees
the whole global batch as in-batch negatives, exactly as one process with the global batch would.
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from uae.core.errors import UAEError
from uae.evaluation.metrics import RETRIEVAL_METRICS, retrieval_metrics
from uae.retrieval.encoder import DualEncoder
from uae.retrieval.index import PassageIndex
from uae.training.grad_cache import cached_step_loss
from uae.training.losses import similarity

if TYPE_CHECKING:
    from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

log = logging.getLogger(__name__)

Loss = Callable[..., Tensor]


class NonFiniteLossError(UAEError):
    """The loss became NaN or inf; training stops with the batch that caused it."""


def gather_passages(
    passages: Tensor, owner: Tensor, utility: Tensor, gold: Tensor, n_queries: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """All processes' passages (differentiable) with owners re-indexed into the global query order.

    Returns ``(passages, owner, utility, gold, query_offset)``: this process's queries are rows
    ``query_offset .. query_offset + n_queries`` of the global batch. Processes may hold different
    numbers of passages (candidate sets are ragged), so tensors are padded to the largest count for
    the collective and cut back after. Without an initialised process group this is the identity.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return passages, owner, utility, gold, 0
    from torch.distributed.nn.functional import all_gather as differentiable_all_gather  # deferred: start-up

    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = torch.tensor([passages.shape[0], n_queries], device=passages.device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    n_passages = [int(s[0]) for s in all_sizes]
    n_rows = [int(s[1]) for s in all_sizes]
    width = max(n_passages)

    def pad(x: Tensor) -> Tensor:
        return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 1) + (0, width - x.shape[0]))

    with warnings.catch_warnings():  # deprecated for a private replacement; still the public autograd gather
        warnings.simplefilter("ignore", FutureWarning)
        gathered = differentiable_all_gather(pad(passages))
    meta = []
    for tensor in (owner, utility.to(passages.dtype), gold.to(passages.dtype)):
        parts = [torch.zeros_like(pad(tensor)) for _ in range(world)]
        dist.all_gather(parts, pad(tensor))
        meta.append(parts)
    offsets = [sum(n_rows[:r]) for r in range(world)]
    all_passages = torch.cat([g[: n_passages[r]] for r, g in enumerate(gathered)])
    all_owner = torch.cat([meta[0][r][: n_passages[r]] + offsets[r] for r in range(world)])
    all_utility = torch.cat([meta[1][r][: n_passages[r]] for r in range(world)]).to(utility.dtype)
    all_gold = torch.cat([meta[2][r][: n_passages[r]] for r in range(world)]).bool()
    return all_passages, all_owner, all_utility, all_gold, offsets[rank]


def encode_chunks(encoder: DualEncoder, chunks: list[dict[str, Tensor]], order: Tensor) -> Tensor:
    """Passage embeddings in flat batch order from length-sorted chunks (see ``GroupCollator``)."""
    encoded = torch.cat([encoder(chunk, "passage") for chunk in chunks])
    out = torch.empty_like(encoded)
    out[order.to(encoded.device)] = encoded
    return out


def batch_loss(
    loss: Loss, queries: Tensor, passages: Tensor, owner: Tensor, utility: Tensor, gold: Tensor
) -> Tensor:
    """This process's share of the global loss: its queries against every passage of the global batch.

    Each process averages over its own queries; DDP then averages gradients over processes, which
    equals the gradient of the mean over all queries of the global batch (equal batch per process).
    """
    passages, owner, utility, gold, offset = gather_passages(passages, owner, utility, gold, queries.shape[0])
    scores = similarity(queries, passages)  # [local B, global N]
    # Rows of this process's queries own the passages whose global owner falls in [offset, offset + B).
    local_owner = owner - offset
    return loss(scores, local_owner, utility, gold)


class RetrieverModule(L.LightningModule):
    """Dual encoder + loss; AdamW with linear warm-up and decay; full-document validation."""

    def __init__(
        self,
        encoder: DualEncoder,
        loss: Loss,
        *,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        loss_name: str = "uae",
        grad_cache: bool = False,
        micro_batch: int = 32,
    ) -> None:
        """``grad_cache``: the step in memory that does not grow with the batch, ``micro_batch`` texts at a time
        (:mod:`uae.training.grad_cache`; the same gradients for a second forward pass)."""
        super().__init__()
        self.encoder = encoder
        self.loss = loss
        self.loss_name = loss_name
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.grad_cache = grad_cache
        self.micro_batch = micro_batch
        self.save_hyperparameters(ignore=["encoder", "loss"])
        self._val_embeddings: dict[str, Tensor] = {}
        self._val_counts: dict[str, Tensor] = {}
        self._rng_at_checkpoint: dict[str, Any] | None = None  # a loaded checkpoint's, until the first batch

    # ----------------------------------------------------------------------------------- training
    def on_fit_start(self) -> None:
        # from_pretrained returns modules in eval mode and Lightning keeps each submodule's mode:
        # switch the encoder to train mode so dropout regularises fine-tuning as in the base recipe.
        self.encoder.train()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        def loss_of(queries: Tensor, passages: Tensor) -> Tensor:
            return batch_loss(self.loss, queries, passages, batch["owner"], batch["utility"], batch["gold"])

        if self.grad_cache:
            loss = cached_step_loss(self.encoder, batch["query"], batch["passages"], batch["passage_order"], loss_of, self.micro_batch)
        else:
            loss = loss_of(self.encoder(batch["query"], "query"), encode_chunks(self.encoder, batch["passages"], batch["passage_order"]))
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"The {self.loss_name} loss is {loss.item()} at step {self.global_step} (batch {batch_idx}); questions "
                f"in the batch: {', '.join(batch['question_ids'])}. Check their utilities, or lower the learning "
                f"rate (lr={self.lr}) or raise the temperature."
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["question_ids"]))
        return loss

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=self.lr
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = math.ceil(self.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_warmup_decay(step, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the random states (dropout), so a resumed run continues exactly as an uninterrupted one."""
        state = np.random.get_state(legacy=True)  # the default; a dict only for a bit generator other than MT19937
        assert isinstance(state, tuple)
        name, keys, pos, has_gauss, cached = state
        checkpoint["uae_rng"] = {  # tensors and plain numbers only: loadable with weights_only=True
            "torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("uae_rng")
        if states:
            _set_random_states(states)
            self._rng_at_checkpoint = states

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """A run resumed inside an epoch sets the checkpoint's random states again before its first batch.

        The new epoch iterator drew its base seed from torch's random state on the way; the uninterrupted
        run drew it at the epoch's start, before the checkpoint. A resume at an epoch's start needs nothing:
        both runs draw it there.
        """
        states, self._rng_at_checkpoint = self._rng_at_checkpoint, None
        if states is not None and batch_idx > 0:
            _set_random_states(states)

    # --------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        val_set = self.trainer.datamodule.val_set  # type: ignore[attr-defined]  # set by Lightning, not declared
        dim = self.encoder.dimension
        self._val_embeddings = {
            "passage": torch.zeros(len(val_set.passage_ids), dim, device=self.device),
            "query": torch.zeros(len(val_set.question_ids), dim, device=self.device),
        }
        self._val_counts = {side: torch.zeros(len(t), device=self.device) for side, t in self._val_embeddings.items()}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        side, rows = batch["side"], batch["rows"].to(self.device)
        self._val_embeddings[side][rows] += self.encoder(batch["tokens"], side).float()
        self._val_counts[side][rows] += 1

    def on_validation_epoch_end(self) -> None:
        """Rank every validation document with the embeddings of all processes; log the metrics of evaluation."""
        if self.trainer.sanity_checking:
            return
        for side in ("passage", "query"):
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(self._val_embeddings[side])
                dist.all_reduce(self._val_counts[side])
            counts = self._val_counts[side]
            if bool((counts == 0).any()):
                log.warning("validation saw only part of the %s texts; metrics are skipped", side)
                return
            # a distributed sampler pads by repeating chunks: average the duplicates
            self._val_embeddings[side] /= counts.unsqueeze(1)
        val_set = self.trainer.datamodule.val_set  # type: ignore[attr-defined]  # set by Lightning, not declared
        index = PassageIndex(self._val_embeddings["passage"].cpu(), val_set.passage_ids, val_set.passage_documents, use_gpu=False)
        ranked = index.rank_documents(self._val_embeddings["query"].cpu(), val_set.question_documents)
        metrics = retrieval_metrics(ranked, val_set.gold_ids)
        for name in RETRIEVAL_METRICS:
            self.log(f"val/{name}", metrics[name], prog_bar=name in ("hit@1", "map"), rank_zero_only=False)
        self._val_embeddings, self._val_counts = {}, {}


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """LR factor: 0 -> 1 over ``warmup`` steps, then linearly down to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _set_random_states(states: dict[str, Any]) -> None:
    """torch's, numpy's and Python's random states as ``on_save_checkpoint`` stored them."""
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in states["python"]))

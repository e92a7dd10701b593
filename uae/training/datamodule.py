"""Training groups (uae.table.read) served to Lightning, and full-document validation.

A training group is one question with its candidate set C(q): the passages, the teacher's utility of
each, and which are gold evidence. Batches are tokenized in the collate function (so workers do it in
parallel and padding is per batch). Validation ranks whole documents of the eval split, as evaluation
does, so ``val/map`` picks the checkpoint that evaluation will score best.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from uae.core.errors import UAEError
from uae.data.records import Split, TrainingGroup

log = logging.getLogger(__name__)

Tokenize = Callable[[Sequence[str], str], Mapping[str, torch.Tensor]]

class GroupCollator:
    """Tokenizes a list of groups into one batch; passages of all groups are flattened, ``owner`` says whose.

    Passages are tokenized in length-sorted chunks of ``passage_chunk``, each padded to its own
    longest text: a batch of 128 paragraphs padded to one length wastes about a third of the encoder's
    work on padding. ``passage_order[i]`` is the flat position of the i-th encoded passage, so the
    module restores the flat order after encoding the chunks.
    """

    def __init__(self, tokenize: Tokenize, passage_chunk: int = 32) -> None:
        self.tokenize = tokenize
        self.passage_chunk = passage_chunk

    def __call__(self, groups: Sequence[TrainingGroup]) -> dict[str, Any]:
        owner = [b for b, g in enumerate(groups) for _ in g.passages]
        texts = [p for g in groups for p in g.passages]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = [order[i : i + self.passage_chunk] for i in range(0, len(order), self.passage_chunk)]
        return {
            "question_ids": [g.question_id for g in groups],
            "query": dict(self.tokenize([g.query for g in groups], "query")),
            "passages": [dict(self.tokenize([texts[i] for i in chunk], "passage")) for chunk in chunks],
            "passage_order": torch.tensor(order, dtype=torch.long),
            "owner": torch.tensor(owner, dtype=torch.long),
            "utility": torch.tensor([u for g in groups for u in g.utility], dtype=torch.float32),
            "gold": torch.tensor([x for g in groups for x in g.gold], dtype=torch.bool),
        }


@dataclass
class ValidationSet:
    """What full-document validation ranks: every passage of the documents asked about, and the questions."""

    passage_ids: list[str]
    passage_documents: list[str]
    passage_texts: list[str]
    question_ids: list[str]
    question_documents: list[str | None]
    question_texts: list[str]
    gold_ids: list[frozenset[str]]

    @classmethod
    def from_split(cls, split: Split) -> ValidationSet:
        questions = split.evaluable_questions
        if not questions:
            raise UAEError(f"{split.dataset} {split.name} has no question with gold passages to validate on.")
        documents = dict.fromkeys(q.document_id for q in questions)
        if None in documents:  # a question without a document ranks the whole split
            passages = list(split.all_passages)
        else:
            passages = [p for document_id in documents for p in split.passages(document_id)]
        return cls(
            passage_ids=[p.passage_id for p in passages],
            passage_documents=[p.document_id for p in passages],
            passage_texts=[p.text for p in passages],
            question_ids=[q.question_id for q in questions],
            question_documents=[q.document_id for q in questions],
            question_texts=[q.text for q in questions],
            gold_ids=[q.gold_ids for q in questions],
        )

    def chunks(self, batch_size: int) -> list[tuple[str, list[int]]]:
        """Same-side chunks of row indices, passages longest first (little padding per batch)."""
        order = sorted(range(len(self.passage_texts)), key=lambda i: -len(self.passage_texts[i]))
        out = [("passage", order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
        q = list(range(len(self.question_texts)))
        out += [("query", q[i : i + batch_size]) for i in range(0, len(q), batch_size)]
        return out


class _ChunkDataset(Dataset):
    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


class ChunkCollator:
    """One validation chunk (``batch_size=1`` in the loader) -> tokenized texts of one side + row indices."""

    def __init__(self, tokenize: Tokenize, val_set: ValidationSet) -> None:
        self.tokenize = tokenize
        self.val_set = val_set

    def __call__(self, chunk: Sequence[tuple[str, list[int]]]) -> dict[str, Any]:
        ((side, rows),) = chunk
        texts = self.val_set.passage_texts if side == "passage" else self.val_set.question_texts
        return {"side": side, "rows": torch.tensor(rows), "tokens": dict(self.tokenize([texts[i] for i in rows], side))}


class EpochSeededSampler(torch.utils.data.Sampler[int]):
    """A shuffle that is a function of (seed, epoch) only, so a run resumed at epoch e sees the order an
    uninterrupted run sees (Lightning calls ``set_epoch`` before each epoch).

    ``resume_at(epoch, done)`` makes the next pass over ``epoch`` start after its first ``done`` indices: a
    checkpoint saved inside an epoch resumes at the batch after it. ``len`` stays the whole epoch's, as
    Lightning counts the batches of a resumed epoch from its restored progress.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, done: int) -> None:
        self._resume = (epoch, done)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        resume, self._resume = self._resume, None  # once: the epochs after it start at their beginning
        if resume is not None and resume[0] == self.epoch:
            order = order[resume[1] :]
        return iter(order)

    def __len__(self) -> int:
        return self.n


class TrainingDataModule(L.LightningDataModule):
    """Training groups of the train split (from its utility table) and full-document validation on eval.

    The splits are loaded by the fit stage and handed in, so the datamodule never re-reads or re-parses
    the data and tests can pass tiny splits.
    """

    def __init__(
        self,
        train_groups: Sequence[TrainingGroup],
        val_split: Split | None,
        tokenize: Tokenize,
        *,
        batch_size: int = 16,
        passage_chunk: int = 32,
        val_batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UAEError(f"train.batch_size={batch_size}: must be a positive number of questions.")
        if batch_size > len(train_groups):
            raise UAEError(
                f"train.batch_size={batch_size} is larger than the {len(train_groups)} training questions; "
                "lower it or use more documents (data.max_documents)."
            )
        self.train_groups = list(train_groups)
        self.val_set = ValidationSet.from_split(val_split) if val_split is not None else None
        self.tokenize = tokenize
        self.batch_size = batch_size
        self.passage_chunk = passage_chunk
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._position: dict[str, int] | None = None  # where a checkpoint being resumed was saved

    def state_dict(self) -> dict[str, int]:
        """Where training stands in its epoch, saved in every checkpoint (Lightning's datamodule state): a
        checkpoint saved after a step inside an epoch (``train.checkpoint_every_steps``) resumes at the next batch.
        ``done`` marks an epoch this process finished: its batch count is one process's share under DDP (and
        the limited count under ``trainer.limit_train_batches``), so it cannot be told from the dataset's size."""
        if self.trainer is None:
            return {}
        batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready  # trained this epoch, this one included
        done = batches >= self.trainer.num_training_batches
        return {"epoch": self.trainer.current_epoch, "batches": batches, "done": int(done)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._position = dict(state_dict) or None

    def train_dataloader(self) -> DataLoader:
        sampler = EpochSeededSampler(len(self.train_groups), self.seed)
        position, self._position = self._position, None
        # "done" is absent from the checkpoints of the first version, which ran in one process only
        done = position and position.get("done", position["batches"] >= len(self.train_groups) // self.batch_size)
        if position and position["batches"] > 0 and not done:
            if self.trainer is not None and self.trainer.world_size > 1:
                raise UAEError(
                    f"train.ckpt_path: this checkpoint was saved inside epoch {position['epoch']} (after batch "
                    f"{position['batches']}), and a resume inside an epoch is supported in one process only; resume it "
                    "with one device, or from a checkpoint saved at the end of an epoch."
                )
            sampler.resume_at(position["epoch"], position["batches"] * self.batch_size)
        return DataLoader(
            _ChunkDataset(self.train_groups),
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,  # every step sees the same number of in-batch negatives
            collate_fn=GroupCollator(self.tokenize, self.passage_chunk),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(
            _ChunkDataset(self.val_set.chunks(self.val_batch_size)),
            batch_size=1,
            shuffle=False,
            collate_fn=ChunkCollator(self.tokenize, self.val_set),
            num_workers=self.num_workers,
        )

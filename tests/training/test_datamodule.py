"""Training batches from utility-table groups (uae.training.datamodule): collated chunks embed as one padded
batch, and a batch larger than the data is refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers.tables import answerable, table_rows, write_table
from uae.core.errors import UAEError
from uae.data.qasper import load_qasper
from uae.retrieval.encoder import DualEncoder
from uae.table.groups import training_groups
from uae.training.datamodule import GroupCollator, TrainingDataModule
from uae.training.module import encode_chunks


@pytest.fixture()
def split(tiny_raw_dir: Path):
    return load_qasper("dev", tiny_raw_dir, allow_hub=False)


def test_collated_chunks_give_the_embeddings_of_one_padded_batch(tmp_path: Path, split, tiny_encoder_dir: Path) -> None:
    groups = training_groups(split, write_table(tmp_path / "t.parquet", split, table_rows(split)), answerable(split))
    encoder = DualEncoder("tiny", cache_dir=tmp_path, local_path=tiny_encoder_dir).eval()
    batch = GroupCollator(encoder.tokenize, passage_chunk=3)(groups)
    texts = [p for g in groups for p in g.passages]
    assert len(batch["passages"]) == math.ceil(len(texts) / 3)
    assert batch["owner"].tolist() == [b for b, g in enumerate(groups) for _ in g.passages]
    assert batch["utility"].tolist() == pytest.approx([u for g in groups for u in g.utility])
    assert batch["gold"].tolist() == [x for g in groups for x in g.gold]
    with torch.no_grad():
        chunked = encode_chunks(encoder, batch["passages"], batch["passage_order"])
        whole = encoder(encoder.tokenize(texts, "passage"), "passage")
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)


def test_datamodule_refuses_a_batch_larger_than_the_data(split, tmp_path: Path) -> None:
    groups = training_groups(split, write_table(tmp_path / "t.parquet", split, table_rows(split)), answerable(split))
    with pytest.raises(UAEError, match="larger than the 4 training questions"):
        TrainingDataModule(groups, split, lambda texts, side: {}, batch_size=5)
    loader = TrainingDataModule(groups, split, lambda texts, side: {"n": torch.tensor(len(texts))}, batch_size=3, seed=1)
    batches = list(loader.train_dataloader())
    assert len(batches) == 1 and len(batches[0]["question_ids"]) == 3  # drop_last: equal in-batch negatives


def test_a_position_saved_inside_an_epoch_resumes_that_epoch_after_its_done_batches(split, tmp_path: Path) -> None:
    groups = training_groups(split, write_table(tmp_path / "t.parquet", split, table_rows(split)), answerable(split))
    tokenize = lambda texts, side: {"n": torch.tensor(len(texts))}

    def epoch(module: TrainingDataModule, number: int) -> list[list[str]]:
        loader = module.train_dataloader()
        loader.sampler.set_epoch(number)  # as Lightning does before each epoch
        return [b["question_ids"] for b in loader]

    whole = epoch(TrainingDataModule(groups, split, tokenize, batch_size=1, seed=3), 2)
    resumed = TrainingDataModule(groups, split, tokenize, batch_size=1, seed=3)
    resumed.load_state_dict({"epoch": 2, "batches": 1})
    assert epoch(resumed, 2) == whole[1:]  # the rest of epoch 2, in its order
    assert epoch(resumed, 2) == whole  # a new loader, the position spent: whole epochs again

    other_epoch = TrainingDataModule(groups, split, tokenize, batch_size=1, seed=3)
    other_epoch.load_state_dict({"epoch": 1, "batches": 1})  # saved inside epoch 1, resumed at epoch 2: nothing skipped
    assert epoch(other_epoch, 2) == whole

    ddp = TrainingDataModule(groups, split, tokenize, batch_size=1, seed=3)
    ddp.trainer = type("Trainer", (), {"world_size": 2})()
    ddp.load_state_dict({"epoch": 2, "batches": 1})
    with pytest.raises(UAEError, match="inside epoch 2 .* one process only"):
        ddp.train_dataloader()

    # a checkpoint at the end of an epoch under DDP: one process's share of the batches, marked done
    ddp.load_state_dict({"epoch": 2, "batches": 1, "done": 1})
    assert epoch(ddp, 2) == whole

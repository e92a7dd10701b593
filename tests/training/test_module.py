"""The LightningModule's own logic: NaN stops training with the batch's ids; the LR schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uae.retrieval.encoder import DualEncoder
from uae.training.module import NonFiniteLossError, RetrieverModule, linear_warmup_decay


def test_warmup_then_linear_decay_by_hand() -> None:
    factors = [linear_warmup_decay(step, warmup=2, total=6) for step in range(7)]
    assert factors == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_non_finite_loss_stops_with_the_question_ids(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    encoder = DualEncoder("tiny", cache_dir=tmp_path, local_path=tiny_encoder_dir)

    def broken_loss(scores, owner, utility, gold):  # what an exploding run produces
        return (scores * float("nan")).sum()

    module = RetrieverModule(encoder, broken_loss, loss_name="uae")
    tokens = encoder.tokenize(["what is it?", "which data?"], "query")
    passages = encoder.tokenize(["a", "b", "c"], "passage")
    batch = {
        "question_ids": ["q-17", "q-42"],
        "query": tokens,
        "passages": [passages],
        "passage_order": torch.arange(3),
        "owner": torch.tensor([0, 0, 1]),
        "utility": torch.tensor([0.1, 0.2, 0.3]),
        "gold": torch.tensor([True, False, True]),
    }
    with pytest.raises(NonFiniteLossError, match=r"q-17, q-42") as error:
        module.training_step(batch, 3)
    assert "batch 3" in str(error.value) and "nan" in str(error.value)

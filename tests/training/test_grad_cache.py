"""GradCache (uae/training/grad_cache.py) against the plain step: the same loss and the same gradient of every
parameter for every loss, with dropout too, and the random state left as the plain step leaves it."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from uae.retrieval.encoder import DualEncoder
from uae.training.grad_cache import split_tokens
from uae.training.losses import atlas_kl, infonce, replug_lsr, utility_infonce
from uae.training.module import RetrieverModule

LOSSES = {
    "uae": functools.partial(utility_infonce, temperature=0.05, sharpness=0.5),
    "infonce": functools.partial(infonce, temperature=0.05),
    "atlas_kl": functools.partial(atlas_kl, temperature=0.05, target_temperature=0.5),
    "replug_lsr": functools.partial(replug_lsr, temperature=0.05, target_temperature=0.5),
    "mix": functools.partial(utility_infonce, temperature=0.05, sharpness=0.5, mix=0.5),
}
QUESTIONS = ["what is it?", "which data do they use for the experiments?", "how large?"]
PASSAGES = ["a short one", "a much longer passage about the data sets and what the authors measured on them",
            "b", "the corpus has ten thousand documents", "results", "we train for three epochs with a batch of 16",
            "tables", "none of the above"]


def _batch(encoder: DualEncoder, chunk: int) -> dict:
    """The collator's layout: passages in length-sorted chunks, ``passage_order`` back to flat batch order."""
    order = sorted(range(len(PASSAGES)), key=lambda i: len(PASSAGES[i]))
    chunks = [encoder.tokenize([PASSAGES[i] for i in order[s : s + chunk]], "passage") for s in range(0, len(order), chunk)]
    return {
        "question_ids": ["q0", "q1", "q2"],
        "query": encoder.tokenize(QUESTIONS, "query"),
        "passages": chunks,
        "passage_order": torch.tensor(order),
        "owner": torch.tensor([0, 0, 0, 1, 1, 1, 2, 2]),
        "utility": torch.tensor([-0.5, 1.5, 0.2, 0.1, -1.0, 2.0, 0.3, 0.0]),
        "gold": torch.tensor([False, True, False, False, False, True, True, False]),
    }


def _gradients(tiny_encoder_dir: Path, tmp_path: Path, loss: str, *, grad_cache: bool, micro_batch: int, train: bool) -> tuple:
    encoder = DualEncoder("tiny", cache_dir=tmp_path, local_path=tiny_encoder_dir)
    encoder.train(train)
    module = RetrieverModule(encoder, LOSSES[loss], grad_cache=grad_cache, micro_batch=micro_batch)
    torch.manual_seed(7)
    value = module.training_step(_batch(encoder, chunk=3), 0)
    value.backward()
    after = torch.get_rng_state()
    grads = {name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None}
    return float(value.detach()), grads, after


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_cached_gradients_equal_the_plain_steps(loss: str, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    plain = _gradients(tiny_encoder_dir, tmp_path, loss, grad_cache=False, micro_batch=32, train=False)
    cached = _gradients(tiny_encoder_dir, tmp_path, loss, grad_cache=True, micro_batch=2, train=False)  # 2 texts at a time
    assert cached[0] == pytest.approx(plain[0], abs=1e-6)
    assert plain[1].keys() == cached[1].keys() and len(plain[1]) > 10
    for name, grad in plain[1].items():
        assert torch.allclose(cached[1][name], grad, atol=1e-5, rtol=0), name
    assert any(float(g.abs().max()) > 1e-3 for g in plain[1].values())  # gradients that could differ


def test_dropout_is_replayed_and_the_random_state_left_as_the_plain_step_leaves_it(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """In train mode, micro-batches as large as the chunks draw dropout as the plain step does; the replay
    restores each one's state, so the gradients match and later draws (the next step's) are the same."""
    plain = _gradients(tiny_encoder_dir, tmp_path, "uae", grad_cache=False, micro_batch=32, train=True)
    cached = _gradients(tiny_encoder_dir, tmp_path, "uae", grad_cache=True, micro_batch=3, train=True)
    evaluated = _gradients(tiny_encoder_dir, tmp_path, "uae", grad_cache=False, micro_batch=32, train=False)
    assert plain[0] != pytest.approx(evaluated[0], abs=1e-4)  # dropout is on: the replay has something to match
    assert cached[0] == pytest.approx(plain[0], abs=1e-6)
    for name, grad in plain[1].items():
        assert torch.allclose(cached[1][name], grad, atol=1e-5, rtol=0), name
    assert torch.equal(cached[2], plain[2])


def test_split_tokens_cuts_rows_and_trailing_padding() -> None:
    tokens = {"input_ids": torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 0, 0, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])}
    first, second = split_tokens(tokens, 2)
    assert first["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0]]  # its longest row holds 3 tokens
    assert second["input_ids"].tolist() == [[6]] and second["attention_mask"].tolist() == [[1]]

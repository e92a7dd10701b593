"""The engines of encode_shards give the vectors of the in-process reference: two worker processes running ONNX
Runtime (to 1e-5, ONNX against torch), Lightning's predict loop (one CPU device here; DDP splits shards by rank,
checked on the split itself and, under ``slow``, with two DDP processes on the CPU), and bad settings are refused.

Worker and DDP processes are spawned, so each of those tests pays for Python, torch and transformers starting in
every process: 35 to 75 s on the 2-core CPU while other jobs kept it busy (load 10-12), 2026-12-06."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers.shards import ALL_SHARDS, SHARD_SIZE, TEXTS, tiny_encoder
from uae.core.errors import UAEError
from uae.retrieval.encoder import DualEncoder
from uae.retrieval.shard_encoding import encode_shards
from uae.retrieval.shard_predict import ShardPredictor
from uae.retrieval.shards import Shard, ShardSet


@pytest.fixture
def reference(tiny_encoder_dir: Path, tmp_path: Path) -> np.ndarray:
    """The in-process torch encoding: what every engine must give."""
    return encode_shards(tiny_encoder(tiny_encoder_dir, tmp_path / "cache"), TEXTS, tmp_path / "reference", shard_size=SHARD_SIZE).to_array()


def _not_here(*args: object, **kwargs: object) -> None:
    raise AssertionError("encoded in the test's own process")


def test_two_onnx_worker_processes_give_the_vectors_of_one(
    tiny_encoder_dir: Path, tmp_path: Path, reference: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx = tiny_encoder(tiny_encoder_dir, tmp_path / "cache", runtime="onnx")
    one = encode_shards(onnx, TEXTS, tmp_path / "one", shard_size=SHARD_SIZE).to_array()  # workers=1: this process
    monkeypatch.setattr(DualEncoder, "encode", _not_here)  # from here on, only the workers may encode
    two = encode_shards(onnx, TEXTS, tmp_path / "two", shard_size=SHARD_SIZE, engine="processes", workers=2)
    assert two.encoded == ALL_SHARDS
    np.testing.assert_allclose(two.to_array(), one, atol=1e-5, rtol=0)
    np.testing.assert_allclose(two.to_array(), reference, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(ShardSet.load(tmp_path / "two").to_array(), two.to_array())  # every digest checks
    assert not np.allclose(two.to_array()[:-1], reference[1:], atol=1e-3)  # rows really differ: the checks can fail


def test_lightnings_predict_loop_writes_the_reference_shards_and_resumes(
    tiny_encoder_dir: Path, tmp_path: Path, reference: np.ndarray
) -> None:
    encoder = tiny_encoder(tiny_encoder_dir, tmp_path / "cache")
    folder = tmp_path / "lightning"
    trainer = {"accelerator": "cpu", "devices": 1}
    predicted = encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE, engine="lightning", trainer=trainer)
    assert predicted.encoded == ALL_SHARDS
    np.testing.assert_allclose(predicted.to_array(), reference, atol=1e-6, rtol=0)
    assert not (folder / "lightning_logs").exists() and not list(folder.glob("*.ckpt"))  # shards only
    (folder / "shard-00002.npy").unlink()
    assert encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE, engine="lightning", trainer=trainer).encoded == (2,)
    np.testing.assert_allclose(ShardSet.load(folder).to_array(), reference, atol=1e-6, rtol=0)


def test_ddp_ranks_take_disjoint_shards_that_cover_the_missing_ones(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    todo = [Shard(i, 8 * i, 8 * i + 8) for i in (0, 2, 3, 5, 6, 7, 9)]  # a resumed encoding: some shards done
    predictor = ShardPredictor(tiny_encoder(tiny_encoder_dir, tmp_path / "cache"), TEXTS * 3, todo, batch_size=4)
    seen: list[int] = []
    for rank in range(3):
        predictor._trainer = SimpleNamespace(global_rank=rank, world_size=3)  # type: ignore[assignment]
        loader = predictor.predict_dataloader()
        mine = [batch["index"] for batch in loader]
        assert all(i % 3 == rank for i in mine)
        assert all(len(batch["texts"]) == 8 for batch in predictor.predict_dataloader())
        seen += mine
    assert sorted(seen) == [s.index for s in todo]


@pytest.mark.slow
def test_ddp_over_two_cpu_processes_gives_the_reference(tiny_encoder_dir: Path, tmp_path: Path, reference: np.ndarray) -> None:
    encoder = tiny_encoder(tiny_encoder_dir, tmp_path / "cache")
    trainer = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}
    shards = encode_shards(encoder, TEXTS, tmp_path / "ddp", shard_size=SHARD_SIZE, engine="lightning", trainer=trainer)
    assert shards.encoded == ALL_SHARDS
    np.testing.assert_allclose(ShardSet.load(tmp_path / "ddp").to_array(), reference, atol=1e-6, rtol=0)


def test_bad_settings_are_refused(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    encoder = tiny_encoder(tiny_encoder_dir, tmp_path / "cache")
    for settings, message in [
        ({"engine": "threads"}, "engine='threads': use one of local, processes, lightning"),
        ({"workers": 2}, "workers=2 with engine=local"),
        ({"dtype": "int8"}, "dtype='int8'"),
        ({"shard_size": 0}, "shard_size=0"),
        ({"ids": ["a"] * 3}, "3 passage ids for 37 passages"),
    ]:
        with pytest.raises(UAEError, match=message):
            encode_shards(encoder, TEXTS, tmp_path / "shards", **settings)  # type: ignore[arg-type]
    with pytest.raises(UAEError, match="no passages"):
        encode_shards(encoder, [], tmp_path / "shards")


def test_a_pickled_encoder_keeps_whether_its_weights_changed(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """What lets worker processes run ONNX Runtime: a copy's weight version counters start afresh, so without the
    flag it carries, an unchanged encoder would read as changed in every worker and fall back to torch."""
    import pickle

    import torch

    onnx = tiny_encoder(tiny_encoder_dir, tmp_path / "cache", runtime="onnx")
    assert pickle.loads(pickle.dumps(onnx)).inference_runtime() == "onnx"
    with torch.no_grad():
        next(onnx.parameters()).add_(0.01)  # as an optimizer step would
    assert onnx.inference_runtime() == "torch"
    assert pickle.loads(pickle.dumps(onnx)).inference_runtime() == "torch"

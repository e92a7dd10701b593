"""``python -m uae.encode``: a passages file into a shard folder, resumed by running it again, checked with
``--check``, which names a damaged shard; bad input is refused in words (exit 2). In this process, on an
exported folder of the tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.damage import xor_byte
from uae.encode import main as encode
from uae.retrieval.encoder import DualEncoder
from uae.retrieval.shards import ShardSet


@pytest.fixture
def exported(tiny_encoder_dir: Path, tmp_path: Path) -> Path:
    return DualEncoder("tiny-bert", cache_dir=tmp_path / "cache", local_path=tiny_encoder_dir).save(tmp_path / "model")


def test_encode_resume_and_check(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    texts = [f"paragraph {i} " + "text " * (i % 5) for i in range(11)]
    corpus.write_text("".join(json.dumps({"_id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    folder = tmp_path / "shards"
    args = [str(exported), "--passages", str(corpus), "--to", str(folder), "--shard-size", "4", "--dtype", "float16", "--quiet"]
    assert encode(args) == 0
    assert "11 passages in 3 shards of 4 (3 encoded now, 0 kept), float16" in capsys.readouterr().err
    shards = ShardSet.load(folder)
    assert shards.ids() == [f"p{i}" for i in range(11)] and shards.arrays[0].dtype == np.float16
    expected = DualEncoder("tiny-bert", cache_dir=tmp_path / "cache", local_path=exported).encode(texts, "passage", progress=False)
    np.testing.assert_allclose(shards.to_array(), expected.numpy(), atol=2e-3, rtol=0)

    (folder / "shard-00001.npy").unlink()
    assert encode(args) == 0
    assert "(1 encoded now, 2 kept)" in capsys.readouterr().err

    assert encode(["--check", str(folder)]) == 0
    assert "11 passages in 3 shards, float16, every digest matches" in capsys.readouterr().out
    xor_byte(folder / "shard-00002.npy", -1, 0x01)
    assert encode(["--check", str(folder)]) == 2
    assert "shard-00002.npy: its content does not match the digest" in capsys.readouterr().err


def test_bad_input_is_refused(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert encode([str(exported), "--passages", str(tmp_path / "none.jsonl"), "--to", str(tmp_path / "s")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert encode([str(exported)]) == 2
    assert "give RUN_DIR, --passages FILE and --to FOLDER" in capsys.readouterr().err
    assert encode(["--check", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_search_reads_the_shards_instead_of_encoding(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """uae.search --shards: the same hits as encoding the corpus itself; shards of other passages are refused."""
    from uae.api import Retriever
    from uae.search import main as search

    texts = [f"paragraph {i} about " + ("cats " if i % 3 else "dogs ") * (1 + i % 4) for i in range(12)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    folder = tmp_path / "shards"
    assert encode([str(exported), "--passages", str(corpus), "--to", str(folder), "--shard-size", "5", "--quiet"]) == 0
    capsys.readouterr()
    question = ["--question", "dogs", "--question", "cats", "--k", "4", "--json"]
    assert search([str(exported), "--passages", str(corpus), "--shards", str(folder), "--index-file", str(tmp_path / "a.pt"), *question]) == 0
    from_shards = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert search([str(exported), "--passages", str(corpus), "--index-file", str(tmp_path / "b.pt"), *question]) == 0
    encoded = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["id"] for h in from_shards] == [h["id"] for h in encoded] and len(encoded) == 8
    np.testing.assert_allclose([h["score"] for h in from_shards], [h["score"] for h in encoded], atol=1e-5)

    # an approximate index fills from the shards too
    retriever = Retriever.load(exported).index_shards(folder, texts, [f"p{i}" for i in range(12)], factory="IVF2,Flat", nprobe=2)
    assert [h.id for h in retriever.search("dogs", k=4)] == [h["id"] for h in encoded[:4]]
    # shards of other passages (one text changed) are refused, naming what differs
    other = tmp_path / "other.jsonl"
    other.write_text(corpus.read_text().replace("paragraph 3", "paragraph three"))
    assert search([str(exported), "--passages", str(other), "--shards", str(folder), "--index-file", str(tmp_path / "c.pt"), *question]) == 2
    assert "other passage texts" in capsys.readouterr().err and not (tmp_path / "c.pt").exists()

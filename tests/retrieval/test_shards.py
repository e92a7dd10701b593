"""Passage embeddings in shards (uae/retrieval/shards.py, shard_encoding.py): an encoding killed mid-run resumes to
the vectors of an uninterrupted one, encoding only the shards it had not recorded; a damaged shard or manifest is
refused on reading and encoded again on resuming, never used; float16 shards are float32's rounded; a FAISS index
filled shard by shard searches as one built from the whole array.

The encoder is the tiny random BERT (2 layers, hidden 32): the real code paths in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.damage import killed_writer, xor_byte
from tests.helpers.paths import ROOT
from tests.helpers.runs import ENV
from tests.helpers.shards import ALL_SHARDS, SHARD_SIZE, TEXTS, tiny_encoder
from uae.core.errors import CacheMismatchError, DamagedFileError, UAEError
from uae.retrieval.ann import IndexSpec, build_index, configure, index_from_shards, search
from uae.retrieval.encoder import DualEncoder
from uae.retrieval.shard_encoding import encode_shards
from uae.retrieval.shards import MANIFEST, ShardFolder, ShardSet, ShardSpec


@pytest.fixture
def encoder(tiny_encoder_dir: Path, tmp_path: Path) -> DualEncoder:
    return tiny_encoder(tiny_encoder_dir, tmp_path / "cache")


@pytest.fixture
def encoded_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many passages each ``DualEncoder.encode`` call of this process got: what an encoding really encoded."""
    calls: list[int] = []
    original = DualEncoder.encode

    def counting(self, texts, side, **kwargs):
        calls.append(len(texts))
        return original(self, texts, side, **kwargs)

    monkeypatch.setattr(DualEncoder, "encode", counting)
    return calls


KILLED_ENCODING = """
    import os, signal, sys
    from pathlib import Path
    from tests.helpers.shards import SHARD_SIZE, TEXTS, tiny_encoder
    from uae.retrieval import shards
    from uae.retrieval.shard_encoding import encode_shards

    recorded = []
    original = shards.ShardFolder.record

    def record(self, entry):  # the third shard is written, then the process dies before recording it
        if len(recorded) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, entry)
        recorded.append(entry["index"])

    shards.ShardFolder.record = record
    encoder = tiny_encoder(Path(sys.argv[1]), Path(sys.argv[2]))
    encode_shards(encoder, TEXTS, sys.argv[3], shard_size=SHARD_SIZE)
"""


def test_a_killed_encoding_resumes_to_the_same_vectors_encoding_only_what_was_missing(
    tiny_encoder_dir: Path, tmp_path: Path, encoder: DualEncoder, encoded_rows: list[int]
) -> None:
    folder = tmp_path / "shards"
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_ENCODING), str(tiny_encoder_dir), str(tmp_path / "cache"), str(folder)],
        cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, as a crash or a preempted job
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [s["index"] for s in manifest["shards"]] == [0, 1]  # the manifest was updated after each shard
    assert (folder / "shard-00002.npy").is_file()  # written, not recorded: it does not count
    with pytest.raises(UAEError, match="2 of 5 shards are encoded"):
        ShardSet.load(folder)
    kept = {name: (folder / name).read_bytes() for name in ("shard-00000.npy", "shard-00001.npy")}
    left = killed_writer(folder / "shard-00003.npy")  # and a writer killed mid-write left its temporary file

    resumed = encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE)
    assert resumed.encoded == (2, 3, 4)
    assert encoded_rows == [8, 8, 5]  # the passages of shards 2-4, nothing of 0-1
    assert {name: (folder / name).read_bytes() for name in kept} == kept
    assert not left.exists()

    encoded_rows.clear()
    whole = encode_shards(encoder, TEXTS, tmp_path / "uninterrupted", shard_size=SHARD_SIZE)
    assert whole.encoded == ALL_SHARDS and encoded_rows == [8, 8, 8, 8, 5]
    np.testing.assert_allclose(ShardSet.load(folder).to_array(), whole.to_array(), atol=1e-6, rtol=0)
    assert ShardSet.load(folder).ids() == [str(i) for i in range(len(TEXTS))]
    # the vectors are the encoder's own (shard by shard, to float rounding): the comparison above could fail
    reference = encoder.encode(TEXTS, "passage", progress=False).numpy()
    np.testing.assert_allclose(whole.to_array(), reference, atol=1e-6, rtol=0)
    assert not np.allclose(whole.to_array()[:8], reference[8:16], atol=1e-3)

    encoded_rows.clear()
    again = encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE)
    assert again.encoded == () and encoded_rows == []  # a finished set encodes nothing


def test_a_damaged_shard_is_refused_on_reading_and_encoded_again_on_resuming(
    tmp_path: Path, encoder: DualEncoder, encoded_rows: list[int]
) -> None:
    folder = tmp_path / "shards"
    expected = encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE).to_array()
    shard = folder / "shard-00001.npy"
    xor_byte(shard, shard.stat().st_size - 3, 0x10)  # one bit of one float: still a valid .npy, a wrong vector
    with pytest.raises(DamagedFileError, match=r"shard-00001\.npy: its content does not match the digest.*Delete it"):
        ShardSet.load(folder)
    trusting = ShardSet.load(folder, verify=False)  # the flag that skips the check: maps without reading
    assert not np.array_equal(trusting.to_array(), expected)
    with pytest.raises(DamagedFileError, match=r"shard-00001\.npy"):
        trusting.verify()

    encoded_rows.clear()
    repaired = encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE)
    assert repaired.encoded == (1,) and encoded_rows == [SHARD_SIZE]
    np.testing.assert_array_equal(ShardSet.load(folder).to_array(), expected)

    (folder / "shard-00004.npy").write_bytes(b"\x93NUMPY")  # cut short: refused, then encoded again
    with pytest.raises(DamagedFileError, match=r"shard-00004\.npy"):
        ShardSet.load(folder)
    (folder / "shard-00003.npy").unlink()  # deleted, as the message says to
    with pytest.raises(DamagedFileError, match=r"shard-00003\.npy is recorded .* but missing"):
        ShardSet.load(folder)
    assert encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE).encoded == (3, 4)

    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["shards"][0]["digest"] = manifest["shards"][1]["digest"]  # an edit the manifest's own digest catches
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DamagedFileError, match="manifest.json: its content does not match"):
        ShardSet.load(folder)
    assert encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE).encoded == ALL_SHARDS
    np.testing.assert_array_equal(ShardSet.load(folder).to_array(), expected)


def test_another_encoding_into_the_folder_is_refused_naming_what_differs(tmp_path: Path, encoder: DualEncoder) -> None:
    folder = tmp_path / "shards"
    encode_shards(encoder, TEXTS, folder, shard_size=SHARD_SIZE)
    with pytest.raises(CacheMismatchError, match="shard_size 8 .here: 10."):
        encode_shards(encoder, TEXTS, folder, shard_size=10)
    with pytest.raises(CacheMismatchError, match="texts"):
        encode_shards(encoder, [t + "!" for t in TEXTS], folder, shard_size=SHARD_SIZE)
    other = tmp_path / "not-shards"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UAEError, match=r"holds files that are not embedding shards \(notes\.txt\)"):
        encode_shards(encoder, TEXTS, other, shard_size=SHARD_SIZE)
    with pytest.raises(UAEError, match="no manifest.json"):
        ShardSet.load(tmp_path / "nothing")


def test_float16_shards_are_float32_rounded(tmp_path: Path, encoder: DualEncoder) -> None:
    full = encode_shards(encoder, TEXTS, tmp_path / "f32", shard_size=SHARD_SIZE)
    half = encode_shards(encoder, TEXTS, tmp_path / "f16", shard_size=SHARD_SIZE, dtype="float16")
    assert half.arrays[0].dtype == np.float16 and full.arrays[0].dtype == np.float32
    assert isinstance(half.arrays[0], np.memmap)  # memory-mapped, not read into memory
    stored = sum(p.stat().st_size for p in (tmp_path / "f16").glob("shard-*.npy"))
    assert stored < 0.6 * sum(p.stat().st_size for p in (tmp_path / "f32").glob("shard-*.npy"))
    vectors = half.to_array()
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, full.to_array().astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(vectors, full.to_array(), atol=2**-11, rtol=2**-10)  # float16's rounding of values below 1
    assert not np.array_equal(vectors, full.to_array())  # the rounding is really there
    with pytest.raises(CacheMismatchError, match="dtype 'float16'"):
        encode_shards(encoder, TEXTS, tmp_path / "f16", shard_size=SHARD_SIZE)


# ------------------------------------------------------------------------------------------------------------
# indexes filled shard by shard


def _clustered(n: int = 3000, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(30, dim))[rng.integers(0, 30, n)] + 0.6 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), (x[rng.choice(n, 60, replace=False)] + 0.2 * rng.normal(size=(60, dim))).astype(np.float32)


def _shards_of(x: np.ndarray, folder: Path, shard_size: int, dtype: str = "float32") -> ShardSet:
    """Vectors written as shards directly, as an encoding would write them."""
    ids = [str(i) for i in range(len(x))]
    spec = ShardSpec(encoder="synthetic", passages="-", texts="-", count=len(x), dimension=x.shape[1], shard_size=shard_size, dtype=dtype)
    target = ShardFolder.prepare(folder, spec, ids)
    for shard in target.missing():
        target.record(target.write(shard, x[shard.start : shard.stop]))
    return ShardSet.load(folder, spec=spec)


@pytest.mark.parametrize(
    "spec,dtype",
    [
        (IndexSpec(), "float32"),
        (IndexSpec(), "float16"),
        (IndexSpec("IVF16,Flat", nprobe=4), "float32"),
        (IndexSpec("IVF16,Flat", nprobe=4), "float16"),
        (IndexSpec("IVF16,SQ4", nprobe=4, exact_rerank=30), "float32"),  # compressed, re-scored from the shards' rows
    ],
    ids=["flat", "flat-float16", "ivf", "ivf-float16", "ivfsq-rerank"],
)
def test_an_index_filled_shard_by_shard_searches_as_one_built_from_the_array(tmp_path: Path, spec: IndexSpec, dtype: str) -> None:
    x, q = _clustered()
    shards = _shards_of(x, tmp_path / "shards", 700, dtype)  # 5 shards, the last one short
    assert len(shards.arrays) == 5
    x = x.astype(dtype).astype(np.float32)  # what the shards hold
    from_array = configure(build_index(x, spec.factory), spec)
    filled = configure(index_from_shards(shards, spec.factory), spec)
    assert filled.ntotal == len(x)
    expected = search(from_array, x, q, 10, spec)
    got = search(filled, shards, q, 10, spec)  # exact re-ranking reads its rows from the shards
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(shards[expected[1]], x[expected[1]])  # rows gathered across shards, any shape
    if spec.factory == "IVF16,Flat":  # the approximate index really is one: it misses some of the exact top 10
        exact = search(build_index(x, "Flat"), x, q, 10, IndexSpec())[1]
        assert not np.array_equal(np.sort(exact, axis=1), np.sort(got[1], axis=1))


def test_hnsw_filled_shard_by_shard_meets_its_recall(tmp_path: Path) -> None:
    """HNSW's graph depends on how vectors arrive (and on threads), so shard by shard it is another graph, as good."""
    x, q = _clustered()
    shards = _shards_of(x, tmp_path / "shards", 700)
    spec = IndexSpec("HNSW16", ef_search=64)
    exact = search(build_index(x, "Flat"), x, q, 10, IndexSpec())[1]
    found = search(configure(index_from_shards(shards, spec.factory), spec), shards, q, 10, spec)[1]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found, strict=True)]) >= 0.95


# ------------------------------------------------------------------------------------------------------------
# retrieval.shard_size: DenseRetriever's embeddings through a shard set


def test_a_dense_retriever_with_shards_ranks_as_without_and_resumes(
    tiny_encoder_dir: Path, tiny_raw_dir: Path, tmp_path: Path, encoded_rows: list[int]
) -> None:
    from uae.data.qasper import load_qasper
    from uae.retrieval.dense import DenseRetriever

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    n = len(split.all_passages)
    assert n > 5  # two shards at least
    plain = DenseRetriever(tiny_encoder(tiny_encoder_dir, tmp_path), cache_dir=tmp_path, progress=False)
    sharded = DenseRetriever(tiny_encoder(tiny_encoder_dir, tmp_path), cache_dir=tmp_path, progress=False, shard_size=5,
                             index="IVF2,Flat", nprobe=2)  # every list probed: exact, through an index filled by shard
    questions = split.evaluable_questions
    for scope in ("document", "corpus"):
        expected = plain.rank(split, questions, scope=scope, top_k=10).ranked_ids
        assert sharded.rank(split, questions, scope=scope, top_k=10).ranked_ids == expected
    assert sharded.describe()["shard_size"] == 5 and "shard_size" not in plain.describe()
    folder = sharded.embedding_cache(split)[0]
    assert folder.name.endswith("-shards") and len(ShardSet.load(folder).arrays) == -(-n // 5)
    np.testing.assert_allclose(sharded.passage_embeddings(split).numpy(), plain.passage_embeddings(split).numpy(), atol=1e-6)
    assert sharded.cache_hit is True

    (folder / "shard-00001.npy").unlink()  # as a kill before that shard would have left it
    encoded_rows.clear()
    sharded.passage_embeddings(split)
    assert sharded.cache_hit is False and encoded_rows == [n - 5]  # the rows of the second shard only

"""benchmarks/scale.py (issue 32, the cost curve): its recall against a hand-made example, the last line a script
reads, the IVF list counts, the labels of search settings, the vectors beyond the real count, and a tiny run
in this process (seconds: faiss only, no encoder) whose JSON reads back to the same tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import ROOT
from tests.helpers.scripts import load_script


@pytest.fixture(scope="module")
def scale():
    return load_script(ROOT / "benchmarks" / "scale.py", "scale_bench")


def test_recall_is_the_share_of_the_exact_top_k_found(scale) -> None:
    exact = np.array([[0, 1, 2], [3, 4, 5]])
    found = np.array([[2, 0, 9], [5, -1, -1]])  # -1: a place the index could not fill
    assert scale.recall_at(exact, found, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert scale.recall_at(exact, found, 1) == pytest.approx(0.0)  # neither query's first row is its exact first
    assert scale.recall_at(exact, exact, 3) == 1.0
    assert scale.recall_at(np.array([[7, 8]]), np.array([[8, 7]]), 2) == 1.0  # order inside the top k does not count
    with pytest.raises(ValueError):
        scale.recall_at(exact, found[:1], 3)


def test_the_summary_line_reads_back(scale) -> None:
    line = scale.summary_line(100000, "IVF1024,PQ48np (nprobe=16)", 0.98765, 41.26)
    assert line == "100000 passages, IVF1024,PQ48np (nprobe=16): recall@10 0.988, 41.3x exact single-query throughput"
    assert scale.parse_summary(line) == {"n": 100000, "index": "IVF1024,PQ48np (nprobe=16)", "recall@10": 0.988, "speedup": 41.3}
    with pytest.raises(ValueError):
        scale.parse_summary("| Flat | exact | 0.01 |")


def test_ivf_lists_are_four_root_n_to_a_power_of_two(scale) -> None:
    assert [scale.nlist_for(n) for n in (2000, 10_000, 100_000, 1_000_000)] == [128, 512, 1024, 4096]
    assert scale.Variant("IVF{nlist},Flat", nprobe=64).factory(10_000) == "IVF512,Flat"


def test_a_label_names_only_the_settings_that_are_not_the_defaults(scale) -> None:
    assert [v.label(10_000) for v in scale.family_defaults("HNSW32", efs=[128, 512])] == ["HNSW32", "HNSW32 (efSearch=512)"]
    assert scale.family_defaults("IVF{nlist},PQ48np") == [scale.Variant("IVF{nlist},PQ48np", nprobe=64, rerank=100)]
    assert scale.family_defaults("IVF{nlist},Flat", efs=[256], nprobes=[16, 64]) == [
        scale.Variant("IVF{nlist},Flat", nprobe=16), scale.Variant("IVF{nlist},Flat", nprobe=64)
    ]
    assert scale.Variant("HNSW32", ef_search=64).label(10_000) == "HNSW32 (efSearch=64)"
    assert scale.Variant("IVF{nlist},PQ48np", nprobe=64).label(10_000) == "IVF512,PQ48np (nprobe=64)"
    assert scale.Variant("Flat").label(10_000) == "Flat"


def test_vectors_beyond_the_real_ones_are_perturbed_copies_of_unit_length(scale) -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 16)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    more, how = scale.extend_real(real, 500, seed=0, perturbation=0.5)
    assert more.shape == (500, 16) and np.array_equal(more[:300], real)
    assert np.allclose(np.linalg.norm(more, axis=1), 1, atol=1e-5)
    assert (more[300:] @ real.T).max(axis=1).mean() > 0.5  # each near a real vector
    assert "200 more" in how
    fewer, how = scale.extend_real(real, 100, seed=0, perturbation=0.5)
    assert len(fewer) == 100 and "sample of 100" in how
    assert {tuple(r) for r in fewer} <= {tuple(r) for r in real}


def test_a_tiny_run_ends_with_its_line_and_its_json_reads_back(scale, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scale.json"
    argv = ["--n", "1500", "--index", "Flat", "HNSW32", "--queries", "30", "--single", "10", "--encode-sample", "0",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet"]  # fmt: skip
    assert scale.main(argv) == 0  # --vectors auto: no real shard set in that cache, so synthetic
    printed = capsys.readouterr().out
    last = scale.parse_summary(printed.strip().splitlines()[-1])
    assert (last["n"], last["index"]) == (1500, "HNSW32") and 0 <= last["recall@10"] <= 1 and last["speedup"] > 0
    doc = json.loads(out.read_text())
    assert doc["vectors"] == "synthetic" and [r["factory"] for r in doc["sizes"][0]["rows"]] == ["Flat", "HNSW32"]
    flat = doc["sizes"][0]["rows"][0]
    assert flat["recall@10"] == flat["recall@100"] == 1.0 and flat["speedup"] == 1.0 and flat["bytes_per_vector"] >= 384 * 4
    assert scale.main(["--from", str(out)]) == 0
    again = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| Flat |")]
    assert table and table == [line for line in again.splitlines() if line.startswith("| Flat |")]


def test_a_trained_encoder_gets_its_own_shard_set_and_only_real_vectors(scale, tmp_path: Path) -> None:
    assert scale.shard_folder(tmp_path, "torch") == tmp_path / "scale" / "open-corpus-minilm-torch"
    assert scale.encoder_name(None, "0123456789abcdef") == "minilm"
    run = tmp_path / "run" / "encoder"
    mine = scale.encoder_name(run, "0123456789abcdef")
    assert scale.shard_folder(tmp_path, "torch", mine).name == "open-corpus-encoder-0123456789ab-torch"
    assert scale.encoder_name(run, "fedcba9876543210") != mine  # retrained weights: another set
    with pytest.raises(SystemExit, match="add --vectors real"):  # synthetic vectors would not be this encoder's
        scale.main(["--n", "2000", "--encoder", str(run), "--cache-dir", str(tmp_path), "--quiet"])


def test_unreached_counts_rows_an_index_does_not_return_for_their_own_vector(scale) -> None:
    from uae.retrieval.ann import IndexSpec, build_index

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[1] = vectors[0]  # a repeated paragraph: the same vector

    class Answers:
        """An index that returns, for the i-th query it is asked, the row it is told to (-1: nothing)."""

        ntotal = 5

        def __init__(self, rows: list[int]) -> None:
            self.rows, self.asked = rows, 0

        def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            rows = np.array([[r] for r in self.rows[self.asked : self.asked + len(queries)]])
            self.asked += len(queries)
            return np.ones(rows.shape, np.float32), rows

    spec = IndexSpec("HNSW32", ef_search=16)
    # row 0 -> row 1 (the same vector: found), row 1 -> itself, row 2 -> row 3 (missed), row 3 -> itself, row 4 -> none
    assert scale.unreached(Answers([1, 1, 3, 3, -1]), vectors, spec, block=2) == 2
    assert scale.unreached(build_index(vectors, "Flat"), vectors, IndexSpec("Flat")) == 0  # exact search finds every row


def test_reach_adds_its_column(scale, tmp_path: Path, capsys) -> None:
    argv = ["--n", "1500", "--index", "Flat", "HNSW32", "--queries", "30", "--single", "10", "--encode-sample", "0",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "s.json"), "--quiet", "--reach"]  # fmt: skip
    assert scale.main(argv) == 0
    rows = json.loads((tmp_path / "s.json").read_text())["sizes"][0]["rows"]
    assert rows[0]["unreached"] == 0 and 0 <= rows[1]["unreached"] < 1500
    assert "unreached rows" in capsys.readouterr().out

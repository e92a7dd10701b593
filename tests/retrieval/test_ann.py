"""Approximate corpus indexes (uae/retrieval/ann.py): each meets its recall against exact search on a
clustered synthetic set, a saved index reloads (digest checked) to the same rankings, and a bad factory or a
search setting the index does not have is refused, never ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uae.core.errors import UAEError
from uae.retrieval.ann import IndexSpec, build_index, cached_index, configure, search


def _vectors(n: int = 4000, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 40 centres (as embeddings cluster by topic), and queries near some of them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(n, 100, replace=False)] + 0.2 * rng.normal(size=(100, dim))
    return x.astype(np.float32), q.astype(np.float32)


def _recall(exact: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact, found, strict=True)]))


def test_flat_search_is_the_exact_top_k_with_ties_by_row() -> None:
    x, q = _vectors(500)
    x[7] = x[3]  # a repeated passage: equal scores, the lower row first
    scores, rows = search(build_index(x, "Flat"), x, q, 10, IndexSpec())
    brute = q @ x.T
    expected = np.lexsort((np.broadcast_to(np.arange(len(x)), brute.shape), -brute), axis=1)[:, :10]
    assert np.array_equal(rows, expected)
    assert np.allclose(scores, np.take_along_axis(brute, expected, axis=1), atol=1e-5)


@pytest.mark.parametrize(
    "spec,floor",
    [
        (IndexSpec("HNSW32", ef_search=64), 0.95),
        (IndexSpec("IVF32,Flat", nprobe=8), 0.95),
        (IndexSpec("IVF32,PQ8x4", nprobe=8, exact_rerank=100), 0.9),  # compressed, then re-scored exactly
    ],
    ids=["hnsw", "ivf", "ivfpq-rerank"],
)
def test_an_approximate_index_meets_its_recall_at_10(spec: IndexSpec, floor: float) -> None:
    x, q = _vectors()
    exact = search(build_index(x, "Flat"), x, q, 10, IndexSpec())[1]
    found = search(configure(build_index(x, spec.factory), spec), x, q, 10, spec)[1]
    assert _recall(exact, found) >= floor


def test_exact_reranking_recovers_what_compression_loses() -> None:
    x, q = _vectors()
    exact = search(build_index(x, "Flat"), x, q, 10, IndexSpec())[1]
    plain = IndexSpec("IVF32,PQ4x4", nprobe=8)
    index = configure(build_index(x, plain.factory), plain)
    lossy = _recall(exact, search(index, x, q, 10, plain)[1])
    reranked = _recall(exact, search(index, x, q, 10, IndexSpec("IVF32,PQ4x4", nprobe=8, exact_rerank=200))[1])
    assert lossy < 0.8 < reranked  # 4 bytes a vector cannot order the top 10; exact scores of its top 200 can


def test_a_saved_index_reloads_digest_checked_to_the_same_rankings(tmp_path: Path) -> None:
    x, q = _vectors()
    spec = IndexSpec("IVF32,PQ8x4", nprobe=4)
    built = cached_index(x, "embeddings-key", spec, tmp_path, "dev")
    files = list((tmp_path / "indexes").iterdir())
    assert len(files) == 1
    reloaded = cached_index(x[::-1].copy(), "embeddings-key", spec, tmp_path, "dev")  # from the file, not these vectors
    assert np.array_equal(search(built, x, q, 10, spec)[1], search(reloaded, x, q, 10, spec)[1])
    assert reloaded.nprobe == 4
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: a damaged cache is rebuilt, never read
    files[0].write_bytes(bytes(data))
    rebuilt = cached_index(x, "embeddings-key", spec, tmp_path, "dev")
    assert np.array_equal(search(rebuilt, x, q, 10, spec)[1], search(built, x, q, 10, spec)[1])
    other = cached_index(x, "other-embeddings", spec, tmp_path, "dev")  # other embeddings: another file
    assert other.ntotal == len(x) and len(list((tmp_path / "indexes").iterdir())) == 2


def test_bad_factories_and_settings_are_refused() -> None:
    x, _ = _vectors(300)
    with pytest.raises(UAEError, match="not a FAISS index_factory string"):
        build_index(x, "HNSW-please")
    with pytest.raises(UAEError, match="needs at least 1024 vectors"):
        build_index(x, "IVF1024,Flat")
    with pytest.raises(UAEError, match="has no nprobe"):
        configure(build_index(x, "HNSW8"), IndexSpec("HNSW8", nprobe=4))
    with pytest.raises(UAEError, match="has no efSearch"):
        configure(build_index(x, "IVF4,Flat"), IndexSpec("IVF4,Flat", ef_search=16))
    with pytest.raises(UAEError, match="the exact Flat index has none of them"):  # a flat index would ignore them
        IndexSpec("Flat", nprobe=4)


def _polysemous(index) -> bool:
    """FAISS's own flag on the PQ part of an index (IVF-PQ, PQ, or an HNSW graph over PQ storage)."""
    import faiss

    part = faiss.downcast_index(index)
    try:
        part = faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        if hasattr(part, "storage"):
            part = faiss.downcast_index(part.storage)
    return bool(getattr(part, "do_polysemous_training", False))


@pytest.mark.parametrize(
    "factory",
    ["IVF16,PQ8", "IVF16,PQ8np", "PQ8", "PQ8np", "OPQ8,IVF16,PQ8", "OPQ8,IVF16,PQ8np", "HNSW32,PQ8", "HNSW32,PQ8np",
     "IVF16,PQ8x4fs", "IVF16,Flat", "HNSW32"],
)
def test_a_warning_exactly_when_faiss_would_train_unused_polysemous_codes(factory: str, caplog: pytest.LogCaptureFixture) -> None:
    from uae.retrieval.ann import _new_index

    with caplog.at_level("WARNING", logger="uae.retrieval.ann"):
        index = _new_index(64, factory)
    warned = any("polysemous" in r.getMessage() for r in caplog.records)
    assert warned == _polysemous(index)

"""Encoder, FAISS index, BM25 and the dense retriever's embedding cache, each against an independent computation."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from uae.core.errors import DataError
from uae.data.qasper import load_qasper
from uae.retrieval.bm25 import BM25Retriever
from uae.retrieval.dense import DenseRetriever
from uae.retrieval.encoder import DualEncoder, pool
from uae.retrieval.index import PassageIndex


def test_pool_by_hand() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))  # padding ignored
    assert torch.equal(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError):
        pool(hidden, mask, "max")  # type: ignore[arg-type]


def _reference_embeddings(model_dir: Path, texts: list[str], prefix: str = "", max_length: int = 512) -> torch.Tensor:
    """One text at a time, no batching or sorting: what the batched encoder must reproduce."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(prefix + text, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(torch.nn.functional.normalize(model(**batch).last_hidden_state.mean(1), dim=-1)[0])
    return torch.stack(rows)


def _encoder(model_dir: Path, tmp_path: Path, **kwargs) -> DualEncoder:
    return DualEncoder("tiny", local_path=model_dir, cache_dir=tmp_path, **kwargs)


def test_encoder_matches_unbatched_reference(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    texts = ["short", "a much longer text about cats and dogs and cameras at night", "medium length text"]
    encoder = _encoder(tiny_encoder_dir, tmp_path, query_instruction="query: ")
    got = encoder.encode(texts, "query", batch_size=2, progress=False)
    expected = _reference_embeddings(tiny_encoder_dir, texts, prefix="query: ")
    assert torch.allclose(got, expected, atol=1e-5)
    # Passages get no instruction, so the same text embeds differently on the two sides.
    passages = encoder.encode(texts, "passage", batch_size=2, progress=False)
    assert torch.allclose(passages, _reference_embeddings(tiny_encoder_dir, texts), atol=1e-5)
    assert not torch.allclose(passages, got, atol=1e-3)
    assert torch.allclose(got.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """Checkpointing trades compute for memory only: loss and every gradient as without it."""
    texts = ["a question about cats", "cats sleep at night", "the camera records dogs"]
    grads = []
    for checkpointing in (False, True):
        encoder = _encoder(tiny_encoder_dir, tmp_path, gradient_checkpointing=checkpointing).train()
        torch.manual_seed(0)  # the same dropout masks in both runs (checkpointing replays the RNG state)
        q = encoder(encoder.tokenize(texts[:1], "query"), "query")
        p = encoder(encoder.tokenize(texts[1:], "passage"), "passage")
        loss = torch.nn.functional.cross_entropy(q @ p.T / 0.05, torch.tensor([0]))
        loss.backward()
        grads.append((loss.detach(), {n: w.grad.clone() for n, w in encoder.named_parameters() if w.grad is not None}))
    assert encoder.query_encoder.encoder.layer[0].forward.__name__ == "checkpointed"
    assert torch.allclose(grads[0][0], grads[1][0])
    assert grads[0][1].keys() == grads[1][1].keys() and len(grads[0][1]) > 10
    for name, grad in grads[0][1].items():
        assert torch.allclose(grad, grads[1][1][name], atol=1e-6), name


def test_encoder_truncates_to_max_length(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    encoder = _encoder(tiny_encoder_dir, tmp_path, passage_max_length=8)
    long = " ".join(["word"] * 50)
    assert encoder.tokenize([long], "passage")["input_ids"].shape[1] == 8
    got = encoder.encode([long], "passage", progress=False)
    assert torch.allclose(got, _reference_embeddings(tiny_encoder_dir, [long], max_length=8), atol=1e-5)


def test_index_ranks_each_paper_by_inner_product() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 4)).astype(np.float32)
    ids = [f"a/{i}" for i in range(4)] + [f"b/{i}" for i in range(3)]
    index = PassageIndex(vectors, ids, ["a"] * 4 + ["b"] * 3, use_gpu=False)
    queries = rng.normal(size=(2, 4)).astype(np.float32)
    scores, ranked = index.search_document(queries, "b")
    for q, row in zip(queries, ranked):
        expected = [ids[4 + i] for i in np.argsort(-(vectors[4:] @ q))]
        assert row == expected
    assert np.allclose(scores, np.sort(queries @ vectors[4:].T, axis=1)[:, ::-1], atol=1e-5)
    _, top = index.search_corpus(queries, k=3)
    assert top[0] == [ids[i] for i in np.argsort(-(vectors @ queries[0]))[:3]]
    # Identical passages (QASPER repeats "DISPLAYFORM0") tie exactly: document order decides.
    dup = PassageIndex(np.repeat(vectors[:1], 5, axis=0), ids[:5], ["a"] * 4 + ["b"], use_gpu=False)
    assert dup.search_document(queries, "a")[1] == [ids[:4], ids[:4]]
    with pytest.raises(DataError, match="Document c has no paragraphs"):
        index.search_document(queries, "c")
    with pytest.raises(ValueError, match="not contiguous"):
        PassageIndex(vectors[:3], ids[:3], ["a", "b", "a"], use_gpu=False)


def test_repeated_paragraphs_tie_exactly_in_any_batch() -> None:
    """QASPER papers repeat paragraphs ("DISPLAYFORM0"): at MiniLM's width, copies scattered through a
    paper must score exactly alike and keep document order, whether a query comes alone or with others."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(200, 384)).astype(np.float32)
    copies = [3, 7, 50, 51, 120, 199]
    vectors[copies] = vectors[copies[0]]
    ids = [f"p/{i}" for i in range(200)]
    index = PassageIndex(vectors, ids, ["p"] * 200)
    queries = rng.normal(size=(7, 384)).astype(np.float32)
    together = index.search_document(queries, "p")
    for i, ranking in enumerate(together[1]):
        assert [pid for pid in ranking if int(pid[2:]) in copies] == [f"p/{c}" for c in copies]
        alone = index.search_document(queries[i], "p")
        assert alone[1][0] == ranking and np.array_equal(alone[0][0], together[0][i])
    with pytest.raises(ValueError, match="dimension 384"):
        index.search_document(queries[:, :100], "p")


class _NoisyScan:
    """A stand-in for FAISS's flat scan as it behaves on another thread count: each score off by up to a few
    ulp-scale steps, and among exactly equal vectors the copies with the highest rows kept (its heap's choice)."""

    def __init__(self, vectors: np.ndarray, seed: int) -> None:
        self.vectors, self.rng = vectors, np.random.default_rng(seed)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = q @ self.vectors.T + self.rng.uniform(-3e-6, 3e-6, size=(len(q), len(self.vectors)))
        order = np.lexsort((-np.arange(len(self.vectors))[None].repeat(len(q), 0), -scores), axis=1)[:, :k]
        return np.take_along_axis(scores, order, axis=1).astype(np.float32), order


def test_exact_corpus_search_is_the_same_whatever_the_scan_rounds() -> None:
    """Mined hard negatives and the tables keyed by them must not depend on the machine's threads: the corpus
    ranking is the reference (each score summed alone, equal scores in row order) for any scan that finds the
    right neighbourhood, here one that rounds differently and keeps other copies of a repeated paragraph."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(400, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(12, 32)).astype(np.float32)
    copies = rng.choice(400, 40, replace=False)
    vectors[copies] = vectors[copies[0]]  # 40 copies: more than the margin the search re-scores past k
    queries[:6] = vectors[copies[0]] + 0.05 * queries[:6]  # queries whose top 10 cuts through the copies
    near = np.argsort(-(vectors @ queries[6]))[:2]
    vectors[near[1]] = vectors[near[0]] + 1e-7  # two passages a rounding apart
    ids = [f"p/{i}" for i in range(400)]

    def reference(q: np.ndarray, k: int) -> list[str]:
        scores = np.einsum("d,pd->p", q, vectors)
        return [ids[r] for r in np.lexsort((np.arange(400), -scores))[:k]]

    for seed in range(3):
        index = PassageIndex(vectors, ids, ["p"] * 400, corpus_index=_NoisyScan(vectors, seed))
        scores, ranked = index.search_corpus(queries, k=10)
        assert ranked == [reference(q, 10) for q in queries]
        assert np.all(np.diff(scores, axis=1) <= 0)


def test_paper_scope_needs_no_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-paper ranking is a matrix product: a GPU machine without FAISS installed still evaluates."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    vectors = np.eye(3, dtype=np.float32)
    index = PassageIndex(vectors, ["a/0", "a/1", "a/2"], ["a"] * 3)
    assert index.rank_documents(np.array([[0.1, 0.9, 0.5]], dtype=np.float32), ["a"]) == [["a/1", "a/2", "a/0"]]
    with pytest.raises(ImportError):
        index.search_corpus(vectors, k=1)


def test_bm25_matches_the_lucene_formula(tmp_path: Path) -> None:
    """Scores of bm25s' Lucene BM25 against the formula written out by hand on a tiny paper."""
    import json

    paragraphs = ["cats sleep cats", "dogs bark loudly", "cats and dogs play", "birds sing"]
    raw = {
        "p": {
            "title": "t",
            "abstract": "a",
            "full_text": [{"section_name": "s", "paragraphs": paragraphs}],
            "qas": [
                {
                    "question": "cats dogs",
                    "question_id": "q",
                    "answers": [{"answer": {"unanswerable": False, "extractive_spans": ["x"], "evidence": ["birds sing"]}}],
                }
            ],
        }
    }
    (tmp_path / "qasper-dev-v0.3.json").write_text(json.dumps(raw))
    split = load_qasper("dev", tmp_path, allow_hub=False)
    k1, b = 1.5, 0.75
    docs = [["cats", "sleep", "cats"], ["dogs", "bark", "loudly"], ["cats", "dogs", "play"], ["birds", "sing"]]
    avgdl = sum(map(len, docs)) / len(docs)

    def score(doc: list[str]) -> float:
        total = 0.0
        for term in ["cats", "dogs"]:
            df = sum(term in d for d in docs)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        return total

    expected_scores = [score(d) for d in docs]
    expected = [f"p/{i}" for i in sorted(range(4), key=lambda i: (-expected_scores[i], i))]
    ranking = BM25Retriever(k1=k1, b=b).rank(split, split.questions, scope="document", top_k=10)
    assert ranking.ranked_ids == [expected]
    assert expected[0] == "p/2"  # the only paragraph with both terms
    assert ranking.ranked_ids[0][-1] == "p/3"  # no shared term: score 0, last


def test_dense_retriever_caches_passage_embeddings(tiny_encoder_dir: Path, tiny_raw_dir: Path, tmp_path: Path) -> None:
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    retriever = DenseRetriever(_encoder(tiny_encoder_dir, tmp_path), cache_dir=tmp_path, progress=False)
    first = retriever.rank(split, split.evaluable_questions, scope="document", top_k=10)
    assert retriever.cache_hit is False
    files = list((tmp_path / "embeddings").glob("*.pt"))
    assert len(files) == 1 and not list((tmp_path / "embeddings").glob(".*tmp"))

    calls = []
    original = retriever.encoder.encode
    retriever.encoder.encode = lambda texts, side, **kw: calls.append(side) or original(texts, side, **kw)  # type: ignore[method-assign]
    second = retriever.rank(split, split.evaluable_questions, scope="document", top_k=10)
    assert retriever.cache_hit is True and "passage" not in calls  # passages came from the cache (queries: warm-up + all)
    assert second.ranked_ids == first.ranked_ids
    # Each question's ranking is its own paper's passages, all of them.
    for question, ranked in zip(split.evaluable_questions, first.ranked_ids):
        assert sorted(ranked) == sorted(p.passage_id for p in split.passages(question.document_id))

    # Another passage set (fewer papers) is another cache entry, not a stale hit.
    smaller = load_qasper("dev", tiny_raw_dir, max_documents=1, allow_hub=False)
    retriever.rank(smaller, smaller.evaluable_questions, scope="document", top_k=10)
    assert retriever.cache_hit is False and len(list((tmp_path / "embeddings").glob("*.pt"))) == 2

    # A corrupted cache file is never read: it is reported and rebuilt.
    files[0].write_bytes(b"not a torch file")
    rebuilt = retriever.rank(split, split.evaluable_questions, scope="document", top_k=10)
    assert retriever.cache_hit is False and rebuilt.ranked_ids == first.ranked_ids


def test_passage_cache_ignores_query_settings(tiny_encoder_dir: Path, tiny_raw_dir: Path, tmp_path: Path) -> None:
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)

    def cache_path(**kwargs) -> Path:
        return DenseRetriever(_encoder(tiny_encoder_dir, tmp_path, **kwargs), cache_dir=tmp_path).embedding_cache(split)[0]

    base = cache_path()
    assert cache_path(query_max_length=16, query_instruction="q: ") == base
    assert cache_path(passage_max_length=16) != base
    assert cache_path(passage_instruction="p: ") != base
    assert cache_path(pooling="cls") != base


def test_a_configured_corpus_index_is_built_once_and_ranks_as_exact_search_on_a_small_split(
    tiny_encoder_dir: Path, tiny_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HNSW graph over a few dozen passages, searched with a wide beam, finds the exact top 10; the index is
    cached beside the embeddings, and a second ranking reads it instead of building it again."""
    from uae.retrieval import ann

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    exact = DenseRetriever(_encoder(tiny_encoder_dir, tmp_path), cache_dir=tmp_path, progress=False)
    hnsw = DenseRetriever(_encoder(tiny_encoder_dir, tmp_path), cache_dir=tmp_path, progress=False, index="HNSW8", ef_search=256)
    expected = exact.rank(split, split.evaluable_questions, scope="corpus", top_k=10).ranked_ids
    assert hnsw.rank(split, split.evaluable_questions, scope="corpus", top_k=10).ranked_ids == expected
    assert len(list((tmp_path / "indexes").glob("*.pt"))) == 1 and hnsw.describe()["index"]["factory"] == "HNSW8"
    monkeypatch.setattr(ann, "build_index", lambda *a, **k: pytest.fail("the cached index was built again"))
    assert hnsw.rank(split, split.evaluable_questions, scope="corpus", top_k=10).ranked_ids == expected
    assert "index" not in exact.describe()  # the exact default leaves results.json as it was

"""Dense retrieval with a :class:`DualEncoder`: cached passage embeddings, FAISS search at query time
(exact, or the approximate index ``retrieval.index`` names, built once per embeddings and cached). With
``retrieval.shard_size`` the embeddings are encoded in resumable, digest-checked shards
(:mod:`uae.retrieval.shards`) instead of one cached array, and an approximate index fills from them shard by shard."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from uae.data.records import Question, Split
from uae.retrieval.ann import IndexSpec, cached_index
from uae.retrieval.base import Ranking, Retriever, Scope
from uae.retrieval.encoder import DualEncoder
from uae.retrieval.index import PassageIndex
from uae.retrieval.shard_encoding import encode_shards
from uae.retrieval.shards import ShardSet
from uae.storage.fingerprint import fingerprint
from uae.storage.tensors import load_tensors, save_tensors

log = logging.getLogger(__name__)


class DenseRetriever(Retriever):
    """Bi-encoder retrieval; passage embeddings are cached per (encoder, split) fingerprint.

    The cache is what makes a second evaluation of an unchanged model on an unchanged split skip
    passage encoding, which is most of the cost on CPU.
    """

    def __init__(
        self,
        encoder: DualEncoder,
        *,
        cache_dir: str | os.PathLike,
        batch_size: int = 64,
        device: str = "auto",
        progress: bool = True,
        use_gpu_index: bool | None = None,
        index: str = "Flat",
        ef_search: int | None = None,
        nprobe: int | None = None,
        exact_rerank: int = 0,
        shard_size: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.progress = progress
        self.use_gpu_index = use_gpu_index
        self.index_spec = IndexSpec(index, ef_search, nprobe, exact_rerank)
        self.shard_size = shard_size
        self._shards: ShardSet | None = None
        self._encoder_key: str | None = None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder.to(device)
        self.cache_hit: bool | None = None

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"name": self.name, "model_id": self.encoder.model_id, "path": str(self.encoder.path)}
        if self.index_spec != IndexSpec():  # the default (exact) stays unsaid, as in every run before indexes
            described["index"] = vars(self.index_spec)
        if self.shard_size:  # likewise unsaid without shards
            described["shard_size"] = self.shard_size
        return described

    def embedding_cache(self, split: Split) -> tuple[Path, str]:
        """Where this encoder's embeddings of this split's passages are cached, and their fingerprint."""
        ids_digest = hashlib.sha256("\n".join(p.passage_id for p in split.all_passages).encode()).hexdigest()
        encoder = self.encoder.fingerprint_spec("passage")
        self._encoder_key = fingerprint(encoder)  # for the shards' manifest: the weights are hashed once
        spec: dict[str, object] = {"encoder": encoder, "data": split.fingerprint, "passages": ids_digest}
        if self.shard_size:  # absent otherwise, so that the caches made before shards stay valid
            spec["shard_size"] = self.shard_size  # shards batch otherwise: their vectors differ in the last bits
            key = fingerprint(spec)
            return self.cache_dir / "embeddings" / f"{split.cache_name}-{key[:20]}-shards", key
        key = fingerprint(spec)
        return self.cache_dir / "embeddings" / f"{split.cache_name}-{key[:20]}.pt", key

    def passage_embeddings(self, split: Split) -> torch.Tensor:
        """Embeddings of every passage of the split, from the cache when its fingerprint matches."""
        return self._embeddings(split)[0]

    def _embeddings(self, split: Split) -> tuple[torch.Tensor, str]:
        """The embeddings and their fingerprint, which hashes the encoder's weights: computed once, used twice."""
        path, key = self.embedding_cache(split)
        if self.shard_size:
            passages = split.all_passages
            self._shards = encode_shards(
                self.encoder, [p.text for p in passages], path, ids=[p.passage_id for p in passages],
                shard_size=self.shard_size, batch_size=self.batch_size, progress=self.progress, encoder_key=self._encoder_key,
            )
            self.cache_hit = not self._shards.encoded
            return torch.from_numpy(self._shards.to_array()), key
        cached = load_tensors(path, key)
        self.cache_hit = cached is not None
        if cached is not None:
            log.info("passage embeddings from cache %s", path)
            return cached["embeddings"], key
        passages = split.all_passages
        embeddings = self.encoder.encode(
            [p.text for p in passages], "passage", batch_size=self.batch_size, progress=self.progress
        )
        save_tensors(path, key, {"embeddings": embeddings, "passage_ids": [p.passage_id for p in passages]})
        log.info("passage embeddings cached at %s", path)
        return embeddings, key

    def rank(self, split: Split, questions: Sequence[Question], *, scope: Scope, top_k: int) -> Ranking:
        start = time.perf_counter()
        passages = split.all_passages
        embeddings, key = self._embeddings(split)
        corpus_index = None
        if scope == "corpus" and not self.index_spec.exact:
            vectors = self._shards if self.shard_size and self._shards is not None else embeddings.float().numpy()
            corpus_index = cached_index(vectors, key, self.index_spec, self.cache_dir, split.cache_name)
        index = PassageIndex(
            embeddings,
            [p.passage_id for p in passages],
            [p.document_id for p in passages],
            use_gpu=self.use_gpu_index,
            spec=self.index_spec,
            corpus_index=corpus_index,
        )
        index_seconds = time.perf_counter() - start
        if questions:  # warm-up (thread pools, allocator): a deployed retriever is warm when queries arrive
            self.encoder.encode([questions[0].text], "query", progress=False)
        start = time.perf_counter()
        queries = self.encoder.encode(
            [q.text for q in questions], "query", batch_size=self.batch_size, progress=self.progress
        )
        if scope == "corpus":
            ranked = index.search_corpus(queries, top_k)[1]
        else:
            ranked = index.rank_documents(queries, [q.document_id for q in questions])
        return Ranking(ranked, time.perf_counter() - start, index_seconds)

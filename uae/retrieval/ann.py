"""Corpus indexes chosen by a FAISS factory string, built once per embeddings and kept in the cache.

An exact flat index is right up to about 10^5 passages; past that, search time grows with the corpus and
the field moves to approximate indexes: HNSW graphs (``HNSW32``), inverted lists (``IVF4096,Flat``), and
product quantisation when memory is the wall (``IVF4096,PQ48np``, ``OPQ48,IVF4096,PQ48np``; ``np``: no polysemous training, docs/scale.md). ``retrieval.index``
takes FAISS's own ``index_factory`` string rather than names of ours, so every index FAISS has is one
setting away and its documentation applies. Building an approximate index costs minutes (k-means, graph
construction), so it is built once per (embeddings, factory) and saved under ``paths.cache_dir`` with its
content digest, like every cache (:mod:`uae.storage.tensors`). What only changes a search (``efSearch``,
``nprobe``) is set on the loaded index, and ``exact_rerank=K`` re-scores the approximate top K with the stored
float vectors: what compression loses in the order of the top is mostly won back at a fraction of a scan.
Embeddings encoded in shards (:mod:`uae.retrieval.shards`) fill an index one shard at a time
(:func:`index_from_shards`), so the corpus's vectors never need to be in memory at once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uae.core.errors import UAEError
from uae.storage.fingerprint import fingerprint
from uae.storage.tensors import load_tensors, save_tensors

if TYPE_CHECKING:
    import faiss

    from uae.retrieval.shards import ShardSet

log = logging.getLogger(__name__)

TRAIN_SAMPLE = 256  # training vectors per IVF list: FAISS warns below 39, and k-means gains little past a few hundred


@dataclass(frozen=True)
class IndexSpec:
    """What to build (``factory``), and how to search it (``ef_search``, ``nprobe``, ``exact_rerank``)."""

    factory: str = "Flat"
    ef_search: int | None = None
    nprobe: int | None = None
    exact_rerank: int = 0

    def __post_init__(self) -> None:
        if self.factory == "Flat" and (self.ef_search is not None or self.nprobe is not None or self.exact_rerank):
            raise UAEError("ef_search, nprobe and exact_rerank set how an approximate index is searched; the exact "
                           "Flat index has none of them: set an approximate index (e.g. HNSW32) or leave them unset.")

    @property
    def exact(self) -> bool:
        return self.factory == "Flat"

    def build_key(self, embeddings_key: str) -> str:
        """The fingerprint of a built index: the embeddings it holds and the factory (search settings do not count)."""
        import faiss  # deferred: start-up speed

        return fingerprint({"embeddings": embeddings_key, "factory": self.factory, "faiss": faiss.__version__, "train_sample": TRAIN_SAMPLE})


def build_index(vectors: np.ndarray, factory: str) -> faiss.Index:
    """A FAISS index over ``vectors`` (inner product), trained on a seeded sample where the factory needs it."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = _new_index(vectors.shape[1], factory)
    rows = _training_rows(index, len(vectors), factory)
    if rows is not None:
        index.train(vectors[rows])
    index.add(vectors)
    return index


def index_from_shards(shards: ShardSet, factory: str) -> faiss.Index:
    """:func:`build_index` over embedding shards without their array in memory: trained on the same seeded sample
    of rows (gathered through the memory maps), then filled one shard at a time with ``add``. Every factory fills
    this way; the result is the index :func:`build_index` makes from the whole array (HNSW, whose graph depends on
    insertion batches and threads, up to its own nondeterminism)."""
    index = _new_index(shards.dimension, factory)
    rows = _training_rows(index, len(shards), factory)
    if rows is not None:
        index.train(np.ascontiguousarray(shards[rows]))
    for _, block in shards.blocks():
        index.add(np.ascontiguousarray(block))
    return index


# PQ codes without "np" (PQ48, IVF4096,PQ48x8, HNSW32,PQ48; not PQ48np, nor the fast-scan PQ48x4fs): FAISS trains a polysemous code ordering
# that only a search with polysemous_ht set uses, and UAE never sets it.
_POLYSEMOUS = re.compile(r"(?<![^,])(PQ\d+(?:x\d+)?)(?![^,])")  # a whole component: at the start or after a comma


def _new_index(dimension: int, factory: str) -> faiss.Index:
    import faiss  # deferred: start-up speed

    if _POLYSEMOUS.search(factory):
        log.warning(
            "retrieval.index=%r: its PQ codes get a polysemous ordering trained (minutes on 2 cores) that no UAE search "
            "uses; write PQ...np (e.g. %s) for the same index without it (docs/scale.md).",
            factory, _POLYSEMOUS.sub(r"\1np", factory),
        )
    try:
        return faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise UAEError(
            f"retrieval.index={factory!r} is not a FAISS index_factory string FAISS can build for {dimension}-d "
            f"vectors ({str(exc).strip().splitlines()[-1]}). Examples: Flat, HNSW32, IVF4096,Flat, IVF4096,PQ48np, OPQ48,IVF4096,PQ48np."
        ) from None


def _training_rows(index: faiss.Index, count: int, factory: str) -> np.ndarray | None:
    """The rows (sorted) an untrained index is trained on: a seeded sample, so that a rebuild gives the same index."""
    import faiss  # deferred: start-up speed

    if index.is_trained:
        return None
    lists = getattr(faiss.try_extract_index_ivf(index), "nlist", 1) if "IVF" in factory else 1
    if count < lists:
        raise UAEError(f"retrieval.index={factory!r} needs at least {lists} vectors to train its {lists} lists; "
                       f"the corpus has {count}. Use fewer lists (IVF{max(1, count // 39)},...) or Flat.")
    n_train = min(count, max(lists * TRAIN_SAMPLE, 10_000))
    return np.sort(np.random.default_rng(0).choice(count, n_train, replace=False))


def configure(index: faiss.Index, spec: IndexSpec) -> faiss.Index:
    """Set the search-time parameters the spec gives; one the index does not have is an error, not ignored."""
    import faiss  # deferred: start-up speed

    space = faiss.ParameterSpace()
    for name, value in (("efSearch", spec.ef_search), ("nprobe", spec.nprobe)):
        if value is None:
            continue
        try:
            space.set_index_parameter(index, name, int(value))
        except RuntimeError:
            raise UAEError(f"retrieval.{'ef_search' if name == 'efSearch' else 'nprobe'}={value}: the index {spec.factory!r} "
                           f"has no {name} ({'HNSW' if name == 'efSearch' else 'IVF'} indexes do); set it to null.") from None
    return index


def search(
    index: faiss.Index, vectors: np.ndarray | ShardSet, queries: np.ndarray, k: int, spec: IndexSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` rows per query, best first (ties by row); with ``exact_rerank``, the index's top ``exact_rerank``
    re-scored exactly from ``vectors`` (an array, or embedding shards, read row by row). Rows a small index could
    not fill are -1 with score -inf."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    depth = min(max(k, spec.exact_rerank), index.ntotal)
    scores, rows = index.search(q, depth)
    if spec.exact_rerank:  # queries in blocks: all at once would hold queries x depth x dim floats
        exact = np.empty_like(scores)
        for s in range(0, len(q), 256):
            exact[s : s + 256] = np.einsum("qd,qkd->qk", q[s : s + 256], vectors[np.maximum(rows[s : s + 256], 0)])
        scores = np.where(rows >= 0, exact, -np.inf).astype(np.float32)
    scores = np.where(rows >= 0, scores, -np.inf)
    order = np.lexsort((np.where(rows >= 0, rows, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def cached_index(vectors: np.ndarray | ShardSet, embeddings_key: str, spec: IndexSpec, cache_dir: Path, name: str) -> faiss.Index:
    """The index of these embeddings (an array, or shards filled in one by one) for this factory: loaded from
    ``cache_dir/indexes`` when there (digest checked), else built and saved. Search parameters are set on the result
    either way."""
    import faiss  # deferred: start-up speed
    import torch  # deferred: start-up speed

    from uae.retrieval.shards import ShardSet

    key = spec.build_key(embeddings_key)
    path = cache_dir / "indexes" / f"{name}-{key[:20]}.pt"
    stored = load_tensors(path, key)
    if stored is not None:
        log.info("%s index from cache %s", spec.factory, path)
        return configure(faiss.deserialize_index(stored["index"].numpy()), spec)
    index = index_from_shards(vectors, spec.factory) if isinstance(vectors, ShardSet) else build_index(vectors, spec.factory)
    save_tensors(path, key, {"index": torch.from_numpy(faiss.serialize_index(index)), "factory": spec.factory})
    log.info("%s index of %d vectors built and cached at %s", spec.factory, index.ntotal, path)
    return configure(index, spec)

"""The cost curve (issue 32): what each corpus index costs and gives as the corpus grows, 10^4 to 10^6 passages.

    python benchmarks/scale.py --n 10000 100000 1000000                 # the curve, every default index
    python benchmarks/scale.py --n 100000 --index HNSW32                # one size, one index
    python benchmarks/scale.py --n 100000 --index 'IVF{nlist},PQ48np' --nprobe 32 --rerank 100
    python benchmarks/scale.py --n 1000000 --vectors real --out scale-1M.json
    python benchmarks/scale.py --from a.json b.json --out all.json --plot scale.png   # tables again, no measuring
    python benchmarks/scale.py --n 2000 --vectors synthetic --index Flat HNSW32 --encode-sample 0   # seconds

Per corpus size N it builds each index with the project's own code (``uae.retrieval.ann``: ``build_index``,
``configure``, ``search``, the seeded training sample of ``TRAIN_SAMPLE`` rows per list) and measures: build
seconds (training and adding), bytes (``faiss.serialize_index``: what ``cached_index`` stores), single-query
milliseconds (the median over ``--single`` queries searched one at a time, top 10), batched queries per second
(``--queries`` queries in one call, top 10), recall@10 and recall@100 against exact search (the share of the exact
top k the index returns in its top k, averaged over the queries; the exact top 100 is the Flat index's), and the
speed against exact search: the Flat index's single-query median over this index's (1.0x for Flat itself).
With ``--reach``, also the rows each index does not return when searched by their own vector (top 1; a row with the
same vector returned instead counts as found): passages that index, at those settings, cannot find even from their
own vector. N searches per row.
``{nlist}`` in a factory is the IVF list count for N: 4 sqrt(N) rounded to the nearest power of two (512 at 10^4,
1024 at 10^5, 4096 at 10^6). The default indexes: Flat (exact, the baseline); HNSW32 at efSearch 64 and 128;
IVF{nlist},Flat at nprobe 16 and 64; IVF{nlist},PQ48np at nprobe 64 with and without re-scoring its top 100
exactly (``exact_rerank``); OPQ48,IVF{nlist},PQ48np at nprobe 64 with the re-scoring. 48 bytes of code per vector
(8 dimensions per sub-quantiser); ``np``: no polysemous training, which FAISS's factory otherwise runs for every PQ
index (minutes on 2 cores whatever N, for a Hamming-distance filter that search uses only when ``polysemous_ht``
is set). ``--exclude OPQ`` leaves out the default indexes whose factory holds OPQ (its training is the slowest
part: 65,536 vectors from 10^5 on). ``--index F ...`` measures those factories instead, each at its family's
defaults (``--ef-search`` 128, ``--nprobe`` 64, ``--rerank`` 100 for PQ); several ``--ef-search`` or ``--nprobe``
values search one built index at each (``--index HNSW32 --ef-search 128 256 512``). Flat is always measured, as the baseline.
FAISS runs on ``--threads`` threads, 1 by default: the numbers are per core. On the shared 2-core machine this was
written on, FAISS at 2 threads (OpenMP) trained OPQ 4.5x slower than at 1 while another process held the second
core (its threads wait for each other at every barrier); give ``--threads 2`` or more on a machine with idle cores.
Single queries are one thread's work either way.

The vectors (``--vectors``; 384 dimensions, all-MiniLM-L6-v2's, unit length, inner product):

* ``real``: the open corpus, every paragraph of every SQuAD article of the split files in ../shared/data/squad
  and every paragraph of QASPER train and dev (about 61k passages), encoded once by the bundled MiniLM through
  ``encode_shards`` (``--runtime``, default onnx) into ``CACHE/scale/open-corpus-minilm-RUNTIME/``: resumable (a
  killed encoding keeps its finished shards), digest-checked, reused by every later run (the first time: 20 to 30
  minutes on an idle 2-core CPU, hours on a loaded one). A complete shard set elsewhere in the cache holding the same
  vectors (same texts in the same order, same encoder and dtype; ``+experiment=squad_open`` writes one with the torch
  runtime) is reused instead, its digests checked. The queries are held-out real questions: ``--queries``
  SQuAD questions (a seeded sample), encoded on the query side and cached. N below the real count R takes a
  seeded sample of the real rows; N above it adds N - R vectors, each a real one (drawn at random) plus Gaussian
  noise with the real vectors' covariance scaled by ``--perturbation``^2 (0.25), renormalised: near-paraphrases
  of real passages (at 10^6, 94% of the vectors). ``--encoder FOLDER`` encodes passages and questions with a
  trained MiniLM instead (a sentence-transformers folder: a run's ``encoder/``, or an exported model), into
  ``CACHE/scale/open-corpus-NAME-DIGEST-RUNTIME/`` (or its twin: ``make squad-open``'s evaluation writes one per
  encoder with the torch runtime): a fine-tuned encoder's vectors need other search settings than the zero-shot
  ones (docs/scale.md), and its own queries are what to check recall on.
* ``synthetic``: a Gaussian mixture. With a complete real shard set in the cache, it is fitted to the real
  vectors: 64 k-means components, each a Gaussian around its cluster's mean with the pooled within-cluster
  covariance, weighted by cluster size (so the real mean and covariance are kept), samples renormalised.
  Without one: ceil(sqrt(N)) seeded random unit centres, each point its centre plus noise of total variance 1
  with a decaying spectrum (variance of direction i proportional to 1/i, in a random rotation: about 26
  effective dimensions, as text embeddings have few), renormalised. Queries: random corpus vectors plus
  ``--query-noise`` (0.5) times a draw of that same within-cluster noise, renormalised.
* ``auto`` (default, and ``make bench-scale``'s): real when the real shard set is complete in the cache, else
  synthetic. The output says which it used and how.

Also measured, once per run: loading the open corpus's text (seconds, the process's peak resident memory), and
passages per second of each encoding runtime (``--encode-runtimes``, torch and onnx) through ``encode_shards``
on a seeded sample of ``--encode-sample`` (500) open-corpus passages in this process (0: skip): enough for a
rate, not a full encoding. A markdown table per N, then the projection to 10M and 100M passages from the
measured bytes per vector (what one 24 GB machine holds, how many machines each index needs, the encoding
hours at the measured rate), then one line per measured index, the last line last:

    N passages, FACTORY: recall@10 R, S x exact single-query throughput

(FACTORY with ``{nlist}`` filled in, and its search settings in parentheses where they are not the defaults
above.) ``--out FILE.json`` writes every row (atomically, at the end); ``--from`` reads such files back;
``--plot FILE.png`` draws each measure against N.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import re
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384  # MiniLM's
SHARD_SIZE = 5_000  # open-corpus shards: a kill loses at most this many passages of encoding
SHARD_MANIFESTS = "*/*/manifest.json"  # every shard set in a cache: CACHE/scale/open-corpus-*, CACHE/embeddings/*-shards
MIXTURE_COMPONENTS = 64  # the Gaussian mixture fitted to the real vectors
MACHINE_GB = 24  # the machine the projection sizes for
USABLE = 0.8  # share of its memory an index may take (the process, the query encoder, the OS take the rest)
PROJECTION_SIZES = (10_000_000, 100_000_000)
DEFAULT_EF, DEFAULT_NPROBE, DEFAULT_RERANK = 128, 64, 100

SUMMARY = re.compile(
    r"^(?P<n>\d+) passages, (?P<index>.+): recall@10 (?P<recall>\d+\.\d{3}), "
    r"(?P<speedup>\d+\.\d)x exact single-query throughput$"
)


# ------------------------------------------------------------------------------------------------ indexes


def nlist_for(n: int) -> int:
    """IVF lists for N vectors: 4 sqrt(N), rounded to the nearest power of two (in log scale)."""
    return 2 ** max(1, round(math.log2(4 * math.sqrt(n))))


@dataclass(frozen=True)
class Variant:
    """One row: a factory template (``{nlist}`` filled per N) and its search settings."""

    index: str
    ef_search: int | None = None
    nprobe: int | None = None
    rerank: int = 0

    def factory(self, n: int) -> str:
        return self.index.format(nlist=nlist_for(n))

    @property
    def exact(self) -> bool:
        return self.index == "Flat"

    def settings(self) -> str:
        parts = [f"efSearch={self.ef_search}"] if self.ef_search is not None else []
        parts += [f"nprobe={self.nprobe}"] if self.nprobe is not None else []
        parts += [f"rerank={self.rerank}"] if self.rerank else []
        return ", ".join(parts) or ("exact" if self.exact else "defaults")

    def is_default(self) -> bool:
        return self == family_defaults(self.index)[0]

    def label(self, n: int) -> str:
        """The factory for N, with the search settings in parentheses where they are not the family's defaults."""
        return self.factory(n) if self.is_default() else f"{self.factory(n)} ({self.settings()})"

    @property
    def key(self) -> str:
        """The same row across sizes (the template, its settings): one line of the plot."""
        return self.index if self.exact else f"{self.index} ({self.settings()})"

    def spec(self, n: int) -> Any:
        from uae.retrieval.ann import IndexSpec

        return IndexSpec(self.factory(n), ef_search=self.ef_search, nprobe=self.nprobe, exact_rerank=self.rerank)


def family_defaults(
    index: str, efs: Sequence[int] = (DEFAULT_EF,), nprobes: Sequence[int] = (DEFAULT_NPROBE,), rerank: int = DEFAULT_RERANK
) -> list[Variant]:
    """A factory at its family's search settings: efSearch for HNSW, nprobe for IVF, re-scoring for PQ codes;
    one variant per efSearch (HNSW) or nprobe (IVF) given, all searching the one index built."""
    if index == "Flat":
        return [Variant("Flat")]
    return [
        Variant(index, ef_search=ef, nprobe=nprobe, rerank=rerank if "PQ" in index else 0)
        for ef in (efs if "HNSW" in index else [None])
        for nprobe in (nprobes if "IVF" in index else [None])
    ]


DEFAULT_VARIANTS = (
    Variant("Flat"),
    Variant("HNSW32", ef_search=64),
    Variant("HNSW32", ef_search=128),
    Variant("IVF{nlist},Flat", nprobe=16),
    Variant("IVF{nlist},Flat", nprobe=64),
    Variant("IVF{nlist},PQ48np", nprobe=64),
    Variant("IVF{nlist},PQ48np", nprobe=64, rerank=100),
    Variant("OPQ48,IVF{nlist},PQ48np", nprobe=64, rerank=100),
)


# ------------------------------------------------------------------------------------------------ measures


def recall_at(exact: np.ndarray, found: np.ndarray, k: int) -> float:
    """The share of each query's exact top ``k`` rows that ``found``'s top ``k`` holds, averaged over queries
    (rows of -1, places an index could not fill, hold nothing)."""
    if len(exact) != len(found) or not len(exact):
        raise ValueError(f"{len(exact)} exact rankings for {len(found)} found ones")
    hits = [len({int(r) for r in e[:k]} & {int(r) for r in f[:k] if r >= 0}) for e, f in zip(exact, found, strict=True)]
    return float(np.mean(hits)) / k


def unreached(index: Any, vectors: np.ndarray, spec: Any, block: int = 8192) -> int:
    """Rows the index cannot return for their own vector: each row searched by itself, top 1. A row counts as
    reached when the index returns it or a row with the same vector (repeated paragraphs are identical vectors).
    A graph can leave nodes out of reach of its greedy search (HNSW's unreachable nodes): a gold among them is lost
    whatever the question, so this separates a search that stops short from a passage the index cannot return."""
    from uae.retrieval.ann import search

    missed = 0
    for start in range(0, len(vectors), block):
        own = vectors[start : start + block]
        _, rows = search(index, vectors, own, 1, spec)
        found = vectors[np.maximum(rows[:, 0], 0)]
        same = np.einsum("nd,nd->n", own, found) >= np.einsum("nd,nd->n", own, own) - 1e-6
        missed += int(np.sum((rows[:, 0] < 0) | ~same))
    return missed


def summary_line(n: int, label: str, recall10: float, speedup: float) -> str:
    return f"{n} passages, {label}: recall@10 {recall10:.3f}, {speedup:.1f}x exact single-query throughput"


def parse_summary(line: str) -> dict[str, Any]:
    """A summary line back as numbers (what a script reads from the last line)."""
    found = SUMMARY.match(line.strip())
    if found is None:
        raise ValueError(f"not a summary line of benchmarks/scale.py: {line!r}")
    return {"n": int(found["n"]), "index": found["index"], "recall@10": float(found["recall"]), "speedup": float(found["speedup"])}


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def single_query_ms(index: Any, vectors: np.ndarray, queries: np.ndarray, spec: Any) -> float:
    """The median milliseconds of one query's top 10, the queries searched one at a time (after one warm-up)."""
    from uae.retrieval.ann import search

    search(index, vectors, queries[:1], 10, spec)
    times = []
    for i in range(len(queries)):
        start = time.perf_counter()
        search(index, vectors, queries[i : i + 1], 10, spec)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure_index(
    variants: Sequence[Variant], n: int, vectors: np.ndarray, queries: np.ndarray, single: int, exact100: np.ndarray | None,
    reach: bool = False,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Build one factory (the variants share it) and measure each variant's search (with ``reach``, also its
    ``unreached`` rows). Returns the rows and, for Flat, its top 100 (the ground truth the others are scored against)."""
    import faiss

    from uae.retrieval.ann import build_index, configure, search

    factory = variants[0].factory(n)
    start = time.perf_counter()
    index = build_index(vectors, factory)
    build_s = time.perf_counter() - start
    size = int(faiss.serialize_index(index).size)
    rows = []
    for variant in variants:
        spec = variant.spec(n)
        configure(index, spec)
        single_ms = single_query_ms(index, vectors, queries[:single], spec)
        start = time.perf_counter()
        _, top10 = search(index, vectors, queries, 10, spec)
        batched_qps = len(queries) / (time.perf_counter() - start)
        _, top100 = search(index, vectors, queries, 100, spec)
        truth = top100 if exact100 is None else exact100
        rows.append({
            "n": n, "index": variant.index, "key": variant.key, "label": variant.label(n), "factory": factory,
            "settings": variant.settings(), "ef_search": variant.ef_search, "nprobe": variant.nprobe,
            "rerank": variant.rerank, "build_s": build_s, "bytes": size, "bytes_per_vector": size / n,
            "single_ms": single_ms, "batched_qps": batched_qps,
            "recall@10": recall_at(truth, top10, 10), "recall@100": recall_at(truth, top100, 100),
            "unreached": unreached(index, vectors, spec) if reach else None,
        })  # fmt: skip
    del index
    gc.collect()
    return rows, top100


def measure_size(
    n: int, variants: Sequence[Variant], vectors: np.ndarray, queries: np.ndarray, single: int, progress: bool,
    reach: bool = False,
) -> list[dict[str, Any]]:
    """Every variant at one size, Flat first: its top 100 is the truth and its single-query time the baseline."""
    groups: dict[str, list[Variant]] = {"Flat": [Variant("Flat")]}
    for variant in variants:
        if not variant.exact:
            groups.setdefault(variant.index, []).append(variant)
    rows: list[dict[str, Any]] = []
    exact100 = None
    for index, group in groups.items():
        if progress:
            print(f"[{n} passages] {group[0].factory(n)}: building and searching", file=sys.stderr, flush=True)
        measured, top100 = measure_index(group, n, vectors, queries, single, exact100, reach)
        if index == "Flat":
            exact100 = top100
        rows += measured
    baseline = rows[0]["single_ms"]
    for row in rows:
        row["speedup"] = baseline / row["single_ms"]
        row["requested"] = any(v.key == row["key"] for v in variants)
    return rows


# ------------------------------------------------------------------------------------------------ vectors


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def decaying_noise(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A noise matrix L (noise = z @ L.T): total variance 1, direction i's variance proportional to 1/i, rotated."""
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scale = 1.0 / np.sqrt(np.arange(1, dim + 1))
    return rotation * (scale / np.linalg.norm(scale))


def blocks(count: int, size: int = 100_000) -> list[tuple[int, int]]:
    return [(s, min(s + size, count)) for s in range(0, count, size)]


def clustered(n: int, queries: int, dim: int, seed: int, query_noise: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Seeded clustered unit vectors (no real vectors to fit): ceil(sqrt(N)) centres, decaying-spectrum noise."""
    rng = np.random.default_rng(seed)
    k = math.ceil(math.sqrt(n))
    centres = normalise(rng.standard_normal((k, dim)))
    noise = decaying_noise(dim, rng)
    x = np.empty((n, dim), dtype=np.float32)
    for s, e in blocks(n):
        x[s:e] = normalise(centres[rng.integers(0, k, e - s)] + rng.standard_normal((e - s, dim)) @ noise.T)
    q = normalise(x[rng.choice(n, queries, replace=n < queries)] + query_noise * rng.standard_normal((queries, dim)) @ noise.T)
    how = (f"synthetic: {k} seeded random unit centres, each point its centre plus noise of variance 1 with a 1/i "
           f"spectrum in a random rotation, renormalised (seed {seed}); queries: random corpus vectors plus "
           f"{query_noise} x that noise, renormalised")  # fmt: skip
    return x, q, how


def fit_mixture(real: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means components of the real vectors: their means, weights, and the Cholesky factor of the pooled
    within-cluster covariance (means and pooled covariance together keep the real mean and covariance)."""
    import faiss

    kmeans = faiss.Kmeans(real.shape[1], k, niter=20, seed=seed, verbose=False)
    kmeans.train(np.ascontiguousarray(real, dtype=np.float32))
    labels = kmeans.index.search(np.ascontiguousarray(real, dtype=np.float32), 1)[1][:, 0]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    means = np.zeros((k, real.shape[1]))
    np.add.at(means, labels, real.astype(np.float64))
    means /= np.maximum(counts, 1)[:, None]
    resid = real - means[labels]
    within = resid.T @ resid / len(real)
    return means, counts / counts.sum(), cholesky(within)


def cholesky(covariance: np.ndarray) -> np.ndarray:
    return np.linalg.cholesky(covariance + 1e-6 * np.eye(len(covariance)))


def mixture(n: int, queries: int, real: np.ndarray, seed: int, query_noise: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Samples of the Gaussian mixture fitted to the real vectors."""
    rng = np.random.default_rng(seed)
    means, weights, factor = fit_mixture(real, MIXTURE_COMPONENTS, seed)
    x = np.empty((n, real.shape[1]), dtype=np.float32)
    for s, e in blocks(n):
        x[s:e] = normalise(means[rng.choice(len(means), e - s, p=weights)] + rng.standard_normal((e - s, real.shape[1])) @ factor.T)
    q = normalise(x[rng.choice(n, queries, replace=n < queries)] + query_noise * rng.standard_normal((queries, real.shape[1])) @ factor.T)
    how = (f"synthetic: a Gaussian mixture fitted to the {len(real)} real MiniLM vectors ({len(means)} k-means "
           f"components, each around its cluster's mean with the pooled within-cluster covariance, weighted by size), "
           f"renormalised (seed {seed}); queries: random corpus vectors plus {query_noise} x a within-cluster draw, renormalised")  # fmt: skip
    return x, q, how


def extend_real(real: np.ndarray, n: int, seed: int, perturbation: float) -> tuple[np.ndarray, str]:
    """N vectors from R real ones: a seeded sample when N <= R, else all of them and N - R perturbed copies."""
    rng = np.random.default_rng(seed)
    if n <= len(real):
        rows = np.sort(rng.choice(len(real), n, replace=False))
        return np.ascontiguousarray(real[rows], dtype=np.float32), f"real: a seeded sample of {n} of the {len(real)} open-corpus vectors"
    factor = cholesky(np.cov(real, rowvar=False))
    x = np.empty((n, real.shape[1]), dtype=np.float32)
    x[: len(real)] = real
    for s, e in blocks(n - len(real)):
        source = real[rng.integers(0, len(real), e - s)]
        x[len(real) + s : len(real) + e] = normalise(source + perturbation * rng.standard_normal((e - s, real.shape[1])) @ factor.T)
    how = (f"real: the {len(real)} open-corpus vectors and {n - len(real)} more, each a random real vector plus Gaussian "
           f"noise with the real vectors' covariance times {perturbation}^2, renormalised (seed {seed})")  # fmt: skip
    return x, how


# ------------------------------------------------------------------------------------------------ the open corpus


@dataclass
class Corpus:
    ids: list[str]
    texts: list[str]
    questions: list[str]  # SQuAD's
    load_s: float
    peak_rss_mb: float


def open_corpus() -> Corpus:
    """Every SQuAD paragraph of the split files and every QASPER train and dev paragraph, with SQuAD's questions."""
    from uae.core.config import data_dir
    from uae.data.qasper import load_qasper
    from uae.data.squad import load_squad

    start = time.perf_counter()
    ids: list[str] = []
    texts: list[str] = []
    questions: list[str] = []
    for name, loader in (("squad", load_squad), ("qasper", load_qasper)):
        for split in ("train", "dev"):
            loaded = loader(split, data_dir(name))
            for passage in loaded.all_passages:
                ids.append(f"{name}-{split}:{passage.passage_id}")
                texts.append(passage.text)
            if name == "squad":
                questions += [q.text for q in loaded.questions]
    return Corpus(ids, texts, questions, time.perf_counter() - start, peak_rss_mb())


@functools.cache  # the corpus's and the questions' vectors come from one loaded encoder
def minilm(cache_dir: Path, runtime: Any, local_path: Path | None = None) -> Any:
    """The bundled MiniLM, or the MiniLM-shaped sentence-transformers folder ``local_path`` (``--encoder``)."""
    from uae.retrieval.encoder import DualEncoder

    return DualEncoder(MINILM, cache_dir=cache_dir, local_path=local_path, passage_max_length=256, query_max_length=256,
                       runtime=runtime).eval()  # fmt: skip


def encoder_name(local_path: Path | None, encoder_key: str) -> str:
    """``minilm`` for the bundled model; for an ``--encoder`` folder, its name and weight digest (``shard_spec``'s
    ``encoder``), so that retrained weights in the same folder get a shard set of their own."""
    return "minilm" if local_path is None else f"{local_path.resolve().name}-{encoder_key[:12]}"


def shard_folder(cache_dir: Path, runtime: str, encoder: str = "minilm") -> Path:
    return cache_dir / "scale" / f"open-corpus-{encoder}-{runtime}"


def real_vectors(corpus: Corpus, cache_dir: Path, runtime: str, *, encode: bool, local_path: Path | None = None) -> Any:
    """The open corpus's shard set: encoded (resuming) when ``encode``, else loaded if complete, else None."""
    from uae.core.errors import UAEError
    from uae.retrieval.shard_encoding import encode_shards, shard_spec
    from uae.retrieval.shards import MANIFEST, ShardSet

    encoder = minilm(cache_dir, runtime, local_path)
    spec = shard_spec(encoder, corpus.texts, corpus.ids, shard_size=SHARD_SIZE, dtype="float32")  # hashes the weights once
    folder = shard_folder(cache_dir, runtime, encoder_name(local_path, spec.encoder))
    if not (folder / MANIFEST).is_file() and (twin := twin_shards(cache_dir, spec)) is not None:
        return twin
    if encode:
        print(f"encoding the open corpus ({len(corpus.texts)} passages) into {folder} (resumable)", file=sys.stderr, flush=True)
        return encode_shards(encoder, corpus.texts, folder, ids=corpus.ids, shard_size=SHARD_SIZE, progress=True,
                             encoder_key=spec.encoder)  # fmt: skip
    if not (folder / MANIFEST).is_file():
        return None
    try:
        return ShardSet.load(folder, spec=spec)
    except UAEError as exc:
        print(f"{folder} is not usable ({exc}): synthetic vectors instead", file=sys.stderr)
        return None


def twin_shards(cache_dir: Path, spec: Any) -> Any:
    """A complete shard set elsewhere in the cache with the same vectors: the same passage texts in the same order,
    encoded by the same encoder (weights and settings) at the same dtype, whatever its ids and shard size. The
    ``squad_open`` experiment encodes exactly this corpus with the bundled MiniLM into
    ``CACHE/embeddings/squad_open-*-shards/``; reusing it saves the 20 to 60 minutes an encoding takes on 2 cores.
    Each shard's digest is checked as it is loaded."""
    from uae.core.errors import UAEError
    from uae.retrieval.shards import ShardSet, read_manifest

    same = ("encoder", "texts", "count", "dimension", "dtype")
    for manifest in sorted(cache_dir.glob(SHARD_MANIFESTS)):
        try:
            found = read_manifest(manifest.parent)
        except UAEError:
            continue
        if found is None or any(found.get(k) != getattr(spec, k) for k in same):
            continue
        try:
            shards = ShardSet.load(manifest.parent)
        except UAEError as exc:
            print(f"{manifest.parent} holds these vectors but is not usable ({exc})", file=sys.stderr)
            continue
        print(f"the open corpus's vectors: {manifest.parent} (same encoder and texts; its shards are reused, not encoded again)",
              file=sys.stderr, flush=True)  # fmt: skip
        return shards
    return None


def question_vectors(corpus: Corpus, cache_dir: Path, runtime: str, count: int, seed: int, local_path: Path | None = None) -> np.ndarray:
    """``count`` SQuAD questions (a seeded sample), encoded on the query side, cached by encoder and texts."""
    from uae.storage.digest import strings_digest
    from uae.storage.fingerprint import fingerprint
    from uae.storage.tensors import load_tensors, save_tensors

    rng = np.random.default_rng(seed)
    texts = [corpus.questions[i] for i in rng.choice(len(corpus.questions), min(count, len(corpus.questions)), replace=False)]
    encoder = minilm(cache_dir, runtime, local_path)
    key = fingerprint({"encoder": fingerprint(encoder.fingerprint_spec("query")), "texts": strings_digest(texts)})
    path = cache_dir / "scale" / f"squad-questions-{runtime}-{key[:16]}.pt"
    stored = load_tensors(path, key)
    if stored is None:
        stored = {"vectors": encoder.encode(texts, "query", batch_size=64, progress=False)}
        save_tensors(path, key, stored)
    return stored["vectors"].numpy().astype(np.float32)


def encoding_rates(corpus: Corpus, cache_dir: Path, runtimes: Sequence[str], sample: int, seed: int) -> list[dict[str, Any]]:
    """Passages per second of each runtime through ``encode_shards`` (local engine) on a seeded sample, after a
    warm-up batch (the ONNX export or session is made then, not timed)."""
    import torch

    from uae.retrieval.shard_encoding import encode_shards

    rng = np.random.default_rng(seed)
    texts = [corpus.texts[i] for i in rng.choice(len(corpus.texts), min(sample, len(corpus.texts)), replace=False)]
    rates = []
    with tempfile.TemporaryDirectory(prefix="uae-scale-") as tmp:
        for runtime in runtimes:
            encoder = minilm(cache_dir, runtime)
            encoder.encode(texts[:16], "passage", batch_size=16, progress=False)
            start = time.perf_counter()
            encode_shards(encoder, texts, Path(tmp) / runtime, batch_size=64)
            seconds = time.perf_counter() - start
            rates.append({"runtime": runtime, "passages": len(texts), "seconds": seconds, "passages_per_s": len(texts) / seconds,
                          "torch_threads": torch.get_num_threads(), "mean_words": float(np.mean([len(t.split()) for t in texts]))})
    return rates


# ------------------------------------------------------------------------------------------------ tables


def fmt_bytes(size: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def size_table(rows: Sequence[dict[str, Any]], queries: int, single: int) -> str:
    reach = any(r.get("unreached") is not None for r in rows)  # --reach
    lines = [
        (f"| index | search | build s | bytes | bytes/vector | single-query ms (median of {single}) | batched queries/s "
        f"({queries} at once) | recall@10 | recall@100 | x exact single-query |" + (" unreached rows |" if reach else "")),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if reach else ""),
    ]
    for r in rows:
        lines.append(
            f"| {r['factory']} | {r['settings']} | {r['build_s']:.2f} | {r['bytes']:,} | {r['bytes_per_vector']:.0f} "
            f"| {r['single_ms']:.3f} | {r['batched_qps']:.0f} | {r['recall@10']:.3f} | {r['recall@100']:.3f} | {r['speedup']:.1f}x |"
            + (f" {'' if r.get('unreached') is None else format(r['unreached'], ',')} |" if reach else "")
        )
    return "\n".join(lines) + "\n"


def index_bytes(sizes: Sequence[dict[str, Any]], index: str) -> tuple[float, float, str]:
    """An index's bytes as a line through its measurements: (bytes per vector, bytes at 0, where measured). The
    slope between the two largest sizes measured when there are two (fixed parts such as the IVF centroids then
    count once), else the bytes per vector at the one size (fixed parts spread over its vectors: slightly high)."""
    measured = sorted({s["n"]: r["bytes"] for s in sizes for r in s["rows"] if r["index"] == index}.items())
    if len(measured) >= 2:
        (n1, b1), (n2, b2) = measured[-2:]
        per = (b2 - b1) / (n2 - n1)
        return per, b2 - per * n2, f"slope {n1:,} to {n2:,}"
    n, b = measured[-1]
    return b / n, 0.0, f"at {n:,}"


def projection(sizes: Sequence[dict[str, Any]], encoding: Sequence[dict[str, Any]]) -> str:
    """Index bytes at 10M and 100M passages extrapolated from the measured bytes, what a 24 GB machine holds, how
    many such machines each index needs, and the encoding hours at the measured rates."""
    usable = USABLE * MACHINE_GB * 1e9
    lines = [
        (f"Projection to 10M and 100M passages from the measured index bytes (`faiss.serialize_index`; {DIM}-d vectors), "
         f"extrapolated linearly. A {MACHINE_GB} GB machine gives an index {USABLE:.0%} of its memory "
         f"({fmt_bytes(usable)}); building and saving it (`cached_index` serialises a copy) needs about twice the "
         "index's bytes, so build where there is room or fill it from shards (`index_from_shards`) on a larger machine."),
        "",
        ("| index | bytes/vector (measured) | index at 10M | index at 100M | passages per 24 GB machine "
        "| 24 GB machines for 10M | for 100M |"),
        "|---|---|---|---|---|---|---|",
    ]
    for index in dict.fromkeys(r["index"] for s in sizes for r in s["rows"]):
        per, fixed, where = index_bytes(sizes, index)
        at = [fixed + per * size for size in PROJECTION_SIZES]
        lines.append(f"| {index} | {per:.0f} ({where}) | {fmt_bytes(at[0])} | {fmt_bytes(at[1])} | "
                     f"{(usable - fixed) / per / 1e6:.1f}M | {math.ceil(at[0] / usable)} | {math.ceil(at[1] / usable)} |")
    lines += [
        "",
        (f"Exact re-scoring (`rerank`) reads the float vectors themselves: {DIM * 4} bytes per passage in float32 shards "
         f"({fmt_bytes(DIM * 4 * 1e7)} at 10M, {fmt_bytes(DIM * 4 * 1e8)} at 100M; half in float16), memory-mapped from "
         "disk: they take disk, not the index's memory, and each query reads its 100 candidates' rows."),
    ]
    for rate in encoding:
        hours = [size / rate["passages_per_s"] / 3600 for size in PROJECTION_SIZES]
        lines.append(f"Encoding at the measured {rate['passages_per_s']:.1f} passages/s ({rate['runtime']}, this machine, "
                     f"{rate['torch_threads']} torch threads): {hours[0]:,.0f} h for 10M passages, {hours[1]:,.0f} h for 100M.")
    return "\n".join(lines) + "\n"


def report(doc: dict[str, Any]) -> str:
    """Everything measured, as markdown: header, corpus and encoding, a table per N, the projection."""
    machines = sorted({s.get("machine", doc["machine"]) for s in doc["sizes"]} or {doc["machine"]})
    out = [(f"Scale benchmark on {', '.join(machines)}, faiss {doc['faiss']} on {doc['threads']} thread(s), "
           f"{doc['dim']}-d vectors, inner product.")]
    if "commands" not in doc:
        out.append(f"Measured {doc['date']}: `{doc['command']}`")
    out.append("")
    corpus = doc.get("corpus")
    if corpus:
        out += [(f"Open corpus: {corpus['passages']:,} passages (SQuAD split files + QASPER train and dev), text loaded in "
                f"{corpus['load_s']:.1f} s, process peak resident memory {corpus['peak_rss_mb']:.0f} MB after loading."), ""]
    if doc.get("real_vectors"):
        rv = doc["real_vectors"]
        done = "encoded (the missing shards) and loaded" if rv["encoded_now"] else "checked and loaded"
        out += [(f"Real vectors: {rv['passages']:,} vectors of {rv.get('encoder', MINILM)} from {rv['folder']}, {done} in {rv['load_s']:.1f} s "
                 f"({rv['encoded_now']} shards encoded by this run), process peak resident memory "
                 f"{rv['peak_rss_mb']:.0f} MB after."), ""]
    if doc.get("encoding"):
        out += [("Passage encoding through `encode_shards` (local engine, batch 64, one process), on a seeded sample of "
                "open-corpus passages (a rate, not a full encoding):"), "",
                "| runtime | passages | mean words | seconds | passages/s |", "|---|---|---|---|---|"]
        out += [f"| {r['runtime']} | {r['passages']} | {r['mean_words']:.0f} | {r['seconds']:.1f} | {r['passages_per_s']:.1f} |"
                for r in doc["encoding"]]
        out.append("")
    for size in sorted(doc["sizes"], key=lambda s: s["n"]):
        measured = f" Measured {size['date']}: `{size['command']}`." if "command" in size else ""
        wall = f"; {size['wall_s'] / 60:.1f} min for the size in all" if "wall_s" in size else ""
        out += [(f"**{size['n']:,} passages** (vectors: {size['vectors']}; made or loaded in {size['vectors_s']:.1f} s; "
                 f"process peak resident memory {size['peak_rss_mb']:.0f} MB after this size{wall}).{measured}"), "",
                size_table(size["rows"], size.get("queries", doc["queries"]), size.get("single", doc["single"]))]
    if doc["sizes"]:
        out.append(projection(doc["sizes"], doc.get("encoding") or []))
    return "\n".join(out)


def summaries(doc: dict[str, Any]) -> list[str]:
    return [summary_line(r["n"], r["label"], r["recall@10"], r["speedup"])
            for size in sorted(doc["sizes"], key=lambda s: s["n"]) for r in size["rows"] if r.get("requested", True)]


def merge(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' files as one (the last file's header; sizes by N, a later file's size replacing an earlier one)."""
    sizes = {s["n"]: {"queries": d["queries"], "single": d["single"], **s, "command": d["command"], "date": d["date"],
                      "machine": d["machine"]} for d in docs for s in d["sizes"]}  # fmt: skip
    merged = {**docs[-1], "sizes": [sizes[n] for n in sorted(sizes)]}
    merged["encoding"] = next((d["encoding"] for d in reversed(docs) if d.get("encoding")), [])
    merged["corpus"] = next((d["corpus"] for d in reversed(docs) if d.get("corpus")), None)
    merged["commands"] = list(dict.fromkeys(d["command"] for d in docs))
    return merged


def plot(doc: dict[str, Any], path: Path) -> None:
    """Each measure against N (log scale), one line per index and search setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [("build_s", "build s", True), ("bytes_per_vector", "bytes per vector", True),
                ("single_ms", "single-query ms (median)", True), ("batched_qps", "batched queries/s", True),
                ("recall@10", "recall@10", False), ("recall@100", "recall@100", False),
                ("speedup", "x exact single-query", True)]  # fmt: skip
    figure, axes = plt.subplots(2, 4, figsize=(18, 8))
    lines: dict[str, list[dict[str, Any]]] = {}
    for size in sorted(doc["sizes"], key=lambda s: s["n"]):
        for r in size["rows"]:
            lines.setdefault(r["key"], []).append(r)
    for ax, (field, title, log_y) in zip(axes.flat, measures, strict=False):
        for key, rows in lines.items():
            ax.plot([r["n"] for r in rows], [r[field] for r in rows], marker="o", label=key)
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("passages")
        ax.set_title(title)
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(*axes.flat[0].get_legend_handles_labels(), loc="center", fontsize=8)
    figure.suptitle(f"Index cost against corpus size ({doc['machine']}, {doc['date']})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


# ------------------------------------------------------------------------------------------------ main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[10_000], help="corpus sizes (several: a curve; default 10000)")
    p.add_argument("--index", nargs="+", metavar="FACTORY", help="FAISS factories ({nlist} filled per N); default: the list above")
    p.add_argument("--exclude", nargs="+", default=[], metavar="TEXT",
                   help="leave out the default indexes whose factory holds TEXT (e.g. OPQ: its training is the slowest)")
    p.add_argument("--ef-search", type=int, nargs="+", default=[DEFAULT_EF],
                   help="HNSW's efSearch for --index factories (default 128; several: each searches the one index built)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[DEFAULT_NPROBE],
                   help="IVF's nprobe for --index factories (default 64; several: each searches the one index built)")
    p.add_argument("--rerank", type=int, default=DEFAULT_RERANK, help="exact re-scoring depth for --index PQ factories (default 100)")
    p.add_argument("--vectors", choices=["auto", "real", "synthetic"], default="auto", help="where the vectors come from (above)")
    p.add_argument("--runtime", default="onnx", choices=["torch", "onnx"], help="the runtime encoding the real corpus and questions")
    p.add_argument("--encoder", type=Path, metavar="FOLDER",
                   help="with --vectors real: a trained MiniLM (sentence-transformers folder) instead of the bundled one (above)")
    p.add_argument("--queries", type=int, default=1000, help="queries for recall and the batched throughput (default 1000)")
    p.add_argument("--single", type=int, default=200, help="of which timed one at a time (default 200)")
    p.add_argument("--perturbation", type=float, default=0.5, help="real vectors beyond the real count: noise scale")
    p.add_argument("--query-noise", type=float, default=0.5, help="synthetic queries: noise scale")
    p.add_argument("--encode-sample", type=int, default=500, help="passages per encoding runtime timed (0: skip)")
    p.add_argument("--encode-runtimes", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    p.add_argument("--reach", action="store_true",
                   help="also count the rows each index does not return for their own vector (unreached; N searches)")
    p.add_argument("--threads", type=int, default=1, help="FAISS's threads: builds and batches (default 1, above)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".cache", help="the real shard set, question vectors, ONNX exports")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write every row as JSON here")
    p.add_argument("--from", dest="sources", type=Path, nargs="+", metavar="JSON", help="read --out files instead of measuring")
    p.add_argument("--plot", type=Path, help="draw each measure against N into this PNG")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def variants_of(args: argparse.Namespace) -> list[Variant]:
    if not args.index:
        return [v for v in DEFAULT_VARIANTS if v.exact or not any(part in v.index for part in args.exclude)]
    return [v for f in dict.fromkeys(args.index) for v in family_defaults(f, args.ef_search, args.nprobe, args.rerank)]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from uae.results.machine import label as machine_label

    faiss.omp_set_num_threads(args.threads)
    variants = variants_of(args)
    for n in args.n:
        if n < max(1000, args.queries // 10):
            raise SystemExit(f"--n {n}: use at least 1000 passages (recall@100 needs a corpus well past 100)")
        for v in variants:
            if "IVF" in v.index and n < nlist_for(n):
                raise SystemExit(f"--n {n} is too small for {v.factory(n)}")
    if args.single > args.queries:
        raise SystemExit(f"--single {args.single}: at most --queries ({args.queries})")
    if args.encoder is not None and args.vectors != "real":
        raise SystemExit(f"--encoder {args.encoder}: its vectors are the open corpus encoded by it; add --vectors real")
    folder = shard_folder(args.cache_dir, args.runtime)
    # real vectors to search, or to fit the mixture to: from this script's shard set, or a twin (twin_shards)
    wants_real = args.vectors == "real" or any(args.cache_dir.glob(SHARD_MANIFESTS))
    corpus = open_corpus() if wants_real or args.encode_sample else None
    real, real_array, real_s = None, None, 0.0
    if wants_real and corpus is not None:
        start = time.perf_counter()
        real = real_vectors(corpus, args.cache_dir, args.runtime, encode=args.vectors == "real", local_path=args.encoder)
        real_array = None if real is None else real.to_array()
        real_s = time.perf_counter() - start
    if args.vectors == "auto":
        print(f"--vectors auto: {'real' if real is not None else 'synthetic'} (real shard set "
              f"{'complete' if real is not None else 'not complete'} in {folder if real is None else real.folder})", file=sys.stderr)  # fmt: skip
    use_real = real is not None and args.vectors != "synthetic"
    doc: dict[str, Any] = {
        "benchmark": "scale", "command": "python benchmarks/scale.py " + shlex.join(sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine_label(device="cpu"),
        "faiss": faiss.__version__, "threads": faiss.omp_get_max_threads(), "dim": DIM, "queries": args.queries,
        "single": args.single, "vectors": "real" if use_real else "synthetic", "sizes": [],
        "corpus": None if corpus is None else {"passages": len(corpus.texts), "load_s": corpus.load_s, "peak_rss_mb": corpus.peak_rss_mb},
        "encoding": [],
    }  # fmt: skip
    if corpus is not None and args.encode_sample:
        if not args.quiet:
            print(f"timing encode_shards on {args.encode_sample} passages: {', '.join(args.encode_runtimes)}", file=sys.stderr, flush=True)
        doc["encoding"] = encoding_rates(corpus, args.cache_dir, args.encode_runtimes, args.encode_sample, args.seed)
    if real is not None:
        doc["real_vectors"] = {"passages": len(real), "folder": str(real.folder), "encoded_now": len(real.encoded),
                               "encoder": str(args.encoder) if args.encoder is not None else MINILM,
                               "load_s": real_s, "peak_rss_mb": peak_rss_mb()}
    real_queries = (question_vectors(corpus, args.cache_dir, args.runtime, args.queries, args.seed, args.encoder)
                    if use_real and corpus else None)  # fmt: skip
    for n in args.n:
        start = time.perf_counter()
        if use_real and real_array is not None and real_queries is not None:
            vectors, how = extend_real(real_array, n, args.seed, args.perturbation)
            queries = real_queries
            how += f"; queries: {len(queries)} SQuAD questions (a seeded sample), encoded"
        elif real_array is not None:
            vectors, queries, how = mixture(n, args.queries, real_array, args.seed, args.query_noise)
        else:
            vectors, queries, how = clustered(n, args.queries, DIM, args.seed, args.query_noise)
        vectors_s = time.perf_counter() - start
        rows = measure_size(n, variants, vectors, queries, args.single, not args.quiet, args.reach)
        doc["sizes"].append({"n": n, "queries": len(queries), "single": args.single, "vectors": how, "vectors_s": vectors_s, "wall_s": time.perf_counter() - start,
                             "peak_rss_mb": peak_rss_mb(), "rows": rows})
        del vectors
        gc.collect()
    return doc


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.sources:
        doc = merge([json.loads(p.read_text(encoding="utf-8")) for p in args.sources])
    else:
        doc = measure(args)
    if args.out:
        from uae.storage.atomic import write_json

        write_json(args.out, doc)
    if args.plot:
        plot(doc, args.plot)
    print(report(doc))
    if not args.sources:  # a measuring run ends with one line per index, the last index's last
        print("\n".join(summaries(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Corpus-wide exact search on faiss-gpu against faiss-cpu: same vectors, same queries, rankings compared.

    python benchmarks/faiss_gpu.py [--passages 100000] [--dim 384] [--queries 1000] [--k 100]
        [--duplicates 0.01] [--score-tol 1e-5] [--candidates faiss-gpu torch] [--device cuda] [--allow-cpu]

Why: ``uae.retrieval.index.PassageIndex.search_corpus`` puts its flat inner-product index on the GPU
whenever faiss-gpu and a GPU are present, so the same run ranks with cuBLAS's float32 products on a GPU
machine and with BLAS's on a CPU. The two round their sums differently, so passages whose scores differ
by less than that rounding may change places. This says how often and by how much, through the
project's own code path (``PassageIndex`` with ``use_gpu=True`` and ``use_gpu=False``).

The reference is faiss-cpu. Each candidate ranks the same queries:

* ``faiss-gpu``: ``PassageIndex(use_gpu=True)`` (needs faiss-gpu and a GPU);
* ``faiss-cpu``: a second, separately built CPU index: the control, which must agree exactly;
* ``torch``: an exact scan in torch on ``--device`` (matrix product, top k, ties by row), what any
  CUDA float32 product gives: a stand-in where faiss-gpu is not installed.

The vectors are seeded random unit vectors (``--dim``, MiniLM's 384 by default) with ``--duplicates`` of
the rows exact copies of others (QASPER papers repeat paragraphs, so exact ties are real); half the
queries are noisy copies of passages, half random. A candidate agrees when, at every rank, its passage's
exact score (float64) is within ``--score-tol`` of the reference's passage at that rank (identical ids,
or a near-tie swapped) and its returned scores are within ``--score-tol`` of the reference's. Prints a
markdown table and each candidate's search speed against faiss-cpu; exits 1 when a candidate does not
agree, 2 when a candidate cannot run here (no GPU) and ``--allow-cpu`` is not given (with it, faiss-gpu
is replaced by a second faiss-cpu index and torch runs on the CPU, and the output says so).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

CANDIDATES = ("faiss-gpu", "faiss-cpu", "torch")


@dataclass(frozen=True)
class Ranked:
    """One backend's top k for every query: rows (passage numbers) and float32 scores, best first."""

    rows: np.ndarray
    scores: np.ndarray
    first_s: float  # the first query: builds the index (and moves it to the GPU)
    search_s: float  # all the queries, index built


def make_data(
    passages: int, dim: int, queries: int, duplicates: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with exact duplicate rows, and queries: half noisy copies of passages, half random."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((passages, dim), dtype=np.float32)
    copies = int(duplicates * passages)
    if copies:
        source = rng.choice(passages, copies, replace=False)
        vectors[rng.choice(passages, copies, replace=False)] = vectors[source]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    near = queries // 2
    q = np.concatenate([
        vectors[rng.choice(passages, near)] + 0.5 * rng.standard_normal((near, dim), dtype=np.float32) / np.sqrt(dim),
        rng.standard_normal((queries - near, dim), dtype=np.float32),
    ])  # fmt: skip
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors), np.ascontiguousarray(q.astype(np.float32))


def faiss_has_gpu() -> bool:
    """faiss-gpu installed (it has StandardGpuResources) and a GPU it can see."""
    import faiss  # deferred: only when a faiss backend is asked for

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def rank_faiss(vectors: np.ndarray, queries: np.ndarray, k: int, *, gpu: bool) -> Ranked:
    """The project's own corpus search: PassageIndex.search_corpus, its flat index on the GPU or not."""
    from uae.retrieval.index import PassageIndex

    ids = [str(r) for r in range(len(vectors))]
    index = PassageIndex(vectors, ids, [f"d{r // 100}" for r in range(len(vectors))], use_gpu=gpu)
    t0 = time.perf_counter()
    index.search_corpus(queries[:1], k)  # builds the index
    t1 = time.perf_counter()
    scores, found = index.search_corpus(queries, k)
    t2 = time.perf_counter()
    rows = np.array([[int(i) for i in row] for row in found], dtype=np.int64)
    return Ranked(rows, np.asarray(scores, dtype=np.float32), t1 - t0, t2 - t1)


def rank_torch(vectors: np.ndarray, queries: np.ndarray, k: int, *, device: str) -> Ranked:
    """An exact scan in torch: float32 products on ``device``, top k, equal scores in row order."""
    import torch

    def run(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = torch.from_numpy(q).to(device) @ matrix.T
        top, rows = torch.topk(scores, k, dim=1)
        top, rows = top.cpu().numpy(), rows.cpu().numpy()
        order = np.lexsort((rows, -top), axis=1)
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(rows, order, axis=1)

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products, as faiss's
    t0 = time.perf_counter()
    matrix = torch.from_numpy(vectors).to(device)
    run(queries[:1])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    top, rows = run(queries)
    t2 = time.perf_counter()
    return Ranked(rows.astype(np.int64), top.astype(np.float32), t1 - t0, t2 - t1)


@dataclass(frozen=True)
class Agreement:
    identical_queries: int
    differing_positions: int
    unexplained: int  # differing positions whose exact scores are more than the tolerance apart
    max_score_diff: float

    def ok(self, tol: float) -> bool:
        return self.unexplained == 0 and self.max_score_diff <= tol


def compare(
    reference: Ranked, candidate: Ranked, vectors: np.ndarray, queries: np.ndarray, tol: float
) -> Agreement:
    """Rank by rank: identical ids, or passages whose exact (float64) scores are within ``tol``."""
    same = reference.rows == candidate.rows
    unexplained = 0
    for qi, pos in zip(*np.nonzero(~same)):
        pair = vectors[[reference.rows[qi, pos], candidate.rows[qi, pos]]].astype(np.float64) @ queries[
            qi
        ].astype(np.float64)
        unexplained += int(abs(pair[0] - pair[1]) > tol)
    return Agreement(
        identical_queries=int(same.all(axis=1).sum()),
        differing_positions=int((~same).sum()),
        unexplained=unexplained,
        max_score_diff=float(np.abs(reference.scores.astype(np.float64) - candidate.scores).max()),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--passages", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384, help="MiniLM's embedding size")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=100, help="top k per query (faiss-gpu takes at most 2048)")
    p.add_argument(
        "--duplicates", type=float, default=0.01, help="share of rows that are exact copies of others"
    )
    p.add_argument(
        "--score-tol", type=float, default=1e-5, help="how far apart two scores may be and count as a tie"
    )
    p.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=["faiss-gpu", "torch"])
    p.add_argument("--device", default="cuda", help="torch's device for the torch candidate")
    p.add_argument(
        "--allow-cpu", action="store_true", help="no GPU: compare faiss-cpu with itself, torch on the CPU"
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 < args.k <= args.passages:
        raise SystemExit(f"--k {args.k}: use 1..--passages ({args.passages})")
    notes: list[str] = []
    candidates = list(dict.fromkeys(args.candidates))
    if "faiss-gpu" in candidates and not faiss_has_gpu():
        if not args.allow_cpu:
            print("faiss has no GPU here (faiss-cpu installed, or no GPU visible): nothing to compare faiss-gpu with. "
                  "Install faiss-gpu on a GPU machine (experiments/gpu/README.md), or pass --allow-cpu to compare "
                  "faiss-cpu with itself.", file=sys.stderr)  # fmt: skip
            return 2
        candidates = list(dict.fromkeys(["faiss-cpu" if c == "faiss-gpu" else c for c in candidates]))
        notes.append("faiss has no GPU here: faiss-gpu replaced by a second faiss-cpu index (--allow-cpu).")
    device = args.device
    if "torch" in candidates and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            if not args.allow_cpu:
                print(
                    f"torch sees no CUDA device for --device {device}; pass --allow-cpu to scan on the CPU.",
                    file=sys.stderr,
                )
                return 2
            device = "cpu"
            notes.append("torch sees no CUDA device: the torch scan runs on the CPU (--allow-cpu).")
    if "faiss-gpu" in candidates and args.k > 2048:
        raise SystemExit(f"--k {args.k}: faiss-gpu searches at most 2048 per query")

    import faiss  # noqa: F401  # imported before the clocks start, so the reference's first query does not pay for it

    vectors, queries = make_data(args.passages, args.dim, args.queries, args.duplicates, args.seed)
    reference = rank_faiss(vectors, queries, args.k, gpu=False)
    runs = {"faiss-cpu (reference)": reference}
    for name in candidates:
        label = f"{name} ({device})" if name == "torch" else name
        if name == "torch":
            runs[label] = rank_torch(vectors, queries, args.k, device=device)
        else:
            runs[label] = rank_faiss(vectors, queries, args.k, gpu=name == "faiss-gpu")

    from uae.results.machine import label as machine_label

    on_gpu = any(name == "faiss-gpu" for name in candidates) or device.startswith("cuda")
    print(
        f"\nCorpus search, exact inner product: {args.passages} passages x {args.dim} dims "
        f"({args.duplicates:.0%} exact duplicate rows), {args.queries} queries, top {args.k}, on "
        f"{machine_label(device='cuda' if on_gpu else 'cpu')}; agreement: same passage at each rank, or exact "
        f"scores within {args.score_tol:g}\n"
    )
    for note in notes:
        print(note + "\n")
    print("| backend | first query s (build) | search s | queries/s | identical rankings | ranks that differ "
          "| of which not ties | max score difference |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    failed = []
    for name, run in runs.items():
        agreement = compare(reference, run, vectors, queries, args.score_tol)
        if not agreement.ok(args.score_tol):
            failed.append(name)
        print(
            f"| {name} | {run.first_s:.3f} | {run.search_s:.3f} | {args.queries / run.search_s:.0f} "
            f"| {agreement.identical_queries}/{args.queries} | {agreement.differing_positions} "
            f"| {agreement.unexplained} | {agreement.max_score_diff:.2e} |"
        )
    print()
    for name, run in list(runs.items())[1:]:
        print(f"search speed {name} / faiss-cpu: {reference.search_s / run.search_s:.2f}x")
    if failed:
        print(
            f"FAIL: {', '.join(failed)} ranked differently beyond ties within {args.score_tol:g}",
            file=sys.stderr,
        )
        return 1
    print(f"\nAll backends agree with faiss-cpu (ties within {args.score_tol:g}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

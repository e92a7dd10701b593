"""What the content digests cost: reading (and writing) a cache or table with its digest, against without.

    python benchmarks/integrity.py [--repeat 15] [--embeddings CACHE.pt | --passages N] [--table TABLE.parquet]

Two files, each read the way UAE read it before digests and the way it reads it now, in one process,
alternating, best wall time of ``--repeat`` (the files sit in the page cache: this is the check's CPU cost, not
the disk's):

- the dev passage-embeddings cache: ``torch.load`` against :func:`uae.storage.tensors.load_tensors` (torch.load, then
  the xxh3-128 digest of the tensor bytes and passage ids). By default a synthetic cache of the real one's
  shape (MiniLM on all of QASPER dev: 13,267 x 384 float32 and 13,267 passage ids), since computing the
  real one takes minutes on a CPU; ``--embeddings`` times a real ``paths.cache_dir/embeddings/dev-*.pt``,
  ``--passages`` a synthetic one of that many rows (the tests' smoke run: a few).
- the committed train utility table (experiments/qasper/utilities/train.parquet, 18,528 rows): plain
  ``pyarrow.parquet.read_table`` against :func:`uae.table.read.read_table`, both for the committed
  file (written before digests: checked by utility = ll_context - ll_closed) and for a copy written with
  its digest (:func:`uae.storage.digest.write_parquet`: the bytes before the footer hashed).

Writes are timed the same way (torch.save against save_tensors; pq.write_table against write_parquet,
which encodes twice), both through the atomic temporary file UAE writes with. Prints a markdown table,
the ratios, and the digest (or the consistency check) alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uae.results.machine import label as machine_label

DEV_PASSAGES, MINILM_DIM = 13_267, 384


def best_ms(functions: list[Callable[[], object]], repeat: int) -> list[float]:
    """Best wall time of each function in ms, the functions taking turns so that the load from the
    machine's neighbours falls on all alike; the best of many runs is one that was not preempted.
    (Process CPU time would not do: pyarrow's thread pool reads are not all counted in it.)"""
    best = [float("inf")] * len(functions)
    for _ in range(repeat):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[i] = min(best[i], 1000 * (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--embeddings", type=Path, default=None, help="a real embeddings cache (.pt); default: synthetic")
    parser.add_argument("--passages", type=int, default=DEV_PASSAGES, help="rows of the synthetic cache (default: QASPER dev's)")
    parser.add_argument("--table", type=Path, default=ROOT / "experiments" / "qasper" / "utilities" / "train.parquet")
    args = parser.parse_args(argv)

    import pyarrow.parquet as pq
    import torch

    from uae.storage.atomic import atomic_path
    from uae.storage.digest import check_parquet, parquet_data_digest, payload_digest, write_parquet
    from uae.storage.tensors import load_tensors, save_tensors
    from uae.table.read import check_consistency, read_table

    work = Path(tempfile.mkdtemp(prefix="uae-bench-integrity-"))
    if args.embeddings:  # a copy, saved with its digest (the file may be from before digests)
        payload = torch.load(args.embeddings, map_location="cpu", weights_only=True)
        cache = work / args.embeddings.name
        save_tensors(cache, "key", {k: v for k, v in payload.items() if k not in ("fingerprint", "digest")})
        what = f"{args.embeddings.name} ({tuple(payload['embeddings'].shape)} {payload['embeddings'].dtype})"
    else:
        generator = torch.Generator().manual_seed(0)
        embeddings = torch.nn.functional.normalize(torch.randn(args.passages, MINILM_DIM, generator=generator), dim=-1)
        cache = work / "dev-synthetic.pt"
        save_tensors(cache, "key", {"embeddings": embeddings, "passage_ids": [f"paper{i // 40}/{i % 40}" for i in range(args.passages)]})
        shape = "the shape of MiniLM's QASPER dev cache" if args.passages == DEV_PASSAGES else "MiniLM's width"
        what = f"synthetic, {shape} ({args.passages:,} x {MINILM_DIM} float32)"
    key = torch.load(cache, map_location="cpu", weights_only=True)["fingerprint"]
    plain_pt = work / "plain.pt"
    torch.save({k: v for k, v in torch.load(cache, weights_only=True).items() if k != "digest"}, plain_pt)
    stored_all = {k: v for k, v in torch.load(cache, weights_only=True).items() if k != "digest"}
    stored = {k: v for k, v in stored_all.items() if k != "fingerprint"}

    table = pq.read_table(args.table)
    stamped = work / "train-digest.parquet"
    write_parquet(table, stamped, compression="zstd")

    rows = []

    def row(name: str, before: str, after: str, plain: Callable[[], object], checked: Callable[[], object],
            check: Callable[[], object]) -> None:
        rows.append((name, before, after, *best_ms([plain, checked, check], args.repeat)))

    row("read: embeddings cache", "torch.load", "load_tensors", lambda: torch.load(plain_pt, map_location="cpu", weights_only=True),
        lambda: load_tensors(cache, key), lambda: payload_digest(stored_all))
    row("read: train table, committed (no digest)", "pq.read_table", "read_table (consistency check)",
        lambda: pq.read_table(args.table), lambda: read_table(args.table), lambda: check_consistency(args.table))
    row("read: train table with its digest", "pq.read_table", "read_table (digest)",
        lambda: pq.read_table(stamped), lambda: read_table(stamped), lambda: check_parquet(stamped))
    def atomic(write: Callable[[Path], object], path: Path) -> None:  # how UAE wrote both before digests
        with atomic_path(path) as tmp:
            write(tmp)

    row("write: embeddings cache", "torch.save", "save_tensors",
        lambda: atomic(lambda tmp: torch.save(stored_all, tmp), work / "w.pt"),
        lambda: save_tensors(work / "w2.pt", key, stored), lambda: payload_digest(stored_all))
    row("write: train table", "pq.write_table", "write_parquet (encodes twice)",
        lambda: atomic(lambda tmp: pq.write_table(table, tmp, compression="zstd"), work / "w.parquet"),
        lambda: write_parquet(table, work / "w2.parquet", compression="zstd"), lambda: parquet_data_digest(stamped))

    size_pt, size_table = cache.stat().st_size / 2**20, args.table.stat().st_size / 2**20
    print(f"\nContent digests (xxh3-128): what the check costs, {machine_label()}, torch threads "
          f"{torch.get_num_threads()}, best wall time of {args.repeat} alternating runs\n")
    print(f"Embeddings cache: {what}, {size_pt:.1f} MiB. Train table: {args.table.name}, {table.num_rows:,} rows, "
          f"{size_table:.2f} MiB.\n")
    print("| operation | before digests | ms | now | ms | ratio | the check (digest) alone, ms |")
    print("|---|---|---|---|---|---|---|")
    for name, before, after, plain, checked, check in rows:
        print(f"| {name} | {before} | {plain:.1f} | {after} | {checked:.1f} | {checked / plain:.2f}x | {check:.1f} |")
    reads = [r[4] / r[3] for r in rows if r[0].startswith("read")]
    print(f"\nReading with the check takes {min(reads):.2f}x to {max(reads):.2f}x the time of the plain read "
          "(ratio of best wall times).")
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())

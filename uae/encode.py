"""Encode a corpus into embedding shards: ``python -m uae.encode RUN_DIR --passages FILE.jsonl --to FOLDER``.

    python -m uae.encode my-retriever --passages corpus.jsonl --to corpus-shards                  # this process, torch
    python -m uae.encode my-retriever --passages corpus.jsonl --to corpus-shards --dtype float16  # half the disk
    python -m uae.encode my-retriever --passages corpus.jsonl --to corpus-shards --engine processes --workers 4 --runtime onnx
    python -m uae.encode my-retriever --passages corpus.jsonl --to corpus-shards --engine lightning --devices 4  # DDP, 4 GPUs
    python -m uae.encode --check corpus-shards                                                    # every digest, checked

RUN_DIR is a run folder with a fine-tuned encoder, or an exported encoder folder; the passages file is what
``python -m uae.search`` reads (BEIR's corpus.jsonl works as is). FOLDER receives ``shard-NNNNN.npy`` files of
``--shard-size`` passages each (memory-mapped by readers: ``uae.retrieval.shards.ShardSet.load``), the passage ids,
and ``manifest.json`` with each finished shard's digest. The command can be stopped or killed at any point: run it
again with the same arguments and it keeps the shards already written (their digests checked) and encodes the rest.
Engines: ``local`` (this process; the reference), ``processes`` (``--workers`` CPU processes, each with its share of
the cores; ``--runtime onnx`` makes each run ONNX Runtime), ``lightning`` (Lightning's predict loop: ``--devices``
GPUs under DDP, or the CPU). A FAISS index fills from the shards one at a time:
``uae.retrieval.ann.index_from_shards(ShardSet.load(FOLDER), "IVF4096,Flat")``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from uae.core.choices import RUNTIMES, SHARD_DTYPES, SHARD_ENGINES
from uae.core.errors import UAEError, cli_main


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.encode",
        description="Encode the passages of a JSONL file into resumable, digest-checked embedding shards.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, nargs="?", metavar="RUN_DIR", help="a run folder with a fine-tuned encoder, or an exported encoder folder")
    parser.add_argument("--passages", type=Path, help='JSONL file, one {"text": ..., "_id": ...} per line')
    parser.add_argument("--to", type=Path, metavar="FOLDER", help="the shard folder (made if new; resumed if it holds shards of this encoding)")
    parser.add_argument("--check", type=Path, metavar="FOLDER", help="check every shard of FOLDER against its digest, encode nothing")
    parser.add_argument("--shard-size", type=int, default=None, help="passages per shard (default 10000)")
    parser.add_argument("--dtype", choices=SHARD_DTYPES, default="float32", help="how the vectors are stored (default float32)")
    parser.add_argument("--engine", choices=SHARD_ENGINES, default="local", help="what encodes: local (default), processes, lightning")
    parser.add_argument("--workers", type=int, default=1, help="--engine processes: how many CPU processes (default 1)")
    parser.add_argument("--devices", default="auto", help="--engine lightning: Lightning's devices (a count, or auto)")
    parser.add_argument("--accelerator", default="auto", help="--engine lightning: Lightning's accelerator (auto, gpu, cpu)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch", help="what runs the encoder: torch (default), onnx or onnx-int8")
    parser.add_argument("--device", default="auto", help="--engine local: auto (CUDA when available), cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=64, help="passages encoded per batch (default 64)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.check is not None:
        return check(args.check)
    if args.model is None or args.passages is None or args.to is None:
        raise UAEError("give RUN_DIR, --passages FILE and --to FOLDER (or --check FOLDER to check a shard folder).")
    if args.shard_size is not None and args.shard_size < 1:
        raise UAEError(f"--shard-size {args.shard_size}: must be at least 1.")
    from uae.api import Retriever  # deferred: start-up speed
    from uae.data.passages import read_passages
    from uae.retrieval.shard_encoding import DEFAULT_SHARD_SIZE, encode_shards

    texts, ids = read_passages(args.passages)
    device = args.device if args.engine == "local" else "cpu"  # workers run on CPUs; Lightning places the model itself
    encoder = Retriever.load(args.model, device=device, batch_size=args.batch_size, runtime=args.runtime).encoder
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    start = time.perf_counter()
    shards = encode_shards(
        encoder, texts, args.to, ids=ids, shard_size=args.shard_size or DEFAULT_SHARD_SIZE, dtype=args.dtype,
        engine=args.engine, workers=args.workers, batch_size=args.batch_size, progress=not args.quiet,
        trainer={"accelerator": args.accelerator, "devices": devices},
    )
    n = len(shards.arrays)
    print(f"{len(shards)} passages in {n} shards of {shards.spec.shard_size} ({len(shards.encoded)} encoded now, "
          f"{n - len(shards.encoded)} kept), {shards.spec.dtype}, {shards.dimension} dimensions, in "
          f"{time.perf_counter() - start:.1f} s: {args.to}", file=sys.stderr)
    return 0


def check(folder: Path) -> int:
    """Every shard of ``folder`` read against its digest: exit 0 when all match, a UAEError naming the first that does not."""
    from uae.retrieval.shards import ShardSet  # deferred: start-up speed

    shards = ShardSet.load(folder, verify=True)
    shards.ids()
    print(f"{folder}: {len(shards)} passages in {len(shards.arrays)} shards, {shards.spec.dtype}, every digest matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())

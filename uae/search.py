"""Search your own passages with a trained model: ``python -m uae.search RUN_DIR --passages FILE.jsonl --question "..."``.

    python -m uae.search logs/quickstart/runs/<time> --passages corpus.jsonl --question "What dataset is used?" --k 5
    python -m uae.search my-retriever --passages corpus.jsonl --question "..." --json   # one JSON object per hit
    python -m uae.search my-retriever --passages corpus.jsonl --question "..." --runtime onnx  # ONNX Runtime

RUN_DIR is a run folder with a fine-tuned encoder, or an exported encoder folder. Each line of the
passages file is a JSON object with a "text" and optionally an "_id" or "id" (BEIR's corpus.jsonl
works as is); passages without an id are named by their line number. ``--k`` larger than the number of
passages is clamped to it. The index is FAISS (GPU FAISS when present), as ``uae.Retriever.search``.
``--runtime onnx`` encodes with ONNX Runtime (the same embeddings to about 1e-6; pip install 'uae[onnx]'),
from the model folder's ``onnx/model.onnx`` when it ships one, else from an export made once into
UAE_CACHE_DIR (default ~/.cache/uae); ``onnx-int8`` quantizes it (faster, approximate embeddings).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from uae.core.choices import RUNTIMES
from uae.core.errors import DataError, UAEError, cli_main


def read_passages(path: Path) -> tuple[list[str], list[str]]:
    """Texts and ids of a passages file (JSONL: {"text", optional "_id"/"id"}), with line-numbered errors."""
    from uae.data.files import read_jsonl  # deferred: start-up speed

    if not path.is_file():
        raise DataError(f"--passages {path}: no such file.")
    texts, ids = [], []
    for lineno, row in read_jsonl(path, 'one passage: {"text": "...", "_id": "..."}'):
        text = row.get("text")
        if not isinstance(text, str):
            raise DataError(f"{path}, line {lineno}: no \"text\" string (each line holds one passage: {{\"text\", \"_id\"}}).")
        identifier = row.get("_id", row.get("id", str(lineno)))
        if not isinstance(identifier, str | int) or isinstance(identifier, bool):
            raise DataError(f"{path}, line {lineno}: the id {identifier!r} is not a string or number.")
        texts.append(text)
        ids.append(str(identifier))
    if not texts:
        raise DataError(f"--passages {path} holds no passages: there is nothing to search.")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for duplicate in ids:  # the first id seen twice
            if duplicate in seen:
                break
            seen.add(duplicate)
        raise DataError(f"--passages {path}: the id {duplicate!r} names two passages; ids must be unique.")
    return texts, ids


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.search",
        description="Rank the passages of a JSONL file for a question with a trained UAE model.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="RUN_DIR", help="a run folder with a fine-tuned encoder, or an exported encoder folder")
    parser.add_argument("--passages", type=Path, required=True, help='JSONL file, one {"text": ..., "_id": ...} per line')
    parser.add_argument("--question", required=True, help="the question to search for")
    parser.add_argument("--k", type=int, default=5, help="how many passages to show (default 5; clamped to the number of passages)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per hit instead of a table")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=64, help="passages encoded per batch (default 64)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch",
                        help="what runs the encoder: torch (default), onnx or onnx-int8 (ONNX Runtime)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not args.question.strip():
        raise UAEError("--question is empty: give the question to search for.")
    if args.k < 1:
        raise UAEError(f"--k {args.k}: must be at least 1.")
    texts, ids = read_passages(args.passages)
    from uae.api import Retriever  # deferred: start-up speed

    retriever = Retriever.load(args.model, device=args.device, batch_size=args.batch_size, runtime=args.runtime)
    hits = retriever.index(texts, ids).search(args.question, k=args.k)
    for hit in hits:
        if args.json:
            print(json.dumps({"rank": hit.rank, "score": round(hit.score, 6), "id": hit.id, "text": hit.text}, ensure_ascii=False))
        else:
            text = " ".join(hit.text.split())
            print(f"{hit.rank:>3}  {hit.score:.4f}  {hit.id}  {text[:160] + ('...' if len(text) > 160 else '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search your own passages with a trained model: ``python -m uae.search RUN_DIR --passages FILE.jsonl --question "..."``.

    python -m uae.search my-retriever --passages corpus.jsonl --question "..." --question "..."   # several questions
    python -m uae.search my-retriever --passages corpus.jsonl --queries queries.jsonl --index HNSW32 --ef-search 128

    python -m uae.search logs/quickstart/runs/<time> --passages corpus.jsonl --question "What dataset is used?" --k 5
    python -m uae.search my-retriever --passages corpus.jsonl --question "..." --json   # one JSON object per hit
    python -m uae.search my-retriever --passages corpus.jsonl --question "..." --runtime onnx  # ONNX Runtime

RUN_DIR is a run folder with a fine-tuned encoder, or an exported encoder folder. Each line of the
passages file is a JSON object with a "text" and optionally an "_id" or "id" (BEIR's corpus.jsonl
works as is); passages without an id are named by their line number. ``--k`` larger than the number of
passages is clamped to it. The index is FAISS (GPU FAISS when present), as ``uae.Retriever.search``:
exact by default, or any FAISS index_factory string (``--index HNSW32``). The corpus is encoded once: its
embeddings and index are kept in one digest-checked file (``--index-file``, by default under UAE_CACHE_DIR,
named after the passages file's content and the index), so the next questions cost milliseconds each.
``--shards FOLDER`` takes the corpus's embeddings from shards that ``python -m uae.encode`` wrote with this model
(a corpus encoded on GPUs or in worker processes; digests, encoder and passages checked) instead of encoding it.
``--queries`` reads questions from a file: BEIR's queries.jsonl ({"_id", "text"}) or one question per line.
``--runtime onnx`` encodes with ONNX Runtime (the same embeddings to about 1e-6; pip install 'uae[onnx]'),
from the model folder's ``onnx/model.onnx`` when it ships one, else from an export made once into
UAE_CACHE_DIR (default ~/.cache/uae); ``onnx-int8`` quantizes it (faster, approximate embeddings).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from uae.core.choices import RUNTIMES
from uae.core.errors import DataError, UAEError, cli_main
from uae.data.passages import read_passages


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
    parser.add_argument("--question", action="append", default=[], help="a question to search for (repeat for several)")
    parser.add_argument("--queries", type=Path, help='more questions: JSONL ({"_id", "text"} per line, BEIR queries.jsonl) or plain text, one per line')
    parser.add_argument("--index", default="Flat", metavar="FACTORY",
                        help="the FAISS index_factory string: Flat (exact, default), HNSW32, IVF4096,Flat, IVF4096,PQ48np, ...")
    parser.add_argument("--ef-search", type=int, help="HNSW: candidates kept while searching")
    parser.add_argument("--nprobe", type=int, help="IVF: lists searched per question")
    parser.add_argument("--exact-rerank", type=int, default=0, help="re-score the index's top K exactly (0: off)")
    parser.add_argument("--index-file", type=Path, help="where the encoded corpus and its index are kept (default: in UAE_CACHE_DIR)")
    parser.add_argument("--shards", type=Path, metavar="FOLDER",
                        help="embeddings of --passages already encoded by python -m uae.encode with this model: index them, encode nothing")
    parser.add_argument("--k", type=int, default=5, help="how many passages to show (default 5; clamped to the number of passages)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per hit instead of a table")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=64, help="passages encoded per batch (default 64)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch",
                        help="what runs the encoder: torch (default), onnx or onnx-int8 (ONNX Runtime)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if any(not q.strip() for q in args.question):
        raise UAEError("--question is empty: give the question to search for.")
    questions = [("", q) for q in args.question] + (read_queries(args.queries) if args.queries else [])
    if not questions:
        raise UAEError("no question: give --question TEXT (once or more) or --queries FILE.")
    if args.k < 1:
        raise UAEError(f"--k {args.k}: must be at least 1.")
    texts, ids = read_passages(args.passages)
    from uae.api import Retriever, default_cache_dir  # deferred: start-up speed
    from uae.storage.digest import file_digest

    retriever = Retriever.load(args.model, device=args.device, batch_size=args.batch_size, runtime=args.runtime)
    slug = "".join(c if c.isalnum() else "_" for c in args.index)
    # named after the passages' content, the encoder (its passage side) and the factory: another model is another file
    index_file = args.index_file or default_cache_dir() / "search" / f"{file_digest(args.passages)[-24:]}-{retriever.corpus_key[:12]}-{slug}.pt"
    settings = {"ef_search": args.ef_search, "nprobe": args.nprobe, "exact_rerank": args.exact_rerank}
    if index_file.is_file():
        retriever.load_index(index_file, **settings)
        kept_texts, kept_ids, kept_factory = retriever.corpus
        if kept_ids != ids or kept_texts != texts:
            raise UAEError(f"--index-file {index_file} holds another corpus than --passages {args.passages}; give another file.")
        if kept_factory != args.index:
            raise UAEError(f"--index-file {index_file} holds a {kept_factory} index, not {args.index}; give another file.")
    elif args.shards is not None:
        retriever.index_shards(args.shards, texts, ids, factory=args.index, **settings).save_index(index_file)
    else:
        retriever.index(texts, ids, factory=args.index, **settings).save_index(index_file)
    start = time.perf_counter()
    hits = retriever.search([q for _, q in questions], k=args.k)
    seconds = time.perf_counter() - start
    for (query_id, question), found in zip(questions, hits, strict=True):
        if not args.json and len(questions) > 1:
            print(f"\n{query_id + ': ' if query_id else ''}{question}")
        for hit in found:
            if args.json:
                row = {"question": question, **({"query_id": query_id} if query_id else {}),
                       "rank": hit.rank, "score": round(hit.score, 6), "id": hit.id, "text": hit.text}
                print(json.dumps(row, ensure_ascii=False))
            else:
                text = " ".join(hit.text.split())
                print(f"{hit.rank:>3}  {hit.score:.4f}  {hit.id}  {text[:160] + ('...' if len(text) > 160 else '')}")
    print(f"{len(questions)} question(s) in {1000 * seconds:.1f} ms ({1000 * seconds / len(questions):.2f} ms each, encoding "
          f"included); the corpus is kept in {index_file}", file=sys.stderr)
    return 0


def read_queries(path: Path) -> list[tuple[str, str]]:
    """(id, text) of each question in a queries file: BEIR's queries.jsonl (read as a BEIR folder's, with its
    checks: unique ids, a text each), or plain text, one question per line."""
    from uae.data import beir  # deferred: start-up speed

    if not path.is_file():
        raise DataError(f"--queries {path}: no such file.")
    if path.suffix != ".jsonl":
        return [("", line.strip()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(qid, text) for qid, (text, *_) in beir.read_queries(path).items()]


if __name__ == "__main__":
    sys.exit(main())

"""Per-query latency: UAE dense retrieval against LLM re-ranking of the top 20, same questions, one run.

    python benchmarks/latency.py [--documents 20] [--questions 60] [--k 20] [--encoder-path RUN/encoder] [--device cpu]

UAE at query time = encode the question + inner-product search over its paper's pre-encoded
paragraphs (a fine-tuned UAE encoder has the base encoder's architecture, so ``--encoder-path`` to an
exported ``<run>/encoder`` changes no timing, only which weights run). LLM re-ranking = the same dense
retrieval, then the LLM that made the utilities (SmolLM2-135M-Instruct) scores log p(question | passage)
for the top ``--k`` paragraphs (UPR). Both are timed per question with the code evaluation uses
(``Retriever.rank`` on one question; its ``query_seconds``), after a warm-up question; passage encoding
is offline for both and not timed. Prints median, p95 and mean in ms, and the ratio of medians next to
the paper's (over 180x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uae.core.config import data_dir as data_places
from uae.results.machine import label as machine_label

PAPER_SPEEDUP = 180.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_per_question(retriever, split, questions) -> list[float]:
    retriever.rank(split, questions[:1], scope="document", top_k=100)  # warm-up
    return [1000 * retriever.rank(split, [q], scope="document", top_k=100).query_seconds for q in questions]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--documents", "--papers", dest="documents", type=int, default=20,
        help="first N dev papers (their paragraphs are pre-encoded); --papers is its former name",
    )
    parser.add_argument("--questions", type=int, default=60, help="questions timed (with aligned evidence, file order)")
    parser.add_argument("--k", type=int, default=20, help="paragraphs the LLM re-ranks")
    parser.add_argument("--encoder-path", default=None, help="a fine-tuned export (<run>/encoder); default: base MiniLM")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    from uae.data.qasper import load_qasper
    from uae.llm.scorer import AnswerScorer
    from uae.retrieval.dense import DenseRetriever
    from uae.retrieval.encoder import DualEncoder
    from uae.retrieval.rerank import LLMReranker

    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = os.environ.get("UAE_DATA_DIR") or data_places("qasper")  # the configs' order of places
    split = load_qasper("dev", data_dir, max_documents=args.documents)
    questions = split.evaluable_questions[: args.questions]
    cache = ROOT / ".cache"
    encoder = DualEncoder(
        "sentence-transformers/all-MiniLM-L6-v2", cache_dir=cache, local_path=args.encoder_path, passage_max_length=256, query_max_length=256
    )
    dense = DenseRetriever(encoder, cache_dir=cache, device=args.device, progress=False)
    dense.passage_embeddings(split)  # offline work, cached
    scorer = AnswerScorer("HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=cache, device=args.device, progress=False)
    rerank = LLMReranker(dense, scorer, k=args.k)

    rows = []
    for name, retriever in (("UAE (dense: encode question + search paper)", dense), (f"LLM re-ranking of the top {args.k}", rerank)):
        ms = time_per_question(retriever, split, questions)
        rows.append((name, statistics.median(ms), percentile(ms, 0.95), statistics.fmean(ms)))

    machine = f"{machine_label(device=args.device)}, {torch.get_num_threads()} torch threads"
    print(f"\nPer-query latency on QASPER dev, {len(questions)} questions from the first {args.documents} papers, {machine}\n")
    print("| retriever | median ms | p95 ms | mean ms |")
    print("|---|---|---|---|")
    for name, median, p95, mean in rows:
        print(f"| {name} | {median:.2f} | {p95:.2f} | {mean:.2f} |")
    ratio = rows[1][1] / rows[0][1]
    print(f"\nspeed-up of UAE over LLM re-ranking (ratio of medians): {ratio:.0f}x  (paper: over {PAPER_SPEEDUP:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

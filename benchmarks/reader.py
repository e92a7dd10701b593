"""Reader throughput and agreement: answers per second of each reader engine on the same prompts.

    python benchmarks/reader.py --n 64 [--engines llamacpp] [--k 1]

The prompts are the reader's own (``AnswerReader.prompt``) for the first ``--n`` QASPER dev questions,
each given its first gold evidence paragraph (what a perfect retriever's top 1 would be; the
unanswerable and evidence-less questions are skipped). Every engine answers the same prompts: the
default (``hf``, transformers' batched greedy generate in float32) and each of ``--engines``. They
alternate on chunks of ``--chunk`` prompts, each going first in turn, so that all see the same load
from the machine's neighbours.

Quality: QASPER token F1 (max over annotators) of each engine's answers, the paired difference
against the default with its randomization p and bootstrap interval over questions, and how often
the two give the same answer. The 4-bit kernels move the logits, so greedy answers can differ.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from uae.core.config import data_dir as data_places
from uae.results.machine import label as machine_label


def build_items(data_dir: str, n: int, k: int) -> list[tuple[str, list[str], list[str]]]:
    """(question, its first ``k`` gold paragraphs, the answers) for the first ``n`` answerable dev questions."""
    from uae.data.qasper import load_qasper

    split = load_qasper("dev", data_dir)
    items = []
    for q in split.questions:
        gold = [p.text for p in split.passages(q.document_id) if p.passage_id in q.gold_ids][:k]
        if q.answerable and gold:
            items.append((q.text, gold, list(q.gold_answers)))
            if len(items) >= n:
                break
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="number of dev questions")
    parser.add_argument("--k", type=int, default=1, help="gold paragraphs per prompt (reader.answerer.k)")
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument(
        "--local-path", default=None, help="the model's folder (with its .gguf beside it for llamacpp)"
    )
    parser.add_argument("--cache-dir", default=os.environ.get("UAE_CACHE_DIR", str(ROOT / ".cache")))
    parser.add_argument("--data-dir", default=os.environ.get("UAE_DATA_DIR") or data_places("qasper"))
    parser.add_argument(
        "--engines", nargs="*", default=["llamacpp"], help="reader engines beside the default (hf)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--batch-size", type=int, default=8, help="the default's generate batch (reader.answerer.batch_size)"
    )
    parser.add_argument("--chunk", type=int, default=16, help="prompts per alternation of the engines")
    args = parser.parse_args(argv)

    from uae.evaluation.metrics import answer_f1
    from uae.evaluation.significance import bootstrap_interval, randomization_p_value
    from uae.llm.reader import AnswerReader

    def load(engine: str) -> tuple[AnswerReader, float]:
        t0 = time.perf_counter()
        reader = AnswerReader(
            args.model, cache_dir=args.cache_dir, local_path=args.local_path, device="cpu", dtype="float32", progress=False, engine=engine,
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, k=args.k,
        )  # fmt: skip
        return reader, time.perf_counter() - t0

    readers = {"hf float32 (default)": load("hf")} | {
        f"{e} {'gguf' if e == 'llamacpp' else ''}".strip(): load(e) for e in args.engines
    }
    default = next(iter(readers))
    base = readers[default][0]
    items = build_items(args.data_dir, args.n, args.k)
    prompts = [base.prompt("\n\n".join(gold), question) for question, gold, _ in items]
    answers: dict[str, list[str]] = {name: [""] * len(prompts) for name in readers}
    seconds = dict.fromkeys(readers, 0.0)
    names = list(readers)
    for c, start in enumerate(range(0, len(prompts), args.chunk)):
        part = list(range(start, min(start + args.chunk, len(prompts))))
        for name in names[c % len(names) :] + names[: c % len(names)]:  # each goes first in turn
            t0 = time.perf_counter()
            out = readers[name][0].generate([prompts[i] for i in part])
            seconds[name] += time.perf_counter() - t0
            for i, text in zip(part, out, strict=True):
                answers[name][i] = text

    tokens = np.mean([len(base.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts])
    print(
        f"\nReader throughput: {args.model} on {machine_label(device='cpu')} ({torch.get_num_threads()} torch threads); "
        f"{len(prompts)} QASPER dev questions, each with its first {args.k} gold paragraph(s) ({tokens:.0f} prompt tokens "
        f"on average), greedy, at most {args.max_new_tokens} new tokens; engines alternate every {args.chunk} prompts\n"
    )
    f1 = {
        name: np.array([answer_f1(answers[name][i], items[i][2]) for i in range(len(items))])
        for name in readers
    }
    print(
        "| engine | load s | wall s | answers/s | token F1 | F1 - default [95% CI] | p | same answer | speed vs default |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (_, load_s) in readers.items():
        rate = len(prompts) / seconds[name]
        if name == default:
            diff = p = same = "-"
        else:
            low, high = bootstrap_interval(f1[default], f1[name])
            diff = f"{f1[name].mean() - f1[default].mean():+.4f} [{low:+.4f}, {high:+.4f}]"
            p = f"{randomization_p_value(f1[default], f1[name]):.3f}"
            same = f"{np.mean([a == b for a, b in zip(answers[name], answers[default])]):.2f}"
        speed = seconds[default] / seconds[name]
        print(
            f"| {name} | {load_s:.1f} | {seconds[name]:.1f} | {rate:.2f} | {f1[name].mean():.4f} | {diff} | {p} | {same} | {speed:.2f}x |"
        )
    for name in names[1:]:
        print(f"{name} / default, answers per second: {seconds[default] / seconds[name]:.2f}x")
    print(
        "\nOne run; rates from wall time. F1 is QASPER's answer token F1, max over annotators; p is the paired randomization test over questions."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

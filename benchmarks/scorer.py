"""Answer-scorer throughput: AnswerScorer with prefix sharing, with padded batches, on inference engines, and per triple.

    python benchmarks/scorer.py --n 200 [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--device cpu]
        [--engines ctranslate2:float32 ctranslate2:int8_float32 llamacpp:gguf]

Three implementations score the same (passage, question, answer) triples from QASPER dev, built the
way utility scoring builds them: for each answerable question (file order), its gold answers against
its gold evidence paragraphs, random paragraphs of the same paper (up to --contexts passages in all),
and the closed-book prompt.

* uae.llm.scorer.AnswerScorer as configured (prefix sharing on, uae/llm/prefix.py);
* the same scorer with ``share_prefixes=False``: plain right-padded batches, one row per triple, the
  same token budget, head on the answer rows only. The ratio of the two is what prefix sharing earns;
* the same scorer on each inference engine of ``--engines`` (``llm.engine:llm.compute_type``, e.g.
  CTranslate2 in float32 and int8, llama.cpp on the GGUF as shipped; vLLM on a GPU): the same token sequences, the engine's forward;
* the plain implementation, what the definition says: one full forward of prompt + answer per
  triple, log_softmax over the whole vocabulary at every position, the answer tokens gathered, the
  mean taken (with the first scorer's model object).

All use the same weights, prompt text and tokens. Prints a table (seconds, triples/s, tokens/s, where
tokens are each triple's prompt + answer tokens, i.e. the work a per-triple forward does), the speed
ratios against today's default (hf with prefix sharing), the largest differences in log-likelihood
and, for each engine, how its utilities (ll with a passage minus ll closed-book, per question and
answer) follow the default's; exits non-zero if a float32 implementation is off by more than --atol.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from scipy.stats import spearmanr

from uae.core.config import data_dir as data_places
from uae.results.machine import label as machine_label


def build_triples(data_dir: str, n: int, contexts: int, seed: int, tokenizer_len, max_length: int):
    from uae.data.qasper import load_qasper

    split = load_qasper("dev", data_dir)
    rng = random.Random(seed)
    triples: list[tuple[str | None, str, str]] = []
    for q in split.questions:
        if not q.answerable:
            continue
        passages = split.passages(q.document_id)
        gold = [p for p in passages if p.passage_id in q.gold_ids][:contexts]
        others = [p for p in passages if p.passage_id not in q.gold_ids]
        rng.shuffle(others)
        chosen = gold + others[: max(0, contexts - len(gold))]
        for context in [p.text for p in chosen] + [None]:
            for answer in q.gold_answers:
                if tokenizer_len(context, q.text, answer) > max_length:
                    continue  # both implementations see whole prompts (no truncation to compare)
                triples.append((context, q.text, answer))
                if len(triples) >= n:
                    return triples
    return triples


def utilities(triples, ll: np.ndarray) -> np.ndarray:
    """u = ll(answer | passage, question) - ll(answer | question), for every triple with a passage whose
    closed-book triple is among ``triples`` (what a utility table holds, per answer)."""
    closed = {(q, a): ll[k] for k, (c, q, a) in enumerate(triples) if c is None}
    return np.array([ll[k] - closed[(q, a)] for k, (c, q, a) in enumerate(triples) if c is not None and (q, a) in closed])


def plain_scores(scorer, triples) -> tuple[np.ndarray, int]:
    """One full forward per triple, log_softmax over the whole vocabulary: the definition."""
    model, tok, dev = scorer.model, scorer.tokenizer, scorer.device
    out = np.zeros(len(triples))
    tokens = 0
    with torch.inference_mode():
        for k, (context, question, answer) in enumerate(triples):
            request = scorer.build_request(context, question, answer)
            special = not (tok.bos_token and request.prompt.startswith(tok.bos_token))
            prompt = tok(request.prompt, add_special_tokens=special)["input_ids"]
            target = tok(request.target, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + target], device=dev)
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            p = len(prompt)
            picked = logp[p - 1 : p - 1 + len(target)].gather(1, torch.tensor(target, device=dev)[:, None])
            out[k] = float(picked.double().mean())
            tokens += len(prompt) + len(target)
    return out, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of (passage, question, answer) triples")
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--local-path", default=None)
    parser.add_argument("--cache-dir", default=os.environ.get("UAE_CACHE_DIR", str(ROOT / ".cache")))
    parser.add_argument(
        "--data-dir", default=os.environ.get("UAE_DATA_DIR") or data_places("qasper")
    )
    parser.add_argument(
        "--contexts",
        type=int,
        default=8,
        help="passages per question (gold first; candidates.size), plus closed-book",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", help="float32 keeps the comparison exact to ~1e-5")
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--atol", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=50, help="triples per alternation of the implementations")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each; the best is kept")
    parser.add_argument("--skip-plain", action="store_true", help="time only the batched scorers")
    parser.add_argument(
        "--engines", nargs="*", default=["ctranslate2:float32", "ctranslate2:int8_float32", "llamacpp:gguf"],
        help="ENGINE:COMPUTE_TYPE rows beside the default (llm.engine, llm.compute_type); none: no engine rows",
    )
    args = parser.parse_args(argv)

    from uae.llm.scorer import AnswerScorer

    def load(share_prefixes: bool, engine: str = "hf", compute_type: str = "auto"):
        t0 = time.perf_counter()
        scorer = AnswerScorer(
            args.model, cache_dir=args.cache_dir, local_path=args.local_path, max_length=args.max_length,
            batch_size=args.batch_size, device=args.device, dtype=args.dtype, progress=False,
            share_prefixes=share_prefixes, engine=engine, compute_type=compute_type,
        )  # fmt: skip
        return scorer, time.perf_counter() - t0

    scorer, load_s = load(True)
    padded, _ = load(False)  # the same scorer, plain right-padded batches: what prefix sharing must beat
    engines = {}
    for spec in args.engines:
        if spec == "none":  # as the help says: no engine rows
            continue
        engine, _, compute_type = spec.partition(":")
        engines[f"{engine} {compute_type or 'auto'}"] = load(False, engine, compute_type or "auto")
    if not scorer.share_prefixes:
        print(f"FAIL: {args.model} refused prefix sharing at load time; nothing to compare", file=sys.stderr)
        return 1
    tok = scorer.tokenizer

    def tokenizer_len(context, question, answer):
        r = scorer.build_request(context, question, answer)
        return len(tok(r.prompt)["input_ids"]) + len(tok(r.target, add_special_tokens=False)["input_ids"]) + 1

    triples = build_triples(args.data_dir, args.n, args.contexts, args.seed, tokenizer_len, scorer.max_length)
    n = len(triples)
    n_questions = len({q for _, q, _ in triples})
    header = (
        f"Scorer throughput: {args.model} on {machine_label(device=str(scorer.device))} "
        f"({str(scorer.dtype).replace('torch.', '')}, {torch.get_num_threads()} torch threads, loaded in "
        f"{load_s:.1f} s); {n} (passage, question, answer) triples from {n_questions} QASPER dev questions "
        f"({args.contexts} passages + closed book each)"
    )

    # The implementations alternate on chunks of --chunk triples (whole questions stay together), each
    # going first in turn, so that all see the same load from the machine's neighbours; --repeat passes
    # keep each one's fastest. CPU time (this process, all threads) is shown next to wall time.
    chunks: list[list] = [[]]
    for k, triple in enumerate(triples):
        if len(chunks[-1]) >= args.chunk and triple[1] != triples[k - 1][1]:
            chunks.append([])
        chunks[-1].append(triple)
    shared_name, padded_name, plain_name = (
        "uae AnswerScorer (prefix sharing)",
        "uae AnswerScorer, share_prefixes=false (padded batches)",
        "plain (1 forward/triple)",
    )
    runners = {
        shared_name: lambda chunk: (scorer.score_answers(chunk), 0),
        padded_name: lambda chunk: (padded.score_answers(chunk), 0),
    }
    for name, (engine_scorer, _) in engines.items():
        runners[name] = lambda chunk, s=engine_scorer: (s.score_answers(chunk), 0)
    if not args.skip_plain:
        runners[plain_name] = lambda chunk: plain_scores(scorer, chunk)
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    for _ in range(args.repeat):
        scorer.reset_stats()
        padded.reset_stats()
        spent = {name: [0.0, 0.0] for name in runners}
        parts: dict[str, list[np.ndarray]] = {name: [] for name in runners}
        plain_tokens = 0
        names = list(runners)
        for c, chunk in enumerate(chunks):
            for name in names[c % len(names) :] + names[: c % len(names)]:  # each goes first in turn
                w0, c0 = time.perf_counter(), time.process_time()
                scores, tokens = runners[name](chunk)
                spent[name][0] += time.perf_counter() - w0
                spent[name][1] += time.process_time() - c0
                parts[name].append(scores)
                plain_tokens += tokens
        for name in runners:
            timings[name].append((spent[name][0], spent[name][1]))
    scores = {name: np.concatenate(p) for name, p in parts.items()}
    stats = scorer.stats
    work_tokens = stats.prompt_tokens + stats.target_tokens
    if not args.skip_plain:
        assert plain_tokens == work_tokens, (plain_tokens, work_tokens)
    best = {name: (min(w for w, _ in runs), min(c for _, c in runs)) for name, runs in timings.items()}

    # Markdown, so that `make reproduce` can put it into RESULTS.md as it is.
    print(f"\n{header}\n")
    default_wall = best[shared_name][0]
    print("| implementation | wall s | CPU s | triples/s | tokens/s | speed vs default |")
    print("|---|---|---|---|---|---|")
    for name, (wall, cpu) in best.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {n / wall:.2f} | {work_tokens / wall:.1f} | {default_wall / wall:.2f}x |")
    print(f"\nBest of {args.repeat} pass(es), alternating every {args.chunk} triples; rates from wall time.")
    print(f"\nTokens per triple (prompt + answer): {work_tokens / n:.1f} ({work_tokens} in all).")
    for name, s in ((shared_name, stats), (padded_name, padded.stats)):
        print(
            f"{name}: ran {s.encoded_tokens} tokens through the model ({s.encoded_tokens / work_tokens:.0%}; "
            f"{s.padded_tokens} with padding) in {s.batches} batches, {s.passes} forward passes; the LM head "
            f"on {s.target_tokens} rows; {s.duplicates} duplicate triples scored once."
        )
    for name, (engine_scorer, _) in engines.items():
        decoded = getattr(engine_scorer.engine, "decoded_tokens", None)
        if decoded is not None:  # an engine that keeps a prompt's KV cache says what it computed (over --repeat passes)
            print(f"{name}: decoded {decoded / args.repeat:.0f} tokens per pass ({decoded / args.repeat / work_tokens:.0%}).")
    (sw, sc), (dw, dc) = best[shared_name], best[padded_name]
    print(
        f"\nPrefix sharing (padded batches / prefix sharing): **{dw / sw:.2f}x** wall time, "
        f"{dc / sc:.2f}x CPU time."
    )
    if not args.skip_plain:
        pw, pc = best[plain_name]
        print(f"Speed ratio (plain / uae): **{pw / sw:.2f}x** wall time, {pc / sc:.2f}x CPU time (target: 3x).")
    exact = [name for name in engines if name.endswith("float32") and not name.startswith("ctranslate2 int")]
    pairs = [(shared_name, padded_name)] + [(shared_name, name) for name in exact] + (
        [] if args.skip_plain else [(shared_name, plain_name), (padded_name, plain_name)]
    )
    worst = 0.0
    print()
    for a, b in pairs:
        diff = float(np.abs(scores[a] - scores[b]).max())
        worst = max(worst, diff)
        print(f"max |ll({a}) - ll({b})| = {diff:.2e} nats/token")
    print(f"(over {n} triples; mean ll {scores[shared_name].mean():.3f})")
    if engines:
        reference = utilities(triples, scores[shared_name])
        print("\n| engine | utilities | max abs difference from default (nats/token) | Pearson r | Spearman rho |")
        print("|---|---|---|---|---|")
        for name in engines:
            got = utilities(triples, scores[name])
            if not len(got):  # --n too small to reach a question's closed-book triple: no utility to compare
                print(f"| {name} | 0 | - | - | - |")
                continue
            print(
                f"| {name} | {len(got)} | {np.abs(got - reference).max():.2e} | {np.corrcoef(got, reference)[0, 1]:.5f} "
                f"| {spearmanr(got, reference).statistic:.5f} |"
            )
    if not worst <= args.atol:
        print(f"FAIL: difference above --atol {args.atol}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())

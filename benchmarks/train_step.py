"""Training throughput: UAE's Lightning training step against sentence-transformers' own trainer.

    python benchmarks/train_step.py --steps 12 --batch-size 8 [--warmup 2] [--max-length 256]
        [--model-path FOLDER] [--data-dir DIR] [--documents N]
    python benchmarks/train_step.py --memory 16 64 256 --steps 3 --warmup 1 [--model-path FOLDER]
    python benchmarks/train_step.py --memory 16 --steps 8 --warmup 1 --mmap-threshold 131072
    python benchmarks/train_step.py --device cuda --trainers uae   # UAE's step alone (no datasets package needed)

``--memory N ...`` measures GradCache instead (issue 32): UAE's step at each batch size, plain and with
``train.grad_cache`` (``--micro-batch`` texts at a time), each in a fresh process: seconds per step and the
process's peak resident memory; a plain step the machine cannot hold is a row that says so. With
``--mmap-threshold BYTES`` each row runs again under glibc's ``MALLOC_MMAP_THRESHOLD_=BYTES``, which changes
where freed memory goes and no number the step computes.

Both fine-tune the same all-MiniLM-L6-v2 on the same training groups (QASPER dev questions with their
committed utility table: 8 candidates each), with the same batch (questions per step), max length,
optimizer (AdamW, same lr) and fp32 on the same device, for the same number of steps:

- UAE: ``lightning.Trainer.fit`` on ``RetrieverModule`` + ``TrainingDataModule`` (loss=uae: soft targets
  over each question's candidates plus in-batch negatives), no validation, logging or checkpoints.
- sentence-transformers: ``SentenceTransformerTrainer`` with ``DistillKLDivLoss`` (its closest loss:
  KL between the teacher's scores over the same candidates, here the utilities, and the student's),
  inputs (query, passage_1..passage_8), labels the utilities; no evaluation, logging or saving.

``--trainers uae`` times UAE's step alone: sentence-transformers' trainer needs the ``datasets`` package,
which a machine set up only for UAE (the lent GPU machine, experiments/gpu/check.sh) may lack.

``--model-path`` trains another encoder folder of the same kind (a BERT-style Hugging Face folder; the tests'
smoke run passes a tiny random one), ``--data-dir`` reads QASPER dev from another folder and ``--documents``
takes only its first N papers (their rows of the committed table): all three for a run in seconds, not a timing.

Time per step is measured from the end of step ``--warmup`` to the end of the last step (the first
steps pay for allocation); groups/s = questions per step / time per step. Peak memory is the process's
peak RSS growth during training (CPU) or torch.cuda.max_memory_allocated (GPU). Prints a table and the
ratio; each trainer runs in a fresh process so neither inherits the other's warm caches or memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uae.core.config import data_dir as data_places
from uae.results.machine import label as machine_label

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TRAINERS = {"uae": "UAE (Lightning, utility_infonce)", "st": "sentence-transformers (DistillKLDivLoss)"}


def load_groups(n_groups: int, args: argparse.Namespace):
    from uae.data.qasper import load_qasper
    from uae.table.groups import training_groups

    data_dir = args.data_dir or os.environ.get("UAE_DATA_DIR") or data_places("qasper")  # the configs' order of places
    split = load_qasper("dev", data_dir, max_documents=args.documents)
    table = ROOT / "experiments" / "qasper" / "utilities" / "dev.parquet"
    questions = [q.question_id for q in split.questions if q.answerable and split.passages(q.document_id)]
    groups = training_groups(split, table, questions)
    groups = [g for g in groups if len(g.passages) == 8]  # ST needs a fixed number of columns
    return groups[:n_groups]


def encoder_path(args: argparse.Namespace) -> Path:
    """The encoder both trainers fine-tune: ``--model-path``, else the bundled MiniLM."""
    from uae.models import resolve_model

    return Path(args.model_path) if args.model_path else resolve_model(MINILM, cache_dir=ROOT / ".cache")


class StepTimer:
    """Wall clock at the end of each step (both trainers call back at that point)."""

    def __init__(self) -> None:
        self.ends: list[float] = []


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_uae(args: argparse.Namespace) -> dict:
    import lightning as L
    import torch

    from uae.retrieval.encoder import DualEncoder
    from uae.training.datamodule import TrainingDataModule
    from uae.training.losses import utility_infonce
    from uae.training.module import RetrieverModule

    groups = load_groups(args.steps * args.batch_size, args)
    encoder = DualEncoder(
        "minilm", cache_dir=ROOT / ".cache", local_path=encoder_path(args), query_max_length=args.max_length, passage_max_length=args.max_length
    )
    loss = lambda *a: utility_infonce(*a, temperature=0.05, sharpness=0.5)
    module = RetrieverModule(encoder, loss, lr=args.lr, warmup_ratio=0.0, grad_cache=bool(args.grad_cache), micro_batch=args.micro_batch)
    data = TrainingDataModule(groups, None, encoder.tokenize, batch_size=args.batch_size, passage_chunk=args.passage_chunk)
    timer = StepTimer()

    class Timing(L.Callback):
        def on_train_batch_end(self, *_: object) -> None:
            timer.ends.append(time.perf_counter())

    rss0 = peak_rss_mb()
    trainer = L.Trainer(
        accelerator=args.device, devices=1, max_steps=args.steps, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[Timing()], precision="32-true", gradient_clip_val=1.0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    memory = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else peak_rss_mb() - rss0
    # the whole peak (what the fit needs) and what the process held before the first step (torch, Lightning, the
    # model, the groups): the part of the peak no batch size or micro-batch changes
    result = {"ends": timer.ends, "memory_mb": memory, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss0, "start": start}
    return result if args.grad_cache is not None else {**result, "breakdown": breakdown(module, data, args)}


def breakdown(module, data, args: argparse.Namespace, steps: int = 3) -> dict[str, float]:
    """Where a UAE step's time goes: the same step by hand, each phase timed (seconds per step), on the
    fit's device (Lightning hands the module back on the CPU after fit; on a GPU each phase is waited for)."""
    import torch

    from uae.training.module import batch_loss, encode_chunks

    device = torch.device(args.device)
    module.to(device).train()
    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    optimizer = torch.optim.AdamW(module.parameters(), lr=args.lr)
    phases = dict.fromkeys(("collate (tokenize)", "forward (encoder + loss)", "backward", "optimizer"), 0.0)
    groups = data.train_groups
    for step in range(steps):
        t0 = time.perf_counter()
        batch = data.train_dataloader().collate_fn(groups[step * args.batch_size : (step + 1) * args.batch_size])
        owner, utility, gold = (batch[key].to(device) for key in ("owner", "utility", "gold"))
        wait()
        t1 = time.perf_counter()
        queries = module.encoder(batch["query"], "query")
        passages = encode_chunks(module.encoder, batch["passages"], batch["passage_order"])
        loss = batch_loss(module.loss, queries, passages, owner, utility, gold)
        wait()
        t2 = time.perf_counter()
        loss.backward()
        wait()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        wait()
        t4 = time.perf_counter()
        for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[name] += dt / steps
    return phases


def run_st(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
    from transformers import TrainerCallback

    groups = load_groups(args.steps * args.batch_size, args)
    rows = {"query": [g.query for g in groups]}
    for j in range(8):
        rows[f"passage_{j}"] = [g.passages[j] for g in groups]
    rows["label"] = [list(g.utility) for g in groups]
    dataset = Dataset.from_dict(rows)
    model = SentenceTransformer(str(encoder_path(args)), device=args.device)
    model.max_seq_length = args.max_length
    # Same student scale as UAE's cosine / 0.05, same teacher sharpness u / 0.5.
    loss = DistillKLDivLoss(model, student_temperature=0.05, teacher_temperature=0.5)
    timer = StepTimer()

    class Timing(TrainerCallback):
        def on_step_end(self, *_: object, **__: object) -> None:
            timer.ends.append(time.perf_counter())

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(args.tmp / "st"), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=args.lr, warmup_steps=0, lr_scheduler_type="linear", max_grad_norm=1.0, weight_decay=0.01,
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[], use_cpu=args.device == "cpu",
        dataloader_num_workers=0, seed=42, disable_tqdm=True,
    )
    rss0 = peak_rss_mb()
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[Timing()])
    trainer.train()
    memory = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else peak_rss_mb() - rss0
    return {"ends": timer.ends, "memory_mb": memory}


def padded_tokens(args: argparse.Namespace) -> dict[str, float]:
    """Tokens each layout feeds the encoder per step (padding included), averaged over the timed batches.

    UAE: the 8 x batch passages in length-sorted chunks of --passage-chunk, each padded to its longest.
    sentence-transformers: one forward per column (query, passage_0..7), each padded to its longest.
    Same batches as the runs (the first steps' groups in order; shuffling does not change the means much).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_path(args))
    groups = load_groups(args.steps * args.batch_size, args)

    def length(text: str) -> int:
        return min(len(tokenizer(text, truncation=True, max_length=args.max_length)["input_ids"]), args.max_length)

    totals = {"uae": 0, "st": 0, "real": 0}
    batches = [groups[i : i + args.batch_size] for i in range(0, len(groups), args.batch_size)]
    for batch in batches:
        lengths = sorted((length(p) for g in batch for p in g.passages), reverse=True)
        totals["real"] += sum(lengths)
        totals["uae"] += sum(max(lengths[i : i + args.passage_chunk]) * len(lengths[i : i + args.passage_chunk]) for i in range(0, len(lengths), args.passage_chunk))
        totals["st"] += sum(max(length(g.passages[j]) for g in batch) * len(batch) for j in range(8))
    return {k: v / len(batches) for k, v in totals.items()}


def summarize(name: str, result: dict, args: argparse.Namespace) -> dict:
    ends = result["ends"]
    if len(ends) <= args.warmup:
        raise SystemExit(f"{name}: only {len(ends)} steps timed; use --steps > --warmup")
    if args.warmup:
        per_step = (ends[-1] - ends[args.warmup - 1]) / (len(ends) - args.warmup)
    elif "start" in result:  # every step timed, the first from the fit's start (setup included): --steps 1 works
        per_step = (ends[-1] - result["start"]) / len(ends)
    else:
        per_step = (ends[-1] - ends[0]) / (len(ends) - 1)
    return {
        "name": name, "steps": len(ends), "s_per_step": per_step, "groups_per_s": args.batch_size / per_step,
        "memory_mb": result["memory_mb"], "breakdown": result.get("breakdown"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="steps excluded from the timing")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per step (8 candidates each)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--passage-chunk", type=int, default=32, help="UAE: passages per length-sorted chunk")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model-path", default=None, help="encoder folder to train (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--data-dir", default=None, help="QASPER folder (dev is read); default: UAE_DATA_DIR, else the configs' places")
    parser.add_argument("--documents", type=int, default=None, help="first N dev papers only (default: all)")
    parser.add_argument("--memory", type=int, nargs="+", metavar="N", help="GradCache: plain and cached UAE steps at these batch sizes")
    parser.add_argument("--micro-batch", type=int, default=32, help="GradCache: texts embedded at a time")
    parser.add_argument("--cached-only", action="store_true", help="--memory: skip the plain steps (measured already, or too big)")
    parser.add_argument("--mmap-threshold", type=int, metavar="BYTES",
                        help="--memory: each step also with glibc's MALLOC_MMAP_THRESHOLD_=BYTES (blocks this large and up "
                             "are mapped and given back when freed, not kept in the heap)")
    parser.add_argument("--trainers", nargs="+", choices=list(TRAINERS), default=list(TRAINERS),
                        help="which trainers to time (st needs the datasets package)")
    # child process mode of --memory: 0 plain, 1 cached (unset: the trainer comparison, with its breakdown)
    parser.add_argument("--grad-cache", type=int, choices=[0, 1], help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["uae", "st"], help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--tmp", type=Path, default=ROOT / ".cache" / "bench")
    args = parser.parse_args()
    if args.mmap_threshold is not None and not 0 <= args.mmap_threshold <= 32 * 2**20:
        parser.error(f"--mmap-threshold {args.mmap_threshold}: glibc takes 0 to 33554432 bytes (32 MiB) and ignores the rest")
    args.tmp.mkdir(parents=True, exist_ok=True)
    if args.only:
        import torch

        torch.manual_seed(0)
        result = run_uae(args) if args.only == "uae" else run_st(args)
        print("RESULT " + json.dumps(result))
        return 0

    if args.memory:
        return memory_table(args)
    rows = []
    for which, name in TRAINERS.items():
        if which not in args.trainers:
            continue
        cmd = [sys.executable, __file__, "--only", which, *sys.argv[1:]]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(done.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{name} failed (exit {done.returncode})")
        rows.append(summarize(name, json.loads(line[7:]), args))

    model = Path(args.model_path).name if args.model_path else MINILM.split("/")[-1]
    papers = "" if args.documents is None else f", QASPER dev's first {args.documents} papers"
    print(f"\nTraining step, {model}{papers}, {args.batch_size} questions x 8 candidates per step, max length "
          f"{args.max_length}, {machine_label(device=args.device)}, "
          f"{args.steps} steps, first {args.warmup} not timed\n")
    print("| trainer | s/step | groups/s | peak memory (MB) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['s_per_step']:.2f} | {r['groups_per_s']:.2f} | {r['memory_mb']:.0f} |")
    print("\nPeak memory: " + ("torch.cuda.max_memory_allocated (GPU)." if args.device == "cuda" else "the process's RSS growth during training."))
    if len(rows) == 2:
        print(f"\nspeed ratio UAE / sentence-transformers: {rows[0]['groups_per_s'] / rows[1]['groups_per_s']:.2f}x")
    if "uae" not in args.trainers:
        return 0
    parts = rows[0]["breakdown"]
    total = sum(parts.values())
    print("\nWhere a UAE step's time goes (the same step by hand, mean of 3): " + ", ".join(
        f"{name} {seconds:.2f} s ({100 * seconds / total:.0f}%)" for name, seconds in parts.items()))
    tokens = padded_tokens(args)
    per_token = [f"{r['name'].split(' (')[0]} {1e3 * r['s_per_step'] / tokens[w]:.2f} ms" for w, r in zip([w for w in TRAINERS if w in args.trainers], rows)]
    print(
        f"\nPassage tokens the encoder runs per step (padding included): UAE {tokens['uae']:.0f}, "
        f"sentence-transformers {tokens['st']:.0f}, unpadded {tokens['real']:.0f}. Time per passage token: "
        f"{', '.join(per_token)}."
    )
    return 0


def _without_memory(argv: list[str]) -> list[str]:
    """The command line less ``--memory N ...`` (its sizes are the numbers that follow it)."""
    rest, skipping = [], False
    for arg in argv:
        if arg == "--memory":
            skipping = True
        elif skipping and arg.isdigit():
            continue
        else:
            skipping = False
            rest.append(arg)
    return rest


def memory_table(args: argparse.Namespace) -> int:
    """Plain against GradCache at each batch size: s/step and peak resident memory, each step in its own process."""
    model = Path(args.model_path).name if args.model_path else MINILM.split("/")[-1]
    print(f"\nTraining memory, {model}, 8 candidates per question, max length {args.max_length}, micro-batch "
          f"{args.micro_batch}, {machine_label(device=args.device)}, {args.steps} steps, first {args.warmup} not timed\n")
    print("| questions per step | step | allocator | s/step | peak resident memory (MB) | peak before the first step (MB) |")
    print("|---|---|---|---|---|---|")
    # glibc keeps freed blocks below its (self-raising) mmap threshold in the heap, where the next batch's tensors
    # of other shapes fit badly; a fixed threshold maps every large block and gives it back when freed
    default, mapped = "glibc default", None
    allocators: dict[str, dict[str, str]] = {default: {}}
    if args.mmap_threshold is not None:
        mapped = f"MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}"
        allocators[mapped] = {"MALLOC_MMAP_THRESHOLD_": str(args.mmap_threshold)}
    # the default rows run without any MALLOC_* this shell may have exported, or their label would be false
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {"HF_HUB_OFFLINE": "1"}
    rest = [a for a in _without_memory(sys.argv[1:]) if a != "--cached-only"]
    ratios, against_default = [], []
    for size in args.memory:
        times, peaks = {}, {}
        for cached in (True,) if args.cached_only else (False, True):
            step = "cached" if cached else "plain"
            for allocator, env in allocators.items():
                cmd = [sys.executable, __file__, "--only", "uae", *rest, "--batch-size", str(size), "--grad-cache", str(int(cached))]
                done = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**base_env, **env})
                line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    why = "killed for memory" if done.returncode in (-9, 137) else f"failed (exit {done.returncode})"
                    print(f"| {size} | {step} | {allocator} | {why} | | |")
                    continue
                found = json.loads(line[7:])
                times[cached, allocator] = summarize(step, found, args)["s_per_step"]
                peaks[cached, allocator] = found["peak_rss_mb"]
                print(f"| {size} | {step} | {allocator} | {times[cached, allocator]:.2f} | {found['peak_rss_mb']:.0f} | {found['rss_before_mb']:.0f} |")
            if mapped and (cached, mapped) in times and (cached, default) in times:
                against_default.append(f"{size} {step}: memory {peaks[cached, mapped] / peaks[cached, default]:.2f}x, "
                                       f"seconds {times[cached, mapped] / times[cached, default]:.2f}x")
        if (False, default) in times and (True, default) in times:
            ratios.append(f"{size}: {times[True, default] / times[False, default]:.2f}x")
    print(f"\ncached / plain seconds per step ({default}): {', '.join(ratios) or 'no size where both ran'}")
    if against_default:
        print(f"{mapped} / {default}: {'; '.join(against_default)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

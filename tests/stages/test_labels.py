"""Label-free tables and a labelled fraction, through `python -m uae.run` with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.test_run_cli import tiny_model, uae_run
from uae.data.label_rules import labelled_questions
from uae.data.qasper import load_qasper
from uae.storage.fingerprint import fingerprint
from uae.table.read import read_table_spec


def test_label_free_table_then_infonce_on_a_labelled_half(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path
) -> None:
    common = [
        f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), f"llm.scorer.local_path={tiny_lm_dir}",
        "llm.scorer.model_id=tiny-llama", "data.train_split=dev", "utility.splits=[dev]", "candidates.size=3",
        "logger=none", "candidates.hard_negatives.bm25=1", "candidates.hard_negatives.dense=1",
    ]
    labelled, free = tmp_path / "labelled", tmp_path / "free"
    made = uae_run(tmp_path, *common, "stages=[utility]", f"utility.table_dir={labelled}", run_dir="gold")
    assert made.returncode == 0, made.stderr[-3000:]
    made = uae_run(tmp_path, *common, "stages=[utility]", "candidates.gold=false", f"utility.table_dir={free}", run_dir="free")
    assert made.returncode == 0, made.stderr[-3000:]
    gold_first = pq.read_table(labelled / "dev.parquet").to_pylist()
    label_free = pq.read_table(free / "dev.parquet").to_pylist()
    assert "gold" in {r["source"] for r in gold_first} and "gold" not in {r["source"] for r in label_free}
    # the labelled table's fingerprint is unchanged by the new switch: it has no "gold" key, the label-free one does
    spec = json.loads(pq.read_schema(free / "dev.parquet").metadata[b"uae_spec"])
    assert spec["candidates"]["gold"] is False
    assert "gold" not in json.loads(pq.read_schema(labelled / "dev.parquet").metadata[b"uae_spec"])["candidates"]

    done = uae_run(
        tmp_path, *common, "stages=[fit,evaluate]", "candidates.gold=false", f"utility.table_dir={free}", "loss=infonce",
        "train.labels.fraction=0.5", f"train.labels.table={labelled / 'dev.parquet'}", "train.batch_size=2",
        "train.validate=false", run_dir="half",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "half" / "results.json").read_text())["labels"]
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    asked = sorted({r["question_id"] for r in label_free})
    kept = labelled_questions(asked, 0.5, seed=0)
    gold = {q.question_id: q.gold_ids for q in split.questions}
    assert record["labelled"] == len(kept) == round(len(asked) / 2)
    # the labelled questions train on the gold-first groups: each with evidence has a positive, nobody else does
    assert record["with_positive"] == sum(bool(gold[qid]) for qid in kept)
    # the record names the table by its spec, which tells the gold-first table from the label-free one
    assert record["table"] == str(labelled / "dev.parquet")
    assert record["table_spec"] == fingerprint(read_table_spec(labelled / "dev.parquet"))
    assert record["table_spec"] != fingerprint(read_table_spec(free / "dev.parquet"))

"""The BEIR example of docs/data.md (the data formats page the README links to), run as written (with
tiny models appended): a dozen lines of data train and evaluate through the whole pipeline with no
Python change."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.helpers.paths import ROOT


def readme_block() -> str:
    text = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- beir-example:begin -->\n```bash\n(.*?)```\n<!-- beir-example:end -->", text, re.DOTALL)
    assert block, "docs/data.md lost its beir-example block"
    return block.group(1)


def test_readme_beir_example_trains_and_evaluates(tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path) -> None:
    script = readme_block()
    *setup, command = [line for line in script.strip().splitlines()]
    assert command.startswith("python -m uae.run ") and "data=beir" in command
    subprocess.run(["bash", "-euc", "\n".join(setup)], cwd=tmp_path, check=True)
    assert len((tmp_path / "my-data" / "corpus.jsonl").read_text().splitlines()) == 4

    tiny = [
        f"model.encoder.local_path={tiny_encoder_dir}", "model.encoder.model_id=tiny-bert",
        f"candidates.base.encoder.local_path={tiny_encoder_dir}", "candidates.base.encoder.model_id=tiny-bert",
        f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama", "reader=none", "logger=csv",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", "retrieval.progress=false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    args = [sys.executable, "-m", "uae.run", *command.split()[3:], *tiny]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    tuned = json.loads((tmp_path / "run" / "results.json").read_text())
    base = json.loads((tmp_path / "run" / "zero_shot" / "results.json").read_text())
    assert tuned["retriever"] == "minilm+uae" and base["retriever"] == "minilm"
    assert tuned["split"] == "test" and tuned["n_questions"] == base["n_questions"] == 1
    # q3 names no document: it ranked the whole corpus, not one document's passages
    ranking = json.loads((tmp_path / "run" / "rankings.json").read_text())
    assert set(ranking) == {"q3"} and sorted(ranking["q3"]) == ["a1", "a2", "b1", "b2"]

    # the utility stage scored the train queries' candidate sets (their documents' two passages each)
    tables = list((tmp_path / "cache" / "utility_tables").rglob("train.parquet"))
    assert len(tables) == 1, tables
    rows = pq.read_table(tables[0]).to_pylist()
    assert {(r["question_id"], r["passage_id"], r["is_gold"]) for r in rows} == {
        ("q1", "a1", True), ("q1", "a2", False), ("q2", "b1", True), ("q2", "b2", False)
    }
    assert all(r["n_answers"] == 1 for r in rows)

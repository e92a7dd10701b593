"""The fit stage with tiny models on the tiny fixture, in this process: a table given as is (made elsewhere,
by an LLM that cannot be loaded here), as parquet or as FlagEmbedding JSONL; and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.paths import ROOT
from tests.helpers.runs import refused_run, run_stages, tiny_llm, tiny_model
from tests.helpers.shared import copy_of


def test_fit_without_a_utility_table_names_the_stage_that_builds_it(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path
) -> None:
    message = refused_run(
        tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *tiny_llm(tiny_lm_dir),
        f"utility.table_dir={tmp_path / 'none'}", "stages=[fit]", "data.train_split=dev", "logger=none",
    )
    assert "No utility table" in message and "stages=[utility" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batch_larger_than_the_data_is_refused_with_the_key_and_no_files(tmp_path: Path, tiny_tables) -> None:
    copy_of(tiny_tables.folder, tmp_path, "cache", "tables")  # the utility stage finds its table: nothing to score
    message = refused_run(
        tmp_path, *tiny_tables.args, f"utility.table_dir={tmp_path / 'tables'}",
        "stages=[utility,fit]", "utility.splits=[dev]", "data.train_split=dev", "train.batch_size=50", "logger=none",
    )
    assert "train.batch_size=50 is larger than the 4 training questions" in message
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "results.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_fit_on_a_given_table_needs_neither_its_llm_nor_its_candidate_encoder(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path, tiny_tables
) -> None:
    """utility.table= trains on a table made elsewhere, where the LLM that made it cannot be loaded."""
    from uae.table.export import main as export_table

    common = [f"data.dir={tiny_raw_dir}", "data.train_split=dev", "utility.splits=[dev]", "candidates.size=3", "logger=none"]
    made = copy_of(tiny_tables.folder, tmp_path / "made", "tables") / "tables" / "dev.parquet"  # by the tiny LLM
    elsewhere = [
        f"model.encoder.local_path={tiny_encoder_dir}", "model.encoder.model_id=tiny-bert",
        "llm.scorer.model_id=no-such/llm", "candidates.base.encoder.model_id=no-such/encoder",
        f"utility.table_dir={tmp_path / 'empty'}", "stages=[fit,evaluate]", "train.batch_size=2",
    ]
    done = run_stages(tmp_path, *common, *elsewhere, f"utility.table={made}")
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert "used as given (scorer tiny-llama" in done.output
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["utility_table"]
    assert recorded["given"] is True and recorded["scorer"] == "tiny-llama"  # the table's LLM, not llm=

    # Given as is, still checked: the real QASPER dev table is not a table of this tiny data file.
    real = ROOT / "experiments" / "qasper" / "utilities" / "dev.parquet"
    assert "data fingerprint" in refused_run(tmp_path, *common, *elsewhere, f"utility.table={real}", run_dir="wrong")
    both = refused_run(tmp_path, *common, *elsewhere, f"utility.table={real}", "stages=[utility,fit]", run_dir="both")
    assert "drop utility from stages" in both
    missing = refused_run(tmp_path, *common, *elsewhere, f"utility.table={tmp_path / 'nope.parquet'}", run_dir="missing")
    assert "nope.parquet: no such file" in missing

    # The same table exported as FlagEmbedding JSONL trains the very same model: same groups, same order.
    groups = tmp_path / "groups.jsonl"
    assert export_table(["groups", f"data.dir={tiny_raw_dir}", f"--table={made}", f"--to={groups}"]) == 0
    run_stages(tmp_path, *common, *elsewhere, f"utility.table={groups}", run_dir="jsonl")
    on_jsonl = json.loads((tmp_path / "jsonl" / "results.json").read_text())
    on_table = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_jsonl["metrics"] == on_table["metrics"]
    assert on_jsonl["utility_table"]["given"] is True and on_jsonl["utility_table"]["scorer"] is None


"""The model card of a fine-tuned encoder (uae.results.cards), read as the hub library reads it, on the
session's tiny trained run (tests/conftest.py trained_run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.runs import TRAINED_STAGES


def test_model_card_metadata_and_contents(trained_run: Path) -> None:
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    trained = trained_run
    result = json.loads((trained / "results.json").read_text())
    zero_shot = json.loads((trained / "zero_shot" / "results.json").read_text())
    card = ModelCard.load(trained / "encoder" / "README.md")  # parses the metadata as the hub library does
    data = card.data
    assert data.base_model == "uae-test/tiny-bert" and data.datasets == ["allenai/qasper"]
    assert data.library_name == "sentence-transformers" and data.pipeline_tag == "sentence-similarity"
    assert {"sentence-transformers", "uae", "loss-uae"} <= set(data.tags)
    # model-index: the fine-tuned model's metrics, read back through the hub's own parser
    name, results = model_index_to_eval_results(metadata_load(trained / "encoder" / "README.md")["model-index"])
    assert name == result["retriever"] == "minilm+uae"
    metrics = {r.metric_type: r.metric_value for r in results}
    assert set(metrics) == set(result["metrics"])
    for metric, value in result["metrics"].items():
        assert metrics[metric] == pytest.approx(value, abs=1e-6)
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results} == {("information-retrieval", "allenai/qasper", "dev")}

    text = card.text
    assert f"spec fingerprint `{result['utility_table']['spec']}`" in text and "`tiny-llama`" in text
    assert "loss: `uae` (temperature=0.05, sharpness=0.5, mix=0.0)" in text
    assert "pooling: cls" in text and "'search: '" in text
    assert "python -m uae.run" in text and TRAINED_STAGES in text  # the command that made it
    rows = [line for line in text.splitlines() if line.startswith("| minilm")]  # zero-shot row first, then ours
    assert [row.split("|")[1].strip() for row in rows] == ["minilm", "minilm+uae"]
    assert f"{zero_shot['metrics']['map']:.4f}" in rows[0] and f"{result['metrics']['map']:.4f}" in rows[1]
    assert "Intended use and limits" in text


def test_the_card_names_the_command_that_trained_even_after_a_later_start(trained_run: Path, tmp_path: Path) -> None:
    """Hydra rewrites .hydra/overrides.yaml at every start in a run folder: fit keeps its own command in
    results.json, so a later evaluate-only start or export does not put its own command on the model."""
    import shutil

    import yaml

    from uae.results.cards import command_line
    from uae.results.folder import write_run_card

    result = json.loads((trained_run / "results.json").read_text())
    assert result["command"] == command_line(trained_run) and TRAINED_STAGES in result["command"]
    later = shutil.copytree(trained_run, tmp_path / "run")  # the shared run stays as it is
    (later / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["stages=[evaluate]", "model=bm25"]))
    assert "model=bm25" in command_line(later)  # what the card would have named before
    text = write_run_card(later).read_text()
    assert result["command"] in text and "model=bm25" not in text


def test_exported_name_reads_the_card_of_a_uae_export_only(trained_run: Path, tmp_path: Path) -> None:
    from uae.results.cards import exported_name

    assert exported_name(trained_run / "encoder", "minilm") == "minilm+uae"  # the model-index name
    before_evaluation = tmp_path / "fit-only"
    before_evaluation.mkdir()
    (before_evaluation / "README.md").write_text("---\ntags:\n- uae\n- loss-infonce\n---\n# a card with no model-index\n")
    assert exported_name(before_evaluation, "bge_base") == "bge_base+infonce"
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "README.md").write_text("---\ntags:\n- sentence-transformers\nmodel-index:\n- name: someone-else\n  results: []\n---\n")
    assert exported_name(stranger, "minilm") is None
    (stranger / "README.md").write_text("---\ntags: [unclosed\n---\n")  # not YAML: not ours either
    assert exported_name(stranger, "minilm") is None
    assert exported_name(tmp_path / "no-card", "minilm") is None and exported_name(None, "minilm") is None


def test_an_evaluate_only_run_of_an_export_keeps_its_trained_name(
    trained_run: Path, tmp_path: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path
) -> None:
    """The squad-open index rows evaluate UAE's export without training: named minilm+uae, not after the base model."""
    import shutil

    from tests.helpers.runs import run_stages, tiny_model

    export = shutil.copytree(tiny_encoder_dir, tmp_path / "export")
    shutil.copy(trained_run / "encoder" / "README.md", export / "README.md")
    args = [f"data.dir={tiny_raw_dir}", "stages=[evaluate]", "reader=none", "evaluate.zero_shot=false"]
    run_stages(tmp_path, *args, *tiny_model(export), run_dir="export-run")
    run_stages(tmp_path, *args, *tiny_model(tiny_encoder_dir), run_dir="base-run")
    assert json.loads((tmp_path / "export-run" / "results.json").read_text())["retriever"] == "minilm+uae"
    assert json.loads((tmp_path / "base-run" / "results.json").read_text())["retriever"] == "minilm"

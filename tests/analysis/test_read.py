"""`python -m uae.analysis.read` (its ``main``, in this process) adds the reader's answers and token F1 to a
run evaluated with reader=none: the same as evaluating with the reader, and its refusals."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.helpers.runs import assert_main_error, run_stages, tiny_model


def test_read_adds_the_same_token_f1_as_evaluating_with_the_reader(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m uae.analysis.read` on a reader=none run gives the answers and F1 the evaluate stage gives with
    reader=smollm2 (separate answer caches, so neither reuses the other's answers)."""
    from uae.analysis.read import main

    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))  # main's basicConfig: not for later tests
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    lm = [f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama", "reader.answerer.max_new_tokens=4"]
    common = [f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir)]
    run_stages(tmp_path, *common, run_dir="plain")
    run_stages(tmp_path, *common, "reader=smollm2", *lm, f"paths.cache_dir={tmp_path / 'cache2'}", run_dir="read")
    assert "token_f1" not in json.loads((tmp_path / "plain" / "results.json").read_text())["metrics"]

    def read(*args: str):
        capsys.readouterr()
        code = main([f"data.dir={tiny_raw_dir}", *lm, f"paths.cache_dir={tmp_path / 'cache3'}", "retrieval.progress=false", *args])
        return code, capsys.readouterr()  # overrides: the last wins

    code, done = read(str(tmp_path / "plain"))
    assert code == 0, done.err[-3000:]
    added, reference = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("plain", "read"))
    assert added["metrics"]["token_f1"] == pytest.approx(reference["metrics"]["token_f1"])
    assert json.loads((tmp_path / "plain" / "answers.json").read_text()) == json.loads((tmp_path / "read" / "answers.json").read_text())
    assert added["reader"]["added_by"] == "python -m uae.analysis.read" and f"token_f1={added['metrics']['token_f1']:.4f}" in done.out

    assert_main_error(*read(str(tmp_path / "plain")), "already has token_f1")  # refuses to replace what is there without --force
    edited = tmp_path / "edited"  # the same questions, one byte more: another data file
    edited.mkdir()
    (edited / "qasper-dev-v0.3.json").write_text((tiny_raw_dir / "qasper-dev-v0.3.json").read_text() + "\n")
    assert_main_error(*read(str(tmp_path / "plain"), "--force", f"data.dir={edited}"), "is not the one this run scored")
    assert_main_error(*read(str(tmp_path / "plain"), "--force", "reader=no_such_reader"), "do not compose")

"""`python -m uae.analysis.compare` (its ``main``): paired tests on the questions two runs share, recomputed
from each run's own files; runs whose results.json or data file do not match are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.configs import set_settings


def _run(folder: Path, data_dir: Path, gold_first: bool) -> Path:
    """A finished run written by hand: each counted question's paper ranked gold first, or gold last."""
    from uae.data.qasper import load_qasper
    from uae.evaluation.metrics import retrieval_metrics

    split = load_qasper("dev", data_dir)
    rankings = {}
    for q in split.evaluable_questions:
        ids = [p.passage_id for p in split.passages(q.document_id)]
        gold = [i for i in ids if i in q.gold_ids]
        rest = [i for i in ids if i not in q.gold_ids]
        rankings[q.question_id] = gold + rest if gold_first else rest + gold
    folder.mkdir()
    loader = {"_target_": "uae.data.qasper.load_qasper", "_partial_": True, "data_dir": str(data_dir), "allow_hub": False}
    config = {"data": {"dir": str(data_dir), "max_documents": None, "loader": loader}}
    metrics = retrieval_metrics(list(rankings.values()), [q.gold_ids for q in split.evaluable_questions])
    # the reader "answers" with an annotator's own answer from gold, and with nothing from the rest
    answers = {q.question_id: q.answers[0].text if gold_first else "" for q in split.evaluable_questions}
    metrics["token_f1"] = 1.0 if gold_first else 0.0
    (folder / "answers.json").write_text(json.dumps(answers))
    result = {"split": "dev", "retriever": "gold-first" if gold_first else "gold-last", "metrics": metrics,
              "data": {"fingerprint": split.fingerprint}, "config": config}
    (folder / "results.json").write_text(json.dumps(result))
    (folder / "rankings.json").write_text(json.dumps(rankings))
    return folder


def test_compare_cli_pairs_the_runs_own_questions(tmp_path: Path, tiny_raw_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from uae.analysis.compare import main

    worse, better = _run(tmp_path / "a", tiny_raw_dir, False), _run(tmp_path / "b", tiny_raw_dir, True)
    doc = tmp_path / "R.md"
    doc.write_text("x\n<!-- cmp:begin -->\n<!-- cmp:end -->\n")
    assert main([str(worse), str(better), "--samples", "4000", "--into", str(doc), "--section", "cmp"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in doc.read_text().splitlines() if line.startswith("| ")}
    for metric in ("hit@1", "token_f1"):  # every question: gold first against gold last, a full answer against none
        assert rows[metric][1:5] == ["0.0000", "1.0000", "+1.0000", "[+1.0000, +1.0000]"]
        # 4 questions, all +1: only "all +" and "all -" of the 16 sign patterns are as far out, p = 1/8
        assert float(rows[metric][5].strip(" |")) == pytest.approx(0.125, abs=0.02)
    assert set(rows) == {"metric", "hit@1", "recall@1", "map", "token_f1"}
    assert "questions, paired" in capsys.readouterr().out

    result = json.loads((better / "results.json").read_text())
    result["metrics"]["map"] += 0.01  # a results.json that its rankings do not back
    (better / "results.json").write_text(json.dumps(result))
    assert main([str(worse), str(better), "--samples", "100"]) == 2
    assert "recomputed from its files" in capsys.readouterr().err
    result["metrics"]["map"] -= 0.01
    result["data"]["fingerprint"] = "0" * 64  # another data file
    (better / "results.json").write_text(json.dumps(result))
    assert main([str(worse), str(better), "--samples", "100"]) == 2
    assert "is not the one this run scored" in capsys.readouterr().err


def test_ranking_agreement_counts_identical_rankings_and_where_the_others_part() -> None:
    from uae.analysis.compare import ranking_agreement

    a = {"q1": ["p1", "p2", "p3"], "q2": ["p1", "p2", "p3"], "q3": ["p1", "p2", "p3"], "q4": ["p1", "p2"]}
    b = {"q1": ["p1", "p2", "p3"], "q2": ["p2", "p1", "p3"], "q3": ["p1", "p3", "p2"], "q4": ["p1", "p2", "p3"]}
    # q1 identical; q2 parts at rank 1, q3 at rank 2, and q4, a prefix of b, at rank 3
    line = ranking_agreement(a, b)
    assert line.startswith("Rankings: 1 of 4 questions ranked identically")
    assert "first differ at rank 1 (best), 2 (median), 3 (worst)" in line
    assert ranking_agreement(a, a) == "Rankings: 4 of 4 questions ranked identically by A and B."


def _seeded(folder: Path, data_dir: Path, gold_first: bool, seed: int) -> Path:
    run = _run(folder, data_dir, gold_first)
    result = json.loads((run / "results.json").read_text())
    result["config"]["seed"] = seed
    (run / "results.json").write_text(json.dumps(result))
    return run


def test_compare_with_seeds_reports_each_seed_the_spread_and_both_tests(
    tmp_path: Path, tiny_raw_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A: gold last at seeds 1 and 2; B: gold first at seed 1, gold last at seed 2. Every question then
    differs by 0.5 on average over B's seeds (the paired tests see a sure gain), while the seed draws give
    B's mean 1, 0.5 (twice) or 0 of 4 draws: the two-level interval is [0, 1] and its p 1/2."""
    from uae.analysis.compare import main

    a = [_seeded(tmp_path / f"a{s}", tiny_raw_dir, False, s) for s in (1, 2)]
    b = [_seeded(tmp_path / "b1", tiny_raw_dir, True, 1), _seeded(tmp_path / "b2", tiny_raw_dir, False, 2)]
    argv = [arg for pair in [("--a", str(r)) for r in a] + [("--b", str(r)) for r in b] for arg in pair]
    assert main([*argv, "--metrics", "hit@1", "token_f1", "--samples", "8000"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): [c.strip(" |") for c in line.split(" | ")] for line in out.splitlines() if line.startswith("| ")}
    for metric in ("hit@1", "token_f1"):
        assert rows[metric][1:9] == ["0.0000, 0.0000", "1.0000, 0.0000", "0.0000", "0.5000", "+0.5000", "0.0000", "0.7071",
                                     "[+0.5000, +0.5000]"]
        assert float(rows[metric][9]) == pytest.approx(0.125, abs=0.02)  # 4 questions, all +0.5: 2 of 16 sign patterns
        assert rows[metric][10] == "[+0.0000, +1.0000]"
        assert float(rows[metric][11]) == pytest.approx(0.5, abs=0.03)
    assert "at seeds 1, 2" in out

    _seeded(tmp_path / "a3", tiny_raw_dir, False, 1)  # a second run of seed 1 is no second sample
    assert main([*argv, "--a", str(tmp_path / "a3"), "--samples", "100"]) == 2
    assert "must each record a different training seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one side as folders and the other as --b is not a comparison
        main([str(a[0]), "--b", str(b[0])])


def _configured(run: Path, **settings: object) -> Path:
    """Set dotted config keys of a run's results.json."""
    result = json.loads((run / "results.json").read_text())
    set_settings(result["config"], **settings)
    (run / "results.json").write_text(json.dumps(result))
    return run


@pytest.mark.parametrize(
    ("second", "refused"),
    [
        # how a run is kept: another checkpoint callback, checkpoints every 10 steps, another logger
        ({"callbacks__step_checkpoint___target_": "uae.training.checkpoints.StepCheckpoint",
          "train__checkpoint_every_steps": 10, "logger__wandb__mode": "online", "train__ckpt_path": "last"}, None),
        ({"train__ckpt_path": "/elsewhere/other-run.ckpt"}, "['train.ckpt_path']"),  # another run's weights
        ({"train__grad_cache": True, "train__micro_batch": None}, None),  # GradCache at the passage chunk: rounding
        ({"train__grad_cache": True, "train__micro_batch": 8}, "['train.grad_cache', 'train.micro_batch']"),
        ({"loss__sharpness": 0.1}, "['loss.sharpness']"),
    ],
)
def test_seeds_of_one_side_may_differ_in_how_a_run_is_kept_but_not_in_what_it_learns(
    tmp_path: Path, tiny_raw_dir: Path, capsys: pytest.CaptureFixture[str], second: dict[str, object], refused: str | None
) -> None:
    from uae.analysis.compare import main

    first = {"callbacks__step_checkpoint___target_": "lightning.pytorch.callbacks.ModelCheckpoint",
             "train__checkpoint_every_steps": None, "logger__wandb__mode": "offline", "train__grad_cache": False,
             "train__micro_batch": None, "loss__sharpness": 0.5, "train__ckpt_path": None}
    a = [_configured(_seeded(tmp_path / "a42", tiny_raw_dir, False, 42), **first),
         _configured(_seeded(tmp_path / "a1", tiny_raw_dir, False, 1), **{**first, **second})]
    b = [_configured(_seeded(tmp_path / f"b{s}", tiny_raw_dir, True, s), **first) for s in (42, 1)]
    argv = [arg for pair in [("--a", str(r)) for r in a] + [("--b", str(r)) for r in b] for arg in pair]
    code = main([*argv, "--metrics", "hit@1", "--samples", "100"])
    out, err = capsys.readouterr()
    if refused:
        assert code == 2
        assert f"differ in {refused}, not only in seed" in err
    else:
        assert code == 0
        assert ("differ in train.grad_cache" in out) == ("train__grad_cache" in second)
        if "train__grad_cache" in second:
            assert f"`{a[0]}` False, `{a[1]}` True, `{b[0]}` False, `{b[1]}` False" in out

"""`python -m uae.run` end to end on the tiny fixture: results.json, cache reuse, and clear errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def uae_run(tmp_path: Path, *overrides: str, run_dir: str = "run") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    args = [
        sys.executable, "-m", "uae.run", "+experiment=qasper_minilm", "stages=[evaluate]",
        f"hydra.run.dir={tmp_path / run_dir}", f"paths.cache_dir={tmp_path / 'cache'}",
        "retrieval.progress=false", *overrides,
    ]
    if not any(o.startswith("reader=") for o in overrides):
        args.append("reader=none")  # the reader (real SmolLM2) is tested where a test asks for it
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def tiny_model(path: Path) -> list[str]:
    """The tiny BERT as the trained/evaluated encoder and as the source of dense hard negatives."""
    return [
        f"model.encoder.local_path={path}", "model.encoder.model_id=tiny-bert",
        f"candidates.base.encoder.local_path={path}", "candidates.base.encoder.model_id=tiny-bert",
    ]


def _independent_metrics(ranking: list[str], gold: set[str]) -> dict[str, float]:
    hits = [pid in gold for pid in ranking]
    precisions = [sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h]
    first = hits.index(True) + 1 if any(hits) else None
    dcg = sum(1 / torch.log2(torch.tensor(i + 2.0)).item() for i, h in enumerate(hits[:10]) if h)
    idcg = sum(1 / torch.log2(torch.tensor(i + 2.0)).item() for i in range(min(len(gold), 10)))
    return {
        "hit@1": float(hits[0]),
        "recall@1": sum(hits[:1]) / len(gold),
        "recall@5": sum(hits[:5]) / len(gold),
        "map": sum(precisions) / len(gold),
        "mrr": 1 / first if first else 0.0,
        "ndcg@10": dcg / idcg,
    }


def test_zero_shot_evaluation_end_to_end(tmp_path: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path) -> None:
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "eval_split: dev" in done.stdout  # the resolved config is printed
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"experiment", "split", "retriever", "n_questions", "metrics", "latency_ms_per_query", "config"} <= set(result)
    assert (result["experiment"], result["split"], result["retriever"]) == ("qasper_minilm", "dev", "minilm")
    assert result["n_questions"] == 4 and result["latency_ms_per_query"] > 0
    assert result["config"]["data"]["dir"] == str(tiny_raw_dir)

    # Recompute the ranking without UAE's retriever (plain transformers + numpy) and the metrics by hand.
    from transformers import AutoModel, AutoTokenizer

    from uae.data.qasper import load_qasper

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    model = AutoModel.from_pretrained(tiny_encoder_dir).eval()

    def embed(text: str, max_length: int) -> torch.Tensor:
        batch = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            return torch.nn.functional.normalize(model(**batch).last_hidden_state.mean(1), dim=-1)[0]

    rankings = json.loads((tmp_path / "run" / "rankings.json").read_text())
    per_question = []
    for question in split.evaluable_questions:
        passages = split.passages(question.document_id)
        q = embed(question.text, 256)
        scores = [float(q @ embed(p.text, 256)) for p in passages]
        expected = [passages[i].passage_id for i in sorted(range(len(passages)), key=lambda i: -scores[i])]
        assert rankings[question.question_id] == expected
        per_question.append(_independent_metrics(expected, set(question.gold_ids)))
    for name, value in result["metrics"].items():
        assert value == pytest.approx(sum(m[name] for m in per_question) / len(per_question), abs=1e-9), name

    # A second evaluation of the unchanged model and split reads the passage embeddings from the cache.
    again = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), run_dir="run2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "passage embeddings from cache" in again.stdout + again.stderr
    assert json.loads((tmp_path / "run2" / "results.json").read_text())["metrics"] == result["metrics"]


def test_bm25_and_max_documents(tmp_path: Path, tiny_raw_dir: Path) -> None:
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", "model=bm25", "data.max_documents=1")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["retriever"] == "bm25" and result["n_questions"] == 2  # q1, q2 of the first paper


def _assert_clean_failure(done: subprocess.CompletedProcess[str], tmp_path: Path, *needles: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    message = done.stderr.split("error: ", 1)[-1]
    for needle in needles:
        assert needle in message, (needle, message)
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "results.json").exists()
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "models" not in p.parts]
    assert leftovers == []  # no partial cache


def test_missing_data_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = uae_run(tmp_path, f"data.dir={tmp_path / 'empty'}", "model=bm25")
    _assert_clean_failure(done, tmp_path, "qasper-dev-v0.3.json", "data.dir")


def test_malformed_data_file(tmp_path: Path, tiny_raw_dir: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qasper-dev-v0.3.json").write_text((tiny_raw_dir / "qasper-dev-v0.3.json").read_text()[:300])
    done = uae_run(tmp_path, f"data.dir={bad}", "model=bm25")
    _assert_clean_failure(done, tmp_path, str(bad / "qasper-dev-v0.3.json"), "not valid JSON")


def test_split_not_held(tmp_path: Path, tiny_raw_dir: Path) -> None:
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", "data.eval_split=test", "model=bm25")
    _assert_clean_failure(done, tmp_path, "qasper-test-v0.3.json", "data.eval_split")


def test_unknown_model_id(tmp_path: Path, tiny_raw_dir: Path) -> None:
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", "model.encoder.model_id=nobody/no-such-model")
    _assert_clean_failure(done, tmp_path, "nobody/no-such-model")


def test_unreadable_model_folder(tmp_path: Path, tiny_raw_dir: Path) -> None:
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    (folder / "model.safetensors").write_bytes(b"garbage")
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", f"model.encoder.local_path={folder}")
    _assert_clean_failure(done, tmp_path, str(folder))


def test_unknown_stage(tmp_path: Path, tiny_raw_dir: Path) -> None:
    done = uae_run(tmp_path, f"data.dir={tiny_raw_dir}", "model=bm25", "stages=[evaluate,fly]")
    _assert_clean_failure(done, tmp_path, "stages[1] must be one of utility, fit, evaluate, report, got 'fly'")


def test_utility_stage_then_rerank(tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path) -> None:
    llm = [f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama"]
    common = [f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *llm, f"utility.table_dir={tmp_path / 'tables'}"]
    stage = ["stages=[utility]", "utility.splits=[dev]", "candidates.size=3", "utility.chunk_questions=3"]
    done = uae_run(tmp_path, *common, *stage)
    assert done.returncode == 0, done.stderr[-3000:]
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "tables" / "dev.parquet")
    # 4 answerable questions (q3 is unanswerable), 3 candidates each; gold always in the set.
    assert table.num_rows == 12 and set(table["question_id"].to_pylist()) == {"q1", "q2", "q4", "q5"}
    assert sum(table["is_gold"].to_pylist()) == 5  # q1: 2, q2: 1, q4: 1, q5: 1
    teacher = json.loads((tmp_path / "run" / "teacher_dev.json").read_text())
    assert [row["ranker"] for row in teacher["rows"]] == ["utility (LLM)", "bm25", "dense", "random order (expected)"]
    assert teacher["n_candidates"] == 12

    # The table is up to date: a second run scores nothing and leaves it as it was.
    again = uae_run(tmp_path, *common, *stage, run_dir="run2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to score" in again.stdout + again.stderr
    assert pq.read_table(tmp_path / "tables" / "dev.parquet").equals(table)
    assert not (tmp_path / "run2" / "teacher_dev.json").exists()  # the cheap path ranks nothing
    reported = uae_run(tmp_path, *common, *stage, "utility.report=true", run_dir="run4")  # same report, no LLM pass
    assert reported.returncode == 0 and "nothing to score" in reported.stdout + reported.stderr, reported.stderr[-3000:]
    assert json.loads((tmp_path / "run4" / "teacher_dev.json").read_text()) == teacher
    assert (tmp_path / "run4" / "teacher_dev.md").read_text() == (tmp_path / "run" / "teacher_dev.md").read_text()
    # A subset run reuses the split's full table: its report counts the subset's rows only.
    subset = uae_run(tmp_path, *common, *stage, "utility.report=true", "data.max_documents=1", run_dir="run5")
    assert subset.returncode == 0 and "nothing to score" in subset.stdout + subset.stderr, subset.stderr[-3000:]
    assert not (tmp_path / "tables" / "dev-first1.parquet").exists()
    first_paper = {q for q, p in zip(table["question_id"].to_pylist(), table["document_id"].to_pylist()) if p == table["document_id"][0].as_py()}
    assert 0 < len(first_paper) < 4
    assert json.loads((tmp_path / "run5" / "teacher_dev.json").read_text())["n_candidates"] == 3 * len(first_paper)

    reranked = uae_run(tmp_path, *common, "rerank=llm", "rerank.k=2", run_dir="run3")
    assert reranked.returncode == 0, reranked.stderr[-3000:]
    result = json.loads((tmp_path / "run3" / "results.json").read_text())
    assert result["retriever"] == "minilm+llm_rerank@2" and result["n_questions"] == 4


def test_utility_fit_evaluate_report_end_to_end(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path
) -> None:
    """The whole pipeline with tiny models: the fine-tuned encoder is exported, evaluated like a base one."""
    import csv

    llm = [f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama"]
    done = uae_run(
        tmp_path,
        f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *llm, f"utility.table_dir={tmp_path / 'tables'}",
        "stages=[report,evaluate,fit,utility]",  # any order: they run in pipeline order
        "data.train_split=dev", "utility.splits=[dev]", "candidates.size=3",
        "train.batch_size=2", "train.lr=1e-3", "trainer.max_epochs=2", "evaluate.zero_shot=true", "logger=default",
        "reader=smollm2", "reader.answerer.max_new_tokens=4",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    tuned = json.loads((run / "results.json").read_text())
    base = json.loads((run / "zero_shot" / "results.json").read_text())
    assert (tuned["retriever"], base["retriever"]) == ("minilm+uae", "minilm")
    assert Path(tuned["checkpoint"]).is_file() and tuned["train_seconds"] > 0
    assert tuned["n_questions"] == base["n_questions"] == 4

    # Training changed the weights, and the export loads as a plain Hugging Face model.
    from safetensors.torch import load_file

    before, after = load_file(tiny_encoder_dir / "model.safetensors"), load_file(run / "encoder" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)

    # Validation ranks whole papers with the metric code of evaluation: the exported best checkpoint's
    # val/map is the MAP the evaluate stage measures.
    with open(run / "csv" / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("val/map")]
    assert len(logged) == 2  # one validation per epoch
    assert max(float(row["val/map"]) for row in logged) == pytest.approx(tuned["metrics"]["map"], abs=1e-6)

    # token F1 of the reader's answers, max over annotators, recomputed from answers.json
    from uae.data.qasper import load_qasper
    from uae.evaluation.metrics import answer_f1

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    for folder, result in ((run, tuned), (run / "zero_shot", base)):
        answers = json.loads((folder / "answers.json").read_text())
        assert set(answers) == {q.question_id for q in split.evaluable_questions}
        expected = [answer_f1(answers[q.question_id], [a.text for a in q.answers]) for q in split.evaluable_questions]
        assert result["metrics"]["token_f1"] == pytest.approx(sum(expected) / len(expected))

    report = (run / "report.md").read_text()
    assert "| minilm |" in report and "| minilm+uae |" in report and "recall@1" in report
    assert (run / "wandb").is_dir()  # an offline W&B run, finished with the job


def test_fit_without_a_utility_table_names_the_stage_that_builds_it(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path
) -> None:
    done = uae_run(
        tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir),
        f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama",
        f"utility.table_dir={tmp_path / 'none'}", "stages=[fit]", "data.train_split=dev", "logger=none",
    )
    assert done.returncode == 2
    assert "No utility table" in done.stderr and "stages=[utility" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fit_on_a_given_table_needs_neither_its_llm_nor_its_candidate_encoder(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path
) -> None:
    """utility.table= trains on a table made elsewhere, where the LLM that made it cannot be loaded."""
    common = [f"data.dir={tiny_raw_dir}", "data.train_split=dev", "utility.splits=[dev]", "candidates.size=3", "logger=none"]
    made = uae_run(
        tmp_path, *common, *tiny_model(tiny_encoder_dir), f"llm.scorer.local_path={tiny_lm_dir}",
        "llm.scorer.model_id=tiny-llama", f"utility.table_dir={tmp_path / 'tables'}", "stages=[utility]", run_dir="made",
    )
    assert made.returncode == 0, made.stderr[-3000:]
    elsewhere = [
        f"model.encoder.local_path={tiny_encoder_dir}", "model.encoder.model_id=tiny-bert",
        "llm.scorer.model_id=no-such/llm", "candidates.base.encoder.model_id=no-such/encoder",
        f"utility.table_dir={tmp_path / 'empty'}", "stages=[fit,evaluate]", "train.batch_size=2",
    ]
    done = uae_run(tmp_path, *common, *elsewhere, f"utility.table={tmp_path / 'tables' / 'dev.parquet'}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert "used as given (scorer tiny-llama" in (tmp_path / "run" / "run.log").read_text()
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["utility_table"]
    assert recorded["given"] is True and recorded["scorer"] == "tiny-llama"  # the table's LLM, not llm=

    # Given as is, still checked: the real QASPER dev table is not a table of this tiny data file.
    real = ROOT / "experiments" / "qasper" / "utilities" / "dev.parquet"
    wrong = uae_run(tmp_path, *common, *elsewhere, f"utility.table={real}", run_dir="wrong")
    assert wrong.returncode == 2 and "data fingerprint" in wrong.stderr and "Traceback" not in wrong.stderr
    both = uae_run(tmp_path, *common, *elsewhere, f"utility.table={real}", "stages=[utility,fit]", run_dir="both")
    assert both.returncode == 2 and "drop utility from stages" in both.stderr

    missing = uae_run(tmp_path, *common, *elsewhere, f"utility.table={tmp_path / 'nope.parquet'}", run_dir="missing")
    assert missing.returncode == 2 and "nope.parquet: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr

    # The same table exported as FlagEmbedding JSONL trains the very same model: same groups, same order.
    groups = tmp_path / "groups.jsonl"
    exported = subprocess.run(
        [sys.executable, "-m", "uae.table.export", "groups", f"data.dir={tiny_raw_dir}",
         f"--table={tmp_path / 'tables' / 'dev.parquet'}", f"--to={groups}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    from_jsonl = uae_run(tmp_path, *common, *elsewhere, f"utility.table={groups}", run_dir="jsonl")
    assert from_jsonl.returncode == 0, from_jsonl.stderr[-3000:]
    on_jsonl = json.loads((tmp_path / "jsonl" / "results.json").read_text())
    on_table = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_jsonl["metrics"] == on_table["metrics"]
    assert on_jsonl["utility_table"]["given"] is True and on_jsonl["utility_table"]["scorer"] is None


def test_read_adds_the_same_token_f1_as_evaluating_with_the_reader(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path
) -> None:
    """`python -m uae.analysis.read` on a reader=none run gives the answers and F1 the evaluate stage gives with
    reader=smollm2 (separate answer caches, so neither reuses the other's answers)."""
    lm = [f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama", "reader.answerer.max_new_tokens=4"]
    common = [f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir)]
    plain = uae_run(tmp_path, *common, run_dir="plain")
    with_reader = uae_run(tmp_path, *common, "reader=smollm2", *lm, f"paths.cache_dir={tmp_path / 'cache2'}", run_dir="read")
    assert plain.returncode == 0 and with_reader.returncode == 0, plain.stderr[-2000:] + with_reader.stderr[-2000:]
    assert "token_f1" not in json.loads((tmp_path / "plain" / "results.json").read_text())["metrics"]

    def read(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "uae.analysis.read", f"data.dir={tiny_raw_dir}", *lm,
                   f"paths.cache_dir={tmp_path / 'cache3'}", "retrieval.progress=false", *args]  # last wins
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)

    done = read(str(tmp_path / "plain"))
    assert done.returncode == 0, done.stderr[-3000:]
    added, reference = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("plain", "read"))
    assert added["metrics"]["token_f1"] == pytest.approx(reference["metrics"]["token_f1"])
    assert json.loads((tmp_path / "plain" / "answers.json").read_text()) == json.loads((tmp_path / "read" / "answers.json").read_text())
    assert added["reader"]["added_by"] == "python -m uae.analysis.read" and f"token_f1={added['metrics']['token_f1']:.4f}" in done.stdout

    again = read(str(tmp_path / "plain"))  # refuses to replace what is there without --force
    assert again.returncode == 2 and "already has token_f1" in again.stderr
    edited = tmp_path / "edited"  # the same questions, one byte more: another data file
    edited.mkdir()
    (edited / "qasper-dev-v0.3.json").write_text((tiny_raw_dir / "qasper-dev-v0.3.json").read_text() + "\n")
    other_data = read(str(tmp_path / "plain"), "--force", f"data.dir={edited}")
    assert other_data.returncode == 2 and "is not the one this run scored" in other_data.stderr
    bad_override = read(str(tmp_path / "plain"), "--force", "reader=no_such_reader")
    assert bad_override.returncode == 2 and "do not compose" in bad_override.stderr
    assert "Traceback" not in other_data.stderr + bad_override.stderr


def test_multirun_summary_lists_every_job_and_a_failed_one_does_not_stop_the_others(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_raw_dir: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    sweep = tmp_path / "sweep"
    args = [
        sys.executable, "-m", "uae.run", "-m", "+experiment=qasper_minilm", "stages=[evaluate]",
        f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}", "retrieval.progress=false",
        f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir),
        "model.encoder.pooling=mean,bogus,cls", "reader=none",  # the middle job fails its config check
    ]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stderr[-3000:]  # a failed job makes the sweep fail, after the summary
    results = {n: sweep / str(n) / "results.json" for n in range(3)}
    assert results[0].is_file() and results[2].is_file() and not results[1].exists()

    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "model.encoder.pooling=bogus" in rows[1]["overrides"] and "pooling" in rows[1]["error"]
    for n in (0, 2):  # the summary holds each job's own numbers
        metrics = json.loads(results[n].read_text())["metrics"]
        assert float(rows[n]["map"]) == pytest.approx(metrics["map"]) and float(rows[n]["hit@1"]) == pytest.approx(metrics["hit@1"])
    assert json.loads(results[0].read_text())["metrics"] != json.loads(results[2].read_text())["metrics"]  # mean != cls
    summary = (sweep / "summary.md").read_text()
    assert "Failed jobs" in summary and "| failed |" in summary

    # The same sweep again with skip_done=true: the finished jobs are not rerun, the failed one is. Where
    # files live is not a setting: another cache folder (a resumed sweep on another node) is the same job.
    before = {n: results[n].stat().st_mtime_ns for n in (0, 2)}
    moved = [f"paths.cache_dir={tmp_path / 'cache2'}" if a.startswith("paths.cache_dir=") else a for a in args]
    again = subprocess.run(moved + ["skip_done=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert again.returncode == 1, again.stderr[-3000:]
    assert {n: results[n].stat().st_mtime_ns for n in (0, 2)} == before
    assert (again.stdout + again.stderr).count("skipped (skip_done=true)") == 2
    with open(sweep / "summary.csv") as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["ok", "failed", "ok"]

    # Another config pointed at the same folder stops with a clear error and leaves the results alone.
    other = [a for a in args if not a.startswith("model.encoder.pooling=")] + ["model.encoder.pooling=mean", "seed=7"]
    clash = subprocess.run(other + ["skip_done=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert clash.returncode == 2 and "different config" in clash.stderr and "'seed']" in clash.stderr, clash.stderr[-3000:]
    assert results[0].stat().st_mtime_ns == before[0] and json.loads((sweep / "0" / "status.json").read_text())["status"] == "ok"
    from uae.analysis.jobs import load_runs

    # job 0 keeps its own overrides (status.json), though Hydra rewrote .hydra/
    assert "seed=7" in (sweep / "0" / ".hydra" / "overrides.yaml").read_text()
    job0 = load_runs(sweep).set_index("job").loc["0"]
    assert job0["override:model.encoder.pooling"] == "mean" and "override:seed" not in job0.dropna().index


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["stages=[fit]", "loss.temperature=-0.05"], "loss.temperature must be a number > 0, got -0.05"),
        (["stages=[utility]", "candidates.size=0"], "candidates.size must be an integer >= 1, got 0"),
        (["stages=[utility,fit]", "utility.splits=[dev]", "data.train_split=dev", "train.batch_size=50", "logger=none"],
         "train.batch_size=50 is larger than the 4 training questions"),
    ],
    ids=["negative-temperature", "no-candidates", "batch-larger-than-data"],
)
def test_bad_training_config_exits_2_with_the_key_and_no_files(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path, overrides: list[str], message: str
) -> None:
    llm = [f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama"]
    done = uae_run(
        tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *llm, f"utility.table_dir={tmp_path / 'tables'}",
        *(["candidates.size=3"] if not any(o.startswith("candidates.size") for o in overrides) else []), *overrides,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "results.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_lightning_ddp_on_two_cpu_processes_end_to_end(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trainer=ddp through Lightning's launcher and Hydra: rank 0 alone exports, evaluates and reports."""
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    llm = [f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama"]
    done = uae_run(
        tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *llm, f"utility.table_dir={tmp_path / 'tables'}",
        "stages=[utility,fit,evaluate]", "data.train_split=dev", "utility.splits=[dev]", "candidates.size=3",
        "train.batch_size=1", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2",
        "logger=csv",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("fit: 4 training groups") == 2  # both processes joined the fit
    assert output.count("minilm+uae on dev") == 1  # ... and only rank 0 went on to evaluate
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["retriever"] == "minilm+uae" and Path(result["checkpoint"]).is_file()
    with open(tmp_path / "run" / "csv" / "metrics.csv") as handle:
        assert sum(1 for row in csv.DictReader(handle) if row.get("val/map")) == 2

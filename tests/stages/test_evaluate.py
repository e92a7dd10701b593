"""The evaluate stage on the tiny fixture, in this process: results.json and rankings recomputed without
UAE, the embedding cache reused, BM25 with a document limit, a BEIR export evaluated like its source,
and the refusals of data and models that cannot be used (a clear message, no results, no partial cache).

The same refusals as a process (exit status 2, one ``error:`` paragraph, no traceback) are checked once
in tests/cli/test_run_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.beir import copies, write_folder
from tests.helpers.runs import assert_nothing_left, refused_run, run_stages, tiny_model


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
    done = run_stages(tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir))
    assert "eval_split: dev" in done.output  # the resolved config is printed
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
    again = run_stages(tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), run_dir="run2")
    assert "passage embeddings from cache" in again.output
    assert json.loads((tmp_path / "run2" / "results.json").read_text())["metrics"] == result["metrics"]


def test_bm25_and_max_documents(tmp_path: Path, tiny_raw_dir: Path) -> None:
    run_stages(tmp_path, f"data.dir={tiny_raw_dir}", "model=bm25", "data.max_documents=1")
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["retriever"] == "bm25" and result["n_questions"] == 2  # q1, q2 of the first paper


def test_native_and_exported_split_give_the_same_results(tmp_path: Path, tiny_raw_dir: Path, tiny_encoder_dir: Path) -> None:
    """The tiny QASPER split and its BEIR export (data=beir) rank and score alike through the run."""
    from uae.data.beir import write_beir
    from uae.data.qasper import load_qasper

    write_beir([load_qasper("dev", tiny_raw_dir, allow_hub=False)], tmp_path / "beir")
    run_stages(tmp_path, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), run_dir="native")
    run_stages(
        tmp_path, "data=beir", f"data.dir={tmp_path / 'beir'}", "data.eval_split=dev", *tiny_model(tiny_encoder_dir),
        run_dir="beir",
    )
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("native", "beir")]
    assert results[0]["n_questions"] == results[1]["n_questions"] > 0
    assert results[0]["metrics"].keys() == results[1]["metrics"].keys()
    for metric, value in results[0]["metrics"].items():
        assert abs(value - results[1]["metrics"][metric]) <= 1e-9, metric
    rankings = [json.loads((tmp_path / name / "rankings.json").read_text()) for name in ("native", "beir")]
    assert rankings[0] == rankings[1]


# --------------------------------------------------------------------------------------------------
# refusals: data and models that cannot be used


def _assert_refused(message: str, tmp_path: Path, *needles: str) -> None:
    for needle in needles:
        assert needle in message, (needle, message)
    assert_nothing_left(tmp_path)


def test_missing_data_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    message = refused_run(tmp_path, f"data.dir={tmp_path / 'empty'}", "model=bm25")
    _assert_refused(message, tmp_path, "qasper-dev-v0.3.json", "data.dir")


def test_malformed_data_file(tmp_path: Path, tiny_raw_dir: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qasper-dev-v0.3.json").write_text((tiny_raw_dir / "qasper-dev-v0.3.json").read_text()[:300])
    message = refused_run(tmp_path, f"data.dir={bad}", "model=bm25")
    _assert_refused(message, tmp_path, str(bad / "qasper-dev-v0.3.json"), "not valid JSON")


def test_split_not_held(tmp_path: Path, tiny_raw_dir: Path) -> None:
    message = refused_run(tmp_path, f"data.dir={tiny_raw_dir}", "data.eval_split=test", "model=bm25")
    _assert_refused(message, tmp_path, "qasper-test-v0.3.json", "data.eval_split")


def test_bad_beir_folder_names_the_file_and_line_and_caches_nothing(tmp_path: Path) -> None:
    corpus, queries, qrels = copies()
    qrels[2] = "q7\ta1\t1"  # line 3 names a query that queries.jsonl lacks
    bad = write_folder(tmp_path / "bad", corpus, queries, qrels)
    message = refused_run(tmp_path, "data=beir", f"data.dir={bad}", "model=bm25")
    _assert_refused(message, tmp_path, f"{bad / 'qrels' / 'test.tsv'}, line 3", "'q7'")


def test_unknown_model_id(tmp_path: Path, tiny_raw_dir: Path) -> None:
    message = refused_run(tmp_path, f"data.dir={tiny_raw_dir}", "model.encoder.model_id=nobody/no-such-model")
    _assert_refused(message, tmp_path, "nobody/no-such-model")


def test_unreadable_model_folder(tmp_path: Path, tiny_raw_dir: Path) -> None:
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    (folder / "model.safetensors").write_bytes(b"garbage")
    message = refused_run(tmp_path, f"data.dir={tiny_raw_dir}", f"model.encoder.local_path={folder}")
    _assert_refused(message, tmp_path, str(folder))

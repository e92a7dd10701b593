"""The open-corpus SQuAD loader: every SQuAD and QASPER paragraph in one corpus, SQuAD's questions over it.

Expected counts are rebuilt from the four files loaded one by one (the loaders' own tests check those), so
a loader that dropped a split, kept QASPER's questions or tied a question to its article would fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.paths import FIXTURES
from uae.core.errors import DataError
from uae.data.qasper import load_qasper
from uae.data.squad import load_squad
from uae.data.squad_open import load_squad_open


def _squad(folder: Path, titles: dict[str, list[str]]) -> None:
    """Tiny SQuAD files: split -> article titles, two paragraphs each, one question per paragraph."""
    for split, names in titles.items():
        data = [
            {"title": t, "paragraphs": [
                {"context": f"{t} paragraph {i} says {t.lower()}{i}.", "qas": [
                    {"id": f"{t}-{i}", "question": f"What does {t} {i} say?", "answers": [{"text": f"{t.lower()}{i}", "answer_start": 0}]}
                ]} for i in range(2)
            ]}
            for t in names
        ]  # fmt: skip
        (folder / f"squad-{split}-v1.1.json").write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    squad, qasper = tmp_path / "squad", tmp_path / "qasper"
    squad.mkdir()
    qasper.mkdir()
    _squad(squad, {"train": ["Alpha", "Beta", "Gamma"], "dev": ["Delta"]})
    raw = json.loads((FIXTURES / "qasper_tiny_raw.json").read_text(encoding="utf-8"))
    (qasper / "qasper-dev-v0.3.json").write_text(json.dumps(raw), encoding="utf-8")
    (qasper / "qasper-train-v0.3.json").write_text(json.dumps({f"t{k}": v for k, v in raw.items()}), encoding="utf-8")
    return squad, qasper


def test_corpus_holds_every_paragraph_and_questions_rank_all_of_it(folders: tuple[Path, Path]) -> None:
    squad, qasper = folders
    parts = [load_squad(s, squad) for s in ("train", "dev")] + [load_qasper(s, qasper) for s in ("train", "dev")]
    expected = {p.passage_id for part in parts for p in part.all_passages}
    train = load_squad_open("train", squad, qasper_dir=qasper, max_documents=2)
    dev = load_squad_open("dev", squad, qasper_dir=qasper)
    for split in (train, dev):
        assert {p.passage_id for p in split.all_passages} == expected  # the corpus is whole whatever the limit
        assert all(q.document_id is None for q in split.questions)
        assert split.cache_name == "squad_open"
    # train keeps the questions of its first 2 articles only, each with its own paragraph as gold
    assert [q.question_id for q in train.questions] == ["Alpha-0", "Alpha-1", "Beta-0", "Beta-1"]
    assert train.questions[2].gold_ids == {"Beta/0"}
    assert [q.question_id for q in dev.questions] == ["Delta-0", "Delta-1"]
    assert train.fingerprint == dev.fingerprint  # one corpus: one embedding cache for both splits
    assert train.limited and not dev.limited


def test_a_document_in_two_files_is_refused(folders: tuple[Path, Path]) -> None:
    squad, qasper = folders
    shutil.copy(qasper / "qasper-dev-v0.3.json", qasper / "qasper-train-v0.3.json")  # p1 and p2 twice
    with pytest.raises(DataError, match="appears in QASPER train and in QASPER dev"):
        load_squad_open("dev", squad, qasper_dir=qasper)


def test_a_split_without_a_file_is_refused(folders: tuple[Path, Path]) -> None:
    squad, qasper = folders
    with pytest.raises(DataError, match="'test' is not one of train, dev"):
        load_squad_open("test", squad, qasper_dir=qasper)
    (qasper / "qasper-train-v0.3.json").unlink()
    with pytest.raises(DataError, match="train"):
        load_squad_open("dev", squad, qasper_dir=qasper)


def test_open_corpus_pipeline_mines_a_rank_range_shares_its_shards_and_ranks_the_corpus(
    tmp_path: Path, folders: tuple[Path, Path], tiny_encoder_dir: Path, tiny_lm_dir: Path
) -> None:
    """utility -> fit -> evaluate in corpus scope on the tiny open corpus, with tiny models (InfoNCE with the
    teacher's denoising, as make squad-open trains it)."""
    import pyarrow.parquet as pq

    from tests.helpers.runs import run_stages, tiny_llm, tiny_model

    squad, qasper = folders
    tables = tmp_path / "tables"
    run_stages(
        tmp_path, "data=squad_open", f"data.dir={squad}", f"data.loader.qasper_dir={qasper}", f"data.tables={tables}",
        *tiny_model(tiny_encoder_dir), *tiny_llm(tiny_lm_dir), "utility.splits=[train]", f"utility.table_dir={tables}",
        "retrieval.scope=corpus", "retrieval.top_k=20", "candidates.size=3", "candidates.hard_negatives.bm25=1",
        "candidates.hard_negatives.dense=1", "candidates.rank_range=[1,6]", "loss=infonce", "loss.denoise_margin=0",
        "train.batch_size=2", "train.validate=false", "logger=none", "stages=[utility,fit,evaluate]",
        "retrieval.shard_size=4", "candidates.shard_size=4", "evaluate.zero_shot=true",
    )
    rows = pq.read_table(tables / "train.parquet").to_pylist()
    spec = json.loads(pq.read_schema(tables / "train.parquet").metadata[b"uae_spec"])
    assert spec["candidates"]["rank_range"] == [1, 6] and spec["candidates"]["shard_size"] == 4
    # one shard folder per encoder, named by the corpus: the mining's (train) is the zero-shot evaluation's (dev)
    folders = sorted(p.name for p in (tmp_path / "cache" / "embeddings").iterdir())
    assert len(folders) == 2 and all(f.startswith("squad_open-") and f.endswith("-shards") for f in folders), folders
    corpus = {p.passage_id for p in load_squad_open("train", squad, qasper_dir=qasper).all_passages}
    by_question: dict[str, list[dict]] = {}
    for row in rows:
        by_question.setdefault(row["question_id"], []).append(row)
        assert row["passage_id"] in corpus
    assert len(by_question) == 6  # the 3 train articles' questions, 2 each
    rankings = json.loads((tmp_path / "run" / "rankings.json").read_text())
    assert set(rankings) == {"Delta-0", "Delta-1"}
    assert all(len(r) == 20 and set(r) <= corpus for r in rankings.values())  # the whole corpus, not one article
    assert any(not pid.startswith("Delta/") for r in rankings.values() for pid in r)

"""The QASPER loader: counts on the shared files, both layouts, evidence alignment, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from uae.core.errors import DataError
from uae.data.qasper import load_qasper, parse_raw, raw_from_hf_rows


def test_counts_on_shared_files(qasper_train, qasper_dev) -> None:
    train, dev = qasper_train, qasper_dev  # parsed once per session (tests/conftest.py)
    assert (len(train.documents), len(train.questions)) == (888, 2593)
    assert (len(dev.documents), len(dev.questions)) == (281, 1005)
    for split in (train, dev):
        stats = split.alignment
        assert stats.evidence == stats.aligned + stats.figures_tables + stats.unaligned
        # The shared README: about 92% of non-figure evidence matches exactly; whitespace-insensitive
        # matching can only add to that.
        assert stats.aligned / (stats.evidence - stats.figures_tables) > 0.9
        assert all(pid.split("/")[0] == q.document_id for q in split.questions for pid in q.gold_ids)


def test_max_documents_keeps_first_papers_in_file_order(shared_data: Path) -> None:
    raw = json.loads((shared_data / "qasper-dev-v0.3.json").read_text())
    split = load_qasper("dev", shared_data, max_documents=3, allow_hub=False)
    assert list(split.documents) == list(raw)[:3]
    assert {q.document_id for q in split.questions} <= set(list(raw)[:3])


def test_tiny_fixture_records(tiny_raw_dir: Path) -> None:
    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    assert list(split.documents) == ["p1", "p2"]
    # The empty paragraph of p1 is dropped; ids stay dense.
    assert [p.passage_id for p in split.passages("p1")] == ["p1/0", "p1/1", "p1/2", "p1/3"]
    assert split.passages("p1")[3].section == "Method"
    q1, q2, q3, q4, q5 = split.questions
    # Extractive spans are joined by ", " (official evaluator); whitespace differences still align.
    assert [a.text for a in q1.answers] == ["with a camera, at night", "using a camera"]
    assert q1.gold_ids == {"p1/2", "p1/3"}
    assert [a.text for a in q2.answers] == ["Yes", "No"]
    assert q2.gold_ids == {"p1/1"}
    assert q3.answers[0].text == "Unanswerable" and not q3.answerable and not q3.gold_ids
    assert q5.answers[0].text == "91 percent" and q5.gold_ids == {"p2/0"}
    assert q4.gold_answers == ("three days",)
    # 7 evidence strings: 5 aligned, 1 figure, 1 matching no paragraph.
    stats = split.alignment
    assert (stats.evidence, stats.aligned, stats.figures_tables, stats.unaligned) == (7, 5, 1, 1)
    assert [q.question_id for q in split.evaluable_questions] == ["q1", "q2", "q4", "q5"]


def test_hf_layout_gives_the_same_records(tiny_raw_dir: Path, tiny_hf_dir: Path) -> None:
    raw = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    hf = load_qasper("dev", tiny_hf_dir, allow_hub=False)
    assert hf.source.endswith("validation.jsonl")
    assert hf.documents == raw.documents
    assert hf.questions == raw.questions
    assert vars(hf.alignment) == vars(raw.alignment)


def test_hf_layout_parquet(tmp_path: Path, tiny_hf_dir: Path, tiny_raw_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (tiny_hf_dir / "validation.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "dev.parquet")
    assert load_qasper("dev", tmp_path, allow_hub=False).questions == load_qasper(
        "dev", tiny_raw_dir, allow_hub=False
    ).questions


def test_missing_split_names_the_directory_and_the_fix(tiny_raw_dir: Path) -> None:
    with pytest.raises(DataError) as err:
        load_qasper("test", tiny_raw_dir, allow_hub=False)
    message = str(err.value)
    assert "qasper-test-v0.3.json" in message and str(tiny_raw_dir) in message
    assert "qasper-dev-v0.3.json" in message  # what the folder does hold
    assert "data.dir" in message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_qasper("dev", tmp_path / "nowhere", allow_hub=False)


def test_malformed_json_names_file_and_position(tmp_path: Path, tiny_raw_dir: Path) -> None:
    text = (tiny_raw_dir / "qasper-dev-v0.3.json").read_text()
    (tmp_path / "qasper-dev-v0.3.json").write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"not valid JSON .* line \d+"):
        load_qasper("dev", tmp_path, allow_hub=False)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda raw: raw["p1"].pop("full_text"), "no 'full_text'"),
        (lambda raw: raw["p1"]["qas"][0].__setitem__("answers", []), "question q1 has no answers"),
        (lambda raw: raw["p2"]["qas"][0].__setitem__("question_id", "q1"), "question id q1 appears twice"),
        (
            lambda raw: raw["p2"]["qas"][0]["answers"][0]["answer"].update(extractive_spans=[], yes_no=None),
            "no extractive span",
        ),
    ],
)
def test_bad_records(tiny_raw_dir: Path, mutate, expected: str) -> None:
    raw = json.loads((tiny_raw_dir / "qasper-dev-v0.3.json").read_text())
    mutate(raw)
    with pytest.raises(DataError, match=expected):
        parse_raw(raw, split="dev", source="x.json", fingerprint="f")


def test_paper_without_paragraphs(tiny_raw_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = json.loads((tiny_raw_dir / "qasper-dev-v0.3.json").read_text())
    raw["p2"]["full_text"] = []
    split = parse_raw(raw, split="dev", source="x.json", fingerprint="f")
    assert "without any paragraph" in caplog.text and "p2" in caplog.text
    assert {q.question_id for q in split.evaluable_questions} == {"q1", "q2"}
    raw["p1"]["full_text"] = []
    with pytest.raises(DataError, match="none of its 2 papers has any paragraph"):
        parse_raw(raw, split="dev", source="x.json", fingerprint="f")


def test_hf_rows_in_another_layout_are_refused() -> None:
    with pytest.raises(DataError, match="row 0 is not in the allenai/qasper column layout"):
        raw_from_hf_rows([{"id": "p", "full_text": [{"section_name": "x", "paragraphs": []}], "qas": []}])


def test_fingerprint_follows_content(tmp_path: Path, tiny_raw_dir: Path) -> None:
    shutil.copy(tiny_raw_dir / "qasper-dev-v0.3.json", tmp_path / "qasper-dev-v0.3.json")
    before = load_qasper("dev", tmp_path, allow_hub=False).fingerprint
    raw = json.loads((tmp_path / "qasper-dev-v0.3.json").read_text())
    raw["p2"]["title"] = "Changed"
    (tmp_path / "qasper-dev-v0.3.json").write_text(json.dumps(raw))
    assert load_qasper("dev", tmp_path, allow_hub=False).fingerprint != before

"""The BEIR-layout loader: a hand-made folder, bad input, the CLI, QASPER round trip, fuzzing.

The round trip is the issue's test: QASPER dev exported to BEIR and read back must give the native
loader's questions, gold passages and metrics (BM25, and a tiny dense encoder) to 1e-9.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.beir import copies, write_folder
from tests.helpers.fuzz import json_values, mutate
from uae.core.errors import DataError
from uae.data.beir import load_beir, write_beir
from uae.data.qasper import load_qasper
from uae.data.records import Split
from uae.evaluation.ranking import evaluate_retriever
from uae.retrieval.bm25 import BM25Retriever
from uae.retrieval.dense import DenseRetriever
from uae.retrieval.encoder import DualEncoder

# --- the hand-made folder ------------------------------------------------------------------------


def test_hand_made_folder(tmp_path: Path) -> None:
    split = load_beir("test", write_folder(tmp_path))
    assert split.name == "test" and not split.limited
    # Documents in order of first appearance, each with its passages in file order; a passage without
    # metadata.document is a document of its own.
    assert list(split.documents) == ["docA", "docB", "solo"]
    assert [p.passage_id for p in split.passages("docA")] == ["a1", "a2"]
    assert [p.passage_id for p in split.passages("docB")] == ["b1", "b2"]
    assert [p.passage_id for p in split.passages("solo")] == ["solo"]
    assert [p.index for p in split.passages("docA")] == [0, 1]
    assert all(p.document_id == doc for doc in split.documents for p in split.passages(doc))
    a2 = split.passages("docA")[1]
    assert (a2.section, a2.text) == ("Method", "We count the stars with a camera.")
    # A query without a document ranks every passage.
    assert [p.passage_id for p in split.passages(None)] == ["a1", "a2", "b1", "b2", "solo"]

    # The split's queries are those with a positive qrels line (q3 has only a score-0 line, q4 none).
    assert [q.question_id for q in split.questions] == ["q1", "q2", "q5"]
    q1, q2, q5 = split.questions
    assert q1.document_id == "docA" and q5.document_id == "docB"
    assert q2.document_id is None
    assert q1.gold_ids == {"a2"}  # the score-0 line for a1 is not gold
    assert q2.gold_ids == {"solo", "b2"}
    assert q5.gold_ids == {"b2"}
    assert q1.gold_answers == ("with a camera", "a camera")  # the repeated answer is kept once
    assert q2.answers == () and not q2.answerable  # evaluated, but gets no utilities
    assert q5.gold_answers == ("Honey",)
    assert q1.text == "How are the stars counted?"
    assert split.evaluable_questions == split.questions


def test_max_documents_keeps_first_documents_and_what_they_can_answer(tmp_path: Path) -> None:
    folder = write_folder(tmp_path)
    one = load_beir("test", folder, max_documents=1)
    assert one.limited and list(one.documents) == ["docA"]
    assert [p.passage_id for p in one.all_passages] == ["a1", "a2"]
    assert [q.question_id for q in one.questions] == ["q1"]
    two = load_beir("test", folder, max_documents=2)
    assert list(two.documents) == ["docA", "docB"]
    # q2's gold includes the passage 'solo', a third document: it cannot be answered and is dropped.
    assert [q.question_id for q in two.questions] == ["q1", "q5"]
    three = load_beir("test", folder, max_documents=3)
    full = load_beir("test", folder)
    assert three.documents == full.documents and three.questions == full.questions
    with pytest.raises(DataError, match="max_documents"):
        load_beir("test", folder, max_documents=0)


def test_ids_may_be_integers_and_fingerprint_follows_content(tmp_path: Path) -> None:
    corpus, queries, qrels = copies()
    corpus[0]["_id"] = 7
    qrels[2] = "q1\t7\t1"
    split = load_beir("test", write_folder(tmp_path, corpus, queries, qrels))
    assert split.passages("docA")[0].passage_id == "7" and split.questions[0].gold_ids == {"7", "a2"}
    before = split.fingerprint
    qrels[2] = "q1\t7\t0"
    assert load_beir("test", write_folder(tmp_path, corpus, queries, qrels)).fingerprint != before


# --- bad input -----------------------------------------------------------------------------------


def test_folder_without_corpus_or_queries(tmp_path: Path) -> None:
    for name in ("corpus.jsonl", "queries.jsonl"):
        folder = write_folder(tmp_path / name)
        (folder / name).unlink()
        with pytest.raises(DataError) as err:
            load_beir("test", folder)
        assert str(folder / name) in str(err.value) and "not found" in str(err.value)
    with pytest.raises(DataError, match="does not exist"):
        load_beir("test", tmp_path / "nowhere")


def test_missing_qrels_lists_the_splits_present(tmp_path: Path) -> None:
    folder = write_folder(tmp_path)
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataError) as err:
        load_beir("dev", folder)
    message = str(err.value)
    assert str(folder / "qrels" / "dev.tsv") in message
    assert "test" in message and "train" in message


def _set(rows: list[Any], i: int, value: Any) -> None:
    rows[i] = value


CORPUS_FILE, QUERIES_FILE, QRELS_FILE = "corpus.jsonl", "queries.jsonl", "qrels/test.tsv"
BAD = {
    # name: (edit of (corpus, queries, qrels), the file named, its line, what the message says)
    "unknown query id": (lambda c, q, r: r.append("q9\ta1\t1"), QRELS_FILE, 8, "'q9'"),
    "unknown corpus id": (lambda c, q, r: r.append("q1\tzz\t1"), QRELS_FILE, 8, "'zz'"),
    "duplicate passage id": (
        lambda c, q, r: c.append({"_id": "a1", "text": "again", "metadata": {"document": "docA"}}),
        CORPUS_FILE, 6, "appears twice (first on line 1)",
    ),
    "duplicate query id": (lambda c, q, r: q.append({"_id": "q1", "text": "again?"}), QUERIES_FILE, 6, "appears twice"),
    "document without passages": (
        lambda c, q, r: q[0]["metadata"].update(document="docZ"), QUERIES_FILE, 1, "'docZ'",
    ),
    "gold passage in another document": (lambda c, q, r: r.append("q1\tb1\t1"), QUERIES_FILE, 1, "b1"),
    "answers a string": (
        lambda c, q, r: q[0]["metadata"].update(answers="with a camera"), QUERIES_FILE, 1, "list of non-empty strings",
    ),
    "answers with a number": (
        lambda c, q, r: q[4]["metadata"].update(answers=["Honey", 3]), QUERIES_FILE, 5, "list of non-empty strings",
    ),
    "corpus line not JSON": (lambda c, q, r: _set(c, 2, '{"_id": "a2", "text": '), CORPUS_FILE, 3, "not valid JSON"),
    "queries line not JSON": (lambda c, q, r: _set(q, 1, "q2 is plain text"), QUERIES_FILE, 2, "not valid JSON"),
    "corpus line a JSON list": (lambda c, q, r: _set(c, 1, '["b1", "text"]'), CORPUS_FILE, 2, "expected an object"),
    "passage without text": (lambda c, q, r: c[3].pop("text"), CORPUS_FILE, 4, "'solo'"),
    "qrels without header": (lambda c, q, r: r.pop(0), QRELS_FILE, 1, "header"),
    "qrels score not an integer": (lambda c, q, r: _set(r, 2, "q1\ta1\t0.5"), QRELS_FILE, 3, "integer score"),
    "qrels line with two fields": (lambda c, q, r: _set(r, 3, "q2\tsolo"), QRELS_FILE, 4, "integer score"),
    "corpus line with a 5000-digit number": (
        lambda c, q, r: _set(c, 0, '{"_id": ' + "9" * 5000 + "}"), CORPUS_FILE, 1, "cannot be read as JSON",
    ),
    # the header is gone and the first data line is malformed: never taken for a header
    "qrels data line as header": (lambda c, q, r: (r.pop(0), _set(r, 0, "q1\ta2\tyes")), QRELS_FILE, 1, "header"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_file_and_line(tmp_path: Path, case: str) -> None:
    edit, name, line, needle = BAD[case]
    corpus, queries, qrels = copies()
    edit(corpus, queries, qrels)
    folder = write_folder(tmp_path, corpus, queries, qrels)
    with pytest.raises(DataError) as err:
        load_beir("test", folder)
    message = str(err.value)
    assert f"{folder / name}, line {line}:" in message, message
    assert needle in message, message


def test_unknown_document_is_an_error_with_max_documents_too(tmp_path: Path) -> None:
    """max_documents drops queries the kept documents cannot answer, never a query naming no document."""
    corpus, queries, qrels = copies()
    queries[4]["metadata"]["document"] = "docZ"
    folder = write_folder(tmp_path, corpus, queries, qrels)
    for limit in (None, 1):
        with pytest.raises(DataError, match=r"queries.jsonl, line 5: query q5 names document 'docZ'"):
            load_beir("test", folder, max_documents=limit)


def test_no_positive_qrels_line(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, qrels=["query-id\tcorpus-id\tscore", "q1\ta1\t0"])
    with pytest.raises(DataError, match="no query of split 'test' has a positive qrels line") as err:
        load_beir("test", folder)
    assert str(folder / "qrels" / "test.tsv") in str(err.value)


# --- QASPER round trip ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_dev(qasper_dev: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """QASPER dev written in the BEIR layout (python -m uae.table.export beir writes the same bytes:
    tests/table/test_export.py)."""
    folder = tmp_path_factory.mktemp("qasper-beir")
    write_beir([qasper_dev], folder)
    return folder


def test_round_trip_gives_the_same_records(exported_dev: Path, qasper_dev: Split) -> None:
    beir = load_beir("dev", exported_dev)
    native = qasper_dev.evaluable_questions  # questions without gold have no qrels line, so no split
    assert [q.question_id for q in beir.questions] == [q.question_id for q in native]
    for ours, theirs in zip(beir.questions, native):
        assert (ours.gold_ids, ours.document_id, ours.text) == (theirs.gold_ids, theirs.document_id, theirs.text)
        assert ours.gold_answers == tuple(dict.fromkeys(theirs.gold_answers))
    assert list(beir.documents) == list(qasper_dev.documents)
    assert [(p.passage_id, p.document_id, p.text) for p in beir.all_passages] == [
        (p.passage_id, p.document_id, p.text) for p in qasper_dev.all_passages
    ]


def _assert_same_evaluation(native: Split, beir: Split, retriever: Any) -> None:
    ours = evaluate_retriever(beir, retriever, scope="document")
    theirs = evaluate_retriever(native, retriever, scope="document")
    assert ours.question_ids == theirs.question_ids
    assert [q.gold_ids for q in beir.evaluable_questions] == [q.gold_ids for q in native.evaluable_questions]
    assert ours.n_questions == theirs.n_questions > 0
    assert ours.metrics.keys() == theirs.metrics.keys()
    for name, value in theirs.metrics.items():
        assert ours.metrics[name] == pytest.approx(value, abs=1e-9), name
    assert ours.ranked_ids == theirs.ranked_ids


def test_round_trip_bm25_metrics(exported_dev: Path, qasper_dev: Split) -> None:
    _assert_same_evaluation(qasper_dev, load_beir("dev", exported_dev), BM25Retriever())


def test_round_trip_dense_metrics(shared_data: Path, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    # The first 60 papers (about 3,000 passages, 180 questions): full dev costs the tiny encoder ~14 s per
    # pass on one idle core, and several times that on a busy CPU.
    native = load_qasper("dev", shared_data, max_documents=60, allow_hub=False)
    write_beir([native], tmp_path / "beir")
    beir = load_beir("dev", tmp_path / "beir")
    encoder = DualEncoder("tiny", local_path=tiny_encoder_dir, cache_dir=tmp_path)
    retriever = DenseRetriever(encoder, cache_dir=tmp_path / "cache", progress=False)
    assert beir.fingerprint != native.fingerprint  # two cache entries: neither split reads the other's embeddings
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32-wide model: a second thread saves nothing, and costs 10x on a busy CPU
    try:
        _assert_same_evaluation(native, beir, retriever)
    finally:
        torch.set_num_threads(threads)
    assert retriever.cache_hit is False


# --- fuzzing -------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")


def _load_or_data_error(folder: Path, max_documents: int | None) -> Split | None:
    try:
        split = load_beir("test", folder, max_documents=max_documents)
    except DataError as exc:
        assert str(folder) in str(exc)  # the message names the file
        return None
    # What loads is coherent.
    ids = [p.passage_id for p in split.all_passages]
    assert len(ids) == len(set(ids)) and split.questions
    for q in split.questions:
        assert q.document_id is None or q.document_id in split.documents
        assert q.gold_ids and q.gold_ids <= {p.passage_id for p in split.passages(q.document_id)}
        assert len(set(q.gold_answers)) == len(q.gold_answers) and all(a.strip() for a in q.gold_answers)
    return split


qrels_fields = st.one_of(st.sampled_from(["q1", "q2", "a1", "b2", "solo", "0", "1", "-1", "", "score"]), st.text(max_size=6))


@FUZZ
@given(
    data=st.data(),
    kind=st.sampled_from(["corpus rows", "queries rows", "qrels fields", "truncation", "byte flips"]),
    n=st.integers(1, 3),
    max_documents=st.sampled_from([None, 1, 2]),
)
def test_corrupted_folders_load_or_raise_data_error(
    data: st.DataObject, kind: str, n: int, max_documents: int | None
) -> None:
    corpus, queries, qrels = copies()
    if kind == "corpus rows":  # dropped fields and rows, wrong types: JSON-level edits of the rows
        corpus = mutate(corpus, data, n)
    elif kind == "queries rows":
        queries = mutate(queries, data, n)
    elif kind == "qrels fields":
        rows = [line.split("\t") for line in qrels]
        for _ in range(n):
            row = rows[data.draw(st.integers(0, len(rows) - 1))]
            j = data.draw(st.integers(0, max(len(row) - 1, 0)))
            action = data.draw(st.sampled_from(["replace", "drop", "add"]))
            if action == "add" or not row:
                row.insert(j, data.draw(qrels_fields))
            elif action == "drop":
                row.pop(j)
            else:
                row[j] = data.draw(qrels_fields)
        qrels = ["\t".join(row) for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp), [json.dumps(r) for r in corpus], [json.dumps(r) for r in queries], qrels)
        if kind in ("truncation", "byte flips"):  # damage to the bytes of one file
            path = folder / data.draw(st.sampled_from(FILES))
            content = bytearray(path.read_bytes())
            if kind == "truncation":
                content = content[: data.draw(st.integers(0, len(content) - 1))]
            else:
                for _ in range(n):
                    content[data.draw(st.integers(0, len(content) - 1))] ^= data.draw(st.integers(1, 255))
            path.write_bytes(bytes(content))
        _load_or_data_error(folder, max_documents)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    content=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | json_values.map(lambda v: json.dumps(v).encode()),
    name=st.sampled_from(FILES),
)
def test_random_file_contents(content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp))
        (folder / name).write_bytes(content)
        _load_or_data_error(folder, None)

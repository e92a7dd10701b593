"""The SQuAD v1.1 loader: counts on the shared files, gold paragraphs and answers, bad input, fuzzing.

Expected records are rebuilt here from the raw JSON (article -> paragraph -> question), not from the
loader's id scheme, so a loader that attached a question to the wrong paragraph would fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import json_values, mutate
from uae.core.errors import DataError
from uae.data.records import Split
from uae.data.squad import load_squad, parse_squad

TRAIN, DEV = "squad-train-v1.1.json", "squad-dev-v1.1.json"


def _raw(folder: Path, name: str = DEV) -> dict[str, Any]:
    return json.loads((folder / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def squad(squad_data: Path) -> dict[str, Split]:
    """Both shared splits, each parsed once for the module (read-only)."""
    return {name: load_squad(name, squad_data) for name in ("train", "dev")}


def test_counts_on_shared_files(squad: dict[str, Split]) -> None:
    # The shared README: train 24 articles, 1,048 paragraphs, 5,696 questions; dev 8, 331, 1,539.
    train, dev = squad["train"], squad["dev"]
    for split, counts, first, last in (
        (train, (24, 1048, 5696), "Super_Bowl_50", "Victoria_and_Albert_Museum"),
        (dev, (8, 331, 1539), "American_Broadcasting_Company", "Harvard_University"),
    ):
        assert (len(split.documents), len(split.all_passages), len(split.questions)) == counts
        titles = list(split.documents)
        assert (titles[0], titles[-1]) == (first, last)
        assert split.evaluable_questions == split.questions  # every question has its paragraph as gold
        assert not split.limited and split.dataset == "SQuAD"
    assert not set(train.documents) & set(dev.documents)  # split by article


@pytest.mark.parametrize("name", ["train", "dev"])
def test_gold_paragraph_and_answers_follow_the_raw_file(squad_data: Path, squad: dict[str, Split], name: str) -> None:
    raw = _raw(squad_data, f"squad-{name}-v1.1.json")
    split = squad[name]
    expected: dict[str, tuple[str, str, list[str]]] = {}
    for article in raw["data"]:
        contexts = [p["context"] for p in article["paragraphs"]]
        assert [p.text for p in split.passages(article["title"])] == contexts  # the article's paragraphs, in order
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                expected[qa["id"]] = (article["title"], paragraph["context"], [a["text"] for a in qa["answers"]])
    assert [q.question_id for q in split.questions] == list(expected)
    repeated = 0
    for q in split.questions:
        title, context, texts = expected[q.question_id]
        assert q.document_id == title  # the document is the article, named by its title
        (gold,) = q.gold_ids
        passages = {p.passage_id: p for p in split.passages(title)}
        assert passages[gold].text == context  # gold is the question's own paragraph
        # Answers: the annotators' strings, each kept once, in first-seen order; each a span of the paragraph.
        assert q.gold_answers == tuple(dict.fromkeys(texts))
        assert len(set(q.gold_answers)) == len(q.gold_answers)
        assert all(answer in passages[gold].text for answer in q.gold_answers)
        repeated += len(texts) > len(q.gold_answers)
    assert repeated > 0  # the files do repeat answers, so deduplication was exercised


def test_max_documents_keeps_first_articles(squad_data: Path, squad: dict[str, Split]) -> None:
    titles = [a["title"] for a in _raw(squad_data)["data"]]
    full = squad["dev"]
    split = load_squad("dev", squad_data, max_documents=2)
    assert split.limited and list(split.documents) == titles[:2]
    assert split.questions == [q for q in full.questions if q.document_id in titles[:2]]
    assert 0 < len(split.questions) < len(full.questions)
    with pytest.raises(DataError, match="max_documents"):
        load_squad("dev", squad_data, max_documents=0)


def test_other_version_is_refused(squad_data: Path, tmp_path: Path) -> None:
    raw = _raw(squad_data)
    raw["version"] = "2.0"
    (tmp_path / DEV).write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_squad("dev", tmp_path)
    assert str(tmp_path / DEV) in str(err.value) and "'2.0'" in str(err.value)


def test_missing_file_lists_what_the_folder_holds(squad_data: Path, tmp_path: Path) -> None:
    shutil.copy(squad_data / TRAIN, tmp_path / TRAIN)
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(DataError) as err:
        load_squad("dev", tmp_path)
    message = str(err.value)
    assert str(tmp_path / DEV) in message
    assert TRAIN in message and "notes.json" in message
    with pytest.raises(DataError, match="does not exist"):
        load_squad("dev", tmp_path / "nowhere")


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / DEV).write_text('{\n  "version": "1.1",\n  "data": [oops]\n}\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_squad("dev", tmp_path)
    message = str(err.value)
    assert str(tmp_path / DEV) in message and "not valid JSON" in message and "line 3" in message


def _small(squad_data: Path) -> dict[str, Any]:
    """Two articles of dev, two paragraphs each, two questions per paragraph: the fuzz's base."""
    raw = _raw(squad_data)
    data = []
    for article in raw["data"][:2]:
        paragraphs = [{**p, "qas": p["qas"][:2]} for p in article["paragraphs"][:2]]
        data.append({"title": article["title"], "paragraphs": paragraphs})
    return {"data": data, "version": raw["version"]}


BAD = {
    "article without title": (lambda raw: raw["data"][1].pop("title"), "data[1] has no 'title'"),
    "title twice": (lambda raw: raw["data"][1].update(title=raw["data"][0]["title"]), "appears twice"),
    "paragraph without context": (lambda raw: raw["data"][0]["paragraphs"][1].pop("context"), "paragraphs[1]"),
    "question without answers": (
        lambda raw: raw["data"][0]["paragraphs"][0]["qas"][1].update(answers=[]), "paragraphs[0].qas[1]"
    ),
    "question id twice": (
        lambda raw: raw["data"][1]["paragraphs"][0]["qas"][0].update(id=raw["data"][0]["paragraphs"][0]["qas"][0]["id"]),
        "appears twice",
    ),
    "answer not a string": (
        lambda raw: raw["data"][0]["paragraphs"][1]["qas"][0]["answers"][0].update(text=3), "answers[0]"
    ),
    "no data list": (lambda raw: raw.update(data={}), "'data' list"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_records_name_the_file_and_place(squad_data: Path, case: str) -> None:
    edit, needle = BAD[case]
    raw = _small(squad_data)
    edit(raw)
    with pytest.raises(DataError) as err:
        parse_squad(raw, split="dev", source="bad.json", fingerprint="f")
    assert str(err.value).startswith("bad.json") and needle in str(err.value), str(err.value)


# --- fuzzing, as tests/data/test_fuzz_loader.py fuzzes QASPER ------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _parse(raw: Any) -> Split | None:
    try:
        split = parse_squad(raw, split="dev", source="fuzz.json", fingerprint="f")
    except DataError as exc:
        assert "fuzz.json" in str(exc)  # the message names the input
        return None
    for q in split.questions:  # what loads is coherent: one gold paragraph of the question's own article
        assert q.document_id in split.documents and len(q.gold_ids) == 1
        assert q.gold_ids <= {p.passage_id for p in split.passages(q.document_id)}
        assert q.gold_answers and len(set(q.gold_answers)) == len(q.gold_answers)
    return split


@pytest.fixture(scope="module")
def small_raw(squad_data: Path) -> dict[str, Any]:
    return _small(squad_data)


def test_fuzz_base_loads(small_raw: dict[str, Any]) -> None:
    split = _parse(small_raw)
    assert split is not None and (len(split.documents), len(split.all_passages), len(split.questions)) == (2, 4, 8)


@FUZZ
@given(data=st.data(), n=st.integers(1, 4))
def test_mutated_documents(small_raw: dict[str, Any], data: st.DataObject, n: int) -> None:
    _parse(mutate(small_raw, data, n))


@FUZZ
@given(document=json_values)
def test_random_json(document: Any) -> None:
    _parse(document)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    content=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_random_files_on_disk(content: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / DEV).write_bytes(content)
    try:
        load_squad("dev", folder)
    except DataError as exc:
        assert str(folder / DEV) in str(exc)

"""Fuzzing the QASPER loader (hypothesis): any document, in either layout, loads or fails with DataError.

Documents are the tiny fixture with random parts replaced by random JSON (wrong types, missing keys,
empty lists, odd strings) or deleted, plus wholly random JSON and random bytes on disk. The loader may
accept a document (it is lenient where QASPER is: empty paragraphs, unaligned evidence) but must never
crash with anything but the project's own error, whose message names the file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import json_values, mutate
from tests.helpers.paths import FIXTURES
from uae.core.errors import DataError
from uae.data.qasper import load_qasper, parse_raw, raw_from_hf_rows
from uae.data.records import Split

RAW = json.loads((FIXTURES / "qasper_tiny_raw.json").read_text())
HF_ROWS = [json.loads(line) for line in (FIXTURES / "qasper_hf" / "validation.jsonl").read_text().splitlines() if line]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def parse(raw: Any) -> Split | None:
    try:
        return parse_raw(raw, split="dev", source="fuzz.json", fingerprint="f")
    except DataError as exc:
        assert "fuzz.json" in str(exc)  # the message names the input
        return None


@FUZZ
@given(data=st.data(), n=st.integers(1, 4))
def test_mutated_raw_documents(data: st.DataObject, n: int) -> None:
    split = parse(mutate(RAW, data, n))
    if split is not None:  # what loads is coherent: every gold id is a paragraph of its paper
        for q in split.questions:
            assert q.gold_ids <= {p.passage_id for p in split.passages(q.document_id)}


@FUZZ
@given(data=st.data(), n=st.integers(1, 4))
def test_mutated_hf_rows(data: st.DataObject, n: int) -> None:
    rows = mutate(HF_ROWS, data, n)
    try:
        raw = raw_from_hf_rows(rows, source="fuzz.json") if isinstance(rows, list) else rows
    except DataError as exc:
        assert "fuzz.json" in str(exc)
        return
    parse(raw)


@FUZZ
@given(document=json_values)
def test_random_json(document: Any) -> None:
    parse(document)
    if isinstance(document, list):
        try:
            raw_from_hf_rows(document, source="fuzz.json")
        except DataError:
            pass


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode) | json_values.map(lambda v: json.dumps(v).encode()),
    name=st.sampled_from(["qasper-dev-v0.3.json", "validation.jsonl", "dev.jsonl"]),
)
def test_random_files_on_disk(content: bytes, name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / name).write_bytes(content)
    try:
        load_qasper("dev", folder, allow_hub=False)
    except DataError as exc:
        assert name in str(exc)

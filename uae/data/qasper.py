"""Load QASPER into typed records, from the official raw files or the Hugging Face layout.

Sources, in order: ``qasper-{split}-v0.3.json`` in ``data_dir`` (the official raw layout); files in the
Hugging Face column layout in ``data_dir`` (``{split}.jsonl`` / ``{split}.parquet``, HF split names
accepted too); the ``allenai/qasper`` dataset on the hub only when the data config asks for it
(``data.loader.allow_hub=true``): a missing folder fails at once, naming every file looked for, instead
of spending half a minute on hub retries that were never going to find a local mistake. Both layouts go through one
parser, so they yield identical records. Every problem a user can fix raises :class:`DataError` naming
the file and what to do.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from uae.core.errors import DataError
from uae.data.files import file_sha256
from uae.data.records import AlignmentStats, Answer, Document, Passage, Question, Split

log = logging.getLogger(__name__)

RAW_FILE = "qasper-{split}-v{version}.json"
HF_DATASET = "allenai/qasper"
# Our split names follow the official files; the HF dataset calls dev "validation".
HF_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}
FIGURE_MARKER = "FLOAT SELECTED"


def load_qasper(
    split: str,
    data_dir: str | os.PathLike,
    *,
    version: str = "0.3",
    max_documents: int | None = None,
    allow_hub: bool | None = None,
) -> Split:
    """Load one split; ``max_documents`` keeps the first N papers in file order (for quick runs). The hub
    is tried only when ``allow_hub`` is true (None, the config's default, means no)."""
    data_dir = Path(data_dir)
    raw_path = data_dir / RAW_FILE.format(split=split, version=version)
    if raw_path.is_file():
        raw = _read_json(raw_path)
        fingerprint = file_sha256(raw_path)
        source = str(raw_path)
    elif (hf_path := _find_hf_file(data_dir, split)) is not None:
        raw = raw_from_hf_rows(_read_hf_rows(hf_path), source=str(hf_path))
        fingerprint = file_sha256(hf_path)
        source = str(hf_path)
    elif allow_hub:
        raw, fingerprint, source = _load_from_hub(split)
    else:
        raise DataError(_missing_split_message(split, data_dir, raw_path))
    return parse_raw(raw, split=split, source=source, fingerprint=fingerprint, max_documents=max_documents)


def parse_raw(
    raw: Any,
    *,
    split: str,
    source: str,
    fingerprint: str,
    max_documents: int | None = None,
) -> Split:
    """Turn the official raw layout ``{document_id: {title, abstract, full_text, qas}}`` into records."""
    if not isinstance(raw, Mapping):
        raise DataError(
            f"{source}: expected a JSON object mapping paper ids to papers (the official QASPER layout), "
            f"got {type(raw).__name__}. Check that this is a qasper-*-v0.3.json file."
        )
    if max_documents is not None and max_documents < 1:
        raise DataError(f"data.max_documents={max_documents}: must be a positive number of papers, or null for all.")
    papers: dict[str, Document] = {}
    questions: list[Question] = []
    stats = AlignmentStats()
    seen_questions: dict[str, str] = {}
    empty_papers: list[str] = []
    for document_id, entry in raw.items():
        if max_documents is not None and len(papers) >= max_documents:
            break
        paper = _parse_paper(document_id, entry, source)
        if not paper.passages:
            empty_papers.append(document_id)
        papers[document_id] = paper
        for qa in _field(entry, "qas", list, source, document_id):
            question = _parse_question(qa, paper, source, stats)
            if question.question_id in seen_questions:
                raise DataError(
                    f"{source}: question id {question.question_id} appears twice (papers "
                    f"{seen_questions[question.question_id]} and {document_id}). Question ids must be unique "
                    "within a split; the file is corrupt or two splits were concatenated."
                )
            seen_questions[question.question_id] = document_id
            questions.append(question)
    if not papers:
        raise DataError(f"{source}: the file holds no papers. Point data.dir at a complete QASPER split.")
    if len(empty_papers) == len(papers):
        raise DataError(
            f"{source}: none of its {len(papers)} papers has any paragraph of full text, so there is "
            "nothing to retrieve. The file is truncated or not QASPER."
        )
    if empty_papers:
        # The shared train file has one such paper (1801.07804); its questions have no evidence and
        # are simply not counted by retrieval metrics, so this warns instead of refusing the split.
        log.warning(
            "%s: %d paper(s) without any paragraph of full text (%s); their questions cannot be "
            "ranked and are left out of retrieval metrics.",
            source,
            len(empty_papers),
            ", ".join(empty_papers[:5]),
        )
    return Split(
        name=split, source=source, fingerprint=fingerprint, documents=papers, questions=questions,
        dataset="QASPER", alignment=stats, max_documents=max_documents,
    )


def gold_answer(answer: Mapping[str, Any], where: str) -> tuple[str, str]:
    """The gold answer string and type exactly as QASPER's official evaluator builds them."""
    if answer.get("unanswerable"):
        return "Unanswerable", "none"
    spans, free_form = answer.get("extractive_spans"), answer.get("free_form_answer")
    if spans and (not isinstance(spans, list) or not all(isinstance(x, str) for x in spans)):
        raise DataError(f"{where}: extractive_spans must be a list of strings, got {spans!r:.80}. The file is malformed.")
    if free_form and not isinstance(free_form, str):
        raise DataError(f"{where}: free_form_answer must be a string, got {free_form!r:.80}. The file is malformed.")
    if spans:
        return ", ".join(spans), "extractive"
    if free_form:
        return free_form, "abstractive"
    if answer.get("yes_no") is True:
        return "Yes", "boolean"
    if answer.get("yes_no") is False:
        return "No", "boolean"
    raise DataError(
        f"{where}: the answer has no extractive span, free-form answer or yes/no and is not marked "
        "unanswerable. The file is malformed; repair or drop this annotation."
    )


def raw_from_hf_rows(rows: Iterable[Mapping[str, Any]], source: str = "HF dataset") -> dict[str, Any]:
    """Convert rows in the ``allenai/qasper`` column layout to the official raw layout.

    HF stores each ``Sequence`` of dicts as a dict of lists (``full_text = {section_name: [...],
    paragraphs: [[...]]}``, ``qas = {question: [...], answers: [{answer: [...]}]}``); undoing that here
    lets one parser serve both layouts.
    """
    raw: dict[str, Any] = {}
    for i, row in enumerate(rows):
        try:
            full_text = row["full_text"]
            qas = row["qas"]
            sections = [
                {"section_name": name, "paragraphs": list(paragraphs)}
                for name, paragraphs in zip(full_text["section_name"], full_text["paragraphs"], strict=True)
            ]
            questions = []
            for j, question_id in enumerate(qas["question_id"]):
                answers = qas["answers"][j]["answer"]
                questions.append(
                    {
                        "question": qas["question"][j],
                        "question_id": question_id,
                        "answers": [{"answer": dict(a)} for a in answers],
                    }
                )
            if not isinstance(row["id"], str) or not row["id"]:
                raise ValueError(f"its id is {row['id']!r}, not a paper id")
            raw[row["id"]] = {
                "title": row.get("title") or "",
                "abstract": row.get("abstract") or "",
                "full_text": sections,
                "qas": questions,
            }
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise DataError(
                f"{source}: row {i} is not in the allenai/qasper column layout ({type(exc).__name__}: {exc}). "
                "Expected columns id, title, abstract, full_text{section_name, paragraphs}, "
                "qas{question, question_id, answers[{answer}]}."
            ) from exc
    return raw


def normalize_text(text: str) -> str:
    """Whitespace-insensitive form used to match evidence strings to paragraphs."""
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------------


def _parse_paper(document_id: str, entry: Any, source: str) -> Document:
    if not isinstance(entry, Mapping):
        raise DataError(f"{source}: paper {document_id} is a {type(entry).__name__}, expected an object.")
    passages: list[Passage] = []
    for section in _field(entry, "full_text", list, source, document_id):
        if not isinstance(section, Mapping) or not isinstance(section.get("paragraphs"), list):
            raise DataError(
                f"{source}: paper {document_id} has a full_text section without a 'paragraphs' list. "
                "The file is malformed."
            )
        name = section.get("section_name") or ""
        for text in section["paragraphs"]:
            if not isinstance(text, str):
                raise DataError(f"{source}: paper {document_id} has a paragraph that is not a string ({text!r:.80}).")
            if not text.strip():
                continue
            index = len(passages)
            passages.append(Passage(f"{document_id}/{index}", document_id, index, name, text))
    return Document(
        document_id=document_id,
        title=str(entry.get("title") or ""),
        abstract=str(entry.get("abstract") or ""),
        passages=tuple(passages),
    )


def _parse_question(qa: Any, paper: Document, source: str, stats: AlignmentStats) -> Question:
    where = f"{source}: paper {paper.document_id}"
    if not isinstance(qa, Mapping) or not isinstance(qa.get("question_id"), str) or not qa["question_id"]:
        raise DataError(f"{where} has a question without a question_id string. The file is malformed.")
    qid = qa["question_id"]
    where = f"{where}, question {qid}"
    text = qa.get("question")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where} has no question text. The file is malformed.")
    raw_answers = qa.get("answers")
    if not isinstance(raw_answers, list) or not raw_answers:
        raise DataError(
            f"{where} has no answers. Every QASPER question has at least one annotation; "
            "drop the question or repair the file."
        )
    by_text: dict[str, list[str]] = {}
    for passage in paper.passages:
        by_text.setdefault(normalize_text(passage.text), []).append(passage.passage_id)
    answers = []
    for k, item in enumerate(raw_answers):
        answer = item.get("answer") if isinstance(item, Mapping) else None
        if not isinstance(answer, Mapping):
            raise DataError(f"{where}: annotation {k} has no 'answer' object. The file is malformed.")
        answer_text, answer_type = gold_answer(answer, f"{where}, annotation {k}")
        raw_evidence = answer.get("evidence") or []
        if not isinstance(raw_evidence, list):
            raise DataError(f"{where}: annotation {k} has evidence that is not a list ({raw_evidence!r:.80}). The file is malformed.")
        evidence = tuple(e for e in raw_evidence if isinstance(e, str) and e.strip())
        evidence_ids: list[str] = []
        for string in evidence:
            stats.evidence += 1
            if string.startswith(FIGURE_MARKER):
                stats.figures_tables += 1
                continue
            matched = by_text.get(normalize_text(string))
            if matched:
                stats.aligned += 1
                evidence_ids.extend(pid for pid in matched if pid not in evidence_ids)
            else:
                stats.unaligned += 1
        answers.append(Answer(answer_text, answer_type, evidence, tuple(evidence_ids)))
    return Question(qid, paper.document_id, text, tuple(answers))


def _field(entry: Mapping[str, Any], name: str, kind: type, source: str, document_id: str) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind):
        raise DataError(
            f"{source}: paper {document_id} has no '{name}' {kind.__name__} (got {type(value).__name__}). "
            "The file is malformed or not in the official QASPER layout."
        )
    return value


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). The file is "
            "truncated or corrupt; fetch it again (make data) or point data.dir at a good copy."
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}). Check its permissions and encoding.") from exc


def _find_hf_file(data_dir: Path, split: str) -> Path | None:
    names = {split, HF_SPLIT_NAMES.get(split, split)}
    for name in sorted(names):
        for suffix in (".jsonl", ".parquet"):
            path = data_dir / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def _read_hf_rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # deferred: start-up speed

            return pq.read_table(path).to_pylist()
        rows = []
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"{path}: line {lineno} is not valid JSON ({exc.msg}). Each line must hold one "
                            "paper in the allenai/qasper column layout."
                        ) from exc
        return rows
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises a zoo of types for a bad parquet file
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]} ({exc}).") from exc


def _load_from_hub(split: str) -> tuple[dict[str, Any], str, str]:
    try:
        import datasets  # deferred: start-up speed

        dataset = datasets.load_dataset(HF_DATASET, split=HF_SPLIT_NAMES.get(split, split))
    except Exception as exc:
        raise DataError(
            f"QASPER split '{split}' is not in data.dir and the Hugging Face dataset {HF_DATASET} could not "
            f"be loaded ({type(exc).__name__}: {exc}). Put qasper-{split}-v0.3.json in data.dir "
            "(make data fetches it where the internet is reachable) or set UAE_DATA_DIR."
        ) from exc
    source = f"hf://{HF_DATASET}/{HF_SPLIT_NAMES.get(split, split)}"
    return raw_from_hf_rows(dataset, source=source), str(dataset._fingerprint), source


def _missing_split_message(split: str, data_dir: Path, raw_path: Path) -> str:
    looked = [raw_path] + [data_dir / f"{name}{suffix}" for name in sorted({split, HF_SPLIT_NAMES.get(split, split)})
                           for suffix in (".jsonl", ".parquet")]
    if not data_dir.is_dir():
        held = "the directory does not exist"
    else:
        files = sorted(p.name for p in data_dir.iterdir() if p.suffix in {".json", ".jsonl", ".parquet"})
        held = "it holds " + (", ".join(files) if files else "no data files")
    return (
        f"QASPER split '{split}' not found in data.dir={data_dir} ({held}). Looked for {looked[0]} (official "
        f"layout), then {', '.join(str(p) for p in looked[1:])} (Hugging Face layout); the Hugging Face hub "
        "was not tried (data.loader.allow_hub is not true). Run `make data` where the internet is reachable, or point "
        "data.dir= (or UAE_DATA_DIR) at a directory holding the QASPER files, or choose a split it holds "
        "(data.eval_split=), or set data.loader.allow_hub=true to load allenai/qasper from the hub."
    )

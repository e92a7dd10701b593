"""Load SQuAD v1.1 (official schema) into the generic records: the second dataset.

An article is a document and its paragraphs are the passages; each question was written about one
paragraph, which is its gold evidence, and the task is to rank the paragraphs of its own article.
Identical answer strings of different annotators are kept once: utility averages over distinct
answers (scoring a repeated string again would only weight it twice), and the reader's token F1 takes
the best annotator, which repeats do not change. Every problem a user can fix raises
:class:`DataError` naming the file and where in it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uae.core.errors import DataError
from uae.data.files import file_sha256
from uae.data.records import Answer, Document, Passage, Question, Split

FILE = "squad-{split}-v1.1.json"
VERSION = "1.1"


def load_squad(split: str, data_dir: str | os.PathLike, *, max_documents: int | None = None) -> Split:
    """Load ``squad-{split}-v1.1.json`` from ``data_dir``; ``max_documents`` keeps the first N articles."""
    path = Path(data_dir) / FILE.format(split=split)
    if not path.is_file():
        held = sorted(p.name for p in Path(data_dir).glob("*.json")) if Path(data_dir).is_dir() else None
        raise DataError(
            f"SQuAD split '{split}' not found: looked for {path}; "
            + ("the folder does not exist" if held is None else f"the folder holds {', '.join(held) or 'no .json file'}")
            + ". Point data.dir= (or UAE_SQUAD_DIR) at the folder of squad-{train,dev}-v1.1.json, or choose a split it "
            "holds (data.eval_split=)."
        )
    if max_documents is not None and max_documents < 1:
        raise DataError(f"data.max_documents={max_documents}: must be a positive number of articles, or null for all.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).") from exc
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
        raise DataError(f"{path}: cannot be read as JSON ({type(exc).__name__}).") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}). Check its permissions and encoding.") from exc
    return parse_squad(raw, split=split, source=str(path), fingerprint=file_sha256(path), max_documents=max_documents)


def parse_squad(raw: Any, *, split: str, source: str, fingerprint: str, max_documents: int | None = None) -> Split:
    """Turn ``{"version": "1.1", "data": [{"title", "paragraphs": [{"context", "qas"}]}]}`` into records."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("data"), list):
        raise DataError(f"{source}: expected an object with a 'data' list of articles (SQuAD's official schema).")
    if raw.get("version") != VERSION:
        raise DataError(
            f"{source}: SQuAD version {raw.get('version')!r}, expected {VERSION!r}. SQuAD 2.0 adds unanswerable "
            "questions and other fields this loader does not read; convert it to BEIR's layout (data=beir) instead."
        )
    documents: dict[str, Document] = {}
    questions: list[Question] = []
    seen: dict[str, str] = {}
    for a, article in enumerate(raw["data"]):
        if max_documents is not None and len(documents) >= max_documents:
            break
        where = f"{source}: data[{a}]"
        if not isinstance(article, Mapping) or not isinstance(article.get("title"), str) or not article["title"]:
            raise DataError(f"{where} has no 'title' string; every article needs one (it names the document).")
        title = article["title"]
        if title in documents:
            raise DataError(f"{where}: the title {title!r} appears twice; article titles must be unique in a split.")
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list) or not paragraphs:
            raise DataError(f"{where} ({title}) has no 'paragraphs' list, so nothing to retrieve.")
        passages: list[Passage] = []
        for i, paragraph in enumerate(paragraphs):
            here = f"{where}.paragraphs[{i}]"
            context = paragraph.get("context") if isinstance(paragraph, Mapping) else None
            if not isinstance(context, str) or not context.strip():
                raise DataError(f"{here} ({title}) has no 'context' text.")
            passage = Passage(f"{title}/{i}", title, i, "", context)
            passages.append(passage)
            qas = paragraph.get("qas", [])
            if not isinstance(qas, list):
                raise DataError(f"{here}: 'qas' must be a list of questions, got {type(qas).__name__}.")
            for j, qa in enumerate(qas):
                question = _parse_question(qa, passage, f"{here}.qas[{j}]")
                if question.question_id in seen:
                    raise DataError(
                        f"{here}.qas[{j}]: question id {question.question_id} appears twice (also in "
                        f"{seen[question.question_id]}); ids must be unique within a split."
                    )
                seen[question.question_id] = title
                questions.append(question)
        documents[title] = Document(title, title, "", tuple(passages))
    if not documents:
        raise DataError(f"{source}: the file holds no articles.")
    return Split(
        name=split, source=source, fingerprint=fingerprint, documents=documents, questions=questions,
        dataset="SQuAD", max_documents=max_documents,
    )


def _parse_question(qa: Any, passage: Passage, where: str) -> Question:
    if not isinstance(qa, Mapping) or not isinstance(qa.get("id"), str) or not qa["id"]:
        raise DataError(f"{where} has no 'id' string.")
    text = qa.get("question")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where} (id {qa['id']}) has no question text.")
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers:
        raise DataError(f"{where} (id {qa['id']}) has no answers; SQuAD v1.1 questions have one to three.")
    strings: list[str] = []
    for k, answer in enumerate(answers):
        value = answer.get("text") if isinstance(answer, Mapping) else None
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}.answers[{k}] (id {qa['id']}) has no answer 'text' string.")
        if value not in strings:
            strings.append(value)
    evidence = (passage.passage_id,)
    return Question(
        qa["id"], passage.document_id, text,
        tuple(Answer(s, "extractive", (passage.text,), evidence) for s in strings),
    )

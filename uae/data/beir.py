"""Load a dataset in BEIR's folder layout, so that users' own data needs no code.

    DIR/corpus.jsonl         {"_id", "title", "text", "metadata": {"document": ...}}
    DIR/queries.jsonl        {"_id", "text", "metadata": {"answers": [...], "document": ...}}
    DIR/qrels/<split>.tsv    a header line, then query-id<TAB>corpus-id<TAB>score

BEIR's corpus is shared by every split; a split's queries are those with a positive qrels line.
``metadata.document`` (optional) groups passages into documents: a query that names one ranks that
document's passages (QASPER's and SQuAD's setting), a query without one ranks the whole corpus.
``metadata.answers`` (optional) feeds the utility stage and the reader; a query without answers is
evaluated but gets no utilities. Every problem is a :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uae.core.errors import DataError
from uae.data.files import file_sha256, read_jsonl
from uae.data.records import Answer, Document, Passage, Question, Split
from uae.storage.atomic import atomic_path

log = logging.getLogger(__name__)

CORPUS, QUERIES, QRELS = "corpus.jsonl", "queries.jsonl", "qrels"


def load_beir(split: str, data_dir: str | os.PathLike, *, max_documents: int | None = None) -> Split:
    """Split ``split`` of the BEIR folder ``data_dir``; ``max_documents`` keeps the first N documents
    (``metadata.document`` groups, in corpus order) and the queries that can still be answered."""
    folder = Path(data_dir)
    corpus_path, queries_path, qrels_path = folder / CORPUS, folder / QUERIES, folder / QRELS / f"{split}.tsv"
    for path in (corpus_path, queries_path):
        if not path.is_file():
            raise DataError(
                f"{path}: not found. A BEIR folder (data=beir data.dir=...) holds {CORPUS}, {QUERIES} and "
                f"{QRELS}/<split>.tsv" + ("" if folder.is_dir() else f"; {folder} does not exist") + "."
            )
    if not qrels_path.is_file():
        held = sorted(p.stem for p in (folder / QRELS).glob("*.tsv")) if (folder / QRELS).is_dir() else []
        raise DataError(
            f"{qrels_path}: not found, so split '{split}' has no queries. The folder has qrels for: "
            f"{', '.join(held) or 'no split'}; choose one with data.train_split= / data.eval_split=."
        )
    if max_documents is not None and max_documents < 1:
        raise DataError(f"data.max_documents={max_documents}: must be a positive number of documents, or null for all.")
    documents, corpus_ids, all_documents = _read_corpus(corpus_path, max_documents)
    passage_document = {p.passage_id: doc.document_id for doc in documents.values() for p in doc.passages}
    queries = read_queries(queries_path)
    gold = _read_qrels(qrels_path, queries, corpus_ids, corpus_path)
    questions = []
    for qid, (text, answers, document_id, lineno) in queries.items():
        if qid not in gold:
            continue
        where = f"{queries_path}, line {lineno}"
        if document_id is not None and document_id not in all_documents:
            raise DataError(
                f"{where}: query {qid} names document {document_id!r}, which has no passages in {corpus_path} "
                "(no corpus line has metadata.document equal to it)."
            )
        kept = (document_id is None or document_id in documents) and all(g in passage_document for g in gold[qid])
        if max_documents is not None and not kept:  # only what the kept documents can answer
            continue
        if document_id is not None:
            outside = [pid for pid in gold[qid] if passage_document[pid] != document_id]
            if outside:
                raise DataError(
                    f"{where}: query {qid} ranks document {document_id!r}, but its qrels name passage {outside[0]} "
                    f"of document {passage_document[outside[0]]!r}, which it can never retrieve."
                )
        questions.append(
            Question(qid, document_id, text, tuple(Answer(a, "abstractive", (), ()) for a in answers), tuple(gold[qid]))
        )
    if not questions:
        raise DataError(f"{qrels_path}: no query of split '{split}' has a positive qrels line (score > 0).")
    return Split(
        name=split,
        source=str(folder),
        fingerprint=file_sha256(corpus_path, queries_path, qrels_path),
        documents=documents,
        questions=questions,
        dataset=f"BEIR {folder.name}",
        max_documents=max_documents,
    )


def _read_corpus(path: Path, max_documents: int | None) -> tuple[dict[str, Document], set[str], set[str]]:
    """Passages grouped by ``metadata.document`` in order of first appearance (a passage without one is
    a document of its own), each group's passages in file order; every passage id and document of the file."""
    grouped: dict[str, list[tuple[str, str, str]]] = {}
    seen: dict[str, int] = {}
    all_documents: set[str] = set()
    for lineno, row in read_jsonl(path, 'one passage: {"_id", "title", "text", "metadata": {"document": ...}}'):
        where = f"{path}, line {lineno}"
        pid = _id(row, where)
        if pid in seen:
            raise DataError(f"{where}: passage id {pid!r} appears twice (first on line {seen[pid]}); ids must be unique.")
        seen[pid] = lineno
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: passage {pid!r} has no 'text' string; there would be nothing to retrieve.")
        title = row.get("title") or ""
        if not isinstance(title, str):
            raise DataError(f"{where}: passage {pid!r} has a 'title' that is not a string.")
        document = _metadata(row, where).get("document", pid)
        if not isinstance(document, str) or not document:
            raise DataError(f"{where}: passage {pid!r} has a metadata.document that is not a non-empty string.")
        all_documents.add(document)
        if document not in grouped and max_documents is not None and len(grouped) >= max_documents:
            continue
        grouped.setdefault(document, []).append((pid, title, text))
    if not grouped:
        raise DataError(f"{path}: holds no passages.")
    documents = {
        doc: Document(
            doc,
            rows[0][1],
            "",
            tuple(Passage(pid, doc, i, title, text) for i, (pid, title, text) in enumerate(rows)),
        )
        for doc, rows in grouped.items()
    }
    return documents, set(seen), all_documents


def read_queries(path: Path) -> dict[str, tuple[str, tuple[str, ...], str | None, int]]:
    """query id -> (text, answers, document or None, line)."""
    queries: dict[str, tuple[str, tuple[str, ...], str | None, int]] = {}
    for lineno, row in read_jsonl(path, 'one query: {"_id", "text", "metadata": {"answers": [...], "document": ...}}'):
        where = f"{path}, line {lineno}"
        qid = _id(row, where)
        if qid in queries:
            raise DataError(f"{where}: query id {qid!r} appears twice (first on line {queries[qid][3]}); ids must be unique.")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: query {qid!r} has no 'text' string.")
        metadata = _metadata(row, where)
        answers = metadata.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise DataError(
                f"{where}: query {qid!r} has metadata.answers {answers!r:.80}; it must be a list of non-empty strings."
            )
        document = metadata.get("document")
        if document is not None and (not isinstance(document, str) or not document):
            raise DataError(f"{where}: query {qid!r} has a metadata.document that is not a non-empty string.")
        queries[qid] = (text, tuple(dict.fromkeys(answers)), document, lineno)
    return queries


def _read_qrels(path: Path, queries: Mapping[str, Any], passages: set[str], corpus_path: Path) -> dict[str, list[str]]:
    """query id -> passages judged relevant (score > 0), in file order; every id must exist."""
    gold: dict[str, list[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({exc}).") from exc
    header = lines[0].split("\t") if lines else []
    if len(header) != 3 or _score(header) is not None or header[0] in queries:
        raise DataError(
            f"{path}, line 1: expected the header line query-id<TAB>corpus-id<TAB>score (BEIR's qrels format), "
            f"got {lines[0] if lines else ''!r:.80}."
        )
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        score = _score(fields)
        if len(fields) != 3 or score is None:
            raise DataError(f"{path}, line {lineno}: expected query-id<TAB>corpus-id<TAB>integer score, got {line!r:.80}.")
        qid, pid = fields[0], fields[1]
        if qid not in queries:
            raise DataError(f"{path}, line {lineno}: query id {qid!r} is not in {path.parent.parent / QUERIES}.")
        if pid not in passages:
            raise DataError(f"{path}, line {lineno}: corpus id {pid!r} is not in {corpus_path}.")
        if score > 0 and pid not in gold.setdefault(qid, []):
            gold[qid].append(pid)
    return {qid: pids for qid, pids in gold.items() if pids}


def _score(fields: list[str]) -> int | None:
    try:
        return int(fields[2]) if len(fields) == 3 else None
    except ValueError:
        return None


def _id(row: Mapping[str, Any], where: str) -> str:
    value = row.get("_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: no '_id' (a non-empty string).")
    return value


def _metadata(row: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise DataError(f"{where}: 'metadata' must be an object, got {type(metadata).__name__}.")
    return metadata


def write_beir(splits: list[Split], folder: Path) -> dict[str, int]:
    """Write ``splits`` into one BEIR folder: a shared corpus (their documents' passages), every question
    in queries.jsonl (answers and document in metadata) and qrels/<split>.tsv with the gold passages.

    Questions without gold passages are written to queries.jsonl but have no qrels line, so (by BEIR's
    rule) they belong to no split when read back. Each file is written atomically. Returns counts."""
    corpus: dict[str, dict[str, Any]] = {}
    queries: dict[str, dict[str, Any]] = {}
    for split in splits:
        for doc in split.documents.values():
            for p in doc.passages:
                row = {"_id": p.passage_id, "title": p.section, "text": p.text, "metadata": {"document": doc.document_id}}
                if corpus.setdefault(p.passage_id, row) != row:
                    raise DataError(f"passage {p.passage_id} has different texts in two splits; they cannot share a corpus.")
        for q in split.questions:
            metadata: dict[str, Any] = {"answers": list(q.gold_answers)}
            if q.document_id is not None:
                metadata["document"] = q.document_id
            queries[q.question_id] = {"_id": q.question_id, "text": q.text, "metadata": metadata}
    _write_lines(folder / CORPUS, [json.dumps(row, ensure_ascii=False) for row in corpus.values()])
    _write_lines(folder / QUERIES, [json.dumps(row, ensure_ascii=False) for row in queries.values()])
    judged = 0
    for split in splits:
        lines = ["query-id\tcorpus-id\tscore"]
        for q in split.questions:
            # file order of the document, so a read-back split lists gold as the loader found it
            order = {p.passage_id: i for i, p in enumerate(split.passages(q.document_id))}
            lines += [f"{q.question_id}\t{pid}\t1" for pid in sorted(q.gold_ids, key=lambda pid: order.get(pid, -1))]
        judged += len(lines) - 1
        _write_lines(folder / QRELS / f"{split.name}.tsv", lines)
    return {"passages": len(corpus), "queries": len(queries), "qrels": judged}


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

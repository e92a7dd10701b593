"""SQuAD in an open corpus: its questions rank every SQuAD paragraph and QASPER's as distractors.

Within-article retrieval (``data=squad``) asks which of ~40 paragraphs answers a question; a user's
corpus has millions. This loader keeps SQuAD's questions and gold paragraphs and puts them in one
corpus of every paragraph of both SQuAD split files and both QASPER split files (about 61k passages):
each question ranks all of it (``document_id=None``, open retrieval), so negatives are mined from
the whole corpus and an approximate index has something to approximate. Both splits share the
corpus, so the passage embeddings of one encoder are computed once for train (mining) and dev
(evaluation). ``max_documents`` keeps the questions of the split's first N SQuAD articles; the corpus
stays whole, because cutting it would change the task, not just its size.

QASPER papers are distractors only: their questions are not loaded, and nothing marks them gold.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import replace
from pathlib import Path

from uae.core.errors import DataError
from uae.data.qasper import load_qasper
from uae.data.records import Document, Split
from uae.data.squad import load_squad

SQUAD_SPLITS = ("train", "dev")
QASPER_SPLITS = ("train", "dev")


def load_squad_open(
    split: str,
    data_dir: str | os.PathLike,
    *,
    qasper_dir: str | os.PathLike,
    max_documents: int | None = None,
) -> Split:
    """SQuAD ``split``'s questions (of its first ``max_documents`` articles) over the open corpus."""
    if split not in SQUAD_SPLITS:
        raise DataError(
            f"squad_open: split {split!r} is not one of {', '.join(SQUAD_SPLITS)} (the held-out SQuAD test articles "
            "are not here, and the corpus is built from the train and dev files)."
        )
    squad, documents, fingerprint, names = _corpus(*_signature(data_dir, qasper_dir))
    keep = set(list(squad[split].documents)[:max_documents])  # [:None]: every article
    questions = [replace(q, document_id=None) for q in squad[split].questions if q.document_id in keep]
    return Split(
        name=split,
        source=f"{squad[split].source} (corpus: {names})",
        fingerprint=fingerprint,
        documents=documents,
        questions=questions,
        dataset="SQuAD-open",
        max_documents=max_documents,
        corpus="squad_open",
    )


def _signature(data_dir: str | os.PathLike, qasper_dir: str | os.PathLike) -> tuple[str, str, tuple[tuple[int, int], ...]]:
    """The folders and their files' (size, mtime): what :func:`_corpus` is cached by, so a changed file is read again."""
    files = [Path(data_dir) / f"squad-{n}-v1.1.json" for n in SQUAD_SPLITS] + [Path(qasper_dir) / f"qasper-{n}-v0.3.json" for n in QASPER_SPLITS]
    stats = tuple((f.stat().st_size, f.stat().st_mtime_ns) if f.is_file() else (-1, -1) for f in files)
    return str(Path(data_dir).resolve()), str(Path(qasper_dir).resolve()), stats


@functools.lru_cache(maxsize=2)
def _corpus(data_dir: str, qasper_dir: str, _stats: tuple[tuple[int, int], ...]) -> tuple[dict[str, Split], dict[str, Document], str, str]:
    """The four files parsed once per process (a run loads train and dev over the same corpus): SQuAD's splits,
    every document, the corpus's fingerprint and its files' names."""
    parts = [load_squad(n, data_dir) for n in SQUAD_SPLITS] + [load_qasper(n, qasper_dir) for n in QASPER_SPLITS]
    documents: dict[str, Document] = {}
    owner: dict[str, str] = {}
    for part in parts:
        for doc_id, doc in part.documents.items():
            key = f"{part.dataset} {part.name}"
            if doc_id in documents:
                raise DataError(
                    f"squad_open: document {doc_id!r} appears in {owner[doc_id]} and in {key}; passage ids would clash. "
                    "Rename one of them in its file."
                )
            owner[doc_id] = key
            documents[doc_id] = doc
    fingerprint = hashlib.sha256("".join(part.fingerprint for part in parts).encode()).hexdigest()
    squad = {part.name: part for part in parts[: len(SQUAD_SPLITS)]}
    return squad, documents, fingerprint, ", ".join(Path(part.source).name for part in parts)

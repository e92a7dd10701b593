"""Typed records shared by every stage, whatever dataset a split came from.

A split is documents split into passages, and questions with answer strings and, where annotated,
gold passage ids. Each loader (QASPER, SQuAD, a BEIR folder) turns its files into these records, so
retrieval, the utility stage, training and evaluation never know which dataset they run on. Records
are frozen: a stage that needs other data builds new records instead of mutating shared ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    """The unit that is retrieved and scored (a QASPER paragraph, a SQuAD paragraph, a BEIR document).

    ``passage_id`` is unique across a split and stable across runs: caches and tables are keyed by it.
    """

    passage_id: str
    document_id: str
    index: int
    section: str
    text: str


@dataclass(frozen=True)
class Answer:
    """One annotator's answer.

    ``text`` is the gold answer string (for QASPER, as its official evaluator builds it; "Unanswerable"
    for unanswerable answers). ``evidence_ids`` are the passages this annotator marked as evidence.
    """

    text: str
    answer_type: str  # "extractive" | "abstractive" | "boolean" | "none"
    evidence: tuple[str, ...]
    evidence_ids: tuple[str, ...]

    @property
    def unanswerable(self) -> bool:
        return self.answer_type == "none"


@dataclass(frozen=True)
class Question:
    """A question, with every annotator's answer.

    ``document_id`` names the document whose passages it ranks (within-document retrieval, as in QASPER
    and SQuAD); ``None`` means it ranks the whole split (open retrieval, a BEIR query without one).
    ``evidence_ids`` are gold passages given for the question as a whole rather than per annotator
    (BEIR's qrels), so that a question without answers can still be evaluated.
    """

    question_id: str
    document_id: str | None
    text: str
    answers: tuple[Answer, ...]
    evidence_ids: tuple[str, ...] = ()

    @property
    def gold_ids(self) -> frozenset[str]:
        """Gold evidence: the union over annotators of their evidence passages, and the question's own."""
        return frozenset(pid for answer in self.answers for pid in answer.evidence_ids) | frozenset(self.evidence_ids)

    @property
    def gold_answers(self) -> tuple[str, ...]:
        """The answer strings that utility scoring and the reader score against (answerable ones only)."""
        return tuple(a.text for a in self.answers if not a.unanswerable)

    @property
    def answerable(self) -> bool:
        return bool(self.gold_answers)


@dataclass(frozen=True)
class Document:
    document_id: str
    title: str
    abstract: str
    passages: tuple[Passage, ...]


@dataclass
class AlignmentStats:
    """How the split's evidence strings mapped onto passages (for datasets that give evidence as text)."""

    evidence: int = 0
    aligned: int = 0
    figures_tables: int = 0
    unaligned: int = 0

    def __str__(self) -> str:
        return (
            f"{self.evidence} evidence strings: {self.aligned} aligned to a paragraph, "
            f"{self.figures_tables} figures/tables (FLOAT SELECTED), {self.unaligned} not aligned"
        )


@dataclass
class Split:
    """A loaded split: documents in file order, their questions, and where they came from.

    ``fingerprint`` identifies the source content (a hash of the files) so that caches derived from the
    split can refuse a different one. ``dataset`` names it in messages ("QASPER", "SQuAD", a folder).
    ``max_documents`` is the document limit it was loaded with (``data.max_documents``; None: all of
    them). It travels with the split so that whatever derives from it (a utility table's file name, the
    tolerance for a full table's rows of documents not loaded) follows the split, not the config.
    ``corpus`` names the passages when several splits share them (an open corpus that train and dev
    questions both rank): caches of its passages (embeddings, indexes) are then named by it, not by the
    split, so one encoding serves every split.
    """

    name: str
    source: str
    fingerprint: str
    documents: dict[str, Document]
    questions: list[Question]
    dataset: str = "dataset"
    alignment: AlignmentStats | None = None
    max_documents: int | None = None
    corpus: str | None = None
    _all_passages: tuple[Passage, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def cache_name(self) -> str:
        """The name of this split's passages in cache file names: the shared corpus's, else the split's."""
        return self.corpus or self.name

    @property
    def limited(self) -> bool:
        """Loaded with a document limit: a table made for the full split has rows this split cannot explain."""
        return self.max_documents is not None

    def passages(self, document_id: str | None) -> tuple[Passage, ...]:
        """A document's passages; ``None`` (a question without a document) means every passage."""
        if document_id is None:
            return self.all_passages
        return self.documents[document_id].passages

    @property
    def all_passages(self) -> tuple[Passage, ...]:
        """Every passage of the split, each document's contiguous, in file order."""
        if self._all_passages is None:
            self._all_passages = tuple(p for doc in self.documents.values() for p in doc.passages)
        return self._all_passages

    @property
    def evaluable_questions(self) -> list[Question]:
        """Questions with at least one gold passage: those retrieval metrics count."""
        return [q for q in self.questions if q.gold_ids]

    def summary(self) -> str:
        n_passages = len(self.all_passages)
        text = (
            f"{self.dataset} {self.name}: {len(self.documents)} documents, {n_passages} passages, "
            f"{len(self.questions)} questions ({len(self.evaluable_questions)} with gold passages)"
        )
        return text + (f"; {self.alignment}" if self.alignment is not None else "")


@dataclass(frozen=True)
class TrainingGroup:
    """One question and its scored candidate set, in the candidate order of its utility table."""

    question_id: str
    query: str
    passage_ids: tuple[str, ...]
    passages: tuple[str, ...]
    utility: tuple[float, ...]
    gold: tuple[bool, ...]

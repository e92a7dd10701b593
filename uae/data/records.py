"""Typed QASPER records shared by every stage.

Both input layouts (official raw JSON and the Hugging Face ``allenai/qasper`` columns) are turned into
these records, so nothing downstream knows which layout a split came from. Records are frozen: a
stage that needs other data builds new records instead of mutating shared ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    """One paragraph of a paper's full text: the unit that is retrieved and scored.

    ``passage_id`` is ``"{paper_id}/{index}"`` so that it is unique across a split and stable across runs.
    """

    passage_id: str
    paper_id: str
    index: int
    section: str
    text: str


@dataclass(frozen=True)
class Answer:
    """One annotator's answer.

    ``text`` is the gold answer string as QASPER's official evaluator builds it: extractive spans joined
    by ", ", else the free-form answer, else "Yes"/"No"; "Unanswerable" for unanswerable answers.
    ``evidence_ids`` are the passages that this annotator's evidence strings were aligned to.
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
    """A question about one paper, with every annotator's answer."""

    question_id: str
    paper_id: str
    text: str
    answers: tuple[Answer, ...]

    @property
    def gold_ids(self) -> frozenset[str]:
        """Gold evidence: the union over annotators of aligned evidence paragraphs."""
        return frozenset(pid for answer in self.answers for pid in answer.evidence_ids)

    @property
    def gold_answers(self) -> tuple[str, ...]:
        """The answer strings that utility scoring and the reader score against (answerable ones only)."""
        return tuple(a.text for a in self.answers if not a.unanswerable)

    @property
    def answerable(self) -> bool:
        return bool(self.gold_answers)


@dataclass(frozen=True)
class Paper:
    paper_id: str
    title: str
    abstract: str
    passages: tuple[Passage, ...]


@dataclass
class AlignmentStats:
    """How the split's evidence strings mapped onto paragraphs (reported by every load)."""

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
class QasperSplit:
    """A loaded split: papers in file order, their questions, and where they came from.

    ``fingerprint`` identifies the source content (a hash of the file, or of the HF dataset's
    fingerprint) so that caches derived from the split can refuse a different one.
    """

    name: str
    source: str
    fingerprint: str
    papers: dict[str, Paper]
    questions: list[Question]
    alignment: AlignmentStats = field(default_factory=AlignmentStats)

    def passages(self, paper_id: str) -> tuple[Passage, ...]:
        return self.papers[paper_id].passages

    @property
    def evaluable_questions(self) -> list[Question]:
        """Questions with at least one aligned evidence paragraph: those retrieval metrics count."""
        return [q for q in self.questions if q.gold_ids]

    def summary(self) -> str:
        n_passages = sum(len(p.passages) for p in self.papers.values())
        return (
            f"QASPER {self.name}: {len(self.papers)} papers, {n_passages} paragraphs, "
            f"{len(self.questions)} questions ({len(self.evaluable_questions)} with aligned evidence); "
            f"{self.alignment}"
        )

"""The fit stage's hard labels (``train.labels``): which questions carry which positives.

A utility table's gold mask is the annotated evidence. ``train.labels`` replaces it before training:

- ``evidence`` keeps it for a seeded, nested ``fraction`` of the questions and clears it for the
  rest. With ``table`` (a gold-first table of the same split and teacher) the labelled questions
  train on that table's groups instead: their evidence is then in their candidate set as well as
  in their mask, while unlabelled questions keep their label-free sets and never touch it.
- ``answer_overlap``: the paragraph holding the gold answer (:mod:`uae.data.label_rules`), put in the
  candidate set when the set lacks it; questions without one have no positive. A table built with
  ``candidates.answer_overlap=true`` already holds (and scored) it, so a utility loss may combine
  it with the teacher (``loss.mix``); inserting unscored passages is refused for such a loss.
- ``teacher_argmax``: the teacher's best candidate.
- ``none``: no hard label at all (label-free UAE; guarantees ``loss.mix`` cannot read annotation).

The default (``evidence``, fraction 1, no table) leaves the groups as the table made them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from uae.core.config import project_path
from uae.core.errors import UAEError
from uae.data.label_rules import answer_overlap_labels as overlap_labels
from uae.data.label_rules import labelled_questions, positives_mask, teacher_argmax
from uae.data.records import Question, Split, TrainingGroup
from uae.retrieval.bm25 import BM25Retriever
from uae.stages.tables import document_rankings
from uae.storage.fingerprint import fingerprint
from uae.table.groups import training_groups
from uae.table.read import read_table_spec

log = logging.getLogger("uae.run")

SOURCES = ("evidence", "answer_overlap", "teacher_argmax", "none")


def apply_labels(cfg: DictConfig, split: Split, groups: list[TrainingGroup]) -> tuple[list[TrainingGroup], dict[str, Any]]:
    """The groups with ``train.labels``' positives as their gold mask, and what was done (for results.json)."""
    labels = cfg.train.get("labels") or {}
    source = labels.get("source", "evidence")
    fraction = float(labels.get("fraction", 1.0))
    if source not in SOURCES:
        raise UAEError(f"train.labels.source={source!r}: use one of {', '.join(SOURCES)}.")
    if not 0.0 <= fraction <= 1.0:
        raise UAEError(f"train.labels.fraction={fraction}: must be in [0, 1].")
    if source != "evidence" and (fraction != 1.0 or labels.get("table")):
        raise UAEError(
            f"train.labels.fraction and train.labels.table apply to source=evidence only, not {source}: "
            "leave them at 1.0 and null."
        )
    record: dict[str, Any] = {"source": source, "fraction": fraction, "seed": int(labels.get("seed", 0))}
    if source == "evidence":
        groups = _evidence(split, groups, fraction, record, labels.get("table"))
    elif source == "none":
        groups = [_clear(g) for g in groups]
    elif source == "teacher_argmax":
        groups = [replace(g, gold=positives_mask(g.passage_ids, {teacher_argmax(g.passage_ids, g.utility)})) for g in groups]
    else:
        groups = _answer_overlap(split, groups, record, float(labels["min_overlap"]), int(labels["max_positives"]))
        if record["inserted"] and not cfg.loss.get("needs_gold"):
            raise UAEError(
                f"train.labels.source=answer_overlap put {record['inserted']} passages the teacher did not score "
                f"into the candidate sets, whose utilities loss={cfg.loss.name} would read: use a hard-label loss "
                "(loss=infonce), or a table whose sets hold the overlap paragraphs (candidates.answer_overlap=true, "
                "the same train.labels.min_overlap and max_positives; +experiment=qasper_label_free_overlap)."
            )
    record["with_positive"] = sum(any(g.gold) for g in groups)
    record["groups"] = len(groups)
    log.info("fit: labels %s", record)
    return groups, record


ANSWER_TYPES = ("extractive", "abstractive", "boolean", "none")


def skip_answer_types(split: Split, groups: list[TrainingGroup], types: list[str]) -> tuple[list[TrainingGroup], int]:
    """The groups less those whose question's scored answers are all of ``types``; how many were left out.

    Perplexity says little about which paragraph supports "Yes" (SmolLM2's best candidate is the evidence
    for 30% of yes/no questions against 88% of extractive ones, RESULTS.md): such a teacher's targets
    are mostly its noise. Only answerable answers count, as only they were scored.
    """
    unknown = sorted(set(types) - set(ANSWER_TYPES))
    if unknown:
        raise UAEError(f"train.skip_answer_types: {', '.join(unknown)} unknown; use some of {', '.join(ANSWER_TYPES)}.")
    if not types:
        return groups, 0
    questions = {q.question_id: q for q in split.questions}
    kept = [
        g for g in groups
        if not all(a.answer_type in types for a in questions[g.question_id].answers if not a.unanswerable)
    ]  # fmt: skip
    return kept, len(groups) - len(kept)


def _clear(group: TrainingGroup) -> TrainingGroup:
    return replace(group, gold=(False,) * len(group.passage_ids))


def _evidence(
    split: Split, groups: list[TrainingGroup], fraction: float, record: dict[str, Any], table: str | None
) -> list[TrainingGroup]:
    labelled = labelled_questions([g.question_id for g in groups], fraction, record["seed"])
    record["labelled"] = len(labelled)
    if table is None or not labelled:
        return [g if g.question_id in labelled else _clear(g) for g in groups]
    if not Path(table).is_file():
        raise UAEError(f"train.labels.table={table}: no such file (a gold-first utility table of {split.name}).")
    # the table must cover every question (it is checked as a whole); only the labelled ones use it
    replaced = {g.question_id: g for g in training_groups(split, Path(table), [g.question_id for g in groups])}
    # recorded as fit records its own table: the path inside the project and the spec's fingerprint
    record["table"] = project_path(table)
    record["table_spec"] = fingerprint(read_table_spec(Path(table)))
    return [replaced[g.question_id] if g.question_id in labelled else _clear(g) for g in groups]


def answer_overlap_labels(
    split: Split, questions: list[Question], *, min_overlap: float, max_positives: int
) -> list[tuple[str, ...]]:
    """Each question's answer-overlap paragraphs, ties broken by its BM25 ranking of the document."""
    bm25 = document_rankings(split, questions, {"bm25": BM25Retriever()})["bm25"]
    return overlap_labels(split, questions, bm25, min_overlap=min_overlap, max_positives=max_positives)


def _answer_overlap(
    split: Split, groups: list[TrainingGroup], record: dict[str, Any], min_overlap: float, max_positives: int
) -> list[TrainingGroup]:
    questions = {q.question_id: q for q in split.questions}
    asked = [questions[g.question_id] for g in groups]
    labels = answer_overlap_labels(split, asked, min_overlap=min_overlap, max_positives=max_positives)
    out, inserted = [], 0
    texts_of: dict[str | None, dict[str, str]] = {}  # per document (None: an open corpus's every passage), built once
    for group, question, positives in zip(groups, asked, labels, strict=True):
        missing = [pid for pid in positives if pid not in group.passage_ids]
        inserted += len(missing)
        if missing:  # positives first, then the set's own candidates, keeping its size
            if question.document_id not in texts_of:
                texts_of[question.document_id] = {p.passage_id: p.text for p in split.passages(question.document_id)}
            passages = texts_of[question.document_id]
            keep = [i for i, pid in enumerate(group.passage_ids) if pid not in positives]
            size = len(group.passage_ids)
            ids = (list(positives) + [group.passage_ids[i] for i in keep])[:size]
            texts = [passages[pid] for pid in positives] + [group.passages[i] for i in keep]
            utility = [float("nan")] * len(positives) + [group.utility[i] for i in keep]  # unscored; hard-label losses ignore it
            group = replace(group, passage_ids=tuple(ids), passages=tuple(texts[:size]), utility=tuple(utility[:size]))
        out.append(replace(group, gold=positives_mask(group.passage_ids, positives)))
    record["inserted"] = inserted
    record["without_positive"] = sum(not any(g.gold) for g in out)
    return out

"""The utility stage: candidate sets, then the LLM's u(p) for every candidate, cached and merged.

It computes only what the cache lacks: finished chunks are skipped, so rerunning after a kill (or on
another shard) picks up where the folder stands. With ``utility.shard=i/n`` a process writes only its
chunks; the process that finds every chunk present (any shard, or a rerun) writes the merged table.
A table that already fits the data and settings is used as it is, without rebuilding candidate sets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig

from uae.core.build import build, to_dict
from uae.core.errors import UAEError
from uae.core.shard import Shard
from uae.data.candidates import CandidateSet, build_candidates
from uae.data.loading import load_split
from uae.data.records import Question, Split
from uae.evaluation.teacher import markdown as teacher_markdown
from uae.evaluation.teacher import teacher_quality
from uae.retrieval.base import Retriever
from uae.stages.tables import (
    OPEN_DEPTH,
    answer_overlap_leads,
    configured_table,
    document_rankings,
    hard_negative_retrievers,
    rank_range,
    utility_questions,
    utility_settings,
)
from uae.storage.atomic import atomic_path, write_json
from uae.table.build import IncompleteUtilitiesError, compute_utilities, merge_utilities, work_key
from uae.table.find import table_path
from uae.table.format import utility_spec
from uae.table.read import rows_for_sets

log = logging.getLogger("uae.run")

def candidate_sets(
    cfg: DictConfig, split: Split, questions: list[Question], retrievers: dict[str, Retriever]
) -> tuple[list[CandidateSet], dict[str, list[list[str]]]]:
    """Candidate sets from the hard-negative retrievers' rankings of each question's document; the rankings.

    With ``candidates.answer_overlap`` the sets start with the answer-overlap paragraphs
    (:func:`uae.stages.tables.answer_overlap_leads`); with ``candidates.rank_range`` the rankings go as
    deep as its end.
    """
    mined = rank_range(cfg)
    rankings = document_rankings(split, questions, retrievers, max(OPEN_DEPTH, mined[1] if mined else 0))
    leading = answer_overlap_leads(cfg, split, questions, rankings) if cfg.candidates.get("answer_overlap") else None
    n_hard = to_dict(cfg.candidates.hard_negatives)
    sets = build_candidates(
        split, questions, size=cfg.candidates.size, hard_rankings=rankings, n_hard=n_hard, seed=cfg.candidates.seed,
        gold=bool(cfg.candidates.gold), leading=leading, rank_range=mined,
    )
    return sets, rankings


def stage_utility(cfg: DictConfig, state: dict[str, Any]) -> None:
    if cfg.utility.get("table"):
        raise UAEError(
            f"utility.table={cfg.utility.table} trains on that table as given, where the utility stage would "
            "load the LLM to build or check one: drop utility from stages (e.g. stages=[fit,evaluate])."
        )
    shard = Shard.parse(cfg.utility.shard)
    chunk = int(cfg.utility.chunk_questions)
    if chunk < 1:
        raise UAEError(f"utility.chunk_questions={chunk}: must be a positive number of questions.")
    scorer = build(cfg.llm.scorer, "llm.scorer")
    retrievers = hard_negative_retrievers(cfg)
    settings = utility_settings(cfg, scorer, retrievers)
    for split_name in cfg.utility.splits:
        split = load_split(cfg, split_name, state.setdefault("splits", {}))
        questions = utility_questions(split)
        if not questions:
            raise UAEError(f"{split.dataset} {split_name} has no answerable question to score; check data.max_documents.")
        found = configured_table(cfg, split, [q.question_id for q in questions], settings, writing=True)
        if found is not None:
            log.info("utility %s: %s already holds all %d questions; nothing to score", split_name, found, len(questions))
            state.setdefault("utility_tables", {})[split_name] = found
            if cfg.utility.report:  # costs the candidate sets' rankings (a passage encoding), not the LLM
                sets, rankings = candidate_sets(cfg, split, questions, retrievers)
                write_teacher_report(cfg, split_name, rows_for_sets(found, sets), sets, questions, rankings)
            continue
        sets, rankings = candidate_sets(cfg, split, questions, retrievers)
        spec = utility_spec(split, sets, settings["scorer"], settings["candidates"])
        work_dir = Path(cfg.utility.work_dir) / f"{split_name}-{work_key(spec, chunk)[:16]}"
        log.info("utility %s: %d questions, %d candidates -> %s", split_name, len(sets), sum(len(s.passage_ids) for s in sets), work_dir)
        dest = table_path(cfg.utility.table_dir, split_name, split.max_documents)
        compute_utilities(
            split, sets, scorer, work_dir, spec, shard=shard, chunk_questions=chunk, progress=cfg.retrieval.progress
        )
        try:
            table = merge_utilities(work_dir, len(sets), chunk, dest)
        except IncompleteUtilitiesError as exc:
            if shard.count == 1:
                raise
            log.info("shard %d/%d done; not merging yet: %s", shard.index, shard.count, exc)
            continue
        log.info("utility table %s: %d rows -> %s", split_name, table.num_rows, dest)
        state.setdefault("utility_tables", {})[split_name] = dest
        write_teacher_report(cfg, split_name, table, sets, questions, rankings)


def write_teacher_report(
    cfg: DictConfig,
    split_name: str,
    table: pa.Table,
    sets: list[CandidateSet],
    questions: list[Question],
    rankings: dict[str, list[list[str]]],
) -> None:
    """teacher_<split>.json / .md in the run folder: how well utility, BM25 and the base encoder rank
    each candidate set against its gold evidence (the table RESULTS.md shows)."""
    report = teacher_quality(table, sets, {q.question_id: q.gold_ids for q in questions}, rankings)
    out_dir = Path(cfg.paths.output_dir)
    write_json(out_dir / f"teacher_{split_name}.json", report)
    with atomic_path(out_dir / f"teacher_{split_name}.md") as tmp:
        tmp.write_text(teacher_markdown(report), encoding="utf-8")
    log.info("teacher quality on %s candidate sets:\n%s", split_name, teacher_markdown(report))

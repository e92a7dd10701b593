"""The utility stage: candidate sets, then the LLM's u(p) for every candidate, cached and merged.

It computes only what the cache lacks: finished chunks are skipped, so rerunning after a kill (or on
another shard) picks up where the folder stands. With ``utility.shard=i/n`` a process writes only its
chunks; the process that finds every chunk present (any shard, or a rerun) writes the merged table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uae.cache import atomic_path, write_json
from uae.data.candidates import CandidateSet, build_candidates
from uae.data.records import QasperSplit, Question
from uae.errors import CacheMismatchError, UAEError
from uae.evaluation.teacher import markdown as teacher_markdown
from uae.evaluation.teacher import teacher_quality
from uae.llm.utility import (
    IncompleteUtilitiesError,
    Shard,
    compute_utilities,
    load_utility_table,
    merge_utilities,
    utility_spec,
    work_key,
)
from uae.retrieval.bm25 import BM25Retriever
from uae.stages.common import build, load_split

log = logging.getLogger("uae.run")


def utility_questions(split: QasperSplit) -> list[Question]:
    """Questions with a gold answer to score, in papers that have paragraphs to score it with."""
    return [q for q in split.questions if q.answerable and split.passages(q.paper_id)]


def candidate_sets(
    cfg: DictConfig, split: QasperSplit, questions: list[Question]
) -> tuple[list[CandidateSet], dict[str, Any], dict[str, list[list[str]]]]:
    """Candidate sets from BM25's and the base encoder's rankings; the spec that fixes them; the rankings."""
    n_hard = OmegaConf.to_container(cfg.candidates.hard_negatives, resolve=True)
    rankings: dict[str, list[list[str]]] = {}
    spec: dict[str, Any] = {"size": cfg.candidates.size, "hard_negatives": n_hard, "seed": cfg.candidates.seed}
    if n_hard.get("bm25", 0) > 0:
        bm25 = BM25Retriever()
        rankings["bm25"] = bm25.rank(split, questions, scope="paper", top_k=1).ranked_ids
        spec["bm25"] = bm25.describe()
    if n_hard.get("dense", 0) > 0:
        dense = build(cfg.model.retriever, "model.retriever")
        if not hasattr(dense, "encoder"):
            raise UAEError("candidates.hard_negatives.dense > 0 needs a dense model= (the base encoder), not BM25.")
        rankings["dense"] = dense.rank(split, questions, scope="paper", top_k=1).ranked_ids
        spec["dense"] = dense.encoder.fingerprint_spec()
    sets = build_candidates(
        split, questions, size=cfg.candidates.size, hard_rankings=rankings, n_hard=n_hard, seed=cfg.candidates.seed
    )
    return sets, spec, rankings


def utility_table_path(cfg: DictConfig, split_name: str) -> Path:
    suffix = "" if cfg.data.max_papers is None else f"-first{cfg.data.max_papers}"
    return Path(cfg.utility.table_dir) / f"{split_name}{suffix}.parquet"


def stage_utility(cfg: DictConfig, state: dict[str, Any]) -> None:
    shard = Shard.parse(cfg.utility.shard)
    chunk = int(cfg.utility.chunk_questions)
    if chunk < 1:
        raise UAEError(f"utility.chunk_questions={chunk}: must be a positive number of questions.")
    scorer = build(cfg.llm.scorer, "llm.scorer")
    for split_name in cfg.utility.splits:
        split = load_split(cfg, split_name)
        questions = utility_questions(split)
        if not questions:
            raise UAEError(f"QASPER {split_name} has no answerable question to score; check data.max_papers.")
        sets, candidate_spec, rankings = candidate_sets(cfg, split, questions)
        spec = utility_spec(split, sets, scorer.fingerprint_spec(), candidate_spec)
        work_dir = Path(cfg.utility.work_dir) / f"{split_name}-{work_key(spec, chunk)[:16]}"
        log.info("utility %s: %d questions, %d candidates -> %s", split_name, len(sets), sum(len(s.passage_ids) for s in sets), work_dir)
        dest = utility_table_path(cfg, split_name)
        table = _up_to_date_table(cfg, dest, spec, sets)
        if table is None:
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
        report = teacher_quality(table, sets, {q.question_id: q.gold_ids for q in questions}, rankings)
        out_dir = Path(cfg.paths.output_dir)
        write_json(out_dir / f"teacher_{split_name}.json", report)
        with atomic_path(out_dir / f"teacher_{split_name}.md") as tmp:
            tmp.write_text(teacher_markdown(report), encoding="utf-8")
        log.info("teacher quality on %s candidate sets:\n%s", split_name, teacher_markdown(report))


def _up_to_date_table(cfg: DictConfig, dest: Path, spec: dict[str, Any], sets: list[CandidateSet]) -> Any:
    """The table at ``dest`` if it was made for exactly these settings (then nothing is scored).

    A table made with other settings is never overwritten silently: committed tables cost CPU hours.
    """
    if not dest.is_file():
        return None
    try:
        table = load_utility_table(dest, spec, sets)
    except CacheMismatchError as exc:
        if cfg.utility.overwrite:
            log.warning("replacing %s: %s", dest, exc)
            return None
        raise UAEError(
            f"{exc} It would be overwritten by this run: set utility.table_dir to another folder, or "
            "utility.overwrite=true to replace it."
        ) from exc
    log.info("utility table %s is up to date (%d rows); nothing to score", dest, table.num_rows)
    return table

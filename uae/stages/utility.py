"""The utility stage: candidate sets, then the LLM's u(p) for every candidate, cached and merged.

It computes only what the cache lacks: finished chunks are skipped, so rerunning after a kill (or on
another shard) picks up where the folder stands. With ``utility.shard=i/n`` a process writes only its
chunks; the process that finds every chunk present (any shard, or a rerun) writes the merged table.
A table that already fits the data and settings is used as it is, without rebuilding candidate sets.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf

from uae.cache import atomic_path, fingerprint, write_json
from uae.data.candidates import CandidateSet, build_candidates
from uae.data.records import QasperSplit, Question
from uae.errors import CacheMismatchError, UAEError
from uae.evaluation.teacher import markdown as teacher_markdown
from uae.evaluation.teacher import teacher_quality
from uae.llm.utility import (
    IncompleteUtilitiesError,
    Shard,
    compute_utilities,
    merge_utilities,
    read_table_spec,
    utility_spec,
    work_key,
)
from uae.retrieval.base import Retriever
from uae.retrieval.bm25 import BM25Retriever
from uae.stages.common import build, load_split, max_papers_for

log = logging.getLogger("uae.run")


def utility_questions(split: QasperSplit) -> list[Question]:
    """Questions with a gold answer to score, in papers that have paragraphs to score it with."""
    return [q for q in split.questions if q.answerable and split.passages(q.paper_id)]


def hard_negative_retrievers(cfg: DictConfig) -> dict[str, Retriever]:
    """The retrievers whose top paragraphs become hard negatives (BM25, the base encoder), per config."""
    n_hard = OmegaConf.to_container(cfg.candidates.hard_negatives, resolve=True)
    retrievers: dict[str, Retriever] = {}
    if n_hard.get("bm25", 0) > 0:
        retrievers["bm25"] = BM25Retriever()
    if n_hard.get("dense", 0) > 0:
        dense = build(cfg.candidates.base.retriever, "candidates.base.retriever")
        if not hasattr(dense, "encoder"):
            raise UAEError(
                "candidates.hard_negatives.dense > 0 needs a dense encoder as candidates.base (e.g. "
                "model@candidates.base=minilm), not BM25; or set candidates.hard_negatives.dense=0."
            )
        retrievers["dense"] = dense
    return retrievers


def utility_settings(cfg: DictConfig, scorer: Any, retrievers: dict[str, Retriever]) -> dict[str, Any]:
    """What fixes a table's content besides the data: the LLM scorer and how candidate sets are built."""
    candidates: dict[str, Any] = {
        "size": cfg.candidates.size,
        "hard_negatives": OmegaConf.to_container(cfg.candidates.hard_negatives, resolve=True),
        "seed": cfg.candidates.seed,
    }
    for name, retriever in retrievers.items():
        candidates[name] = retriever.encoder.fingerprint_spec() if name == "dense" else retriever.describe()
    return {"scorer": scorer.fingerprint_spec(), "candidates": candidates}


def candidate_sets(
    cfg: DictConfig, split: QasperSplit, questions: list[Question], retrievers: dict[str, Retriever]
) -> tuple[list[CandidateSet], dict[str, list[list[str]]]]:
    """Candidate sets from the hard-negative retrievers' rankings of each question's paper; the rankings."""
    rankings = {name: r.rank(split, questions, scope="paper", top_k=1).ranked_ids for name, r in retrievers.items()}
    n_hard = OmegaConf.to_container(cfg.candidates.hard_negatives, resolve=True)
    sets = build_candidates(
        split, questions, size=cfg.candidates.size, hard_rankings=rankings, n_hard=n_hard, seed=cfg.candidates.seed
    )
    return sets, rankings


def utility_table_path(cfg: DictConfig, split_name: str, *, full: bool = False) -> Path:
    """Where the split's table lives; a ``data.max_papers`` subset gets its own file unless ``full``."""
    max_papers = None if full else max_papers_for(cfg, split_name)
    suffix = "" if max_papers is None else f"-first{max_papers}"
    return Path(cfg.utility.table_dir) / f"{split_name}{suffix}.parquet"


def find_utility_table(
    cfg: DictConfig, split: QasperSplit, question_ids: list[str], settings: dict[str, Any], *, writing: bool
) -> Path | None:
    """A table made with ``settings`` from this data file that covers ``question_ids``, or None.

    Candidate sets are a function of the data, the settings and the seed, so a table whose spec
    matches needs no candidate sets rebuilt to be trusted (that would cost a full passage encoding).
    A subset run (``data.max_papers``) also accepts the split's full table: its rows for the subset's
    questions are exactly what the subset would compute. The LLM's dtype does not count: fp32 and bf16
    utilities differ by rounding, and the spec stored in the table records which one made it.
    """
    own = utility_table_path(cfg, split.name)
    paths = [own] + ([utility_table_path(cfg, split.name, full=True)] if max_papers_for(cfg, split.name) else [])
    for path in paths:
        if not path.is_file():
            continue
        made = read_table_spec(path)
        differs = _differences(made, split, settings)
        if differs:
            if path == own and writing and not cfg.utility.overwrite:
                raise UAEError(
                    f"{path} was made with other settings (differs in: {', '.join(differs)}). It would be "
                    "overwritten by this run: set utility.table_dir to another folder, or utility.overwrite=true "
                    "to replace it."
                )
            log.info("utility table %s does not fit (differs in: %s)", path, ", ".join(differs))
            continue
        covered = set(pq.read_table(path, columns=["question_id"])["question_id"].to_pylist())
        if covered.issuperset(question_ids):
            return path
        log.info("utility table %s lacks %d of the questions", path, len(set(question_ids) - covered))
    return None


def _differences(made: dict[str, Any], split: QasperSplit, settings: dict[str, Any]) -> list[str]:
    def scorer(spec: Any) -> str:
        return fingerprint({k: v for k, v in dict(spec or {}).items() if k != "dtype"})

    differs = []
    if made.get("split") != split.name:
        differs.append("split")
    if made.get("data") != split.fingerprint:
        differs.append("data")
    if scorer(made.get("scorer")) != scorer(settings["scorer"]):
        differs.append("scorer")
    if fingerprint(made.get("candidates") or {}) != fingerprint(json.loads(json.dumps(settings["candidates"], default=str))):
        differs.append("candidates")
    return differs


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
        split = load_split(cfg, split_name)
        questions = utility_questions(split)
        if not questions:
            raise UAEError(f"QASPER {split_name} has no answerable question to score; check data.max_papers.")
        found = find_utility_table(cfg, split, [q.question_id for q in questions], settings, writing=True)
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
        dest = utility_table_path(cfg, split_name)
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


def rows_for_sets(path: Path, sets: list[CandidateSet]) -> pa.Table:
    """The rows of a table that ``find_utility_table`` accepted, in the order of ``sets``.

    That table may be the split's full table for a ``data.max_papers`` subset, or one made in another
    dtype, so its exact fingerprint is not asked for here (its spec was checked); its rows for these
    sets must all be there, and each set must be exactly its candidates.
    """
    table = pq.read_table(path)
    index = {key: i for i, key in enumerate(zip(table["question_id"].to_pylist(), table["passage_id"].to_pylist()))}
    wanted = [(s.question_id, pid) for s in sets for pid in s.passage_ids]
    missing = [key for key in wanted if key not in index]
    per_question = Counter(table["question_id"].to_pylist())
    other = [s.question_id for s in sets if per_question[s.question_id] != len(s.passage_ids)]
    if missing or other:
        raise CacheMismatchError(
            f"{path}: its candidates differ from the candidate sets rebuilt now ({len(missing)} missing rows, "
            f"{len(other)} questions with another number of candidates). Rebuild it: stages=[utility] utility.overwrite=true."
        )
    return table.take([index[key] for key in wanted])


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

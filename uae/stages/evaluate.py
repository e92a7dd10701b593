"""The evaluate stage: rank ``data.eval_split`` with ``model.retriever``, write results.json.

After a fit stage it scores the exported fine-tuned encoder (and, with ``evaluate.zero_shot``, the
base encoder beside it, in ``zero_shot/``), with the same code and the same results.json schema.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uae.core.build import build, to_dict
from uae.data.loading import load_split
from uae.data.records import Split
from uae.evaluation.metrics import answer_f1
from uae.evaluation.ranking import evaluate_retriever
from uae.results import machine
from uae.results.cards import exported_name, trained_name
from uae.results.folder import write_run_card
from uae.retrieval.base import Retriever
from uae.retrieval.rerank import LLMReranker
from uae.retrieval.st_layout import tower_paths
from uae.storage.atomic import write_json

log = logging.getLogger("uae.run")


def stage_evaluate(cfg: DictConfig, state: dict[str, Any]) -> None:
    split = load_split(cfg, cfg.data.eval_split, state.setdefault("splits", {}))
    out_dir = Path(cfg.paths.output_dir)
    encoder_dir = state.get("encoder_dir")
    if encoder_dir is not None:  # the fit stage's export: loaded exactly as a base model is
        node = to_dict(cfg.model.retriever)
        query_tower, passage_tower = tower_paths(encoder_dir)
        node["encoder"]["local_path"] = str(query_tower)
        if passage_tower is not None:
            node["encoder"]["passage_local_path"] = str(passage_tower)
        node["encoder"]["name"] = trained_name(cfg.model.name, cfg.loss.name)
        retriever = build(OmegaConf.create(node), "model.retriever")
        extra = {
            "checkpoint": state.get("checkpoint"),
            "encoder_dir": str(encoder_dir),
            "train_seconds": state.get("train_seconds"),
            "utility_table": state.get("utility_table"),
            "labels": state.get("labels"),
            "command": state.get("command"),  # fit's own: a later start in this folder rewrites .hydra/
        }
        state["results"] = evaluate_into(cfg, state, split, retriever, retriever.name, out_dir, extra)
        if cfg.evaluate.zero_shot:
            base = build(cfg.model.retriever, "model.retriever")
            state["zero_shot_results"] = evaluate_into(cfg, state, split, base, cfg.model.name, out_dir / "zero_shot", {})
        write_run_card(out_dir, Path(encoder_dir))  # the model card, now with the evaluation table
        return
    retriever = build(cfg.model.retriever, "model.retriever")
    # an exported UAE encoder evaluated on its own keeps the name it was trained under, not its base model's
    name = exported_name((cfg.model.get("encoder") or {}).get("local_path"), cfg.model.name) or cfg.model.name
    if cfg.get("rerank"):
        scorer = build(cfg.llm.scorer, "llm.scorer")
        retriever = LLMReranker(retriever, scorer, k=cfg.rerank.k, prompt=cfg.rerank.prompt)
        name = f"{name}+{cfg.rerank.name}@{cfg.rerank.k}"
    state["results"] = evaluate_into(cfg, state, split, retriever, name, out_dir, {})


def evaluate_into(
    cfg: DictConfig,
    state: dict[str, Any],
    split: Split,
    retriever: Retriever,
    name: str,
    out_dir: Path,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Evaluate one retriever and write its results.json and rankings.json into ``out_dir``."""
    result = evaluate_retriever(split, retriever, scope=cfg.retrieval.scope, top_k=cfg.retrieval.top_k)
    if cfg.get("reader"):
        answers, result.metrics["token_f1"] = reader_token_f1(cfg, state, split, result.question_ids, result.ranked_ids)
        write_json(out_dir / "answers.json", answers)
    payload = {
        "experiment": cfg.experiment,
        "split": result.split,
        "retriever": name,
        "n_questions": result.n_questions,
        "metrics": result.metrics,
        "latency_ms_per_query": result.latency_ms_per_query,
        "index_seconds": result.index_seconds,
        **extra,
        "retriever_details": result.retriever,
        "data": {"source": split.source, "fingerprint": split.fingerprint, "alignment": vars(split.alignment) if split.alignment else None},
        "machine": machine.describe(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / "rankings.json", dict(zip(result.question_ids, result.ranked_ids)))
    write_json(out_dir / "results.json", payload)
    table = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    log.info(
        "%s on %s (%d questions): %s  latency=%.2f ms/query  -> %s",
        name, result.split, result.n_questions, table, result.latency_ms_per_query, out_dir / "results.json",
    )
    return payload


def reader_token_f1(
    cfg: DictConfig, state: dict[str, Any], split: Split, question_ids: list[str], rankings: list[list[str]]
) -> tuple[dict[str, str], float]:
    """The reader's answers and their mean QASPER token F1 (max over each question's annotators)."""
    answers = read_answers(cfg, state, split, question_ids, rankings)
    questions = {q.question_id: q for q in split.questions}
    f1 = sum(answer_f1(answers[qid], [a.text for a in questions[qid].answers]) for qid in question_ids) / len(question_ids)
    return answers, f1


def read_answers(
    cfg: DictConfig, state: dict[str, Any], split: Split, question_ids: list[str], rankings: list[list[str]]
) -> dict[str, str]:
    """The reader's answer to each question from its ranking's top ``reader.answerer.k`` paragraphs."""
    if "reader" not in state:  # one reader per run, shared by the fine-tuned and zero-shot evaluations
        state["reader"] = build(cfg.reader.answerer, "reader.answerer")
    reader = state["reader"]
    questions = {q.question_id: q for q in split.questions}
    texts = {p.passage_id: p.text for p in split.all_passages}
    items = [(qid, ranked, questions[qid].text) for qid, ranked in zip(question_ids, rankings)]
    return dict(zip(question_ids, reader.answer(items, texts, split.fingerprint)))

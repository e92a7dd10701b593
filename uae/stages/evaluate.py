"""The evaluate stage: rank ``data.eval_split`` with ``model.retriever``, write results.json."""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uae.cache import write_json
from uae.evaluation.evaluate import evaluate_retriever
from uae.stages.common import build, load_split

log = logging.getLogger("uae.run")


def stage_evaluate(cfg: DictConfig, state: dict[str, Any]) -> None:
    split = load_split(cfg, cfg.data.eval_split)
    retriever = build(cfg.model.retriever, "model.retriever")
    name = cfg.model.name
    if cfg.get("rerank"):
        from uae.retrieval.rerank import LLMReranker

        scorer = build(cfg.llm.scorer, "llm.scorer")
        retriever = LLMReranker(retriever, scorer, k=cfg.rerank.k, prompt=cfg.rerank.prompt)
        name = f"{name}+{cfg.rerank.name}@{cfg.rerank.k}"
    result = evaluate_retriever(split, retriever, scope=cfg.retrieval.scope, top_k=cfg.retrieval.top_k)
    out_dir = Path(cfg.paths.output_dir)
    payload = {
        "experiment": cfg.experiment,
        "split": result.split,
        "retriever": name,
        "n_questions": result.n_questions,
        "metrics": result.metrics,
        "latency_ms_per_query": result.latency_ms_per_query,
        "index_seconds": result.index_seconds,
        "retriever_details": result.retriever,
        "data": {"source": split.source, "fingerprint": split.fingerprint, "alignment": vars(split.alignment)},
        "machine": machine_description(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out_dir / "rankings.json", dict(zip(result.question_ids, result.ranked_ids)))
    write_json(out_dir / "results.json", payload)
    state["results"] = payload
    table = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    log.info(
        "%s on %s (%d questions): %s  latency=%.2f ms/query  -> %s",
        name, result.split, result.n_questions, table, result.latency_ms_per_query, out_dir / "results.json",
    )


def machine_description() -> dict[str, Any]:
    """Recorded with every result: numbers are only comparable on the same machine."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }

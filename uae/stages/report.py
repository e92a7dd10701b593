"""The report stage: the run's results as a table (printed and written to report.md in the run folder).

With a zero-shot evaluation beside the fine-tuned one (``evaluate.zero_shot=true``), the table holds
both, with the relative gains the paper reports (recall@1, MAP).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from uae.core.errors import UAEError
from uae.results.read import gains_line, load_results, markdown_table
from uae.storage.atomic import atomic_path

log = logging.getLogger("uae.run")


def stage_report(cfg: DictConfig, state: dict[str, Any]) -> None:
    out_dir = Path(cfg.paths.output_dir)
    runs = [d for d in (out_dir / "zero_shot", out_dir) if (d / "results.json").is_file()]
    if not runs:
        raise UAEError(f"report: no results.json in {out_dir}. Put evaluate in stages (stages=[...,evaluate,report]).")
    rows = load_results(runs)
    text = f"# {cfg.experiment}: {rows[-1]['split']}\n\n" + markdown_table(rows)
    if len(rows) == 2:
        text += gains_line(rows, f"{rows[1]['retriever']}:{rows[0]['retriever']}")
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    state["report"] = text
    print("\n" + text, flush=True)

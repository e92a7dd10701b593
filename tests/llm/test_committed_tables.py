"""Every committed utility table is still the one the configured teacher makes: a refactor that moved
the scorer (its class path is in every table's spec) or changed its fingerprint would make runs refuse
the tables, or worse, silently rebuild hours of LLM scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from uae.core.build import build
from uae.core.config import compose
from uae.storage.fingerprint import fingerprint
from uae.table.read import read_table_spec

ROOT = Path(__file__).resolve().parents[1]
while not (ROOT / "pyproject.toml").is_file():
    ROOT = ROOT.parent
TABLES = sorted((ROOT / "experiments").glob("*/utilities/**/*.parquet"))


def _without_dtype(spec: dict) -> str:
    """How tables are matched (uae.table.find.differences): fp32 and bf16 utilities differ by rounding."""
    return fingerprint({k: v for k, v in spec.items() if k != "dtype"})


@pytest.fixture(scope="module")
def configured_scorer_spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cfg = compose(["+experiment=qasper_minilm", f"paths.cache_dir={ROOT / '.cache'}"])
    return build(cfg.llm.scorer, "llm.scorer").fingerprint_spec()


def test_there_are_committed_tables() -> None:
    assert len(TABLES) >= 3


@pytest.mark.parametrize("table", TABLES, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_each_committed_table_matches_the_configured_scorer(table: Path, configured_scorer_spec: dict) -> None:
    made = read_table_spec(table)["scorer"]
    assert made["scorer"] == "uae.llm.scorer.AnswerScorer"
    if made.get("model_id") != configured_scorer_spec["model_id"] or made.get("template") != configured_scorer_spec["template"]:
        pytest.skip(f"{table.name} was made with another teacher or prompt: {made.get('model_id')}")
    assert _without_dtype(made) == _without_dtype(configured_scorer_spec)

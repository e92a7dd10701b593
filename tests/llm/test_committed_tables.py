"""Every committed utility table is still the one the configured teacher makes: a refactor that moved
the scorer (its class path is in every table's spec) or changed its fingerprint would make runs refuse
the tables, or worse, send users into hours of LLM scoring again."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from uae.core.build import build
from uae.core.config import compose
from uae.llm.scorer import SCORER_VERSION, AnswerScorer
from uae.storage.fingerprint import fingerprint
from uae.table.read import read_table_spec

TABLES = sorted((ROOT / "experiments").glob("*/utilities/**/*.parquet"))
IDS = [str(p.relative_to(ROOT / "experiments")) for p in TABLES]


@functools.cache
def _llm_configs() -> dict[str, str]:
    """{model id: conf/llm/ name}, composed once per session (a composition takes about a second)."""
    names = [p.stem for p in sorted((ROOT / "conf" / "llm").glob("*.yaml"))]
    return {compose(["+experiment=qasper_minilm", f"llm={name}"]).llm.scorer.model_id: name for name in names}


def _teacher_overrides(spec: dict) -> list[str]:
    """The config overrides that make the teacher a table names: its llm config (found by model id in
    conf/llm/, so a table of an unknown model fails here) and, for an engine that has its own tables,
    the engine and compute type."""
    by_model = _llm_configs()
    assert spec["model_id"] in by_model, f"no conf/llm/ config scores with {spec['model_id']}"
    overrides = [f"llm={by_model[spec['model_id']]}"]
    if "engine" in spec:
        overrides += [f"llm.engine={spec['engine']}", f"llm.compute_type={spec['compute_type']}"]
    return overrides


def _without_dtype(spec: dict) -> str:
    """How tables are matched (uae.table.find.differences): fp32 and bf16 utilities differ by rounding."""
    return fingerprint({k: v for k, v in spec.items() if k != "dtype"})


def test_there_are_committed_tables() -> None:
    assert len(TABLES) >= 3


@pytest.mark.parametrize("table", TABLES, ids=IDS)
def test_each_committed_table_names_the_scorer_as_it_is_today(table: Path) -> None:
    """Without loading the model: the class path, the version that guards its numbers, the prompt."""
    made = read_table_spec(table)["scorer"]
    configured = compose(["+experiment=qasper_minilm", *_teacher_overrides(made)]).llm.scorer
    assert made["scorer"] == f"{AnswerScorer.__module__}.{AnswerScorer.__qualname__}" == "uae.llm.scorer.AnswerScorer"
    assert made["version"] == SCORER_VERSION
    assert made["model_id"] == configured.model_id and made["max_length"] == configured.max_length
    assert made["template"] == dict(configured.template)


@pytest.mark.slow  # converts SmolLM2 from its GGUF package on a fresh clone (about 40 s)
@pytest.mark.parametrize("table", TABLES, ids=IDS)
def test_each_committed_table_matches_the_configured_scorer(table: Path) -> None:
    made = read_table_spec(table)["scorer"]
    cfg = compose(["+experiment=qasper_minilm", f"paths.cache_dir={ROOT / '.cache'}", *_teacher_overrides(made)])
    assert _without_dtype(made) == _without_dtype(build(cfg.llm.scorer, "llm.scorer").fingerprint_spec())

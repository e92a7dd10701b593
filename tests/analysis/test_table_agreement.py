"""`python -m uae.analysis.table_agreement`: two tables of the same candidates, checked against scipy and
counts made by hand; tables of different candidates are refused."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from scipy.stats import pearsonr, spearmanr

from tests.helpers.tables import write_table
from uae.analysis.table_agreement import agreement, main

SPLIT = SimpleNamespace(name="dev", fingerprint="f" * 64)


def _rows(utilities: dict[tuple[str, str], float]) -> list[dict]:
    return [
        {"question_id": q, "document_id": "d", "passage_id": p, "position": i, "source": "bm25", "is_gold": False,
         "utility": u, "ll_context": u - 2.0, "ll_closed": -2.0, "n_answers": 1}
        for i, ((q, p), u) in enumerate(utilities.items())
    ]  # fmt: skip


def test_agreement_of_two_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = {("q1", "p1"): 1.0, ("q1", "p2"): 0.5, ("q1", "p3"): 0.0, ("q2", "p4"): 0.2, ("q2", "p5"): 0.9,
         ("q3", "p6"): 0.5, ("q3", "p7"): 0.5}
    b = {("q1", "p1"): 0.4, ("q1", "p2"): 0.8, ("q1", "p3"): 0.1, ("q2", "p4"): 0.1, ("q2", "p5"): 1.0,
         ("q3", "p6"): 0.1, ("q3", "p7"): 0.3}  # fmt: skip
    path_a = write_table(tmp_path / "a.parquet", SPLIT, _rows(a))
    path_b = write_table(tmp_path / "b.parquet", SPLIT, _rows(dict(reversed(b.items()))))  # row order must not matter
    got = agreement(path_a, path_b)
    keys = sorted(a)
    assert got["rows"] == 7 and got["questions"] == 3
    assert got["max_abs_difference"] == pytest.approx(0.6)  # q1/p1: 1.0 against 0.4
    assert got["pearson"] == pytest.approx(pearsonr([a[k] for k in keys], [b[k] for k in keys]).statistic)
    assert got["spearman"] == pytest.approx(spearmanr([a[k] for k in keys], [b[k] for k in keys]).statistic)
    # q1: best p1 against p2 (differ); q2: p5 both (same); q3: A ties p6 and p7, B's p7 is one of them -> 2 of 3
    assert got["same_best"] == pytest.approx(2 / 3)
    # q1: ranks (3,2,1) against (2,3,1) -> rho 0.5; q2: two rows in the same order -> 1.0; q3: A constant, no rho
    assert got["mean_question_spearman"] == pytest.approx(0.75) and got["rho_questions"] == 2
    assert main([str(path_a), str(path_b)]) == 0
    assert "| 0.600 |" in capsys.readouterr().out

    fewer = write_table(tmp_path / "c.parquet", SPLIT, _rows({k: v for k, v in b.items() if k != ("q2", "p4")}))
    assert main([str(path_a), str(fewer)]) == 2
    assert "do not hold the same candidates (1 rows only in the first" in capsys.readouterr().err
    assert main([str(path_a), str(tmp_path / "missing.parquet")]) == 2
    assert "no such table" in capsys.readouterr().err

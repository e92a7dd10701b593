"""Committed utility tables, written before content digests: read and checked by consistency
(utility = ll_context - ll_closed), and stamped with a digest by ``python -m uae.table.integrity``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.paths import COMMITTED
from uae.core.errors import DamagedFileError
from uae.table.integrity import main as integrity_main


@pytest.mark.parametrize("table", COMMITTED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_committed_tables_without_digests_are_read_and_checked_by_consistency(table: Path, tmp_path: Path) -> None:
    """Tables written before digests keep their fingerprints and are checked by utility = ll_context - ll_closed."""
    from uae.table.read import read_table, read_table_spec, verify_table

    assert verify_table(table) is False  # no digest recorded: the consistency check stood in
    rows = read_table(table)
    spec = read_table_spec(table)

    damaged = tmp_path / table.name  # a changed utility, rewritten without a digest like the committed files
    raw = pq.read_table(table)
    utility = raw["utility"].to_pylist()
    utility[7] += 1.0
    pq.write_table(raw.set_column(raw.schema.get_field_index("utility"), "utility", [utility]), damaged, compression="zstd")
    with pytest.raises(DamagedFileError, match=r"row 7.*git restore"):
        read_table(damaged)

    # python -m uae.table.integrity stamp gives it a digest; rows, fingerprint and spec stay as they were
    stamped = tmp_path / "stamped.parquet"
    shutil.copy(table, stamped)
    assert integrity_main(["stamp", str(stamped)]) == 0
    assert verify_table(stamped) is True and read_table(stamped).equals(rows) and read_table_spec(stamped) == spec
    assert integrity_main(["check", str(stamped), str(table)]) == 0
    assert integrity_main(["check", str(damaged)]) == 1

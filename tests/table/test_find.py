"""Finding the utility table of a split (uae.table.find): what its fingerprint covers, and a table that
cannot be read is refused with the command that replaces it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.paths import COMMITTED
from uae.core.errors import DamagedFileError
from uae.storage.fingerprint import fingerprint


def test_utility_table_fingerprint_covers_data_llm_template_and_candidates() -> None:
    from uae.table.find import differences

    class Split:
        name, fingerprint = "dev", "data-1"

    scorer = {"model_id": "llm", "weights": "w", "template": {"context_prompt": "C: {context}"}, "max_length": 1024, "dtype": "float32"}
    candidates = {"size": 8, "hard_negatives": {"bm25": 2, "dense": 2}, "seed": 42, "dense": {"weights": "e"}}
    made = {"split": "dev", "data": "data-1", "scorer": scorer, "candidates": candidates}
    same = {"scorer": scorer, "candidates": candidates}
    assert differences(made, Split, same) == []
    assert differences(made, Split, {**same, "scorer": {**scorer, "dtype": "bfloat16"}}) == []  # precision only
    changes = {
        "scorer": [{**scorer, "model_id": "other"}, {**scorer, "template": {"context_prompt": "X {context}"}},
                   {**scorer, "max_length": 512}, {**scorer, "weights": "w2"}],
        "candidates": [{**candidates, "size": 4}, {**candidates, "seed": 1}, {**candidates, "dense": {"weights": "e2"}},
                       {**candidates, "hard_negatives": {"bm25": 0, "dense": 2}}],
    }
    for key, variants in changes.items():
        for variant in variants:
            assert differences(made, Split, {**same, key: variant}) == [key]

    class OtherData:
        name, fingerprint = "dev", "data-2"

    assert differences(made, OtherData, same) == ["data"]
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1}) != fingerprint({"a": 1, "b": [2, 1]})


def test_a_table_that_cannot_be_read_names_the_command_that_replaces_it(tiny_raw_dir: Path, tmp_path: Path) -> None:
    from uae.data.qasper import load_qasper
    from uae.table.find import find_table

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    table = tmp_path / "dev.parquet"
    table.write_bytes(COMMITTED[0].read_bytes()[:5000])  # cut short
    settings = {"scorer": {}, "candidates": {}}
    for writing in (False, True):
        with pytest.raises(DamagedFileError, match=r"utility\.overwrite=true") as error:
            find_table(tmp_path, split, ["q1"], settings, limit=None, writing=writing)
        assert str(table) in str(error.value) and "git restore" in str(error.value)
    assert find_table(tmp_path, split, ["q1"], settings, limit=None, writing=True, overwrite=True) is None  # replaced

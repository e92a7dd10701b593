"""Loading a run's split from its config (uae.data.loading): a missing data folder fails at once."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_missing_data_folder_fails_at_once_without_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HF_HUB_OFFLINE unset, a missing data.dir spent ~24 s in hub retries; the hub is now opt-in."""
    from uae.core.config import compose
    from uae.core.errors import DataError
    from uae.data import qasper
    from uae.data.loading import load_from

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    asked = []
    monkeypatch.setattr(qasper, "_load_from_hub", lambda split: asked.append(split) or pytest.fail("the hub was tried"))
    cfg = compose([f"data.dir={tmp_path / 'nowhere'}"])
    with pytest.raises(DataError) as error:
        load_from(cfg.data, "dev")
    message = str(error.value)
    assert not asked
    for looked in ("qasper-dev-v0.3.json", "dev.jsonl", "dev.parquet", "validation.jsonl", "validation.parquet"):
        assert str(tmp_path / "nowhere" / looked) in message
    assert "does not exist" in message and "allow_hub=true" in message

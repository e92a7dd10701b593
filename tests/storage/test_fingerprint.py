"""A model folder's digest is what the model computes, not how or when it was saved."""

from __future__ import annotations

import json
from pathlib import Path

from uae.storage.fingerprint import model_digest


def _folder(path: Path, tokenizer_config: dict, weights: bytes = b"w") -> Path:
    path.mkdir()
    (path / "model.safetensors").write_bytes(weights)
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return path


def test_how_the_tokenizer_was_loaded_does_not_change_the_digest(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 at conversion time writes local_files_only=true into tokenizer_config.json."""
    online = _folder(tmp_path / "online", {"model_max_length": 8192, "local_files_only": False})
    offline = _folder(tmp_path / "offline", {"local_files_only": True, "model_max_length": 8192})
    assert model_digest(online) == model_digest(offline)
    stamped = _folder(tmp_path / "stamped", {"model_max_length": 8192, "local_files_only": False, "transformers_version": "9"})
    assert model_digest(stamped) == model_digest(online)
    # what the model computes still counts: a setting, the weights, and whether the key is there at all
    assert model_digest(_folder(tmp_path / "longer", {"model_max_length": 512, "local_files_only": False})) != model_digest(online)
    assert model_digest(_folder(tmp_path / "other", {"model_max_length": 8192, "local_files_only": False}, b"v")) != model_digest(online)
    assert model_digest(_folder(tmp_path / "bare", {"model_max_length": 8192})) != model_digest(online)

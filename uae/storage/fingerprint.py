"""Fingerprints: a stable hash of everything that made a cache, and of a model folder's content.

A cache is keyed by the fingerprint of its settings, so a run made otherwise never reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def fingerprint(spec: Mapping[str, Any]) -> str:
    """Stable hash of a JSON-able description of what made a cache (key order does not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Written by save_pretrained but not part of what a model computes: leaving them out keeps caches valid
# across transformers releases and copies of a folder.
_VOLATILE_KEYS = ("transformers_version", "_name_or_path")
# Written too, but with the value the environment had when the folder was saved: a tokenizer loaded with
# HF_HUB_OFFLINE=1 records local_files_only=true. Hashed at the value an online conversion writes, so the
# digests that committed utility tables record (made online) hold for a folder converted offline too.
_ENVIRONMENT_KEYS = {"local_files_only": False}
_MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".jinja", ".tiktoken")


def model_digest(folder: str | os.PathLike) -> str:
    """Content hash of a model folder (weights, config, tokenizer), for the keys of caches it makes.

    Weights are hashed in full: a fine-tuned checkpoint has the shape and often the first bytes of its
    base model. JSON files are hashed without version stamps; UAE's own provenance marker is skipped.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name == "uae_source.json":
            continue
        if not path.name.endswith(_MODEL_FILE_SUFFIXES):
            continue
        digest.update(path.name.encode() + b"\0")
        if path.suffix == ".json":
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                content = None
            if isinstance(content, dict):
                content = {k: v for k, v in content.items() if k not in _VOLATILE_KEYS}
                content |= {k: v for k, v in _ENVIRONMENT_KEYS.items() if k in content}
                digest.update(json.dumps(content, sort_keys=True).encode())
                continue
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()

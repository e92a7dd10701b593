"""A run folder's trained model: where its encoder is, and its model card made from the run's records.

``uae.Retriever``, ``python -m uae.search`` and ``python -m uae.export`` all take a run folder or an
exported encoder folder; this module decides which one a path is, and says what is wrong with one
that is neither, so the three give the same clear error for the same mistake.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from uae.core.errors import UAEError
from uae.results.cards import command_line, model_card
from uae.results.read import load_results, markdown_table
from uae.retrieval.st_layout import read_layout
from uae.storage.atomic import atomic_path

ENCODER = "encoder"
CARD = "README.md"


def is_run_folder(path: Path) -> bool:
    return (path / "results.json").is_file() or (path / ".hydra" / "config.yaml").is_file()


def find_encoder(path: str | os.PathLike) -> Path:
    """The sentence-transformers folder that ``path`` (a run folder or an encoder folder) holds."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UAEError(
            f"{path}: no such folder. Give a run folder (hydra.run.dir of a run with the fit stage) or an encoder "
            "folder; a model on the hub: download it first (huggingface_hub.snapshot_download) and give its folder."
        )
    if not path.is_dir():
        raise UAEError(f"{path} is a file; give a run folder or an exported encoder folder.")
    if (path / "modules.json").is_file():
        return path
    encoder = path / ENCODER
    if (encoder / "modules.json").is_file():
        return encoder
    if (encoder / "config.json").is_file():
        raise UAEError(
            f"{encoder} was exported before encoders were sentence-transformers folders. Add the missing files with "
            f"`python -m uae.export {path}`, then load it again."
        )
    if is_run_folder(path):
        raise UAEError(
            f"{path} is a run folder without an encoder: the run had no fit stage (only a fine-tuned run exports "
            "one to encoder/). Train with stages=[utility,fit,evaluate], or load a base model by its folder."
        )
    raise UAEError(
        f"{path} is neither a UAE run folder (results.json, .hydra/) nor a sentence-transformers folder (modules.json)."
    )


def run_results(run_dir: Path) -> dict[str, Any]:
    """The run's results.json (the fine-tuned encoder's evaluation and the run's resolved config)."""
    path = run_dir / "results.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UAEError(f"{run_dir} has no results.json: the run did not finish its evaluate stage.") from None
    except (OSError, ValueError) as exc:
        raise UAEError(f"{path} cannot be read ({exc}).") from exc
    if not isinstance(result, dict) or "config" not in result:
        raise UAEError(f"{path} lacks the run's config: not a results.json of this version.")
    return result


def write_card(encoder_dir: Path, card: Any) -> Path:
    with atomic_path(encoder_dir / CARD) as tmp:
        tmp.write_text(str(card), encoding="utf-8")
    return encoder_dir / CARD


def write_run_card(run_dir: Path, encoder_dir: Path | None = None, repo_id: str | None = None) -> Path:
    """Write the model card of a finished run's encoder (into ``encoder_dir``, else its own encoder/)."""
    result = run_results(run_dir)
    encoder_dir = encoder_dir or run_dir / ENCODER
    layout = read_layout(encoder_dir)[0]
    rows = load_results([d for d in (run_dir / "zero_shot", run_dir) if (d / "results.json").is_file()])
    card = model_card(
        result["config"], result, layout, rows, table=markdown_table(rows),
        command=result.get("command") or command_line(run_dir), repo_id=repo_id
    )
    return write_card(encoder_dir, card)

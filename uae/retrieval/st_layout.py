"""The sentence-transformers layout of an exported encoder: written by ``DualEncoder.save``, read back by
``uae.Retriever``.

Pooling, normalisation, instructions and max lengths live in UAE's config; a bare transformers folder
loses them, and whoever loads it elsewhere gets other embeddings without an error. These files carry
them in the format every sentence-transformers release reads (the classic ``sentence_transformers.models``
type names and ``pooling_mode_*`` keys, as on the hub's all-MiniLM-L6-v2), so LangChain, LlamaIndex or
Haystack load the model with its own settings:

- shared towers: the transformer, its tokenizer and ``sentence_bert_config.json`` at the top,
  ``1_Pooling/``, ``2_Normalize`` (when normalised);
- separate towers: a ``Router`` (sentence-transformers >= 5) with the routes ``query`` and
  ``document``, each a full Hugging Face folder (``query/``, ``passage/``) followed by the same pooling.

The instructions are the ``query`` and ``document`` prompts of ``config_sentence_transformers.json``,
which ``encode_query`` and ``encode_document`` prepend as UAE does. Different query and passage max
lengths of shared towers need ``query_length``/``document_length``, which only sentence-transformers 6
reads; every shipped config uses one length for both sides.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uae.core.errors import UAEError
from uae.storage.atomic import write_json

ROUTER_CONFIG = "router_config.json"
QUERY_TOWER, PASSAGE_TOWER = "query", "passage"
_TYPES = {
    "transformer": "sentence_transformers.models.Transformer",
    "pooling": "sentence_transformers.models.Pooling",
    "normalize": "sentence_transformers.models.Normalize",
    "router": "sentence_transformers.models.Router",
}


@dataclass(frozen=True)
class EncoderLayout:
    """Everything besides the weights that decides an embedding (the DualEncoder's settings)."""

    pooling: str
    normalize: bool
    query_instruction: str
    passage_instruction: str
    query_max_length: int
    passage_max_length: int
    shared: bool


def write_layout(folder: str | os.PathLike, layout: EncoderLayout, dimension: int) -> None:
    """Write the sentence-transformers files into an encoder folder whose towers are already saved
    (at the top when shared; in ``query/`` and ``passage/`` otherwise)."""
    folder = Path(folder)
    modules: list[dict[str, Any]] = []
    if layout.shared:
        write_json(folder / "sentence_bert_config.json", _transformer_config(layout))
        modules.append(_module(0, "", "transformer"))
    else:
        for tower, max_length in ((QUERY_TOWER, layout.query_max_length), (PASSAGE_TOWER, layout.passage_max_length)):
            write_json(folder / tower / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
        write_json(folder / ROUTER_CONFIG, {
            "types": {QUERY_TOWER: _TYPES["transformer"], PASSAGE_TOWER: _TYPES["transformer"]},
            "structure": {"query": [QUERY_TOWER], "document": [PASSAGE_TOWER]},
            "parameters": {"default_route": "document", "allow_empty_key": True},
        })
        modules.append(_module(0, "", "router"))
    write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dimension,
        "pooling_mode_cls_token": layout.pooling == "cls",
        "pooling_mode_mean_tokens": layout.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    modules.append(_module(1, "1_Pooling", "pooling"))
    if layout.normalize:
        (folder / "2_Normalize").mkdir(exist_ok=True)
        modules.append(_module(2, "2_Normalize", "normalize"))
    write_json(folder / "modules.json", modules)
    prompts = {"query": layout.query_instruction, "document": layout.passage_instruction}
    write_json(folder / "config_sentence_transformers.json", {
        "prompts": prompts if any(prompts.values()) else {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if layout.normalize else "dot",
    })


def tower_paths(folder: str | os.PathLike) -> tuple[Path, Path | None]:
    """The Hugging Face folders of an exported encoder: (query or shared tower, separate passage tower)."""
    folder = Path(folder)
    if (folder / ROUTER_CONFIG).is_file():
        return folder / QUERY_TOWER, folder / PASSAGE_TOWER
    return folder, None


def read_layout(folder: str | os.PathLike) -> tuple[EncoderLayout, Path, Path | None]:
    """The settings and tower folders of a sentence-transformers folder that UAE's encoder can run:
    a transformer (or a query/document Router of two), mean or CLS pooling, optionally normalised.

    Works on any such folder, not only UAE's exports (the hub's all-MiniLM-L6-v2 is one)."""
    folder = Path(folder)
    modules = _read_json(folder / "modules.json", folder)
    kinds = [_kind(m.get("type", "")) for m in modules] if isinstance(modules, list) else []
    if len(kinds) < 2 or kinds[0] not in ("transformer", "router") or kinds[1] != "pooling" or kinds[2:] not in ([], ["normalize"]):
        raise UAEError(
            f"{folder}/modules.json holds the modules {kinds or modules}: uae.Retriever runs a transformer (or a "
            "query/document Router), Pooling and optionally Normalize. Load this model with sentence-transformers instead."
        )
    pooling = _pooling_mode(_read_json(folder / modules[1]["path"] / "config.json", folder), folder)
    if kinds[0] == "router":
        query_path, passage_path = _router_towers(folder, modules[0].get("path", ""))
        query_max, passage_max = _max_length(query_path, "query"), _max_length(passage_path, "document")
    else:
        query_path, passage_path = folder / modules[0].get("path", ""), None
        query_max, passage_max = _max_length(query_path, "query"), _max_length(query_path, "document")
    st_config = _read_json(folder / "config_sentence_transformers.json", folder, missing={})
    prompts = st_config.get("prompts") or {}
    passage_prompt = next((prompts[n] for n in ("document", "passage", "corpus") if n in prompts), "")
    layout = EncoderLayout(
        pooling=pooling,
        normalize=kinds[-1] == "normalize",
        query_instruction=prompts.get("query") or "",
        passage_instruction=passage_prompt or "",
        query_max_length=query_max,
        passage_max_length=passage_max,
        shared=passage_path is None,
    )
    return layout, query_path, passage_path


def _transformer_config(layout: EncoderLayout) -> dict[str, Any]:
    config: dict[str, Any] = {"max_seq_length": layout.passage_max_length, "do_lower_case": False}
    if layout.query_max_length != layout.passage_max_length:
        config.update(query_length=layout.query_max_length, document_length=layout.passage_max_length)
    return config


def _module(idx: int, path: str, kind: str) -> dict[str, Any]:
    return {"idx": idx, "name": str(idx), "path": path, "type": _TYPES[kind]}


def _kind(type_name: str) -> str:
    """'sentence_transformers.models.Pooling' and '...modules.pooling.Pooling' alike -> 'pooling'."""
    last = type_name.rsplit(".", 1)[-1].lower()
    return {"asym": "router"}.get(last, last)


def _pooling_mode(config: dict[str, Any], folder: Path) -> str:
    modes = config.get("pooling_mode")
    if modes is None:
        modes = [mode for key, mode in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                                        ("pooling_mode_max_tokens", "max"), ("pooling_mode_mean_sqrt_len_tokens", "sqrt"),
                                        ("pooling_mode_weightedmean_tokens", "weightedmean"),
                                        ("pooling_mode_lasttoken", "lasttoken")) if config.get(key)]
    modes = [modes] if isinstance(modes, str) else list(modes)
    if modes not in (["mean"], ["cls"]) or config.get("include_prompt") is False:
        raise UAEError(
            f"{folder}: pooling {modes} (include_prompt={config.get('include_prompt', True)}) is not one uae.Retriever "
            "runs (mean or cls, prompt included). Load this model with sentence-transformers instead."
        )
    return modes[0]


def _router_towers(folder: Path, path: str) -> tuple[Path, Path]:
    router = folder / path
    config = _read_json(router / ROUTER_CONFIG, folder)
    structure = config.get("structure") or {}
    routes = {}
    for route in ("query", "document"):
        ids = structure.get(route) or []
        if len(ids) != 1 or _kind(config.get("types", {}).get(ids[0], "")) != "transformer":
            raise UAEError(
                f"{router / ROUTER_CONFIG}: route {route!r} is {ids}; uae.Retriever runs one transformer per route. "
                "Load this model with sentence-transformers instead."
            )
        routes[route] = router / ids[0]
    return routes["query"], routes["document"]


def _max_length(tower: Path, task: str) -> int:
    """The tokens a side is truncated to, as sentence-transformers decides it for ``task``."""
    config = _read_json(tower / "sentence_bert_config.json", tower, missing={})
    length = config.get(f"{task}_length") or config.get("max_seq_length")
    if length:
        return int(length)
    tokenizer = _read_json(tower / "tokenizer_config.json", tower, missing={})
    model = _read_json(tower / "config.json", tower, missing={})
    limits = [int(v) for v in (tokenizer.get("model_max_length"), model.get("max_position_embeddings"))
              if isinstance(v, int | float) and 0 < v < 1e6]
    return min(limits) if limits else 512


def _read_json(path: Path, folder: Path, missing: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing is not None:
            return missing
        raise UAEError(
            f"{folder} is not a sentence-transformers folder: {path.relative_to(folder) if path.is_relative_to(folder) else path} "
            "is missing. Export a run's encoder with `python -m uae.export RUN_DIR`."
        ) from None
    except (OSError, ValueError) as exc:
        raise UAEError(f"{path} cannot be read as JSON ({exc}).") from exc

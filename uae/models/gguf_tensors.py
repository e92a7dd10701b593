"""A GGUF file read with the ``gguf`` package alone: its metadata as Python values, its tensors as float32.

transformers' own GGUF loader de-quantises only some block types (not Q5_0, which the Gemma 3 file
uses) and only some architectures, so a converter that must read any block type goes through
``gguf.GGUFReader`` and ``gguf.quants.dequantize`` instead. Two facts of the format live here and
nowhere else: GGUF lists a tensor's dimensions innermost first (``ne[0]`` is the row length), the
reverse of numpy's and PyTorch's order, so a ``[640, 1024]`` GGUF matrix is the ``(1024, 640)``
``nn.Linear`` weight; and a quantised tensor's data comes as rows of packed bytes that only
``dequantize`` turns into numbers. What the names and numbers mean for one architecture is its
converter's job (e.g. :mod:`uae.models.gemma3_gguf`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uae.core.errors import ModelNotFoundError

if TYPE_CHECKING:
    from gguf import GGUFReader

__all__ = ["float_tensor", "float_tensors", "metadata", "open_gguf"]

#: Arrays longer than this (the vocabulary: 262,144 strings) are left out of :func:`metadata`: reading
#: them costs seconds, and the tokenizer reads them itself.
_LONG_ARRAY = 4096


def open_gguf(path: Path, why: str) -> GGUFReader:
    """The file as a ``GGUFReader`` (memory-mapped: nothing is read yet); a file that is no GGUF is a
    :class:`ModelNotFoundError` that says what it was for (``why``)."""
    from gguf import GGUFReader  # deferred: start-up speed (only a conversion reads GGUF)

    try:
        return GGUFReader(str(path))
    except (ValueError, OSError, IndexError) as exc:
        raise ModelNotFoundError(
            f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}); {why}."
        ) from exc


def metadata(reader: GGUFReader) -> dict[str, Any]:
    """The key/value metadata as plain Python values (str, int, float, bool, lists of them), without the
    ``GGUF.*`` header fields and without arrays longer than :data:`_LONG_ARRAY`."""
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or len(field.data) > _LONG_ARRAY:
            continue
        out[key] = field.contents()
    return out


def float_tensor(tensor: Any) -> np.ndarray:
    """One ``ReaderTensor`` de-quantised to a float32 array in PyTorch's dimension order."""
    from gguf.quants import dequantize  # deferred: start-up speed

    shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF: innermost first; numpy: outermost first
    values = dequantize(np.asarray(tensor.data), tensor.tensor_type)
    if values.size != int(np.prod(shape)):
        raise ModelNotFoundError(
            f"GGUF tensor {tensor.name} ({tensor.tensor_type.name}, shape {list(tensor.shape)}) holds "
            f"{values.size} values after de-quantisation, not {int(np.prod(shape))}: the file is damaged."
        )
    if not values.flags.writeable:  # F32 comes back as a view of the memory-mapped file: own a copy
        values = values.copy()
    return np.ascontiguousarray(values.reshape(shape), dtype=np.float32)


def float_tensors(reader: GGUFReader) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor of the file by its GGUF name, one at a time (so only one de-quantised copy at a time
    is held beside what the caller keeps)."""
    for tensor in reader.tensors:
        yield tensor.name, float_tensor(tensor)

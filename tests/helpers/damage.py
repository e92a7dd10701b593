"""Damage made on purpose to real files, and writers killed mid-write (their temporary files left behind)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pyarrow.parquet as pq

from tests.helpers.paths import ROOT


def xor_byte(path: Path, offset: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def zero(path: Path, start: int, size: int) -> None:
    data = bytearray(path.read_bytes())
    data[start : start + size] = bytes(size)
    path.write_bytes(bytes(data))


def tensor_bytes(path: Path) -> tuple[int, int]:
    """Where the largest tensor's bytes lie inside a torch.save zip: (offset, size)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    header = path.read_bytes()[info.header_offset : info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    return start, info.file_size


def utility_exponent_byte(path: Path) -> int:
    """A byte of the last utility value a parquet file stores: the lowest exponent bit sits in it (0x10),
    so flipping it doubles or halves that utility, a finite number that no reader can tell is wrong."""
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(0).column(meta.schema.names.index("utility"))
    end = column.data_page_offset if column.has_dictionary_page else column.data_page_offset + column.total_compressed_size
    return end - 2  # little-endian doubles: the last byte is sign + 7 exponent bits, this one 4 exponent + 4 mantissa


def writer(target: Path, then: str) -> subprocess.Popen:
    """A process writing ``target`` through atomic_path, which ``then`` (python) inside the write."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        from uae.storage.atomic import atomic_path
        with atomic_path(Path({str(target)!r})) as tmp:
            tmp.write_text("half a file")
            print("writing", flush=True)
            {then}
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def killed_writer(target: Path) -> Path:
    """The temporary file a writer of ``target`` left when it was killed (SIGKILL) mid-write."""
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = writer(target, "os.kill(os.getpid(), signal.SIGKILL)")
    proc.wait()
    (left,) = target.parent.glob(f".{target.name}.*.tmp")
    return left

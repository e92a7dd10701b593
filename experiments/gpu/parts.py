"""Cut what travels to the lent GPU machine into calls that fit its limit, and put it back together there.

    python experiments/gpu/parts.py split STAGE OUT --part-bytes N   # here: OUT/p1, OUT/p2, ... each <= N bytes
    python experiments/gpu/parts.py join DIR                         # there: DIR holds p1..pn copied together

Why: the device tool carries at most 64 MiB per call, and the working tree (over 38 MiB of committed run
records) travels with every call, so a wheel of 43 MB or a model of 93 MB cannot go in one piece. ``split``
walks STAGE's files in path order and fills part after part: a file that fits what is left of the part goes
whole, one that does not is cut into ``FILE.part000``, ``FILE.part001``, ... across parts. ``p1`` also gets
``SHA256SUMS`` (of the whole files) and ``PARTS`` (which part holds each piece), so that ``join`` can name
a missing piece and the call that carries it, instead of installing half a wheel. Standard library only: it
runs on the machine's bare Python.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
from pathlib import Path

CHUNK = re.compile(r"^(?P<whole>.+)\.part(?P<index>\d{3})$")
BLOCK = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def split(stage: Path, out: Path, part_bytes: int) -> list[Path]:
    """Fill ``out/p1``, ``out/p2``, ... from ``stage``; returns the part folders. Old parts in ``out`` go first."""
    if part_bytes < 2 * BLOCK:
        raise SystemExit(f"--part-bytes {part_bytes}: at least 2 MiB per part")
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"nothing to split in {stage}")
    for old in out.glob("p[0-9]*"):
        shutil.rmtree(old)
    parts: list[Path] = []
    sums: list[str] = []
    where: list[str] = []
    room = 0

    def next_part() -> Path:
        nonlocal room
        parts.append(out / f"p{len(parts) + 1}")
        parts[-1].mkdir(parents=True)
        room = part_bytes - (BLOCK // 16 if len(parts) == 1 else 0)  # p1 also holds SHA256SUMS and PARTS
        return parts[-1]

    def put(part: Path, name: str, data: bytes | Path) -> None:
        nonlocal room
        (part / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, part / name)
            room -= data.stat().st_size
        else:
            (part / name).write_bytes(data)
            room -= len(data)
        where.append(f"{part.name} {name}")

    part = next_part()
    for path in files:
        rel = path.relative_to(stage).as_posix()
        sums.append(f"{sha256(path)}  {rel}")
        size = path.stat().st_size
        if size > room and room < BLOCK:  # too little left for a useful piece
            part = next_part()
        if size <= room:
            put(part, rel, path)
            continue
        with path.open("rb") as source:
            index = 0
            while chunk := source.read(room):
                put(part, f"{rel}.part{index:03d}", chunk)
                index += 1
                if source.tell() < size:
                    part = next_part()
    (parts[0] / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    (parts[0] / "PARTS").write_text("\n".join(where) + "\n")
    return parts


def join(folder: Path) -> int:
    """Join every ``FILE.partNNN`` series into FILE, check SHA256SUMS, remove the pieces; 1 on any gap or mismatch."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        print(
            f"{folder}: no SHA256SUMS (not a folder made by parts.py split, or p1 was not carried)",
            file=sys.stderr,
        )
        return 1
    carried_in = dict(
        reversed(line.split(" ", 1)) for line in (folder / "PARTS").read_text().splitlines() if line
    )
    series: dict[str, list[Path]] = {}
    for piece in folder.rglob("*.part[0-9][0-9][0-9]"):
        found = CHUNK.match(piece.relative_to(folder).as_posix())
        if found:
            series.setdefault(found["whole"], []).append(piece)
    expected: dict[str, int] = {}
    for name in carried_in:
        found = CHUNK.match(name)
        if found:
            expected[found["whole"]] = max(expected.get(found["whole"], 0), int(found["index"]) + 1)
    missing = [
        f"{whole}.part{i:03d} (in {carried_in[f'{whole}.part{i:03d}']})"
        for whole, count in expected.items()
        for i in range(count)
        if not (folder / f"{whole}.part{i:03d}").is_file() and not (folder / whole).is_file()
    ]
    missing += [
        f"{rel} (in {part})"
        for rel, part in carried_in.items()
        if not CHUNK.match(rel) and not (folder / rel).is_file()
    ]
    if missing:
        print(
            "missing pieces; copy every part into this folder first:\n  " + "\n  ".join(missing),
            file=sys.stderr,
        )
        return 1
    for whole, pieces in series.items():
        with (folder / whole).open("wb") as out:
            for piece in sorted(pieces):
                with piece.open("rb") as f:
                    shutil.copyfileobj(f, out, BLOCK)
        for piece in pieces:
            piece.unlink()
    bad = []
    for line in sums.read_text().splitlines():
        digest, rel = line.split("  ", 1)
        if sha256(folder / rel) != digest:
            bad.append(rel)
    if bad:
        print(
            "sha256 mismatch (a piece was damaged or is from another prep): " + ", ".join(bad),
            file=sys.stderr,
        )
        return 1
    print(
        f"{folder}: {len(sums.read_text().splitlines())} files whole and checked ({len(series)} joined from pieces)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="STAGE -> OUT/p1..pn, each at most --part-bytes")
    cut.add_argument("stage", type=Path)
    cut.add_argument("out", type=Path)
    cut.add_argument("--part-bytes", type=int, required=True)
    glue = commands.add_parser("join", help="join the pieces in DIR and check them")
    glue.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "join":
        return join(args.dir)
    for part in split(args.stage, args.out, args.part_bytes):
        size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
        print(f"{part} {size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

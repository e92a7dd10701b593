"""``python -m uae.table.integrity check FILE...`` checks files by hand (tables, chunks, ``.pt`` caches);
``stamp TABLE...`` gives a utility table written before digests existed its digest, after the
consistency check that stands in for one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uae.core.errors import DamagedFileError
from uae.storage.digest import check_parquet, write_parquet
from uae.storage.tensors import read_tensors
from uae.table.read import check_consistency


def check_file(path: Path) -> str:
    """One line on a file's state: its digest checked, or why it has none; raises when it is damaged."""
    if path.suffix == ".parquet":
        if check_parquet(path):
            return "ok (content digest matches)"

        check_consistency(path)
        return "no content digest (written before digests); its utilities are consistent"
    if path.suffix == ".pt":
        payload = read_tensors(path)
        if "digest" not in payload:
            return "no content digest (written before digests): UAE rebuilds it on its next use"
        return "ok (content digest matches)"
    raise DamagedFileError(f"{path}: not a file UAE checks (.parquet tables and chunks, .pt caches).")


def stamp(path: Path) -> None:
    """Give a utility table written before digests its digest, once its utilities pass the consistency check."""
    import pyarrow.parquet as pq  # deferred: start-up speed

    if check_parquet(path):
        return
    check_consistency(path)
    write_parquet(pq.read_table(path), path, compression="zstd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "stamp"])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        try:
            if args.command == "stamp":
                stamp(path)
                print(f"{path}: {check_file(path)}")
            else:
                print(f"{path}: {check_file(path)}")
        except DamagedFileError as exc:
            failed += 1
            print(f"{path}: DAMAGED: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fetch the official QASPER v0.3 files (``make data``); files already present are left alone.

Usage: ``python -m uae.data.download --dir DIR [--splits train dev test]``. Archives are unpacked into
a temporary folder and each JSON file is renamed into place only once complete.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

from uae.core.errors import DataError, cli_main
from uae.data.qasper import RAW_FILE
from uae.storage.atomic import atomic_path

BASE_URL = "https://qasper-dataset.s3.us-west-2.amazonaws.com/"
ARCHIVES = {
    "train": "qasper-train-dev-v0.3.tgz",
    "dev": "qasper-train-dev-v0.3.tgz",
    "test": "qasper-test-and-evaluator-v0.3.tgz",
}


def download(data_dir: Path, splits: list[str], version: str = "0.3") -> list[Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    wanted = {s: data_dir / RAW_FILE.format(split=s, version=version) for s in splits}
    missing = {s: p for s, p in wanted.items() if not p.is_file()}
    for split, path in wanted.items():
        if split not in missing:
            print(f"{path}: present, kept")
    for archive in sorted({ARCHIVES[s] for s in missing}):
        url = BASE_URL + archive
        print(f"fetching {url}")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                blob = response.read()
        except (OSError, ValueError) as exc:  # URLError, IncompleteRead, timeouts
            raise DataError(
                f"Could not fetch {url} ({exc}). Without the internet, copy qasper-*-v{version}.json into "
                f"{data_dir} by hand, or point UAE_DATA_DIR at a folder that holds them."
            ) from exc
        try:
            tar = tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")  # noqa: SIM115 (closed by the `with tar:` below)
        except tarfile.TarError as exc:
            raise DataError(f"{url} did not give a readable .tgz archive ({exc}); try again later.") from exc
        with tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                for split, path in missing.items():
                    if name == path.name and member.isfile():
                        with atomic_path(path) as tmp:
                            tmp.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
                        print(f"{path}: written")
    absent = [str(p) for p in wanted.values() if not p.is_file()]
    if absent:
        raise DataError(f"The archives did not contain {absent}; the release layout may have changed.")
    return list(wanted.values())


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="folder to hold qasper-{split}-v0.3.json")
    parser.add_argument("--splits", nargs="+", default=["train", "dev", "test"], choices=sorted(ARCHIVES))
    args = parser.parse_args(argv)
    download(args.dir, args.splits)
    return 0


if __name__ == "__main__":
    sys.exit(main())

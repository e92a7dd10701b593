"""The command line of model resolution: ``python -m uae.models list | resolve ID --cache-dir DIR``.

``list`` shows the bundled models, whether their packages are installed and the pip command for
each; ``resolve`` prints the folder a run would load, converting a bundled model once, so that the
slow first conversion can happen ahead of a run (or on a machine that has the packages).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from uae.core.errors import cli_main
from uae.models.registry import BUNDLED
from uae.models.resolve import resolve_model


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a model found nowhere is printed as one ``error:`` paragraph (exit status 2)."""
    parser = argparse.ArgumentParser(prog="python -m uae.models", description="UAE model resolution.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the bundled models, whether installed, and how to install them")
    res = sub.add_parser("resolve", help="print the local folder for a model id (converting once)")
    res.add_argument("model_id")
    res.add_argument("--cache-dir", default=os.environ.get("UAE_CACHE_DIR", ".cache"))
    res.add_argument("--local-path", default=None)
    res.add_argument("--offline", action="store_true", default=None)
    args = parser.parse_args(argv)
    if args.command == "list":
        for model_id, entry in BUNDLED.items():
            state = "installed" if entry.installed else "missing"
            print(f"{model_id}\t{entry.kind}\t{state}\t{entry.install_command}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = resolve_model(
        args.model_id, local_path=args.local_path, cache_dir=args.cache_dir, offline=args.offline
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write any loaded dataset in the field's formats: ``python -m uae.table.export {beir,groups} ...``.

    python -m uae.table.export beir data=qasper --splits dev --to /tmp/qasper-beir
    python -m uae.table.export beir data=squad --to /tmp/squad-beir           # train and dev, one corpus
    python -m uae.table.export groups +experiment=qasper_minilm --table experiments/qasper/utilities/train.parquet --to train.jsonl

The dataset is chosen by the same config overrides as ``python -m uae.run`` (``data=``, ``data.dir=``,
``data.max_documents=``...), so whatever a run can load can be exported. ``beir`` writes the BEIR
folder that ``data=beir data.dir=DIR`` reads back; ``groups`` writes a utility table as FlagEmbedding
JSONL, which ``utility.table=FILE`` trains on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from uae.core.config import compose
from uae.core.errors import UAEError, cli_main
from uae.data.beir import write_beir
from uae.data.loading import load_split
from uae.table.flagembedding import export_groups
from uae.table.read import read_table_spec

log = logging.getLogger("uae.table.export")


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.table.export",
        description="Write a dataset (any data= config) as a BEIR folder, or a utility table as FlagEmbedding JSONL.",
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("format", choices=["beir", "groups"], help="beir: corpus/queries/qrels folder; groups: FlagEmbedding JSONL")
    parser.add_argument("overrides", nargs="*", help="config overrides choosing the dataset, e.g. data=squad data.max_documents=4")
    parser.add_argument("--to", type=Path, required=True, help="the folder (beir) or .jsonl file (groups) to write")
    parser.add_argument("--splits", nargs="+", help="beir: the splits to write (default: data.train_split and data.eval_split)")
    parser.add_argument("--table", type=Path, help="groups: the utility table (.parquet) to export")
    parser.add_argument("--split", help="groups: the split the table was made from (default: the table's own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = compose(args.overrides)
    if args.format == "beir":
        names = args.splits or list(dict.fromkeys([cfg.data.train_split, cfg.data.eval_split]))
        counts = write_beir([load_split(cfg, name) for name in names], args.to)
        print(f"wrote {args.to}: {counts['passages']} passages, {counts['queries']} queries, "
              f"{counts['qrels']} qrels lines for {', '.join(names)}")
    else:
        if args.table is None:
            raise UAEError("groups needs --table PATH: the utility table (.parquet) to export.")
        name = args.split or read_table_spec(args.table).get("split")
        if name is None:
            raise UAEError(f"{args.table} records no split: name the one it was made from with --split NAME.")
        n = export_groups(args.table, load_split(cfg, name), args.to)
        print(f"wrote {args.to}: {n} training groups of {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

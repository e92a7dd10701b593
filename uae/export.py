"""Publish a trained model or a utility table: ``python -m uae.export PATH [--to DIR] [--push-to-hub REPO_ID]``.

    python -m uae.export logs/quickstart/runs/<time>                      # (re)write <run>/encoder: files + card
    python -m uae.export logs/quickstart/runs/<time> --to my-retriever    # a copy to hand out
    python -m uae.export logs/quickstart/runs/<time> --push-to-hub me/uae-minilm-qasper
    python -m uae.export experiments/qasper/utilities/dev.parquet --to qasper-utilities [--push-to-hub me/qasper-utilities]

A run folder gives its fine-tuned encoder as a sentence-transformers folder with a model card made from
the run's results (an encoder exported before encoders were sentence-transformers folders gets the
missing files from the run's config), and with an ONNX export of each tower in ``onnx/model.onnx``, where
sentence-transformers' ``backend="onnx"`` and ``uae.Retriever.load(..., runtime="onnx")`` find it (it
needs onnx and onnxruntime, pip install 'uae[onnx]'; without them, or with ``--no-onnx``, it is left out). A utility table (.parquet) gives a dataset folder, data/<split>.parquet
and a dataset card, which ``datasets.load_dataset`` reads. ``--push-to-hub`` uploads the folder with
huggingface_hub (a model repo, or a dataset repo for a table); it needs a token (``hf auth login`` or
HF_TOKEN) and the network, and checks both before anything is sent: without one it says which is
missing and pushes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from uae.core.errors import UAEError, cli_main
from uae.storage.atomic import atomic_folder

log = logging.getLogger(__name__)


def export_run(run_dir: Path, to: Path | None = None, repo_id: str | None = None, *, onnx: bool = True) -> Path:
    """Write a run's encoder, as a sentence-transformers folder with its model card, to ``to`` (default: in place);
    ``onnx``: with ``onnx/model.onnx`` beside each tower when onnx and onnxruntime are installed."""
    # deferred: start-up speed
    from uae.results.folder import ENCODER, find_encoder, is_run_folder, run_results, write_run_card

    if not run_dir.is_dir() or not is_run_folder(run_dir):
        find_encoder(run_dir)  # its message says what the path is instead
        raise UAEError(f"{run_dir} is an encoder folder, not a run folder: give the run folder that holds it.")
    source = run_dir / ENCODER
    if not (source / "config.json").is_file() and not (source / "modules.json").is_file():
        find_encoder(run_dir)  # the run folder without an encoder

    def complete(folder: Path) -> None:
        if not (folder / "modules.json").is_file():
            _add_layout(folder, run_results(run_dir), where=source)
        if (run_dir / "results.json").is_file():
            write_run_card(run_dir, folder, repo_id)
        if onnx:
            add_onnx(folder)

    if to is None:
        complete(source)
        return source
    with _replacing(to) as tmp:  # the copy appears complete, or not at all
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        complete(tmp)
    return to


def _add_layout(folder: Path, result: dict, *, where: Path) -> None:
    """The sentence-transformers files of an encoder exported as a bare transformers folder, from its run's config
    (``where``: the run's encoder, named in messages; ``folder`` may be the export's temporary copy)."""
    from uae.retrieval.encoder import DualEncoder  # deferred: start-up speed
    from uae.retrieval.st_layout import EncoderLayout, write_layout

    encoder = dict((result["config"].get("model") or {}).get("encoder") or {})
    if not encoder.get("shared", True):
        raise UAEError(
            f"{where}: separate query and passage towers exported in the old layout (passage/ inside the query "
            "tower) cannot be converted; rerun the fit stage to export them as a sentence-transformers Router."
        )
    # a setting an old run's config lacks is the one the encoder took: DualEncoder's default
    defaults = {name: p.default for name, p in inspect.signature(DualEncoder).parameters.items()}
    settings = {f.name: encoder.get(f.name) for f in fields(EncoderLayout)}
    layout = EncoderLayout(**{k: defaults[k] if v is None else v for k, v in settings.items()} | {"shared": True})
    hidden = json.loads((folder / "config.json").read_text(encoding="utf-8"))["hidden_size"]
    write_layout(folder, layout, int(hidden))


def add_onnx(folder: Path) -> None:
    """``onnx/model.onnx`` in each tower of an encoder folder: sentence-transformers' ``backend="onnx"`` loads it
    from there (through optimum), and UAE's runtime onnx uses it instead of exporting again. Each ``onnx/``
    appears complete or not at all; one already made from these weights is kept."""
    # deferred: start-up speed (torch)
    from uae.retrieval.onnx_export import onnx_spec, read_export, write_export
    from uae.retrieval.runtime import SHIPPED, require_onnx
    from uae.retrieval.st_layout import tower_paths

    try:
        require_onnx("the ONNX file of the export (onnx/model.onnx)")
    except UAEError as exc:
        log.warning("%s It is left out (--no-onnx leaves it out without this note).", exc)
        return
    for tower in (t for t in tower_paths(folder) if t is not None):
        if read_export(tower / SHIPPED, onnx_spec(tower, "fp32")) is None:
            with atomic_folder(tower / SHIPPED) as tmp:
                write_export(tower, tmp, "fp32")


def export_table(table: Path, to: Path) -> Path:
    """A utility table as a dataset folder: ``data/<split>.parquet`` (metadata kept) and a dataset card."""
    import pyarrow.parquet as pq  # deferred: start-up speed

    from uae.results.cards import dataset_card
    from uae.results.folder import write_card
    from uae.table.read import read_table, read_table_spec

    spec = read_table_spec(table)  # refuses a file that is not a utility table, with the reason
    rows = read_table(table)  # today's column names (document_id), whatever the table's age
    split = str(spec.get("split") or table.stem)
    file = f"data/{split}.parquet"
    with _replacing(to) as tmp:
        (tmp / "data").mkdir()
        pq.write_table(rows, tmp / file)
        card = dataset_card(spec, n_rows=rows.num_rows, n_questions=len(set(rows.column("question_id").to_pylist())),
                            file=file, split=split)
        write_card(tmp, card)
    return to


def push(folder: Path, repo_id: str, *, repo_type: str, private: bool) -> str:
    """Upload ``folder`` to the hub, once the token and the network are known to be there."""
    from huggingface_hub import DatasetCard, HfApi, ModelCard  # deferred: start-up speed

    token = hub_token(repo_id)
    card = (DatasetCard if repo_type == "dataset" else ModelCard).load(folder / "README.md")
    try:
        card.validate(repo_type=repo_type)  # the hub's own check of the card's metadata, before any upload
    except ValueError as exc:
        raise UAEError(f"the hub rejects the card's metadata ({exc}); nothing was pushed.") from exc
    except Exception as exc:  # the request itself failed (connection, HTTP): reported, never a traceback
        raise UAEError(f"the hub could not check the card ({type(exc).__name__}: {exc}); nothing was pushed.") from exc
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                                   commit_message="Upload from UAE (python -m uae.export)")
    except Exception as exc:  # HTTP and connection errors of any kind: reported, never a traceback
        raise UAEError(f"--push-to-hub {repo_id} failed: {type(exc).__name__}: {exc}") from exc
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}")


def hub_token(repo_id: str) -> str:
    """The token to push with, once it and the network are known to be there; else what is missing."""
    from huggingface_hub import get_token  # deferred: start-up speed

    token = get_token()
    problems = _hub_problems(token)
    if problems:
        raise UAEError(f"--push-to-hub {repo_id}: nothing was written or pushed: " + "; ".join(problems) + ".")
    assert token is not None
    return token


def _hub_problems(token: str | None) -> list[str]:
    """What a push lacks: the token, the network, or both (checked with one authenticated request)."""
    from huggingface_hub import HfApi, constants  # deferred: start-up speed
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    problems = []
    if not token:
        problems.append("no Hugging Face token (log in with `hf auth login`, or set HF_TOKEN)")
    if constants.HF_HUB_OFFLINE:
        variables = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v)]
        problems.append(f"no network: offline mode is on ({', '.join(f'{v}={os.environ[v]}' for v in variables)})")
        return problems
    if not token:
        return problems
    try:
        HfApi(token=token).whoami()
    except OfflineModeIsEnabled:
        problems.append("no network: huggingface_hub is in offline mode")
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        problems.append("the token was rejected by the hub (401); log in again" if status == 401 else f"the hub answered {status}: {exc}")
    except Exception as exc:  # noqa: BLE001 (connection refused, DNS, timeouts: whatever the HTTP client raises)
        problems.append(f"no network: {constants.ENDPOINT} cannot be reached ({type(exc).__name__}: {exc})")
    return problems


@contextlib.contextmanager
def _replacing(to: Path) -> Iterator[Path]:
    """A temporary folder beside ``to`` that replaces it only when the block succeeds; ``to`` may exist only
    as an empty folder or an earlier export (a card in it), never as someone's other files."""
    if to.exists() and not _replaceable(to):
        raise UAEError(f"--to {to}: exists and is not an earlier export; give a new or empty folder.")
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UAEError(f"--to {to}: cannot write there ({exc.strerror}).") from exc
    with atomic_folder(to) as tmp:
        yield tmp


def _replaceable(folder: Path) -> bool:
    """An empty folder, or one that an earlier export wrote (a model's modules.json, a dataset's data/ and card)."""
    if not folder.is_dir():
        return False
    names = {p.name for p in folder.iterdir()}
    return not names or "modules.json" in names or ("data" in names and names <= {"data", "README.md", ".gitattributes"})


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uae.export",
        description="Write a run's fine-tuned encoder (a sentence-transformers folder with a model card) or a utility "
        "table (a dataset folder with a card), and optionally push it to the Hugging Face hub.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path, help="a run folder (hydra.run.dir of a run with the fit stage), or a utility table (.parquet)")
    parser.add_argument("--to", type=Path, metavar="DIR", help="write the folder here (default: a run's own encoder/; needed for a table unless pushing)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload to this hub repo (owner/name): a model, or a dataset for a table")
    parser.add_argument("--private", action="store_true", help="create the hub repo as private")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false",
                        help="leave out the ONNX export of the encoder (onnx/model.onnx, made when onnx and onnxruntime are installed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.push_to_hub:
        hub_token(args.push_to_hub)  # before any work: without a token or the network, say so and stop
    with contextlib.ExitStack() as stack:
        if args.path.suffix == ".parquet":
            if args.to is None and not args.push_to_hub:
                raise UAEError("a utility table needs --to DIR (or --push-to-hub REPO_ID) to be written to.")
            if not args.path.is_file():
                raise UAEError(f"{args.path}: no such file.")
            to = args.to or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="uae-export-"))) / "dataset"
            folder, repo_type = export_table(args.path, to), "dataset"
        else:
            to = args.to
            if to is None and args.push_to_hub:  # a copy, so the card names the repo without touching the run
                to = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="uae-export-"))) / "model"
            folder, repo_type = export_run(args.path, to, args.push_to_hub, onnx=args.onnx), "model"
        if not args.push_to_hub or args.to is not None:
            print(f"wrote {folder}", flush=True)
        if args.push_to_hub:
            url = push(folder, args.push_to_hub, repo_type=repo_type, private=args.private)
            print(f"pushed {args.path} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

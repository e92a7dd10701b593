"""Shared fixtures: the shared QASPER and SQuAD files and their parsed splits, tiny QASPER fixtures in both
layouts, tiny models, and the tiny pipeline outputs that many tests read (a utility table, one trained run,
one sweep), each made once per session (once across pytest-xdist workers: tests/helpers/shared.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Before anything imports huggingface_hub, which reads the switch once: the library calls made in this
# process (not only those of the processes the tests start) never wait on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from tests.helpers.paths import FIXTURES, ROOT, SHARED_DATA
from tests.helpers.runs import ENV, TRAINED_STAGES, run_stages, tiny_llm, tiny_model, uae_run
from tests.helpers.shared import copy_of, shared_folder


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach a hub: everything they load is local or bundled."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "qasper-dev-v0.3.json").is_file():
        pytest.fail(f"QASPER files not found in {SHARED_DATA}; set UAE_DATA_DIR")
    return SHARED_DATA


@pytest.fixture(scope="session")
def qasper_dev(shared_data: Path):
    """All of QASPER dev, parsed once per worker (read-only: tests make changed copies)."""
    from uae.data.qasper import load_qasper

    return load_qasper("dev", shared_data, allow_hub=False)


@pytest.fixture(scope="session")
def qasper_train(shared_data: Path):
    """All of QASPER train, parsed once per worker (read-only)."""
    from uae.data.qasper import load_qasper

    return load_qasper("train", shared_data, allow_hub=False)


@pytest.fixture(scope="session")
def tiny_raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding our hand-made two-paper fixture under the official file name.

    The fixture is committed under another name so that nothing in git looks like a QASPER release file.
    """
    return shared_folder(
        tmp_path_factory, "qasper_raw", lambda folder: shutil.copy(FIXTURES / "qasper_tiny_raw.json", folder / "qasper-dev-v0.3.json")
    )


@pytest.fixture(scope="session")
def tiny_hf_dir() -> Path:
    return FIXTURES / "qasper_hf"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from uae.models import resolve_model

    return resolve_model("sentence-transformers/all-MiniLM-L6-v2", cache_dir=ROOT / ".cache")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer: real code paths, millisecond forwards."""

    def build(path: Path) -> None:
        import torch
        from transformers import AutoTokenizer, BertConfig, BertModel

        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
        BertModel(config).save_pretrained(path)
        tokenizer.save_pretrained(path)

    return shared_folder(tmp_path_factory, "tiny-bert", build)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama (hidden 32) with SmolLM2's tokenizer and chat template."""

    def build(path: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        from uae.models import BUNDLED

        # The tokenizer (and chat template) straight from the bundled GGUF, as the conversion reads it: seconds,
        # where converting the whole of SmolLM2 takes half a minute of a worker (tests/models/test_hub.py does, slow).
        gguf = BUNDLED["HuggingFaceTB/SmolLM2-135M-Instruct"].locate()[0]
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.model_max_length = 8192  # what the conversion sets (the GGUF carries no limit)
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=512,
            initializer_range=0.2,  # peaky outputs, so that different inputs give visibly different numbers
            tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        LlamaForCausalLM(config).save_pretrained(path)
        tokenizer.save_pretrained(path)

    return shared_folder(tmp_path_factory, "tiny-llama", build)


@pytest.fixture(scope="session")
def tiny_lm_gguf_dir(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_lm_dir`` with its weights also as ``tiny.gguf`` (float32), which llm.engine=llamacpp finds beside the tokenizer."""
    from tests.helpers.tiny_llama_gguf import write_tiny_llama_gguf
    from uae.models import BUNDLED

    def build(folder: Path) -> None:
        copy_of(tiny_lm_dir, folder)
        write_tiny_llama_gguf(folder, folder / "tiny.gguf", BUNDLED["HuggingFaceTB/SmolLM2-135M-Instruct"].locate()[0])

    return shared_folder(tmp_path_factory, "tiny-llama-gguf", build)


# UAE_SQUAD_DIR, else next to the QASPER folder (the shared data layout), else ../shared/data/squad
SQUAD_PLACES = [Path(p) for p in (os.environ.get("UAE_SQUAD_DIR"),) if p] + [
    SHARED_DATA.parent / "squad", ROOT.parent / "shared" / "data" / "squad",
]


@pytest.fixture(scope="session")
def squad_data() -> Path:
    """The shared SQuAD v1.1 files split by article (its README): train and dev."""
    for place in SQUAD_PLACES:
        if (place / "squad-dev-v1.1.json").is_file():
            return place
    pytest.fail(f"SQuAD files not found in {', '.join(map(str, SQUAD_PLACES))}; set UAE_SQUAD_DIR")


# --------------------------------------------------------------------------------------------------
# tiny pipeline outputs, made once per session


@dataclass(frozen=True)
class TinyTables:
    """One utility stage on the tiny fixture with tiny models (dev, 3 candidates, chunks of 2 questions):
    ``folder`` holds ``cache/`` (chunks, embeddings), ``tables/dev.parquet`` and the run folder ``run/``.
    ``args`` are its overrides, less ``utility.table_dir`` and the stages."""

    folder: Path
    args: tuple[str, ...]

    @property
    def table(self) -> Path:
        return self.folder / "tables" / "dev.parquet"


@pytest.fixture(scope="session")
def tiny_tables(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path) -> TinyTables:
    args = (
        f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *tiny_llm(tiny_lm_dir), "utility.splits=[dev]",
        "data.train_split=dev", "candidates.size=3", "utility.chunk_questions=2",
    )

    def build(folder: Path) -> None:
        run_stages(folder, *args, f"utility.table_dir={folder / 'tables'}", "stages=[utility]")

    return TinyTables(shared_folder(tmp_path_factory, "tiny-tables", build), args)


# The one tiny trained run that the tests of a trained run's folder share (the pipeline's own checks, the
# model card, export, search, the Retriever API, the README's use-elsewhere block). Separate query and
# passage towers, CLS pooling and a query instruction, so that every setting the exported folder carries
# differs from a default; a hub-style model id, which the card names as the base model; the stages given
# out of order (they run in pipeline order); two epochs, each validated; the zero-shot base evaluated too;
# the tiny LLM as utility scorer and as reader; the default loggers (CSV and offline W&B).
@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path) -> Path:
    """The folder of one ``python -m uae.run`` that scored utilities, trained, evaluated and reported."""

    def build(base: Path) -> None:
        done = uae_run(
            base, f"data.dir={tiny_raw_dir}", *tiny_model(tiny_encoder_dir), *tiny_llm(tiny_lm_dir),
            "model.encoder.model_id=uae-test/tiny-bert",  # a hub-style id: the card names it as the base model
            "model.encoder.pooling=cls", "model.encoder.query_instruction='search: '", "model.encoder.shared=false",
            f"utility.table_dir={base / 'tables'}", TRAINED_STAGES, "data.train_split=dev", "utility.splits=[dev]",
            "candidates.size=3", "train.batch_size=2", "train.lr=1e-3", "trainer.max_epochs=2", "evaluate.zero_shot=true",
            "logger=default", "reader=smollm2", "reader.answerer.max_new_tokens=4",
        )
        assert done.returncode == 0, done.stderr[-3000:]

    return shared_folder(tmp_path_factory, "trained", build) / "run"


@pytest.fixture(scope="session")
def tiny_sweep(
    tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path, tiny_tables: TinyTables
) -> Path:
    """A Hydra multirun of two tiny trainings (loss.temperature 0.05 and 0.5), each with its zero-shot base."""

    def build(tmp: Path) -> None:
        copy_of(tiny_tables.folder, tmp, "tables")  # its utility stage finds the table: no LLM pass
        sweep = tmp / "sweep"
        args = [
            sys.executable, "-m", "uae.run", "-m", "+experiment=qasper_minilm", "stages=[utility,fit,evaluate]",
            f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp / 'cache'}", "retrieval.progress=false",
            f"data.dir={tiny_raw_dir}", "data.train_split=dev", "utility.splits=[dev]", f"utility.table_dir={tmp / 'tables'}",
            *tiny_model(tiny_encoder_dir), *tiny_llm(tiny_lm_dir), "candidates.size=3",
            "train.batch_size=2", "train.lr=1e-3", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "logger=csv",
            "loss.temperature=0.05,0.5", "reader=none",
        ]
        done = subprocess.run(args, cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stderr[-3000:]

    return shared_folder(tmp_path_factory, "sweep", build) / "sweep"


@pytest.fixture(scope="session", autouse=True)
def _count_subprocesses():
    """UAE_TEST_SUBPROCESS_LOG=FILE: one line per process a test starts (tests/helpers/count.py)."""
    log = os.environ.get("UAE_TEST_SUBPROCESS_LOG")
    if not log:
        yield
        return
    from tests.helpers.count import counting_subprocesses, current_test

    with counting_subprocesses(log, current_test):
        yield

"""Shared fixtures: the shared QASPER files, tiny QASPER fixtures in both layouts, a tiny encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("UAE_DATA_DIR", ROOT.parent / "shared" / "data" / "qasper"))


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
def tiny_raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding our hand-made two-paper fixture under the official file name.

    The fixture is committed under another name so that nothing in git looks like a QASPER release file.
    """
    import shutil

    folder = tmp_path_factory.mktemp("qasper_raw")
    shutil.copy(FIXTURES / "qasper_tiny_raw.json", folder / "qasper-dev-v0.3.json")
    return folder


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
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
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
    return path


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama (hidden 32) with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from uae.models import resolve_model

    smollm = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=ROOT / ".cache", offline=True)
    tokenizer = AutoTokenizer.from_pretrained(smollm)
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
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


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

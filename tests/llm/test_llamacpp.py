"""llm.engine=llamacpp and reader.answerer.engine=llamacpp on a tiny float32 GGUF of the tiny Llama.

With float32 weights llama.cpp quantises nothing but its KV cache (float16 by default), so its
numbers must equal transformers' on the same weights to that rounding: 5e-3 nats per answer (a few
tokens; measured 1.2e-3 at most). The prefix reuse is checked on its own: any order of the same
sequences, and the same sequences scored by a fresh engine one at a time, give the same sums.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest

from uae.core.errors import ModelNotFoundError, UAEError
from uae.llm.engines import parse_engine
from uae.llm.engines.llamacpp import bundled_gguf
from uae.llm.reader import AnswerReader
from uae.llm.scorer import AnswerScorer

pytest.importorskip("llama_cpp", reason="llm.engine=llamacpp is an extra: pip install 'uae[llamacpp]'")

ATOL = 5e-3  # float16 KV cache against transformers' float32 (module docstring)
CAT = "The cat sat on the mat all afternoon. It was a black cat with one white paw."
ITEMS = [
    (CAT, "What color was the cat?", "black"),
    (CAT, "What color was the cat?", "It was a black cat with a white paw."),
    (CAT, "What color was the cat?", "black and white"),
    (None, "What color was the cat?", "black"),
    (CAT, "Where did the cat sit?", "on the mat"),
    (None, "Where did the cat sit?", "on the mat"),
]


def _scorer(path: Path, cache: Path, **kwargs) -> AnswerScorer:
    return AnswerScorer(
        "tiny-llama", local_path=path, cache_dir=cache, device="cpu", progress=False, max_length=256, **kwargs
    )


@pytest.fixture(scope="module")
def pair(
    tiny_lm_gguf_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[AnswerScorer, AnswerScorer]:
    cache = tmp_path_factory.mktemp("cache")
    return _scorer(tiny_lm_gguf_dir, cache), _scorer(tiny_lm_gguf_dir, cache, engine="llamacpp")


def test_llamacpp_equals_the_reference_on_float32_weights(pair: tuple[AnswerScorer, AnswerScorer]) -> None:
    hf, llama = pair
    ref, got = hf.score_answers(ITEMS), llama.score_answers(ITEMS)
    assert np.ptp(ref) > 1.0  # distinct numbers, so agreement says something
    np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)
    spec = (
        llama.fingerprint_spec()
    )  # not proven equal to float32 on the bundled 4-bit file: a table of its own
    assert (
        spec["engine"] == "llamacpp"
        and spec["compute_type"] == "gguf"
        and "engine" not in hf.fingerprint_spec()
    )


def test_the_shared_prompt_is_decoded_once(
    pair: tuple[AnswerScorer, AnswerScorer], tiny_lm_gguf_dir: Path, tmp_path: Path
) -> None:
    _, llama = pair
    engine = llama.engine
    items = llama._encode([llama.build_request(*item) for item in ITEMS], None)
    seqs, starts = [it.seq for it in items], [len(it.prompt) for it in items]
    engine.decoded_tokens = 0
    together = engine.score(seqs, starts)
    decoded = engine.decoded_tokens
    # three answers share the first prompt and two the closed-book one: their prompts are not decoded again
    assert decoded < sum(len(s) for s in seqs) - len(items[0].prompt)
    backwards = engine.score(seqs[::-1], starts[::-1])[::-1]
    fresh = _scorer(tiny_lm_gguf_dir, tmp_path, engine="llamacpp").engine
    alone = [fresh.score([s], [t])[0] for s, t in zip(seqs, starts)]
    cold = []  # and each from an empty cache, in case a reuse hid a stale entry
    for s, t in zip(seqs, starts):
        fresh.cached = []
        fresh._forget(0)
        cold.append(fresh.score([s], [t])[0])
    # equal to 1e-4: llama.cpp's sums round differently with a batch's size (measured 2.4e-5); a stale or
    # missing cache entry moves a sum by tenths of a nat
    np.testing.assert_allclose(together, backwards, atol=1e-4, rtol=0)
    np.testing.assert_allclose(together, alone, atol=1e-4, rtol=0)
    np.testing.assert_allclose(together, cold, atol=1e-4, rtol=0)


def test_the_reader_answers_as_the_reference(tiny_lm_gguf_dir: Path, tmp_path: Path) -> None:
    kwargs = {
        "cache_dir": tmp_path,
        "local_path": tiny_lm_gguf_dir,
        "device": "cpu",
        "progress": False,
        "max_new_tokens": 12,
    }
    hf = AnswerReader("tiny-llama", **kwargs)
    llama = AnswerReader("tiny-llama", engine="llamacpp", **kwargs)
    prompts = [hf.prompt(CAT, q) for q in ("What color was the cat?", "Where did the cat sit?", "How long?")]
    prompts.append(hf.prompt(None, "What color was the cat?"))
    ref, got = hf.generate(prompts), llama.generate(prompts)
    assert len(set(ref)) > 1 and all(ref)  # the random model says different, non-empty things
    assert got == ref  # greedy on float32 weights: the argmax does not move with the KV cache's rounding
    assert llama.fingerprint_spec()["engine"] == "llamacpp" and "engine" not in hf.fingerprint_spec()


def test_settings_are_checked_before_loading() -> None:
    assert parse_engine("llamacpp", "auto", dtype="auto", device="cpu", setting="llm.scorer") == (
        "llamacpp",
        "gguf",
    )
    with pytest.raises(UAEError, match="use auto or one of gguf"):
        parse_engine("llamacpp", "float32", dtype="auto", device="cpu", setting="llm.scorer")
    with pytest.raises(UAEError, match="llm.engine=llamacpp"):
        parse_engine("hf", "gguf", dtype="auto", device="cpu", setting="llm.scorer")
    with pytest.raises(ModelNotFoundError, match="split_gguf parts"):
        bundled_gguf("google/gemma-3-270m")  # four chunk packages, not one file llama.cpp could open
    with pytest.raises(ModelNotFoundError, match="not bundled as one"):
        bundled_gguf("someone/unknown-model")


def test_refused_without_the_package(
    tiny_lm_gguf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_llama(name: str, *args, **kwargs):
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(UAEError, match=r"pip install 'uae\[llamacpp\]'"):
        _scorer(tiny_lm_gguf_dir, tmp_path, engine="llamacpp")

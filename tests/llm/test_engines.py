"""Inference engines for the teacher (uae/llm/engines/): CTranslate2 in float32 computes the reference's
numbers, the types that do not are kept apart in table specs, vLLM refuses a machine without a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import ROOT
from uae.core.choices import engine_spec
from uae.core.errors import UAEError
from uae.llm.engines import parse_engine
from uae.llm.scorer import AnswerScorer

CAT = "The cat sat on the mat all afternoon. It was a black cat with one white paw."
LONG = " ".join(f"Sentence {k} talks about retrieval models and their training data." for k in range(60))
ITEMS = [
    (CAT, "What color was the cat?", "black"),
    (CAT, "What color was the cat?", "It was a black cat with a white paw."),
    (None, "What color was the cat?", "black"),
    (LONG, "What do the sentences talk about?", "retrieval models"),  # cut to max_length=256
    (CAT, "Where did the cat sit?", "on the mat"),
]


def _scorer(path: Path, cache: Path, **kwargs) -> AnswerScorer:
    return AnswerScorer("tiny-llama", local_path=path, cache_dir=cache, device="cpu", progress=False, max_length=256, **kwargs)


@pytest.fixture(scope="module")
def pair(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[AnswerScorer, AnswerScorer]:
    cache = tmp_path_factory.mktemp("cache")
    return _scorer(tiny_lm_dir, cache), _scorer(tiny_lm_dir, cache, engine="ctranslate2", compute_type="float32")


def test_ctranslate2_float32_equals_the_reference(pair: tuple[AnswerScorer, AnswerScorer]) -> None:
    hf, ct2 = pair
    ref, got = hf.score_answers(ITEMS), ct2.score_answers(ITEMS)
    assert np.all(np.isfinite(got)) and np.ptp(ref) > 0.1  # distinct numbers, so equality says something
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert hf.last_truncated == ct2.last_truncated == [3]  # the same tokens: truncation happens before the engine
    # proven equal, so the two share utility tables
    assert ct2.fingerprint_spec() == hf.fingerprint_spec()


def test_int8_is_another_table(pair: tuple[AnswerScorer, AnswerScorer], tiny_lm_dir: Path, tmp_path: Path) -> None:
    hf, _ = pair
    int8 = _scorer(tiny_lm_dir, tmp_path, engine="ctranslate2", compute_type="int8_float32")
    spec = int8.fingerprint_spec()
    assert spec["engine"] == "ctranslate2" and spec["compute_type"] == "int8_float32"
    assert {k: v for k, v in spec.items() if k not in ("engine", "compute_type", "dtype")} == {
        k: v for k, v in hf.fingerprint_spec().items() if k != "dtype"
    }
    scores = int8.score_answers(ITEMS)
    assert np.all(np.isfinite(scores)) and not np.allclose(scores, hf.score_answers(ITEMS), atol=1e-4)


def test_the_conversion_is_made_once_per_weights(pair: tuple[AnswerScorer, AnswerScorer], monkeypatch: pytest.MonkeyPatch) -> None:
    import ctranslate2.converters

    from uae.llm.engines.ctranslate2 import converted_folder

    _, ct2 = pair
    folder = ct2.engine.folder
    assert (folder / "model.bin").is_file() and folder.parent.name == "models"
    monkeypatch.setattr(ctranslate2.converters, "TransformersConverter", None)  # a second conversion would fail
    assert converted_folder(ct2.path, folder.parent.parent) == folder
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.tmp")]


def test_engine_settings_are_checked_before_loading(tmp_path: Path) -> None:
    with pytest.raises(UAEError, match="CUDA GPU only"):
        parse_engine("vllm", "auto", dtype="auto", device="cpu", setting="llm.scorer")
    with pytest.raises(UAEError, match="CUDA GPU only"):  # nothing loaded: the model path does not exist
        AnswerScorer("tiny-llama", local_path=tmp_path / "missing", cache_dir=tmp_path, device="cpu", engine="vllm")
    with pytest.raises(UAEError, match="engine=ctranslate2"):
        parse_engine("hf", "int8", dtype="auto", device="cpu", setting="llm.scorer")
    with pytest.raises(UAEError, match="needs a GPU"):
        parse_engine("ctranslate2", "int8_float16", dtype="auto", device="cpu", setting="llm.scorer")
    with pytest.raises(UAEError, match="use one of hf, ctranslate2, vllm"):
        parse_engine("onnx", "auto", dtype="auto", device="cpu", setting="llm.scorer")
    assert parse_engine("ctranslate2", "auto", dtype="auto", device="cpu", setting="s") == ("ctranslate2", "float32")
    assert parse_engine("vllm", "auto", dtype="bf16", device="cuda", setting="s") == ("vllm", "bfloat16")  # dtype's aliases
    with pytest.raises(UAEError, match="dtype='float8'"):
        parse_engine("hf", "auto", dtype="float8", device="cpu", setting="llm.scorer")
    assert engine_spec("hf", "bfloat16") == {} and engine_spec("ctranslate2", "float32") == {}
    assert engine_spec("vllm", "bfloat16") == {"engine": "vllm", "compute_type": "bfloat16"}


def test_the_config_names_the_engines() -> None:
    from uae.core.config import compose
    from uae.core.schema import check

    with pytest.raises(UAEError, match="llm.engine"):
        check(compose(["llm.engine=onnx"]))
    with pytest.raises(UAEError, match="llm.compute_type"):
        check(compose(["llm.compute_type=int4"]))
    cfg = compose(["llm.engine=ctranslate2", "llm.compute_type=int8_float32"])
    check(cfg)
    assert (cfg.llm.scorer.engine, cfg.llm.scorer.compute_type) == ("ctranslate2", "int8_float32")


@pytest.mark.slow  # converts SmolLM2 from its GGUF package, then to CTranslate2, on a fresh clone (about a minute)
def test_ctranslate2_float32_reproduces_committed_utilities() -> None:
    """Agreement on committed data: utilities of the first 12 dev questions' candidates, recomputed on
    CTranslate2 in float32, equal the committed table's (made on hf) within 1e-3 nats."""
    import pyarrow.parquet as pq

    from uae.core.config import data_dir
    from uae.data.candidates import CandidateSet
    from uae.data.qasper import load_qasper
    from uae.table.build import score_chunk

    rows = pq.read_table(ROOT / "experiments/qasper/utilities/dev.parquet").to_pylist()
    wanted = list(dict.fromkeys(r["question_id"] for r in rows))[:12]
    split = load_qasper("dev", data_dir("qasper"), allow_hub=False)
    sets = []
    for qid in wanted:
        mine = sorted((r for r in rows if r["question_id"] == qid), key=lambda r: r["position"])
        sets.append(CandidateSet(qid, mine[0]["paper_id"], tuple(r["passage_id"] for r in mine), tuple(r["source"] for r in mine)))
    scorer = AnswerScorer(
        "HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=ROOT / ".cache", device="cpu", progress=False,
        engine="ctranslate2", compute_type="float32",
    )  # fmt: skip
    got = score_chunk(split, sets, scorer).to_pylist()
    committed = {(r["question_id"], r["passage_id"]): r["utility"] for r in rows if r["question_id"] in wanted}
    diffs = [abs(r["utility"] - committed[(r["question_id"], r["passage_id"])]) for r in got]
    assert len(diffs) == len(committed) >= 80
    assert max(diffs) < 1e-3, f"largest difference {max(diffs):.2e} nats"

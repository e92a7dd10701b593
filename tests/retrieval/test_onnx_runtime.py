"""model.encoder.runtime=onnx: ONNX Runtime embeds and ranks as torch does; the export is made once, checked on
every read, shipped by uae.export where sentence-transformers' backend="onnx" looks, and bad values are refused.

Everything runs the tiny random BERT (2 layers, hidden 32) with MiniLM's tokenizer: the real code paths in seconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from uae.core.errors import UAEError
from uae.data.qasper import load_qasper
from uae.retrieval import runtime as runtime_module
from uae.retrieval.dense import DenseRetriever
from uae.retrieval.encoder import DualEncoder
from uae.retrieval.onnx_export import MARKER

QUERIES = ["what dataset do they use?", "How large is the corpus? " * 40, "a", "Which baselines do they compare to?"]
PASSAGES = [
    "We evaluate on QASPER, a dataset of questions over NLP papers.",
    "The corpus holds 1,585 papers and 5,049 questions. " * 30,  # longer than the max length: truncated
    "Table 2 shows the results.",
]


def _encoder(path: Path, cache: Path, **settings: object) -> DualEncoder:
    return DualEncoder("tiny-bert", cache_dir=cache, local_path=path, **settings).eval()


@pytest.fixture
def onnx_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The input shapes of every batch ONNX Runtime ran: proof that a test's numbers came from it."""
    calls: list[tuple[int, ...]] = []
    original = runtime_module.OnnxTower.__call__

    def counting(self, batch):
        calls.append(tuple(batch["input_ids"].shape))
        return original(self, batch)

    monkeypatch.setattr(runtime_module.OnnxTower, "__call__", counting)
    return calls


@pytest.mark.parametrize(
    "settings",
    [
        {"pooling": "mean", "normalize": True, "query_max_length": 64, "passage_max_length": 64},
        {"pooling": "cls", "normalize": True, "query_instruction": "Represent this sentence for searching relevant passages: "},
        {"pooling": "mean", "normalize": False, "passage_instruction": "passage: ", "query_max_length": 12, "passage_max_length": 20},
    ],
    ids=["mean", "cls-query-instruction", "unnormalized-two-lengths"],
)
def test_onnx_embeds_as_torch(tiny_encoder_dir: Path, tmp_path: Path, onnx_calls: list, settings: dict) -> None:
    torch_encoder = _encoder(tiny_encoder_dir, tmp_path, **settings)
    onnx_encoder = _encoder(tiny_encoder_dir, tmp_path, runtime="onnx", **settings)
    for side, texts in (("query", QUERIES), ("passage", PASSAGES)):
        for batch_size in (1, 3):  # one text (no padding) and padded batches of other lengths than the export's example
            expected = torch_encoder.encode(texts, side, batch_size=batch_size, progress=False)
            got = onnx_encoder.encode(texts, side, batch_size=batch_size, progress=False)
            assert got.shape == expected.shape and got.dtype == torch.float32
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=f"{side}, batch {batch_size}")
            if settings["normalize"]:
                cosine = (got * expected).sum(-1)
                assert bool((cosine > 1 - 1e-5).all()), cosine
    assert len(onnx_calls) == (len(QUERIES) + 2) + (len(PASSAGES) + 1)  # every batch (of 1, then of 3) went through ONNX Runtime
    assert onnx_encoder.onnx_tower("query").providers == ["CPUExecutionProvider"]
    # The same texts through another model give other numbers: the comparison above can fail.
    other = _encoder(tiny_encoder_dir, tmp_path, **{**settings, "pooling": "cls" if settings["pooling"] == "mean" else "mean"})
    assert not torch.allclose(other.encode(QUERIES, "query", progress=False), onnx_encoder.encode(QUERIES, "query", progress=False), atol=1e-3)


def test_rankings_on_qasper_are_torchs(tiny_encoder_dir: Path, shared_data: Path, tmp_path: Path, onnx_calls: list) -> None:
    """Every question of four QASPER dev papers ranks its paper's paragraphs exactly as under torch."""
    split = load_qasper("dev", shared_data, max_documents=4, allow_hub=False)
    questions = split.evaluable_questions
    assert len(questions) >= 10 and len(split.all_passages) >= 100

    def ranked(runtime: str) -> list[list[str]]:
        encoder = _encoder(tiny_encoder_dir, tmp_path, runtime=runtime, query_max_length=128, passage_max_length=128)
        retriever = DenseRetriever(encoder, cache_dir=tmp_path / runtime, batch_size=16, device="cpu", progress=False)
        return retriever.rank(split, questions, scope="document", top_k=10).ranked_ids

    expected = ranked("torch")
    assert onnx_calls == []
    got = ranked("onnx")
    assert len(onnx_calls) > len(split.all_passages) // 16  # passages and questions both went through ONNX Runtime
    assert got == expected


def test_repeated_texts_are_encoded_once_and_tie_exactly(tiny_encoder_dir: Path, tmp_path: Path, onnx_calls: list) -> None:
    """QASPER papers repeat paragraphs ("DISPLAYFORM0"): copies must score exactly alike, so that document order
    decides between them as under torch (ONNX Runtime can give two copies in one batch last-bit-different rows)."""
    texts = ["DISPLAYFORM0", "We evaluate on QASPER.", "DISPLAYFORM0", "Table 2 shows the results.", "DISPLAYFORM0"]
    got = _encoder(tiny_encoder_dir, tmp_path, runtime="onnx").encode(texts, "passage", batch_size=8, progress=False)
    assert [shape[0] for shape in onnx_calls] == [3]  # one batch of the three distinct texts
    assert torch.equal(got[0], got[2]) and torch.equal(got[0], got[4])
    torch.testing.assert_close(got, _encoder(tiny_encoder_dir, tmp_path).encode(texts, "passage", progress=False), atol=1e-5, rtol=0)


def test_the_export_is_made_once_checked_on_read_and_never_half_written(tiny_encoder_dir: Path, tmp_path: Path, monkeypatch) -> None:
    first = _encoder(tiny_encoder_dir, tmp_path, runtime="onnx")
    expected = first.encode(QUERIES, "query", progress=False)
    exports = list((tmp_path / "onnx").glob("fp32-*/model.onnx"))
    assert len(exports) == 1
    marker = json.loads((exports[0].parent / MARKER).read_text())
    assert marker["variant"] == "fp32" and marker["max_abs_diff"] < 1e-4
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir() if not p.name.endswith(".lock")) == [exports[0].parent.name]

    # A second encoder of the same weights finds it: nothing is exported again.
    def refuse(*args, **kwargs):
        raise AssertionError("exported again")

    with monkeypatch.context() as patch:
        patch.setattr(runtime_module, "write_export", refuse)
        torch.testing.assert_close(_encoder(tiny_encoder_dir, tmp_path, runtime="onnx").encode(QUERIES, "query", progress=False), expected)

    # Damaged bytes are never run: the file is exported again.
    exports[0].write_bytes(exports[0].read_bytes()[:-100])
    torch.testing.assert_close(_encoder(tiny_encoder_dir, tmp_path, runtime="onnx").encode(QUERIES, "query", progress=False), expected)

    # An export that fails (the exporter's own error) leaves nothing behind, and says what to do.
    def broken(tower, folder, variant="fp32", **kwargs):
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("the exporter broke\nmore lines")

    for path in exports[0].parent.iterdir():
        path.unlink()
    exports[0].parent.rmdir()
    monkeypatch.setattr(runtime_module, "write_export", broken)
    with pytest.raises(UAEError, match=r"Exporting .*tiny-bert to ONNX \(fp32\) failed \(RuntimeError: the exporter broke\).*runtime=torch"):
        _encoder(tiny_encoder_dir, tmp_path, runtime="onnx").encode(QUERIES, "query", progress=False)
    assert [p.name for p in (tmp_path / "onnx").iterdir() if not p.name.endswith(".lock")] == []


def test_changed_weights_are_encoded_with_torch(tiny_encoder_dir: Path, tmp_path: Path, caplog) -> None:
    """The export holds the weights as loaded: after an optimizer step encode() must not run a stale export."""
    encoder = _encoder(tiny_encoder_dir, tmp_path, runtime="onnx")
    before = encoder.encode(QUERIES, "query", progress=False)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    encoder.forward(encoder.tokenize(QUERIES, "query"), "query").sum().backward()
    optimizer.step()
    with caplog.at_level(logging.WARNING):
        after = encoder.encode(QUERIES, "query", progress=False)
    assert not torch.allclose(after, before, atol=1e-3)  # the new weights, not the exported ones
    with torch.no_grad():
        torch.testing.assert_close(after, encoder.forward(encoder.tokenize(QUERIES, "query"), "query"), atol=1e-6, rtol=0)
    assert encoder.inference_runtime() == "torch" and "changed since they were loaded" in caplog.text


def test_int8_runs_in_its_own_cache_and_only_approximates(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    expected = _encoder(tiny_encoder_dir, tmp_path).encode(PASSAGES, "passage", progress=False)
    quantized = _encoder(tiny_encoder_dir, tmp_path, runtime="onnx-int8")
    got = quantized.encode(PASSAGES, "passage", progress=False)
    assert sorted(p.name for p in (tmp_path / "onnx").glob("*/*.onnx")) == ["model.onnx", "model_qint8.onnx"]
    assert (got * expected).sum(-1).min() > 0.9  # close to torch, not equal: no claim of equal rankings
    assert not torch.allclose(got, expected, atol=1e-5)
    # Its passage embeddings are cached apart from torch's and fp32 ONNX's.
    specs = [_encoder(tiny_encoder_dir, tmp_path, runtime=r).fingerprint_spec("passage") for r in ("torch", "onnx", "onnx-int8")]
    assert "runtime" not in specs[0] and specs[1]["runtime"] == "onnx" and specs[2]["runtime"] == "onnx-int8"


def test_a_bad_runtime_is_refused_naming_the_setting_and_the_choices(tiny_encoder_dir: Path, tmp_path: Path, capsys) -> None:
    from uae import Retriever
    from uae.core.config import compose
    from uae.core.schema import check
    from uae.search import RUNTIMES as SEARCH_RUNTIMES
    from uae.search import main as search

    with pytest.raises(UAEError, match=r"model.encoder.runtime='tensorrt' is not a runtime UAE knows: use one of torch, onnx, onnx-int8"):
        _encoder(tiny_encoder_dir, tmp_path, runtime="tensorrt")
    with pytest.raises(UAEError, match="model.encoder.runtime must be one of torch, onnx, onnx-int8, got 'tf'"):
        check(compose(["stages=[evaluate]", "model.encoder.runtime=tf"]))
    check(compose(["stages=[evaluate]", "model.encoder.runtime=onnx"]))  # the good values pass
    with pytest.raises(UAEError, match="runtime='ONNX' is not a runtime"):
        Retriever.load(tmp_path / "never-read", runtime="ONNX")  # refused before the folder is looked at
    with pytest.raises(SystemExit):
        search([str(tmp_path), "--passages", "p.jsonl", "--question", "q", "--runtime", "tf"])
    assert "argument --runtime: invalid choice: 'tf'" in capsys.readouterr().err
    assert SEARCH_RUNTIMES == runtime_module.RUNTIMES  # written out there to keep torch out of --help


def test_missing_onnxruntime_is_explained(tiny_encoder_dir: Path, tmp_path: Path, monkeypatch) -> None:
    real = runtime_module.importlib.util.find_spec
    monkeypatch.setattr(runtime_module.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    with pytest.raises(UAEError, match=r"model.encoder.runtime=onnx needs the package onnxruntime.*pip install 'uae\[onnx\]'"):
        _encoder(tiny_encoder_dir, tmp_path, runtime="onnx").encode(QUERIES, "query", progress=False)


# --------------------------------------------------------------------------------------------------
# the exported folder


def _saved(tiny_encoder_dir: Path, tmp_path: Path, **settings: object) -> tuple[DualEncoder, Path]:
    from uae.export import add_onnx

    encoder = _encoder(tiny_encoder_dir, tmp_path / "cache", query_max_length=32, passage_max_length=32, **settings)
    folder = encoder.save(tmp_path / "encoder")
    add_onnx(folder)
    return encoder, folder


def test_the_export_ships_onnx_where_sentence_transformers_loads_it(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend.utils import backend_should_export

    encoder, folder = _saved(tiny_encoder_dir, tmp_path, query_instruction="query: ")
    assert (folder / "onnx" / "model.onnx").is_file()
    # sentence-transformers finds it there and exports nothing (its own decision, with its own code).
    export, kwargs = backend_should_export(folder, True, {}, "model.onnx", "*.onnx", "ONNX")
    assert export is False and kwargs == {"subfolder": "onnx", "file_name": "model.onnx"}

    # What optimum's ORTModelForFeatureExtraction does with it (inputs by name, last_hidden_state out), between
    # sentence-transformers' own tokenizer and its own Pooling and Normalize modules: the torch backend's numbers.
    import onnxruntime as ort

    model = SentenceTransformer(str(folder), device="cpu")
    session = ort.InferenceSession(str(folder / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    features = model.tokenize(["query: " + q for q in QUERIES])
    hidden = session.run(["last_hidden_state"], {i.name: features[i.name].numpy() for i in session.get_inputs()})[0]
    features["token_embeddings"] = torch.from_numpy(hidden)
    for module in list(model)[1:]:
        features = module(features)
    expected = model.encode_query(QUERIES, convert_to_tensor=True)
    torch.testing.assert_close(features["sentence_embedding"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(expected, encoder.encode(QUERIES, "query", progress=False), atol=1e-5, rtol=0)

    try:  # the real thing, where optimum can be installed beside transformers (not with transformers 5: see docs/models.md)
        onnx_model = SentenceTransformer(str(folder), device="cpu", backend="onnx")
    except Exception as exc:  # noqa: BLE001 (sentence-transformers raises a bare Exception without optimum)
        pytest.skip(f"sentence-transformers backend='onnx' cannot load here: {type(exc).__name__}: {str(exc)[:200]}")
    torch.testing.assert_close(onnx_model.encode_query(QUERIES, convert_to_tensor=True).cpu(), expected, atol=1e-5, rtol=0)


def test_the_retriever_and_search_run_the_shipped_file(tiny_encoder_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from uae import Retriever
    from uae.search import main as search

    _, folder = _saved(tiny_encoder_dir, tmp_path, shared=False, pooling="cls")
    assert (folder / "query" / "onnx" / "model.onnx").is_file() and (folder / "passage" / "onnx" / "model.onnx").is_file()
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("UAE_CACHE_DIR", str(cache))
    onnx = Retriever.load(folder, device="cpu", runtime="onnx")
    plain = Retriever.load(folder, device="cpu")
    np.testing.assert_allclose(onnx.embed_queries(QUERIES), plain.embed_queries(QUERIES), atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx.embed_passages(PASSAGES), plain.embed_passages(PASSAGES), atol=1e-5, rtol=0)
    for side, tower in (("query", "query"), ("passage", "passage")):
        assert onnx.encoder.onnx_tower(side).file == folder / tower / "onnx" / "model.onnx"
    assert not (cache / "onnx").exists()  # the shipped files, not new exports
    assert [h.index for h in onnx.rank(QUERIES[0], PASSAGES)] == [h.index for h in plain.rank(QUERIES[0], PASSAGES)]

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(PASSAGES)))
    outputs = []
    for runtime in ("torch", "onnx"):
        assert search([str(folder), "--passages", str(corpus), "--question", QUERIES[0], "--json", "--runtime", runtime]) == 0
        outputs.append([json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()])
    assert outputs[0] == outputs[1] and sorted(outputs[0]) == ["p0", "p1", "p2"]


def test_a_folder_without_the_onnx_file_is_exported_into_the_cache(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from uae import Retriever

    folder = _encoder(tiny_encoder_dir, tmp_path).save(tmp_path / "bare")  # no onnx/: DualEncoder.save ships none
    retriever = Retriever.load(folder, device="cpu", runtime="onnx", cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(retriever.embed_queries(QUERIES), Retriever.load(folder, device="cpu").embed_queries(QUERIES), atol=1e-5)
    assert len(list((tmp_path / "cache" / "onnx").glob("fp32-*/model.onnx"))) == 1 and not (folder / "onnx").exists()

"""Every exported encoder is a sentence-transformers model that embeds as our DualEncoder does.

The folders are read by the installed sentence-transformers itself (SentenceTransformer(path)), not by
our reader, so a wrong pooling, prompt, normalisation, max length or tower shows up as other numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uae.retrieval.encoder import DualEncoder
from uae.retrieval.st_layout import read_layout, tower_paths

QUERIES = ["what dataset do they use?", "How large is the corpus? " * 12, "a"]
PASSAGES = [
    "We evaluate on QASPER, a dataset of questions over NLP papers.",
    "The corpus holds 1,585 papers and 5,049 questions. " * 20,  # longer than any max length below
    "Table 2 shows the results.",
]


def _encoder(path: Path, **settings: object) -> DualEncoder:
    return DualEncoder("tiny-bert", cache_dir=path.parent, local_path=path, **settings).eval()


def _sentence_transformer(folder: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _assert_same_embeddings(ours: DualEncoder, folder: Path) -> None:
    model = _sentence_transformer(folder)
    for side, encode in (("query", model.encode_query), ("passage", model.encode_document)):
        texts = QUERIES if side == "query" else PASSAGES
        expected = ours.encode(texts, side, progress=False)
        got = encode(texts, convert_to_tensor=True, batch_size=2).cpu()
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=f"{side} embeddings differ")


@pytest.mark.parametrize(
    "settings",
    [
        {"pooling": "mean", "normalize": True, "query_max_length": 16, "passage_max_length": 16},
        {
            "pooling": "cls", "normalize": True, "query_instruction": "Represent this sentence for searching relevant passages: ",
            "query_max_length": 24, "passage_max_length": 24,
        },
        {"pooling": "mean", "normalize": False, "passage_instruction": "passage: ", "query_max_length": 12, "passage_max_length": 20},
    ],
    ids=["mean", "cls-query-instruction", "unnormalized-passage-instruction-two-lengths"],
)
def test_sentence_transformers_embeds_as_our_encoder(tmp_path: Path, tiny_encoder_dir: Path, settings: dict) -> None:
    ours = _encoder(tiny_encoder_dir, **settings)
    folder = ours.save(tmp_path / "encoder")

    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling"] + (["Normalize"] if settings["normalize"] else [])
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert config["similarity_fn_name"] == ("cosine" if settings["normalize"] else "dot")
    assert config["prompts"].get("query", "") == settings.get("query_instruction", "")
    _assert_same_embeddings(ours, folder)

    # The instruction matters: without it sentence-transformers would embed differently (the check above can fail).
    if settings.get("query_instruction"):
        plain = _sentence_transformer(folder).encode(QUERIES, convert_to_tensor=True).cpu()
        assert not torch.allclose(plain, ours.encode(QUERIES, "query", progress=False), atol=1e-3)

    # Our own reader sees the settings we wrote, and the folder still loads as a plain transformers model.
    layout, query_path, passage_path = read_layout(folder)
    assert layout == ours.layout() and query_path == folder and passage_path is None
    reloaded = _encoder(folder, **settings)
    torch.testing.assert_close(reloaded.encode(PASSAGES, "passage", progress=False), ours.encode(PASSAGES, "passage", progress=False))

    from uae import Retriever  # the API reads the settings back from these files alone

    retriever = Retriever.load(folder, device="cpu")
    torch.testing.assert_close(torch.from_numpy(retriever.embed_queries(QUERIES)), ours.encode(QUERIES, "query", progress=False))


def test_separate_towers_are_a_router_with_query_and_document_routes(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    ours = _encoder(tiny_encoder_dir, shared=False, pooling="cls", query_instruction="query: ", query_max_length=10, passage_max_length=20)
    torch.manual_seed(1)
    with torch.no_grad():  # a passage tower of its own: other weights than the query tower
        for parameter in ours.passage_encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    folder = ours.save(tmp_path / "encoder")

    assert json.loads((folder / "modules.json").read_text())[0]["type"].endswith("Router")
    query_tower, passage_tower = tower_paths(folder)
    assert (query_tower / "config.json").is_file() and (passage_tower / "model.safetensors").is_file()
    _assert_same_embeddings(ours, folder)
    # the routes are not interchangeable: the passage tower embeds a text otherwise than the query tower
    model = _sentence_transformer(folder)
    as_query = model.encode_query(PASSAGES, prompt="", convert_to_tensor=True)
    as_passage = model.encode_document(PASSAGES, convert_to_tensor=True)
    assert not torch.allclose(as_query, as_passage, atol=1e-3)

    # what the evaluate stage loads: the two towers through local_path and passage_local_path
    reloaded = DualEncoder(
        "tiny-bert", cache_dir=tmp_path, local_path=query_tower, passage_local_path=passage_tower, shared=False,
        pooling="cls", query_instruction="query: ", query_max_length=10, passage_max_length=20,
    )
    for side, texts in (("query", QUERIES), ("passage", PASSAGES)):
        torch.testing.assert_close(reloaded.encode(texts, side, progress=False), ours.encode(texts, side, progress=False))
    assert read_layout(folder) == (ours.layout(), query_tower, passage_tower)


def test_read_layout_reads_a_hub_sentence_transformers_folder(minilm_dir: Path) -> None:
    """Not only our exports: the hub's all-MiniLM-L6-v2 folder, as sentence-transformers 2 saved it."""
    layout, query_path, passage_path = read_layout(minilm_dir)
    assert (layout.pooling, layout.normalize, layout.query_max_length, layout.shared) == ("mean", True, 256, True)
    assert query_path == minilm_dir and passage_path is None


def test_an_export_does_not_depend_on_what_the_encoder_encoded_before(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    """The same weights digest the same before and after an evaluation (caches are keyed by the digest)."""
    from uae.storage.fingerprint import model_digest

    ours = _encoder(tiny_encoder_dir, query_max_length=12, passage_max_length=20)
    before = ours.save(tmp_path / "before")
    ours.encode(PASSAGES, "passage", progress=False)  # a call leaves its truncation and padding on the tokenizer
    after = ours.save(tmp_path / "after")
    assert (after / "tokenizer.json").read_bytes() == (before / "tokenizer.json").read_bytes()
    assert model_digest(after) == model_digest(before)

"""The reader: batched greedy answers equal one-at-a-time ones, the cache, truncation, token F1 in results."""

from __future__ import annotations

from pathlib import Path

import pytest

from uae.errors import UAEError
from uae.llm.reader import AnswerReader


@pytest.fixture(scope="module")
def reader(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AnswerReader:
    return AnswerReader(
        "tiny-llama", cache_dir=tmp_path_factory.mktemp("cache"), local_path=tiny_lm_dir, max_new_tokens=6,
        batch_size=3, max_length=200, progress=False,
    )


def test_batched_left_padded_generation_equals_one_at_a_time(reader: AnswerReader) -> None:
    prompts = [
        reader.prompt("A long paragraph about the model and the data sets we used. " * 3, "Which data?"),
        reader.prompt("Short.", "What?"),
        reader.prompt(None, "Is it closed book?"),
    ]
    batched = reader.generate(prompts)
    single = [reader.generate([p])[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1  # the tiny model does answer differently to different prompts


def test_answers_are_cached_per_question_and_paragraphs(reader: AnswerReader, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {"p/0": "first paragraph", "p/1": "second paragraph"}
    items = [("q1", ["p/0", "p/1"], "What is first?"), ("q2", ["p/1", "p/0"], "What is second?")]
    first = reader.answer(items, texts, "data-1")
    monkeypatch.setattr(reader, "generate", lambda prompts: pytest.fail("generated again"))
    assert reader.answer(items, texts, "data-1") == first
    # only the top k=1 paragraph matters: another tail is the same item
    assert reader.answer([("q1", ["p/0"], "What is first?")], texts, "data-1") == first[:1]
    generated: list[int] = []
    monkeypatch.setattr(reader, "generate", lambda prompts: generated.append(len(prompts)) or ["x"] * len(prompts))
    reader.answer(items, texts, "data-2")  # another data file: nothing reused
    assert generated == [2]


def test_long_context_is_cut_never_the_question(reader: AnswerReader) -> None:
    before = reader.truncated
    prompt = reader.prompt("word " * 2000, "Where is the question?")
    assert "Where is the question?" in prompt
    assert len(reader.tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= reader.max_length - reader.max_new_tokens
    assert reader.truncated == before + 1
    with pytest.raises(UAEError, match="question alone is longer"):
        reader.prompt(None, "why " * 400)

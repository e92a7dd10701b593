"""The reader: batched greedy answers equal one-at-a-time ones, the cache (a damaged one is not used), truncation,
token F1 in results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uae.core.errors import UAEError
from uae.llm import reader as reader_module
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
    monkeypatch.setattr(reader, "generate", lambda prompts, **_: pytest.fail("generated again"))
    assert reader.answer(items, texts, "data-1") == first
    # only the top k=1 paragraph matters: another tail is the same item
    assert reader.answer([("q1", ["p/0"], "What is first?")], texts, "data-1") == first[:1]
    generated: list[int] = []
    monkeypatch.setattr(reader, "generate", lambda prompts, **_: generated.append(len(prompts)) or ["x"] * len(prompts))
    reader.answer(items, texts, "data-2")  # another data file: nothing reused
    assert generated == [2]


def test_a_killed_generation_keeps_the_answers_it_saved(
    reader: AnswerReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = {f"p/{i}": f"paragraph number {i} " * (i + 1) for i in range(7)}
    items = [(f"q{i}", [f"p/{i}"], f"What is in paragraph {i}?") for i in range(7)]
    expected = reader.answer(items, texts, "data-uninterrupted")

    monkeypatch.setattr(reader_module, "SAVE_SECONDS", -1.0)  # save after every batch
    real_generate = reader.model.generate
    calls = {"n": 0}

    def dies_on_third_batch(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(reader.model, "generate", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        reader.answer(items, texts, "data-killed")
    monkeypatch.setattr(reader.model, "generate", real_generate)

    generated: list[int] = []
    real = reader.generate
    monkeypatch.setattr(reader, "generate", lambda prompts, **kw: generated.append(len(prompts)) or real(prompts, **kw))
    assert reader.answer(items, texts, "data-killed") == expected  # the same answers as without the kill
    assert generated == [1]  # batches of 3: two were saved before the kill, only the last item is left


def test_long_context_is_cut_never_the_question(reader: AnswerReader) -> None:
    before = reader.truncated
    prompt = reader.prompt("word " * 2000, "Where is the question?")
    assert "Where is the question?" in prompt
    assert len(reader.tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= reader.max_length - reader.max_new_tokens
    assert reader.truncated == before + 1
    with pytest.raises(UAEError, match="question alone is longer"):
        reader.prompt(None, "why " * 400)


def test_reader_cache_with_a_changed_answer_is_not_used(tmp_path: Path, caplog) -> None:
    from uae.llm.reader import _read_cache, _write_cache

    path = tmp_path / "answers.json"
    _write_cache(path, "key", {"q1": "Yes", "q2": "BERT"})
    assert _read_cache(path, "key") == {"q1": "Yes", "q2": "BERT"}
    path.write_text(path.read_text().replace("BERT", "BART"))  # valid JSON, another answer
    assert _read_cache(path, "key") == {} and "does not match the digest" in caplog.text
    path.write_text(json.dumps({"fingerprint": "key", "answers": {"q1": "Yes"}}))  # before digests
    assert _read_cache(path, "key") == {}

"""The reader: the LLM answers each question from the top-k paragraphs a retriever ranked first.

Its answers give QASPER's answer token F1 for every retriever, with the same LLM, prompt and
decoding for all of them, so differences in F1 come from the paragraphs alone. Generation is greedy
(reproducible), batched with left padding, longest prompts first, and cached per (question, the
paragraphs it was given) under a fingerprint of everything that changes an answer: a second
evaluation of the same rankings generates nothing, and two retrievers that put the same paragraph
first share the answer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from uae.core.choices import READER_ENGINES, ReaderEngine
from uae.core.errors import UAEError
from uae.llm.loading import load_causal_lm, load_tokenizer
from uae.llm.prompt import PromptTemplate
from uae.storage.atomic import atomic_path
from uae.storage.digest import json_digest
from uae.storage.fingerprint import fingerprint, model_digest

if TYPE_CHECKING:
    from uae.llm.engines.llamacpp import LlamaCppEngine

log = logging.getLogger(__name__)

READER_VERSION = 1
SETTING = "reader"
SAVE_SECONDS = 60.0  # how often a long generation saves the answers it has

DEFAULT_TEMPLATE = {
    "style": "chat",
    "system": None,
    "context_prompt": "Context: {context}\n\nQuestion: {question}\nAnswer briefly, using the context.",
    "closed_book_prompt": "Question: {question}\nAnswer briefly.",
    "answer_prefix": "",
    "target_prefix": "",
}


class AnswerReader:
    """Greedy answers of a causal LM to (context, question) prompts, batched and cached on disk."""

    def __init__(
        self,
        model_id: str,
        *,
        cache_dir: str | os.PathLike,
        local_path: str | os.PathLike | None = None,
        template: PromptTemplate | Mapping[str, Any] | None = None,
        k: int = 1,
        max_new_tokens: int = 32,
        max_length: int = 1024,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        progress: bool = True,
        offline: bool | None = None,
        engine: ReaderEngine = "hf",
    ) -> None:
        if engine not in READER_ENGINES:
            raise UAEError(f"{SETTING}.engine={engine!r}: use one of {', '.join(READER_ENGINES)}.")
        if k < 1 or max_new_tokens < 1 or batch_size < 1:
            raise UAEError(f"{SETTING}.k, {SETTING}.max_new_tokens and {SETTING}.batch_size must be positive integers.")
        self.model_id = model_id
        self.template = PromptTemplate.from_config(template if template is not None else DEFAULT_TEMPLATE)
        self.k = int(k)
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.progress = progress
        self.engine_name = engine
        self.llama: LlamaCppEngine | None = None
        self.dtype: torch.dtype | str
        if engine == "llamacpp":  # the GGUF as shipped; only the tokenizer comes from the Hugging Face folder
            # deferred: an optional engine
            from uae.llm.engines.llamacpp import GGUF, LlamaCppEngine, bundled_gguf

            self.path, self.tokenizer, config = load_tokenizer(
                model_id, cache_dir=cache_dir, local_path=local_path, offline=offline, setting=SETTING
            )
            self.model, self.device, self.dtype = None, torch.device("cpu"), GGUF
        else:
            self.path, self.tokenizer, self.model, self.device, self.dtype = load_causal_lm(
                model_id, cache_dir=cache_dir, local_path=local_path, offline=offline, device=device, dtype=dtype,
                setting=SETTING, padding_side="left",
            )  # fmt: skip
            config = self.model.config
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        limit = getattr(config, "max_position_embeddings", None) or max_length
        self.max_length = int(min(max_length, limit))
        if engine == "llamacpp":
            self.llama = LlamaCppEngine(bundled_gguf(model_id, self.path), max_length=self.max_length)
            eos = (self.tokenizer.eos_token_id, getattr(config, "eos_token_id", None))
            self.stop = {int(t) for t in eos if t is not None}
        self.cache_dir = Path(cache_dir) / "answers"
        self.truncated = 0

    def fingerprint_spec(self) -> dict[str, Any]:
        return {
            "reader": "uae.llm.reader.AnswerReader",
            "version": READER_VERSION,
            "model_id": self.model_id,
            "weights": model_digest(self.path),
            "template": self.template.spec(),
            "k": self.k,
            "max_new_tokens": self.max_new_tokens,
            "max_length": self.max_length,
            "dtype": str(self.dtype).replace("torch.", ""),
            "decoding": "greedy",
        } | ({} if self.engine_name == "hf" else {"engine": self.engine_name})

    # ------------------------------------------------------------------------------------------ prompts
    def prompt(self, context: str | None, question: str) -> str:
        """The rendered prompt; a context too long for the model is cut (from its end), never the question."""
        text, span = self.template.render(context, question, self.tokenizer)
        budget = self.max_length - self.max_new_tokens
        n_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if n_tokens <= budget or span is None:
            if n_tokens > budget:
                raise UAEError(f"The question alone is longer than {SETTING}.max_length={self.max_length} tokens: {question[:80]!r}")
            return text
        self.truncated += 1
        context_ids = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        keep = max(0, len(context_ids) - (n_tokens - budget) - 8)  # a small margin for re-tokenisation at the cut
        return self.template.render(self.tokenizer.decode(context_ids[:keep]), question, self.tokenizer)[0]

    # --------------------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], on_batch: Callable[[list[int], list[str]], None] | None = None
    ) -> list[str]:
        """Greedy continuations of already rendered prompts, in input order.

        ``on_batch(indices, texts)`` sees each batch as it is done, so that a caller can save progress.
        """
        if self.llama is not None:
            return self._generate_llama(prompts, on_batch)
        assert self.model is not None  # the hf engine loaded it
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        bar = tqdm(total=len(prompts), desc="reader", unit="answer", disable=not self.progress, leave=False)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [prompts[i] for i in index], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            generated = self.model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = generated[:, batch["input_ids"].shape[1] :]
            texts = [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
            for i, text in zip(index, texts):
                out[i] = text
            if on_batch is not None:
                on_batch(index, texts)
            bar.update(len(index))
        bar.close()
        return out

    def _generate_llama(self, prompts: Sequence[str], on_batch: Callable[[list[int], list[str]], None] | None) -> list[str]:
        """One prompt at a time on llama.cpp (its KV cache keeps what consecutive prompts share)."""
        assert self.llama is not None
        out: list[str] = []
        bar = tqdm(total=len(prompts), desc="reader (llamacpp)", unit="answer", disable=not self.progress, leave=False)
        for start in range(0, len(prompts), self.batch_size):  # on_batch every batch_size answers, as on hf
            texts = []
            for prompt in prompts[start : start + self.batch_size]:
                ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                new = self.llama.generate(ids, self.max_new_tokens, self.stop)
                texts.append(self.tokenizer.decode(new, skip_special_tokens=True).strip())
                bar.update(1)
            out.extend(texts)
            if on_batch is not None:
                on_batch(list(range(start, start + len(texts))), texts)
        bar.close()
        return out

    def answer(
        self, items: Sequence[tuple[str, Sequence[str], str]], texts: Mapping[str, str], data_fingerprint: str
    ) -> list[str]:
        """Answers for (question id, ranked passage ids, question text) items from the top ``k`` paragraphs.

        Answers already in the cache (same reader settings, same data file) are reused; the rest are
        generated, and the cache is rewritten atomically every ``SAVE_SECONDS`` and at the end, so an
        evaluation killed half-way keeps most of its answers (they cost about a second each on a CPU).
        """
        key = fingerprint({"reader": self.fingerprint_spec(), "data": data_fingerprint})
        path = self.cache_dir / f"{key[:20]}.json"
        cache = _read_cache(path, key)
        keys = [json.dumps([qid, list(ranked[: self.k])]) for qid, ranked, _ in items]
        todo = list({item_key: i for i, item_key in enumerate(keys) if item_key not in cache}.items())
        if todo:
            prompts = []
            for _, i in todo:
                _, ranked, question = items[i]
                context = "\n\n".join(texts[pid] for pid in ranked[: self.k]) or None
                prompts.append(self.prompt(context, question))
            saved = time.monotonic()

            def keep(indices: list[int], answers: list[str]) -> None:
                nonlocal saved
                cache.update({todo[i][0]: text for i, text in zip(indices, answers)})
                if time.monotonic() - saved > SAVE_SECONDS:
                    _write_cache(path, key, cache)
                    saved = time.monotonic()

            cache.update(zip((item_key for item_key, _ in todo), self.generate(prompts, on_batch=keep)))
            _write_cache(path, key, cache)
            log.info("reader: %d answers generated, %d from the cache %s", len(todo), len(items) - len(todo), path)
        return [cache[item_key] for item_key in keys]


def _write_cache(path: Path, key: str, cache: dict[str, str]) -> None:
    payload = {"fingerprint": key, "answers": cache}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**payload, "digest": json_digest(payload)}), encoding="utf-8")


def _read_cache(path: Path, key: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("reader cache %s is unreadable; answers will be generated again", path)
        return {}
    if not isinstance(payload, dict) or payload.get("digest") is None:
        log.warning("reader cache %s carries no content digest (written before digests); answers will be generated again", path)
        return {}
    if json_digest({k: v for k, v in payload.items() if k != "digest"}) != payload["digest"]:
        log.warning("reader cache %s: its content does not match the digest written with it (damaged); answers "
                    "will be generated again", path)
        return {}
    if payload.get("fingerprint") != key or not isinstance(payload.get("answers"), dict):
        log.warning("reader cache %s was made with other settings; answers will be generated again", path)
        return {}
    return dict(payload["answers"])

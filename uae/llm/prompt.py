"""The prompt template: how (context, question) becomes the text after which an answer is scored.

It lives apart from the scorer because two LLM users share it (the answer scorer and the reader)
and because it is part of every utility cache fingerprint (:meth:`PromptTemplate.spec`): a template is
a frozen value, validated once, with no model in it. The scorer needs one more thing than the text:
where the context sits in it, since a prompt that is too long loses tokens from the end of the
context only. So a template is first rendered with marker strings in place of the context and the
question (:meth:`PromptTemplate.skeleton`, once per tokenizer), and :func:`fill` puts the real
texts in and returns the context's character span.
"""

from __future__ import annotations

import dataclasses
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from uae.core.errors import UAEError

__all__ = ["PromptTemplate", "fill"]

log = logging.getLogger(__name__)

SETTING = "llm.scorer.template"  # the config node named in messages
# Private-use code points: no chat template or tokenizer alters them, so they can be found after rendering.
CONTEXT_MARK = "\ue000UAE-CONTEXT\ue000"
QUESTION_MARK = "\ue000UAE-QUESTION\ue000"


@dataclass(frozen=True)
class PromptTemplate:
    """How (context, question) becomes the text after which the answer is scored.

    ``style="chat"`` renders through the tokenizer's chat template: an optional system message, a user
    message made from ``context_prompt`` (or ``closed_book_prompt`` when there is no context), then the
    assistant turn whose content is the target. ``style="plain"`` concatenates ``system`` (if any, then
    a blank line) and the user text. ``answer_prefix`` is appended to the rendered prompt in both styles
    (e.g. ``"\\nAnswer:"`` for plain prompts); ``target_prefix`` is put before every answer before it is
    tokenised (e.g. ``" "`` after ``"Answer:"``) and its tokens are scored with the answer's.

    All fields are plain strings, so a Hydra node maps onto it (:meth:`from_config`); :meth:`spec` is
    what cache fingerprints hold.
    """

    style: Literal["chat", "plain"] = "chat"
    system: str | None = None  # chat: None keeps the chat template's own default system turn, if any
    context_prompt: str = "Context: {context}\n\nQuestion: {question}"
    closed_book_prompt: str = "Question: {question}"
    answer_prefix: str = ""
    target_prefix: str = ""

    def __post_init__(self) -> None:
        if self.style not in ("chat", "plain"):
            raise UAEError(
                f"{SETTING}.style={self.style!r}: use 'chat' (the tokenizer's chat template) or 'plain'."
            )
        for name, text, needs_context in (
            ("context_prompt", self.context_prompt, True),
            ("closed_book_prompt", self.closed_book_prompt, False),
        ):
            if not isinstance(text, str):
                raise UAEError(f"{SETTING}.{name} must be a string, got {type(text).__name__}.")
            try:
                fields = _format_fields(text)
            except ValueError as exc:
                raise UAEError(
                    f"{SETTING}.{name}={text!r} is not a valid template ({exc}). Write literal braces as "
                    "{{ and }}; the placeholders are {context} and {question}."
                ) from exc
            unknown = sorted(set(fields) - {"context", "question"})
            if unknown:
                raise UAEError(
                    f"{SETTING}.{name}={text!r} has unknown placeholder(s) {unknown}; only {{context}} and "
                    "{question} are filled (write literal braces as {{ and }})."
                )
            n_context = fields.count("context")
            if needs_context and n_context != 1:
                raise UAEError(
                    f"{SETTING}.{name}={text!r} must hold {{context}} exactly once (it has {n_context}): the "
                    "passage goes there, and it is the part cut when a prompt is too long."
                )
            if not needs_context and n_context:
                raise UAEError(
                    f"{SETTING}.{name}={text!r} is the closed-book prompt: remove {{context}} from it."
                )

    @classmethod
    def from_config(cls, config: PromptTemplate | Mapping[str, Any] | None) -> PromptTemplate:
        """A template from a config mapping (a Hydra node); ``None`` gives the default."""
        if config is None:
            return cls()
        if isinstance(config, PromptTemplate):
            return config
        if not isinstance(config, Mapping):
            try:  # an OmegaConf DictConfig
                from omegaconf import OmegaConf

                config = OmegaConf.to_container(config, resolve=True)
            except Exception as exc:  # noqa: BLE001 - not a DictConfig either: reported just below
                log.debug("template config %r is not an OmegaConf node: %s", config, exc)
        if not isinstance(config, Mapping):
            raise UAEError(f"{SETTING} must be a mapping of template fields, got {type(config).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise UAEError(f"{SETTING} has unknown key(s) {unknown}; the keys are {sorted(names)}.")
        return cls(**{str(k): v for k, v in config.items()})

    def spec(self) -> dict[str, Any]:
        """The template as a plain dict (for cache fingerprints and logs)."""
        return dataclasses.asdict(self)

    def skeleton(self, tokenizer: Any, *, with_context: bool) -> str:
        """The rendered prompt with marker strings in place of the context and the question."""
        user = (self.context_prompt if with_context else self.closed_book_prompt).format(
            context=CONTEXT_MARK, question=QUESTION_MARK
        )
        if self.style == "plain":
            text = (f"{self.system}\n\n" if self.system else "") + user
        else:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                name = getattr(tokenizer, "name_or_path", "the tokenizer")
                raise UAEError(
                    f"{SETTING}.style=chat needs a chat template, and {name} has none. Set "
                    f"{SETTING}.style=plain (with e.g. answer_prefix='\\nAnswer:' and "
                    "target_prefix=' '), or use an instruction-tuned model."
                )
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
                {"role": "user", "content": user}
            ]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if not isinstance(text, str):  # some versions return a list for a single conversation
                text = text[0]
        text += self.answer_prefix
        expected = 1 if with_context else 0
        if text.count(CONTEXT_MARK) != expected:
            raise UAEError(
                f"The chat template of {getattr(tokenizer, 'name_or_path', 'the tokenizer')} altered the "
                f"user message, so the context cannot be located in the rendered prompt. Use "
                f"{SETTING}.style=plain."
            )
        return text

    def render(
        self, context: str | None, question: str, tokenizer: Any = None
    ) -> tuple[str, tuple[int, int] | None]:
        """The prompt text and the character span of the context in it (``None`` when closed-book)."""
        return fill(self.skeleton(tokenizer, with_context=context is not None), context, question)


def fill(skeleton: str, context: str | None, question: str) -> tuple[str, tuple[int, int] | None]:
    """Put the context and the question into a :meth:`PromptTemplate.skeleton`; the prompt text and
    the character span of the context in it (``None`` when closed-book)."""
    if context is None:
        return skeleton.replace(QUESTION_MARK, question), None
    before, after = skeleton.split(CONTEXT_MARK)
    before = before.replace(QUESTION_MARK, question)
    after = after.replace(QUESTION_MARK, question)
    start = len(before)
    return before + context + after, (start, start + len(context))


def _format_fields(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]

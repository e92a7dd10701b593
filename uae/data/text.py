"""Answer text normalisation, shared by the metrics and the answer-overlap labels."""

from __future__ import annotations

import re
import string


def normalize_answer(s: str) -> str:
    """SQuAD-v1.1 normalisation in the order the QASPER evaluator applies it.

    Punctuation goes before articles, so ``"the-end"`` becomes ``"theend"`` and keeps its ``the``.
    """

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))

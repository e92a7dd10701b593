"""A stand-in for the LLM scorer whose utilities are computable by hand, and the tiny split's candidate sets."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class OverlapScorer:
    """ll(a | c) = -1 + 0.1 * |words(a) & words(c)|, ll(a | none) = -1: utilities computable by hand."""

    def __init__(self, delay: float = 0.0, poison: str | None = None) -> None:
        self.delay, self.poison, self.calls = delay, poison, 0

    def score_answers(self, items):
        self.calls += 1
        time.sleep(self.delay)
        out = []
        for context, question, answer in items:
            if self.poison and self.poison in answer:
                out.append(float("nan"))
                continue
            words = set(answer.lower().replace(",", " ").split())
            overlap = len(words & set((context or "").lower().rstrip(".").split())) if context else 0
            out.append(-1.0 + 0.1 * overlap)
        return np.array(out)

    def fingerprint_spec(self):
        return {"scorer": "overlap"}


def overlap_setup(tiny_raw_dir: Path):
    """The tiny dev split, its answerable questions' candidate sets (3 each, seed 0) and their table spec."""
    from uae.data.candidates import build_candidates
    from uae.data.qasper import load_qasper
    from uae.table.format import utility_spec

    split = load_qasper("dev", tiny_raw_dir, allow_hub=False)
    questions = [q for q in split.questions if q.answerable]
    sets = build_candidates(split, questions, size=3, seed=0)
    spec = utility_spec(split, sets, OverlapScorer().fingerprint_spec(), {"size": 3, "seed": 0})
    return split, sets, spec

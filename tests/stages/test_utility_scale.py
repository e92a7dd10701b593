"""``train.utility_scale``: per-token utilities (the table's unit) or summed over the answer's tokens."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from uae.core.errors import UAEError
from uae.data.records import TrainingGroup
from uae.stages.utility_scale import scale_utilities


def _group(qid: str, utility: tuple[float, ...]) -> TrainingGroup:
    n = len(utility)
    return TrainingGroup(qid, f"question {qid}", tuple(f"{qid}-p{i}" for i in range(n)), ("text",) * n, utility, (False,) * n)


def test_summed_utilities_sharpen_long_answers_and_keep_the_mean_scale() -> None:
    groups = [_group("q1", (1.0, -0.5)), _group("q2", (0.2, 0.4, -1.0))]
    # T = 2 and 6 tokens, mean 4: q1's utilities halve, q2's grow by 1.5 (T_q / mean T, by hand)
    scaled = scale_utilities(groups, {"q1": 2.0, "q2": 6.0})
    assert scaled[0].utility == pytest.approx((0.5, -0.25)) and scaled[1].utility == pytest.approx((0.3, 0.6, -1.5))
    assert [g.passage_ids for g in scaled] == [g.passage_ids for g in groups]  # only the utilities change
    # the target softmax(u' / beta) is the summed one, softmax(T u / (beta mean T)): q2's is sharper than before
    beta = 0.5
    before = [math.exp(u / beta) for u in groups[1].utility]
    after = [math.exp(u / beta) for u in scaled[1].utility]
    assert max(after) / sum(after) > max(before) / sum(before)
    with pytest.raises(UAEError, match="no answer token count for 1 questions"):
        scale_utilities(groups, {"q1": 2.0})


def test_answer_token_counts_are_the_tokens_the_scorer_scores(tiny_lm_dir: Path, tiny_raw_dir: Path, tmp_path: Path) -> None:
    from uae.data.qasper import load_qasper
    from uae.llm.prompt import PromptTemplate
    from uae.llm.scorer import AnswerScorer
    from uae.stages.utility_scale import answer_token_counts

    split = load_qasper("dev", tiny_raw_dir)
    questions = [q for q in split.questions if q.gold_answers]
    template = PromptTemplate(style="plain", answer_prefix="\nAnswer:", target_prefix=" ")
    scorer = AnswerScorer("tiny-llama", local_path=tiny_lm_dir, cache_dir=tmp_path, template=template, progress=False, share_prefixes=False)
    counts = answer_token_counts(split, [q.question_id for q in questions], scorer.tokenizer, template)
    for q in questions:  # the oracle: the tokens the scorer reports it scored for the question's answers
        scorer.reset_stats()
        scorer.score_answers([(None, q.text, a) for a in q.gold_answers])
        assert scorer.stats.items == len(q.gold_answers)
        assert counts[q.question_id] == pytest.approx(scorer.stats.target_tokens / len(q.gold_answers))
    assert len(set(counts.values())) > 1  # answers of different lengths: the scale is not a constant


def test_fit_config_scales_with_the_teacher_it_names(tiny_lm_dir: Path, tiny_raw_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tests.helpers.runs import tiny_llm
    from uae.core.config import compose
    from uae.data.qasper import load_qasper
    from uae.llm.prompt import PromptTemplate
    from uae.stages.utility_scale import answer_token_counts, apply_utility_scale

    split = load_qasper("dev", tiny_raw_dir)
    groups = [_group(q.question_id, (1.0, 0.0)) for q in split.questions if q.gold_answers]
    base = ["+experiment=qasper_minilm", *tiny_llm(tiny_lm_dir), f"paths.cache_dir={tmp_path}"]
    record: dict = {}
    spec = {"model_id": "tiny-llama", "template": {"style": "chat"}}
    assert apply_utility_scale(compose(base, job_name="t"), split, groups, spec, record) is groups  # per_token: the table's unit
    assert record == {"scale": "per_token"}
    summed = compose([*base, "train.utility_scale=summed"], job_name="t")
    scaled = apply_utility_scale(summed, split, groups, spec, record)
    counts = answer_token_counts(split, [g.question_id for g in groups], AutoTokenizer.from_pretrained(tiny_lm_dir), PromptTemplate())
    mean = sum(counts.values()) / len(counts)
    assert record["scale"] == "summed" and record["answer_tokens"]["mean"] == pytest.approx(mean)
    assert [g.utility[0] for g in scaled] == pytest.approx([counts[g.question_id] / mean for g in groups])
    with pytest.raises(UAEError, match="scored the table \\(other-llm\\)"):  # a table of another teacher
        apply_utility_scale(summed, split, groups, {"model_id": "other-llm"}, {})
    with pytest.raises(UAEError, match="loss=infonce has none"):
        apply_utility_scale(compose([*base, "train.utility_scale=summed", "loss=infonce"], job_name="t"), split, groups, spec, {})
    assert apply_utility_scale(summed, split, [], spec, {}) == []  # nothing left to scale: fit says why, not a division by zero

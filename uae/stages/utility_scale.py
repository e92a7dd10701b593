"""How the teacher's log-likelihoods become soft targets: per answer token (the table's unit) or summed.

The table holds u(p) in nats per answer token, so softmax(u / beta) is equally sharp for a one-token
"Yes" and a thirty-token explanation. Summed over the answer, the likelihood gain of a long answer is
T times larger, and its target sharper: the teacher is surer where the answer says more, and nearly
flat on yes/no questions, where it is weakest (RESULTS.md). ``train.utility_scale=summed`` multiplies
each question's utilities by T_q / mean(T), T_q its answers' mean count of scored teacher tokens, so
the mean sharpness stays that of ``loss.sharpness`` and only its spread over questions changes: the
comparison with ``per_token`` isolates the calibration, not a retuned beta. A question with several
answers of unequal length gets their mean count (exact for one answer; 4 of the 295 label-free
QASPER train questions have two). Settings in nats per answer token (``loss.min_confidence``,
``loss.denoise_margin``) then act on the scaled utilities: a question's margin is in effect
m * mean T / T_q. The tokens are counted with the tokenizer and template of the teacher that scored
the table (its spec), so a ``utility.table`` from another teacher cannot be scaled by this one's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, get_args

from omegaconf import DictConfig

from uae.core.errors import UAEError
from uae.core.schema import Train
from uae.data.records import Split, TrainingGroup
from uae.llm.loading import load_tokenizer
from uae.llm.prompt import PromptTemplate
from uae.llm.requests import target_ids

log = logging.getLogger("uae.run")

SCALES: tuple[str, ...] = get_args(Train.model_fields["utility_scale"].annotation)  # the schema's Literal


def scale_utilities(groups: list[TrainingGroup], answer_tokens: Mapping[str, float]) -> list[TrainingGroup]:
    """Each group's utilities times T_q / mean T over the groups (summed log-likelihood at the same mean scale)."""
    missing = [g.question_id for g in groups if g.question_id not in answer_tokens]
    if missing:
        raise UAEError(f"train.utility_scale=summed: no answer token count for {len(missing)} questions (e.g. {missing[0]}).")
    if not groups:
        return groups
    mean = sum(answer_tokens[g.question_id] for g in groups) / len(groups)
    return [replace(g, utility=tuple(u * answer_tokens[g.question_id] / mean for u in g.utility)) for g in groups]


def answer_token_counts(split: Split, question_ids: list[str], tokenizer: Any, template: PromptTemplate) -> dict[str, float]:
    """Mean number of scored teacher tokens over each question's gold answers, as the scorer tokenises them."""
    questions = {q.question_id: q for q in split.questions}
    counts = {}
    for qid in question_ids:
        answers = questions[qid].gold_answers
        if not answers:
            raise UAEError(f"train.utility_scale=summed: question {qid} has no gold answer, so no utility to scale.")
        ids = target_ids(tokenizer, [template.target_prefix + a for a in answers])
        counts[qid] = sum(len(i) for i in ids) / len(ids)
    return counts


def apply_utility_scale(
    cfg: DictConfig, split: Split, groups: list[TrainingGroup], scorer_spec: Mapping[str, Any], record: dict[str, Any]
) -> list[TrainingGroup]:
    """``train.utility_scale`` applied to the fit stage's groups, for the table whose scorer spec is
    ``scorer_spec``; what it did goes into ``record`` (results.json's ``utility_table``)."""
    scale = cfg.train.get("utility_scale", "per_token")
    if scale not in SCALES:
        raise UAEError(f"train.utility_scale={scale!r}: use {' or '.join(SCALES)}.")
    record["scale"] = scale
    if scale == "per_token" or not groups:
        return groups
    if cfg.loss.name == "infonce":
        raise UAEError("train.utility_scale=summed scales the soft targets; loss=infonce has none. Use a utility loss (uae, atlas_kl, replug_lsr).")
    scorer = cfg.llm.scorer
    if scorer_spec.get("model_id") != scorer.model_id:
        raise UAEError(
            f"train.utility_scale=summed counts answer tokens with the teacher that scored the table "
            f"({scorer_spec.get('model_id')}), but llm.scorer is {scorer.model_id}: choose the matching llm= "
            f"so that its tokenizer can be loaded."
        )
    tokenizer = load_tokenizer(
        scorer.model_id, cache_dir=scorer.cache_dir, local_path=scorer.get("local_path"), offline=None, setting="llm.scorer"
    ).tokenizer
    template = PromptTemplate.from_config(scorer_spec.get("template"))
    counts = answer_token_counts(split, [g.question_id for g in groups], tokenizer, template)
    values = sorted(counts.values())
    record["answer_tokens"] = {"mean": sum(values) / len(values), "median": values[len(values) // 2], "max": values[-1]}
    log.info("fit: summed utilities, answer tokens mean %.1f, median %g", record["answer_tokens"]["mean"], record["answer_tokens"]["median"])
    return scale_utilities(groups, counts)

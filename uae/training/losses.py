"""Training losses as pure tensor functions over one batch of score rows.

Every loss takes the same batch layout, so the LightningModule (and a DDP gather) never special-cases
one of them:

- ``scores``: ``[B, N]`` similarities ``s(q_b, p_n)`` of each of the B queries to every one of the N
  passages in the batch (the candidates of all B questions, flattened; under DDP, of all processes).
- ``owner``: ``[N]`` long, the row (question) whose candidate set passage n belongs to.
- ``utility``: ``[N]`` the teacher's utility u(p_n) for its owner's question (nats per answer token).
- ``gold``: ``[N]`` bool, whether passage n is annotated evidence for its owner's question.

Passages owned by another row are that row's in-batch negatives: they enter the student's softmax
where the loss uses one (``utility_infonce``, ``infonce``) and get zero target mass. ``atlas_kl`` and
``replug_lsr`` compare distributions over the question's own candidates only, as their papers do.
All reductions are means over the rows that carry a target.
"""

from __future__ import annotations

import torch
from torch import Tensor

_NEG_INF = float("-inf")


def own_mask(owner: Tensor, n_rows: int) -> Tensor:
    """``[B, N]`` bool: True where passage n is one of row b's own candidates."""
    return owner.unsqueeze(0) == torch.arange(n_rows, device=owner.device).unsqueeze(1)


def utility_targets(utility: Tensor, owner: Tensor, n_rows: int, sharpness: float) -> Tensor:
    """Q: ``[B, N]``, row b = softmax(u / beta) over b's own candidates, zero on every other passage."""
    if sharpness <= 0:
        raise ValueError(f"sharpness (beta) must be > 0, got {sharpness}")
    own = own_mask(owner, n_rows)
    logits = (utility / sharpness).unsqueeze(0).expand(n_rows, -1).masked_fill(~own, _NEG_INF)
    return torch.softmax(logits, dim=-1)


def _check_temperature(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _cross_entropy_rows(student_logits: Tensor, target: Tensor) -> Tensor:
    """-sum_n target * log_softmax(student_logits); 0 * (-inf) terms count as 0."""
    log_p = torch.log_softmax(student_logits, dim=-1)
    return -(target * log_p.masked_fill(target == 0, 0.0)).sum(-1)


def infonce(
    scores: Tensor, owner: Tensor, utility: Tensor | None, gold: Tensor, *, temperature: float, exclude: Tensor | None = None,
    denoise_margin: float | None = None,
) -> Tensor:
    """InfoNCE on annotated evidence: ``-mean_b (1/|G_b|) sum_{g in G_b} log softmax_N(s_b / tau)_g``.

    The softmax runs over every passage of the batch (own candidates plus in-batch negatives). A
    question with several gold paragraphs spreads its target uniformly over them (the multi-positive
    form). A row without any gold candidate has no hard label and contributes 0, but still counts in
    the mean over the B rows: then per-process means average to the global mean under DDP. (The
    infonce baseline trains only on questions with gold, see ``loss.needs_gold``.) ``utility`` is read
    only by ``denoise_margin`` (the targets are hard labels); every loss is called the same way. ``exclude``
    (``[B, N]`` bool, never on a positive) takes passages out of a row's softmax: suspected false
    negatives. ``denoise_margin`` (``loss.denoise_margin``) computes them from ``utility``
    (:func:`false_negatives`): negatives mined from a whole corpus include paragraphs that answer the
    question as well as the labelled one, and the teacher names them.
    """
    _check_temperature("temperature", temperature)
    n_rows = scores.shape[0]
    if denoise_margin is not None:
        if utility is None:
            raise ValueError("denoise_margin reads the utilities: pass them")
        marked = false_negatives(utility, owner, gold, n_rows, denoise_margin)
        exclude = marked if exclude is None else exclude | marked
    positives = own_mask(owner, n_rows) & gold.unsqueeze(0)
    counts = positives.sum(-1)
    target = positives.to(scores.dtype) / counts.clamp(min=1).unsqueeze(-1).to(scores.dtype)
    logits = scores / temperature
    if exclude is not None:
        if (exclude & positives).any():
            raise ValueError("exclude must not remove a positive from its own row")
        logits = logits.masked_fill(exclude, _NEG_INF)
    return _cross_entropy_rows(logits, target).mean()  # rows without gold: target 0, loss 0


def false_negatives(utility: Tensor, owner: Tensor, gold: Tensor, n_rows: int, margin: float) -> Tensor:
    """``[B, N]`` bool: row b's own non-positive candidates whose utility is more than ``margin`` above
    the best of b's positives. A pseudo-label (the answer-overlap paragraph) names one helpful paragraph,
    not the only one; a candidate the teacher rates clearly higher is likely another positive, and
    pushing it down as a negative teaches the rule's blind spot. RocketQA (Qu et al., NAACL 2021) drops
    hard negatives that its cross-encoder scores as positives for the same reason; here the LLM teacher
    does the cross-check. Rows without a positive mark nothing."""
    own = own_mask(owner, n_rows)
    positives = own & gold.unsqueeze(0)
    rows = utility.unsqueeze(0).expand(n_rows, -1)
    best = rows.masked_fill(~positives, _NEG_INF).max(-1).values
    return own & ~positives & positives.any(-1, keepdim=True) & (rows > best.unsqueeze(-1) + margin)


def teacher_confidence(target: Tensor, owner: Tensor) -> Tensor:
    """``[B]`` how decided the teacher is about each row: ``1 - H(Q_b) / log |C_b|``.

    1 when the target puts all its mass on one candidate, 0 when it is uniform over the row's own
    candidates (a teacher that cannot tell them apart: e.g. a yes/no answer that no passage makes
    likelier). A row with a single candidate counts as decided.
    """
    n_own = own_mask(owner, target.shape[0]).sum(-1).to(target.dtype)
    entropy = -(target * torch.log(target.clamp_min(1e-30))).sum(-1)
    return torch.where(n_own > 1, 1.0 - entropy / torch.log(n_own.clamp_min(2.0)), torch.ones_like(n_own))


def utility_infonce(
    scores: Tensor,
    owner: Tensor,
    utility: Tensor,
    gold: Tensor | None = None,
    *,
    temperature: float,
    sharpness: float,
    mix: float = 0.0,
    min_confidence: float = 0.0,
    confidence_weight: bool = False,
    denoise_margin: float | None = None,
) -> Tensor:
    """Utility-Modulated InfoNCE: ``L = -mean_b sum_n Q_b(n) log P_b(n)``.

    ``P_b = softmax_N(s_b / tau)`` over all passages in the batch; ``Q_b = softmax(u / beta)`` over b's
    own candidates (zero elsewhere). As beta -> 0 with one best candidate, Q_b is one-hot and this is
    InfoNCE on that candidate; the utility spreads the positive mass by how much each passage helps.
    With ``mix = lambda > 0`` it returns ``(1 - lambda) L + lambda InfoNCE(gold)``, keeping human labels
    (or the pseudo-labels that stand in for them, e.g. the answer-overlap paragraph).

    A noisy teacher's flat rows teach its noise: a row whose :func:`teacher_confidence` is below
    ``min_confidence`` gets no soft target, and with ``confidence_weight`` each row's term is weighted
    by its confidence. Either way the sum is divided by B (a dropped row counts as 0), as in ``infonce``.
    With ``denoise_margin`` the InfoNCE term leaves out the candidates the teacher rates more than that above
    the row's positives (:func:`false_negatives`): the two signals check each other.
    """
    _check_temperature("temperature", temperature)
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix (lambda) must be in [0, 1], got {mix}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    target = utility_targets(utility, owner, scores.shape[0], sharpness)
    rows = _cross_entropy_rows(scores / temperature, target)
    if min_confidence > 0.0 or confidence_weight:
        confidence = teacher_confidence(target, owner)
        weight = confidence if confidence_weight else torch.ones_like(confidence)
        rows = rows * weight * (confidence >= min_confidence)
    loss = rows.mean()
    if denoise_margin is not None and mix == 0.0:
        raise ValueError("denoise_margin acts on the InfoNCE term: it needs mix > 0")
    if mix > 0.0:
        if gold is None:
            raise ValueError("mix > 0 needs the gold mask")
        hard = infonce(scores, owner, utility, gold, temperature=temperature, denoise_margin=denoise_margin)
        loss = (1.0 - mix) * loss + mix * hard
    return loss


def _own_log_softmax(logits: Tensor, own: Tensor) -> Tensor:
    """log softmax over each row's own candidates, 0 (not -inf) elsewhere so no NaN reaches autograd."""
    return torch.log_softmax(logits.masked_fill(~own, _NEG_INF), dim=-1).masked_fill(~own, 0.0)


def _student_and_target(
    scores: Tensor, owner: Tensor, utility: Tensor, temperature: float, target_temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(own, log P, log Q)`` over each row's own candidates; Q is a constant (the teacher is fixed)."""
    _check_temperature("temperature", temperature)
    _check_temperature("target_temperature", target_temperature)
    own = own_mask(owner, scores.shape[0])
    log_p = _own_log_softmax(scores / temperature, own)
    log_q = _own_log_softmax((utility / target_temperature).unsqueeze(0).expand_as(scores), own).detach()
    return own, log_p, log_q


def atlas_kl(
    scores: Tensor,
    owner: Tensor,
    utility: Tensor,
    gold: Tensor | None = None,
    *,
    temperature: float,
    target_temperature: float,
) -> Tensor:
    """Atlas perplexity distillation: ``mean_b KL(Q_b || P_b)`` over b's own candidates.

    ``P_b = softmax(s / tau)`` and ``Q_b = softmax(u / theta)`` with separate temperatures; the
    target is a constant (no gradient flows into the teacher). Its gradient equals utility_infonce's
    without in-batch negatives, which is what the comparison between the two isolates.
    """
    own, log_p, log_q = _student_and_target(scores, owner, utility, temperature, target_temperature)
    q = log_q.exp() * own
    return (q * (log_q - log_p)).sum(-1).mean()


def replug_lsr(
    scores: Tensor,
    owner: Tensor,
    utility: Tensor,
    gold: Tensor | None = None,
    *,
    temperature: float,
    target_temperature: float,
) -> Tensor:
    """REPLUG LM-supervised retrieval: ``mean_b KL(P_b || Q_b)`` over b's own candidates.

    The reverse direction of :func:`atlas_kl`: mode-seeking, so the student concentrates on the
    passages the LLM likes most instead of covering all of them.
    """
    own, log_p, log_q = _student_and_target(scores, owner, utility, temperature, target_temperature)
    p = log_p.exp() * own
    return (p * (log_p - log_q)).sum(-1).mean()


def similarity(queries: Tensor, passages: Tensor) -> Tensor:
    """``[B, N]`` dot products; with L2-normalised embeddings (the default) these are cosines."""
    return queries @ passages.T


__all__ = ["atlas_kl", "infonce", "own_mask", "replug_lsr", "similarity", "utility_infonce", "utility_targets"]

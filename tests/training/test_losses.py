"""Losses against computations written out by hand (plain Python floats), their limits, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from uae.training.losses import atlas_kl, infonce, own_mask, replug_lsr, utility_infonce

# Two questions; question 0 owns passages 0-2, question 1 owns 3-4 (ragged sets, as in real batches).
SCORES = [[0.9, 0.2, -0.1, 0.4, 0.0], [0.3, 0.1, 0.5, 0.8, -0.2]]
OWNER = [0, 0, 0, 1, 1]
UTILITY = [1.5, -0.3, 0.2, 0.7, 0.9]
GOLD = [True, False, True, False, True]


def tensors(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    return (
        torch.tensor(SCORES, dtype=dtype),
        torch.tensor(OWNER),
        torch.tensor(UTILITY, dtype=dtype),
        torch.tensor(GOLD),
    )


def softmax(values: list[float]) -> list[float]:
    m = max(values)
    e = [math.exp(v - m) for v in values]
    return [x / sum(e) for x in e]


def own(b: int) -> list[int]:
    return [n for n, o in enumerate(OWNER) if o == b]


def hand_utility_infonce(tau: float, beta: float) -> float:
    total = 0.0
    for b, row in enumerate(SCORES):
        p = softmax([s / tau for s in row])  # all passages of the batch
        q = softmax([UTILITY[n] / beta for n in own(b)])  # own candidates only
        total += -sum(qi * math.log(p[n]) for qi, n in zip(q, own(b)))
    return total / len(SCORES)


def hand_infonce(tau: float) -> float:
    total = 0.0
    for b, row in enumerate(SCORES):
        positives = [n for n in own(b) if GOLD[n]]
        p = softmax([s / tau for s in row])
        total += -sum(math.log(p[n]) for n in positives) / len(positives) if positives else 0.0
    return total / len(SCORES)


def hand_kl(tau: float, theta: float, reverse: bool) -> float:
    total = 0.0
    for b, row in enumerate(SCORES):
        p = softmax([row[n] / tau for n in own(b)])
        q = softmax([UTILITY[n] / theta for n in own(b)])
        a, c = (p, q) if reverse else (q, p)
        total += sum(x * math.log(x / y) for x, y in zip(a, c))
    return total / len(SCORES)


@pytest.mark.parametrize("tau,beta", [(0.05, 0.5), (1.0, 1.0), (0.2, 3.0)])
def test_utility_infonce_matches_hand_computation(tau: float, beta: float) -> None:
    scores, owner, utility, _ = tensors()
    got = utility_infonce(scores, owner, utility, temperature=tau, sharpness=beta).item()
    assert got == pytest.approx(hand_utility_infonce(tau, beta), rel=1e-10)


@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_infonce_matches_hand_computation(tau: float) -> None:
    scores, owner, _, gold = tensors()
    assert infonce(scores, owner, None, gold, temperature=tau).item() == pytest.approx(hand_infonce(tau), rel=1e-10)


def test_infonce_rows_without_gold_count_zero_and_no_gold_at_all_is_zero() -> None:
    scores, owner, _, gold = tensors()
    only_first = gold.clone()
    only_first[3:] = False  # row 1 has no gold candidate now
    p = softmax([s / 0.1 for s in SCORES[0]])
    expected = -(math.log(p[0]) + math.log(p[2])) / 2 / 2  # row 0's loss, averaged over both rows
    assert infonce(scores, owner, None, only_first, temperature=0.1).item() == pytest.approx(expected, rel=1e-10)
    none = infonce(scores.requires_grad_(), owner, None, torch.zeros_like(gold), temperature=0.1)
    assert none.item() == 0.0 and none.requires_grad


@pytest.mark.parametrize("tau,theta", [(0.05, 0.5), (1.0, 2.0)])
def test_kl_losses_match_hand_computation(tau: float, theta: float) -> None:
    scores, owner, utility, _ = tensors()
    atlas = atlas_kl(scores, owner, utility, temperature=tau, target_temperature=theta).item()
    replug = replug_lsr(scores, owner, utility, temperature=tau, target_temperature=theta).item()
    assert atlas == pytest.approx(hand_kl(tau, theta, reverse=False), rel=1e-9)
    assert replug == pytest.approx(hand_kl(tau, theta, reverse=True), rel=1e-9)
    assert atlas != pytest.approx(replug)  # the two directions genuinely differ here


def test_sharp_utility_limit_is_infonce_on_the_best_candidate() -> None:
    scores, owner, utility, _ = tensors()
    best = torch.zeros(len(OWNER), dtype=torch.bool)
    for b in range(len(SCORES)):
        best[max(own(b), key=lambda n: UTILITY[n])] = True
    sharp = utility_infonce(scores, owner, utility, temperature=0.1, sharpness=1e-4).item()
    assert sharp == pytest.approx(infonce(scores, owner, None, best, temperature=0.1).item(), rel=1e-9)
    # and a broad target is not that: the utility really spreads the mass
    broad = utility_infonce(scores, owner, utility, temperature=0.1, sharpness=1.0).item()
    assert abs(broad - sharp) > 1e-2


def test_mix_interpolates_with_infonce() -> None:
    scores, owner, utility, gold = tensors()
    pure = utility_infonce(scores, owner, utility, temperature=0.1, sharpness=0.5)
    hard = infonce(scores, owner, None, gold, temperature=0.1)
    mixed = utility_infonce(scores, owner, utility, gold, temperature=0.1, sharpness=0.5, mix=0.3)
    assert mixed.item() == pytest.approx(0.7 * pure.item() + 0.3 * hard.item(), rel=1e-12)


def test_matches_torch_cross_entropy_with_soft_targets() -> None:
    """An independent implementation: F.cross_entropy with probability targets over the full row."""
    scores, owner, utility, _ = tensors()
    target = torch.zeros_like(scores)
    for b in range(len(SCORES)):
        target[b, own(b)] = torch.softmax(utility[own(b)] / 0.5, 0)
    expected = torch.nn.functional.cross_entropy(scores / 0.05, target)
    got = utility_infonce(scores, owner, utility, temperature=0.05, sharpness=0.5)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    "loss",
    [
        lambda s, o, u, g: utility_infonce(s, o, u, g, temperature=0.3, sharpness=0.7, mix=0.25),
        lambda s, o, u, g: infonce(s, o, u, g, temperature=0.3),
        lambda s, o, u, g: atlas_kl(s, o, u, temperature=0.3, target_temperature=0.7),
        lambda s, o, u, g: replug_lsr(s, o, u, temperature=0.3, target_temperature=0.7),
    ],
    ids=["utility_infonce", "infonce", "atlas_kl", "replug_lsr"],
)
def test_gradcheck(loss) -> None:
    scores, owner, utility, gold = tensors()
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: loss(s, owner, utility, gold), (scores,))


def test_teacher_gets_no_gradient_in_kl_losses() -> None:
    scores, owner, utility, _ = tensors()
    scores.requires_grad_(True)
    utility.requires_grad_(True)
    for loss in (atlas_kl, replug_lsr):
        loss(scores, owner, utility, temperature=0.1, target_temperature=0.5).backward()
        assert utility.grad is None and scores.grad is not None


@pytest.mark.parametrize(
    "call",
    [
        lambda s, o, u, g: utility_infonce(s, o, u, temperature=-0.1, sharpness=1.0),
        lambda s, o, u, g: utility_infonce(s, o, u, temperature=0.1, sharpness=0.0),
        lambda s, o, u, g: utility_infonce(s, o, u, temperature=0.1, sharpness=1.0, mix=1.5),
        lambda s, o, u, g: utility_infonce(s, o, u, temperature=0.1, sharpness=1.0, mix=0.5),  # no gold
        lambda s, o, u, g: atlas_kl(s, o, u, temperature=0.1, target_temperature=0.0),
    ],
)
def test_bad_hyper_parameters_are_refused(call) -> None:
    with pytest.raises(ValueError):
        call(*tensors())


def hand_confidence(beta: float) -> list[float]:
    out = []
    for b in range(len(SCORES)):
        q = softmax([UTILITY[n] / beta for n in own(b)])
        out.append(1.0 - -sum(x * math.log(x) for x in q) / math.log(len(q)))
    return out


def hand_rows(tau: float, beta: float) -> list[float]:
    rows = []
    for b, row in enumerate(SCORES):
        p = softmax([s / tau for s in row])
        q = softmax([UTILITY[n] / beta for n in own(b)])
        rows.append(-sum(qi * math.log(p[n]) for qi, n in zip(q, own(b))))
    return rows


def test_teacher_confidence_matches_hand_computation_and_its_limits() -> None:
    from uae.training.losses import teacher_confidence, utility_targets

    _, owner, utility, _ = tensors()
    got = teacher_confidence(utility_targets(utility, owner, 2, 0.5), owner).tolist()
    assert got == pytest.approx(hand_confidence(0.5), rel=1e-10)
    flat = utility_targets(torch.zeros(5, dtype=torch.float64), owner, 2, 0.5)
    assert teacher_confidence(flat, owner).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    sharp = utility_targets(torch.tensor([50.0, 0, 0, 0, 50.0], dtype=torch.float64), owner, 2, 0.5)
    assert teacher_confidence(sharp, owner).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_confidence_drops_and_weights_rows(beta: float) -> None:
    scores, owner, utility, _ = tensors()
    conf, rows = hand_confidence(beta), hand_rows(0.1, beta)
    threshold = (conf[0] + conf[1]) / 2  # keeps the more decided row only
    kept = [r if c >= threshold else 0.0 for r, c in zip(rows, conf)]
    assert 0.0 in kept and sum(kept) > 0
    got = utility_infonce(scores, owner, utility, temperature=0.1, sharpness=beta, min_confidence=threshold).item()
    assert got == pytest.approx(sum(kept) / 2, rel=1e-10)
    weighted = utility_infonce(scores, owner, utility, temperature=0.1, sharpness=beta, confidence_weight=True).item()
    assert weighted == pytest.approx(sum(c * r for c, r in zip(conf, rows)) / 2, rel=1e-10)
    plain = utility_infonce(scores, owner, utility, temperature=0.1, sharpness=beta, min_confidence=0.0).item()
    assert plain == pytest.approx(sum(rows) / 2, rel=1e-10)
    with pytest.raises(ValueError, match="min_confidence"):
        utility_infonce(scores, owner, utility, temperature=0.1, sharpness=beta, min_confidence=1.5)


def test_the_closed_book_baseline_cannot_move_uae_targets() -> None:
    """u(p) = ll(a | p) - ll(a | none): the closed-book term is one constant per question, and a softmax
    over the question's own candidates ignores it. Calibrating it (issue 22) can change UAE's targets only
    through rules that read absolute utilities (a confidence threshold on u, not on Q), never Q itself."""
    from uae.training.losses import utility_targets

    _, owner, utility, _ = tensors()
    closed = torch.tensor([3.7, -1.2], dtype=torch.float64)[owner]  # per question, broadcast to its candidates
    assert torch.allclose(utility_targets(utility + closed, owner, 2, 0.5), utility_targets(utility, owner, 2, 0.5), atol=1e-15)
    assert not torch.allclose(utility_targets(utility * 2, owner, 2, 0.5), utility_targets(utility, owner, 2, 0.5))


def test_denoising_drops_what_the_teacher_rates_far_above_the_positive() -> None:
    """The pseudo-positive of question 0 is passage 2 (u = 0.2); passage 0 (u = 1.5) is 1.3 above it, so with
    margin 0.5 it leaves question 0's InfoNCE softmax; passage 1 (u = -0.3) stays. Question 1's positive
    (passage 4, u = 0.9) is its best candidate: nothing leaves."""
    from uae.training.losses import false_negatives

    scores, owner, utility, _ = tensors()
    gold = torch.tensor([False, False, True, False, True])
    marked = false_negatives(utility, owner, gold, 2, 0.5)
    assert marked.tolist() == [[True, False, False, False, False], [False] * 5]
    assert not false_negatives(utility, owner, gold, 2, 1.5).any()  # 1.3 < 1.5
    assert not false_negatives(utility, owner, torch.zeros(5, dtype=torch.bool), 2, 0.0).any()  # no positive, nothing marked

    tau = 0.1
    row0 = [SCORES[0][n] / tau for n in (1, 2, 3, 4)]  # passage 0 left out
    row1 = [s / tau for s in SCORES[1]]
    hand_hard = (-math.log(softmax(row0)[1]) - math.log(softmax(row1)[4])) / 2
    pure = utility_infonce(scores, owner, utility, temperature=tau, sharpness=0.5).item()
    got = utility_infonce(scores, owner, utility, gold, temperature=tau, sharpness=0.5, mix=0.3, denoise_margin=0.5).item()
    assert got == pytest.approx(0.7 * pure + 0.3 * hand_hard, rel=1e-10)
    leaf = scores.clone().requires_grad_(True)
    utility_infonce(leaf, owner, utility, gold, temperature=tau, sharpness=0.5, mix=0.3, denoise_margin=0.5).backward()
    assert torch.isfinite(leaf.grad).all()  # the -inf logits of the dropped passage send back no NaN
    with pytest.raises(ValueError, match="needs mix > 0"):
        utility_infonce(scores, owner, utility, gold, temperature=tau, sharpness=0.5, denoise_margin=0.5)
    with pytest.raises(ValueError, match="must not remove a positive"):
        infonce(scores, owner, None, gold, temperature=tau, exclude=own_mask(owner, 2) & gold.unsqueeze(0))
    # plain InfoNCE takes the same denoising (loss=infonce loss.denoise_margin=m): the hand value of its term
    assert infonce(scores, owner, utility, gold, temperature=tau, denoise_margin=0.5).item() == pytest.approx(hand_hard, rel=1e-10)
    assert infonce(scores, owner, utility, gold, temperature=tau, denoise_margin=1.5).item() == pytest.approx(
        infonce(scores, owner, utility, gold, temperature=tau).item(), rel=1e-12
    )  # nothing is 1.5 above its positive: nothing leaves
    with pytest.raises(ValueError, match="reads the utilities"):
        infonce(scores, owner, None, gold, temperature=tau, denoise_margin=0.5)

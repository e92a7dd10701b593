"""The answer scorer against the definition, on a tiny random Llama with SmolLM2's tokenizer.

The reference is written out by hand: one full forward of prompt + answer per triple, log_softmax over
the whole vocabulary, the answer tokens gathered, the mean taken. The batched scorer (length sorting,
right padding, prefix sharing, head on target rows only) must give the same numbers within 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import uae.llm.batching as batching_module
import uae.llm.prefix as prefix_module
from tests.helpers.paths import ROOT
from uae.core.config import register_resolvers
from uae.core.errors import UAEError
from uae.llm.prefix import pass_width, radix_tree
from uae.llm.scorer import AnswerScorer, PromptTemplate, ScoringError

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"

CAT = "The cat sat on the mat all afternoon. It was a black cat with one white paw."
PARIS = "Paris is the capital and most populous city of France, on the Seine."
LONG = " ".join(f"Sentence {k} talks about retrieval models and their training data." for k in range(20))
ITEMS = [
    (CAT, "What color was the cat?", "black"),
    (CAT, "What color was the cat?", "It was a black cat with a white paw."),  # same prompt, 2nd answer
    (None, "What color was the cat?", "black"),  # closed-book
    (PARIS, "What is the capital of France?", "Paris"),
    (LONG, "What do the sentences talk about?", "retrieval models"),
    (CAT, "Where did the cat sit?", "on the mat"),
    (CAT, "What color was the cat?", "black"),  # duplicate of item 0
    (None, "What is the capital of France?", "The capital of France is Paris, on the Seine."),
    (PARIS, "What is the capital of France?", "Paris, on the Seine"),
]


def make_scorer(path: Path, tmp_path: Path, **kwargs) -> AnswerScorer:
    kwargs.setdefault("progress", False)
    return AnswerScorer("tiny-llama", local_path=path, cache_dir=tmp_path, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def scorer(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AnswerScorer:
    return make_scorer(tiny_lm_dir, tmp_path_factory.mktemp("cache"))


def reference(scorer: AnswerScorer, context: str | None, question: str, answer: str) -> float:
    """The definition, written out: one full forward, log_softmax over the whole vocabulary."""
    tok, template = scorer.tokenizer, scorer.template
    prompt, _ = template.render(context, question, tok)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    return reference_ids(
        scorer, prompt_ids, tok(template.target_prefix + answer, add_special_tokens=False)["input_ids"]
    )


def reference_ids(scorer: AnswerScorer, prompt_ids: list[int], answer_ids: list[int]) -> float:
    with torch.no_grad():
        logits = scorer.model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    p = len(prompt_ids)
    return float(np.mean([logp[p - 1 + t, a].item() for t, a in enumerate(answer_ids)]))


def test_batched_scores_equal_per_example_reference(scorer: AnswerScorer) -> None:
    assert scorer.share_prefixes  # the self-check at load time accepted prefix sharing for Llama
    scorer.reset_stats()
    got = scorer.score_answers(ITEMS)
    want = np.array([reference(scorer, *item) for item in ITEMS])
    assert got.dtype == np.float64 and got.shape == (len(ITEMS),)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.ptp(want) > 0.5  # the items really differ: a mix-up of items would show
    # the work was shared: item 6 repeats item 0, items 0/1 share a prompt, so fewer tokens ran
    assert scorer.stats.duplicates == 1
    assert scorer.stats.encoded_tokens < scorer.stats.prompt_tokens + scorer.stats.target_tokens
    assert scorer.stats.target_tokens == sum(
        len(scorer.tokenizer(a, add_special_tokens=False)["input_ids"]) for *_, a in ITEMS
    )


def test_order_restored_after_length_sorting(scorer: AnswerScorer) -> None:
    lengths = [len(scorer.build_request(*item).prompt) for item in ITEMS]
    assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True)  # sorting permutes
    base = scorer.score_answers(ITEMS)
    perm = np.random.default_rng(1).permutation(len(ITEMS))
    shuffled = scorer.score_answers([ITEMS[i] for i in perm])
    np.testing.assert_allclose(shuffled, base[perm], atol=1e-5, rtol=0)


def test_batch_size_one_and_no_sharing_give_the_same_numbers(
    scorer: AnswerScorer, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    auto = scorer.score_answers(ITEMS)
    one = make_scorer(tiny_lm_dir, tmp_path, batch_size=1)
    assert not one.share_prefixes
    two = make_scorer(tiny_lm_dir, tmp_path, batch_size=2)  # sharing units split across batches
    plain = make_scorer(tiny_lm_dir, tmp_path, share_prefixes=False)
    np.testing.assert_allclose(one.score_answers(ITEMS), auto, atol=1e-5, rtol=0)
    np.testing.assert_allclose(two.score_answers(ITEMS), auto, atol=1e-5, rtol=0)
    np.testing.assert_allclose(plain.score_answers(ITEMS), auto, atol=1e-5, rtol=0)
    assert one.stats.batches == len(ITEMS) - 1  # one forward per (de-duplicated) item


def test_plain_padded_batches_give_the_shared_numbers(
    scorer: AnswerScorer, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    """share_prefixes=False: the same items (two answers to one prompt, one passage asked two questions,
    closed-book items, a duplicate) scored in one plain right-padded forward, one row per distinct item.

    Tolerance: both paths run the same float32 weights on the same tokens; they differ only in
    summation order (other padded shapes, masked attention over a re-indexed key/value cache against
    plain causal attention), which moves a log-probability by ~1e-6 on this 2-layer model (~3e-5 on
    SmolLM2's 30 layers, benchmarks/scorer.py). 1e-5 nats/token is still far below what a wrong
    position, mask or row would do: the items differ by more than 0.5 nats/token.
    """
    plain = make_scorer(tiny_lm_dir, tmp_path, share_prefixes=False)
    assert scorer.share_prefixes and not plain.share_prefixes
    scorer.reset_stats()
    shared = scorer.score_answers(ITEMS)
    got = plain.score_answers(ITEMS)
    assert np.ptp(shared) > 0.5
    np.testing.assert_allclose(got, shared, atol=1e-5, rtol=0)
    # and it was the plain path: every distinct item's prompt + answer encoded in full, in one pass
    distinct = list(dict.fromkeys(plain.build_request(*item) for item in ITEMS))
    seqs = [it.seq for it in plain._encode(distinct, None)]
    assert len(seqs) == len(ITEMS) - 1 and plain.stats.duplicates == 1
    assert plain.stats.encoded_tokens == sum(map(len, seqs))
    assert plain.stats.padded_tokens == len(seqs) * max(map(len, seqs))
    assert plain.stats.passes == plain.stats.batches == 1
    assert scorer.stats.encoded_tokens < sum(map(len, seqs))  # sharing ran fewer tokens for the same items


def test_plain_batches_keep_the_token_budget_with_padding(
    tiny_lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = make_scorer(tiny_lm_dir, tmp_path, share_prefixes=False, max_length=64)
    seqs = [it.seq for it in plain._encode([plain.build_request(*item) for item in ITEMS[:4]], None)]
    budget = max(map(len, seqs)) * 2  # room for two rows of the longest item, padding counted
    monkeypatch.setattr(batching_module, "_CPU_TOKEN_BUDGET", budget)
    plain.reset_stats()
    got = plain.score_answers(ITEMS[:4])
    assert plain.stats.batches == 2 and plain.stats.padded_tokens <= 2 * budget
    want = make_scorer(tiny_lm_dir, tmp_path, max_length=64).score_answers(ITEMS[:4])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_share_prefixes_is_a_setting_outside_the_fingerprint(tiny_lm_dir: Path, tmp_path: Path) -> None:
    """llm.scorer.share_prefixes (default true) changes only the rounding, like dtype: a utility table
    scored either way matches the same fingerprint."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama",
            f"paths.cache_dir={tmp_path}", "llm.scorer.device=cpu", "llm.scorer.progress=false",
        ])  # fmt: skip
    assert cfg.llm.scorer.share_prefixes is True
    on = instantiate(cfg.llm.scorer)
    off = instantiate(cfg.llm.scorer, share_prefixes=False)
    assert on.share_prefixes and not off.share_prefixes
    assert "share_prefixes" not in json.dumps(on.fingerprint_spec())
    assert json.dumps(off.fingerprint_spec(), sort_keys=True) == json.dumps(on.fingerprint_spec(), sort_keys=True)


def test_radix_tree_shares_runs_and_rebuilds_every_sequence() -> None:
    seqs = [[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 9], [7], [1, 2, 3, 4]]
    nodes, paths = radix_tree(seqs)
    assert sorted(n.tokens for n in nodes if n.level == 0) == [[1, 2], [7]]
    for seq, path in zip(seqs, paths, strict=True):
        assert [t for n in path for t in nodes[n].tokens] == seq
        for depth, n in enumerate(path):
            assert nodes[n].level == depth and nodes[n].start == sum(
                len(nodes[m].tokens) for m in path[:depth]
            )
            assert nodes[n].parent == (path[depth - 1] if depth else -1)
    assert paths[0] == paths[4] and len(nodes) == 6  # [1,2] [7] [3] [9] [4] [5,6]
    # a shared run saving fewer tokens than min_saving is repeated in each branch instead
    nodes, paths = radix_tree([[1, 2, 3], [1, 2, 4]], min_saving=3)
    assert [n.tokens for n in nodes] in ([[1, 2, 3], [1, 2, 4]], [[1, 2, 4], [1, 2, 3]])
    assert all(n.level == 0 for n in nodes)


def test_pass_width_trades_padding_against_passes() -> None:
    assert pass_width([10, 10, 10, 2], overhead=0) == 2  # two passes, no padding: 4*2 + 3*8 < 4*10
    assert pass_width([10, 10, 10, 2], overhead=100) == 10  # one pass: padding is cheaper than a pass
    assert pass_width([7], overhead=0) == 7


def test_rows_split_over_many_passes_give_the_same_numbers(
    scorer: AnswerScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = scorer.score_answers(ITEMS)
    monkeypatch.setitem(prefix_module.PASS_COST_TOKENS, "cpu", 0)  # no padding at all: many passes
    scorer.reset_stats()
    np.testing.assert_allclose(scorer.score_answers(ITEMS), want, atol=1e-5, rtol=0)
    assert scorer.stats.padded_tokens == scorer.stats.encoded_tokens
    assert scorer.stats.passes > 6  # nodes were continued across passes (the tree is 3-4 levels deep)


def test_closed_book_and_context_prompts_differ(scorer: AnswerScorer) -> None:
    with_context = scorer.build_request(CAT, "What color was the cat?", "black")
    closed = scorer.build_request(None, "What color was the cat?", "black")
    assert closed.context_span is None and "Context:" not in closed.prompt and CAT not in closed.prompt
    start, end = with_context.context_span
    assert with_context.prompt[start:end] == CAT
    assert with_context.prompt.startswith("<|im_start|>")  # rendered by the chat template
    assert with_context.prompt.endswith("<|im_start|>assistant\n")  # the answer is the assistant turn
    got = scorer.score_answers(
        [(CAT, "What color was the cat?", "black"), (None, "What color was the cat?", "black")]
    )
    assert abs(got[0] - got[1]) > 1e-3


def test_truncation_cuts_the_context_end_only_and_counts(tiny_lm_dir: Path, tmp_path: Path) -> None:
    scorer = make_scorer(tiny_lm_dir, tmp_path, max_length=64)
    tok = scorer.tokenizer
    question, answer = "What do the sentences talk about?", "retrieval models and their training data"
    items = [(LONG, question, answer), (None, "Short?", "yes")]
    got = scorer.score_answers(items)
    assert scorer.stats.truncated == 1 and scorer.last_truncated == [0]

    request = scorer.build_request(LONG, question, answer)
    full = tok(request.prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = full["input_ids"], full["offset_mapping"]
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
    cs, ce = request.context_span
    context_tokens = [k for k, (s, e) in enumerate(offsets) if e > s and s < ce and e > cs]
    kept_n = 64 - len(answer_ids) - (len(ids) - len(context_tokens))
    assert 0 < kept_n < len(context_tokens)
    # the kept prompt: everything up to the first kept_n context tokens, then everything after the context
    kept = ids[: context_tokens[0] + kept_n] + ids[context_tokens[-1] + 1 :]
    assert len(kept) + len(answer_ids) == 64
    assert tok.decode(kept).endswith(question + "<|im_end|>\n<|im_start|>assistant\n")
    assert got[0] == pytest.approx(reference_ids(scorer, kept, answer_ids), abs=1e-5)
    assert got[1] == pytest.approx(reference(scorer, *items[1]), abs=1e-5)  # short items untouched


def test_too_long_without_context_is_an_error(tiny_lm_dir: Path, tmp_path: Path) -> None:
    scorer = make_scorer(tiny_lm_dir, tmp_path, max_length=64)
    long_answer = "word " * 60
    with pytest.raises(ScoringError, match=r"Item 1 .*max_length=64"):
        scorer.score_answers([(CAT, "Color?", "black"), (CAT, "Color?", long_answer)])


def test_empty_answer_is_an_error_naming_the_item(scorer: AnswerScorer) -> None:
    with pytest.raises(ScoringError, match=r"Item 1 \(question 'Where did the cat sit\?'\).*empty") as info:
        scorer.score_answers([ITEMS[0], (CAT, "Where did the cat sit?", "  ")])
    assert isinstance(info.value, ValueError) and isinstance(info.value, UAEError)


def test_non_finite_scores_name_the_item(scorer: AnswerScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = scorer._logits

    def poisoned(rows: torch.Tensor) -> torch.Tensor:
        logits = real(rows)
        logits[:, :] = float("nan")
        return logits

    monkeypatch.setattr(scorer, "_logits", poisoned)
    with pytest.raises(ScoringError, match=r"item 0 \(question 'What color was the cat\?'\)"):
        scorer.score_answers(ITEMS[:2])


def test_score_targets_shares_the_path_and_truncates_the_given_context(scorer: AnswerScorer) -> None:
    requests = [scorer.build_request(*item) for item in ITEMS]
    generic = scorer.score_targets(
        [r.prompt for r in requests], [r.target for r in requests], contexts=[c for c, _, _ in ITEMS]
    )
    np.testing.assert_allclose(generic, scorer.score_answers(ITEMS), atol=1e-6, rtol=0)
    # UPR style: log p(question | passage) with a plain prompt
    upr = scorer.score_targets(
        [f"Passage: {CAT}\nQuestion:", f"Passage: {PARIS}\nQuestion:"], [" Color?"] * 2
    )
    assert upr.shape == (2,) and np.isfinite(upr).all() and upr[0] != upr[1]
    with pytest.raises(ScoringError, match="not a substring"):
        scorer.score_targets(["Passage: x"], ["y"], contexts=["zzz"])


def test_out_of_memory_halves_the_batch_and_keeps_the_numbers(
    scorer: AnswerScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = scorer.score_answers(ITEMS)
    real = scorer._forward

    def small_only(batch, items, sums):  # type: ignore[no-untyped-def]
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(batch, items, sums)

    monkeypatch.setattr(scorer, "_forward", small_only)
    scorer.reset_stats()
    np.testing.assert_allclose(scorer.score_answers(ITEMS), want, atol=1e-5, rtol=0)
    assert scorer.stats.oom_retries >= 1


def test_plain_template_and_target_prefix(tiny_lm_dir: Path, tmp_path: Path) -> None:
    template = PromptTemplate(
        style="plain", system="Answer briefly.", answer_prefix="\nAnswer:", target_prefix=" "
    )
    scorer = make_scorer(tiny_lm_dir, tmp_path, template=template)
    request = scorer.build_request(PARIS, "Capital?", "Paris")
    assert request.prompt == f"Answer briefly.\n\nContext: {PARIS}\n\nQuestion: Capital?\nAnswer:"
    assert request.target == " Paris"
    got = scorer.score_answers([(PARIS, "Capital?", "Paris")])
    assert got[0] == pytest.approx(reference(scorer, PARIS, "Capital?", "Paris"), abs=1e-5)


def test_template_config_is_validated() -> None:
    assert PromptTemplate.from_config(None) == PromptTemplate()
    custom = PromptTemplate.from_config({"context_prompt": "{context}\n{question}", "system": "Be brief."})
    assert custom.spec()["context_prompt"] == "{context}\n{question}" and custom.system == "Be brief."
    json.dumps(custom.spec())
    with pytest.raises(UAEError, match="exactly once"):
        PromptTemplate(context_prompt="Question: {question}")
    with pytest.raises(UAEError, match="unknown placeholder"):
        PromptTemplate(context_prompt="{context} {question} {answer}")
    with pytest.raises(UAEError, match="closed-book"):
        PromptTemplate(closed_book_prompt="{context} {question}")
    with pytest.raises(UAEError, match="unknown key"):
        PromptTemplate.from_config({"contxt_prompt": "x"})


def test_fingerprint_spec_names_what_makes_the_numbers(
    scorer: AnswerScorer, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    spec = scorer.fingerprint_spec()
    json.dumps(spec)
    assert spec["model_id"] == "tiny-llama" and spec["max_length"] == 512  # capped by the model
    assert spec["dtype"] == "float32" and spec["template"] == PromptTemplate().spec()
    assert len(spec["weights"]) == 64 and spec["chat_template"]
    other = make_scorer(
        tiny_lm_dir, tmp_path, template={"closed_book_prompt": "Q: {question}"}, max_length=256
    )
    assert other.fingerprint_spec()["weights"] == spec["weights"]
    assert other.fingerprint_spec()["template"] != spec["template"]
    assert other.fingerprint_spec()["max_length"] == 256


def test_bad_settings_are_user_errors(tiny_lm_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UAEError, match="batch_size"):
        make_scorer(tiny_lm_dir, tmp_path, batch_size=0)
    with pytest.raises(UAEError, match="dtype"):
        make_scorer(tiny_lm_dir, tmp_path, dtype="float8")
    with pytest.raises(UAEError, match="local_path"):
        AnswerScorer("tiny-llama", local_path=tmp_path / "missing", cache_dir=tmp_path)


@pytest.mark.slow
def test_smollm2_matches_reference_on_real_text(tmp_path: Path) -> None:
    """The real 135M model (converted from the bundled GGUF): batched == per-example on a few triples."""
    scorer = AnswerScorer(SMOLLM, cache_dir=ROOT / ".cache", device="cpu", progress=False, offline=True)
    items = ITEMS[:4]
    got = scorer.score_answers(items)
    want = np.array([reference(scorer, *item) for item in items])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert got[0] > got[2]  # the passage that states the colour helps the answer "black"
    # plain padded batches (share_prefixes=False): the same numbers to fp32 rounding over 30 layers
    plain = AnswerScorer(
        SMOLLM, cache_dir=ROOT / ".cache", device="cpu", progress=False, offline=True, share_prefixes=False
    )
    np.testing.assert_allclose(plain.score_answers(items), got, atol=1e-4, rtol=0)

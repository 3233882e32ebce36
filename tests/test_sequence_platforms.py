"""Sequence-level platforms on a real LM: MOSAIC and the affine maximizer over sampled replies.

Every recorded number is recomputed by a referee (plain numpy, or one unbatched forward per
row), and truthfulness is checked by searching deviations through each round's counterfactual.
"""

import numpy as np
import pytest
import torch

from market_sim.lm.model import LanguageModel
from market_sim.platform.affine_maximizer import (
    AffineMaximizerPlatform,
)
from market_sim.platform.base import Bidder, Report, ReportBatch
from market_sim.platform.candidate_scoring import (
    batch_seed,
    draw_candidates,
    rows_per_generate,
    score_candidates,
    score_replies,
)
from market_sim.platform.mosaic import MosaicPlatform
from market_sim.platform.report_spaces import GROUP_DISTORTION_RANGES
from market_sim.prompting import build_prompt

torch.set_num_threads(1)

QUERY = "vacation in Hawaii"
QUERIES = ["vacation in Hawaii", "family trip to Maui"]
CONTEXTS = [
    "Alpha Airlines: nonstop flights to Hawaii.",
    "Beta Resort: beachfront rooms on Maui.",
    "Gamma Cars: rent a convertible.",
]
VALUATIONS = np.array([1.0, 0.7, 1.5])
TAU = 0.25
MAX_NEW_TOKENS = 12
CANDIDATES = 12

BID_MULTIPLIERS = np.linspace(0.0, 3.0, 61)
EXPONENTS = np.geomspace(0.25, 4.0, 9)


@pytest.fixture(scope="module")
def tiny_lm() -> LanguageModel:
    """The bundled trained model: its relevance scores differ between replies and advertisers."""
    return LanguageModel.load("bundled:tiny-ads", device="cpu")


def truthful_bidders(valuations=VALUATIONS):
    return [Bidder(c, Report(float(v))) for c, v in zip(CONTEXTS, valuations, strict=True)]


def grid_reports(valuation, multipliers, scales) -> ReportBatch:
    bids, exps = np.meshgrid(valuation * np.asarray(multipliers), np.asarray(scales))
    return ReportBatch(bids.ravel().astype(np.float64), exps.ravel().astype(np.float64))


def log_mean_exp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.mean(np.exp(x - top))))


def softmax(x: np.ndarray) -> np.ndarray:
    w = np.exp(x - x.max())
    return w / w.sum()


def mosaic_referee(relevance, log_weights, bids, exponents, tau):
    """q, payments and U(R) of one MOSAIC round, from the recorded internals, in plain numpy."""
    rewards = np.asarray(bids)[:, None] * relevance ** np.asarray(exponents)[:, None]
    total = rewards.sum(0)

    def partition(r):
        return tau * log_mean_exp(r / tau + log_weights)

    q = softmax(total / tau + log_weights)
    payments = np.array(
        [q @ rewards[i] - (partition(total) - partition(total - rewards[i])) for i in range(3)]
    )
    return q, payments, partition(total)


# ----------------------------------------------------------------------------------- MOSAIC


@pytest.mark.parametrize("proposal", ["reference", "context_aware"])
def test_mosaic_truthful_reporting_is_optimal_on_the_round(tiny_lm, proposal):
    platform = MosaicPlatform(tiny_lm, CANDIDATES, TAU, proposal, max_new_tokens=MAX_NEW_TOKENS)
    outcome = platform.run_auctions([QUERY], [truthful_bidders()], seed=3)[0]
    counterfactual = outcome.counterfactual
    assert counterfactual is not None
    for agent, valuation in enumerate(VALUATIONS):
        truthful = counterfactual.evaluate(agent, [Report(float(valuation))])
        truthful_utility = float(truthful.utilities(valuation)[0])
        assert truthful_utility >= -1e-12
        deviations = counterfactual.evaluate(
            agent, grid_reports(valuation, BID_MULTIPLIERS, EXPONENTS)
        )
        utilities = deviations.utilities(valuation)
        assert utilities.shape == (len(BID_MULTIPLIERS) * len(EXPONENTS),)
        assert utilities.max() <= truthful_utility + 1e-9
        assert (deviations.payments >= -1e-12).all()
        if proposal == "reference":  # the search is not vacuous: reports move the allocation
            assert np.ptp(deviations.allocations) > 1e-3


def test_mosaic_without_payments_overbidding_pays(tiny_lm):
    """The incentive the payment removes: with payment="none" a higher bid buys allocation."""
    kwargs = dict(candidates=CANDIDATES, tau=TAU, max_new_tokens=MAX_NEW_TOKENS)
    free = MosaicPlatform(tiny_lm, payment="none", **kwargs)
    paid = MosaicPlatform(tiny_lm, payment="mosaic", **kwargs)
    free_outcome = free.run_auctions([QUERY], [truthful_bidders()], seed=3)[0]
    paid_outcome = paid.run_auctions([QUERY], [truthful_bidders()], seed=3)[0]
    # The payment rule changes neither the candidates nor the allocation.
    np.testing.assert_array_equal(free_outcome.allocations, paid_outcome.allocations)
    assert free_outcome.token_ids == paid_outcome.token_ids
    np.testing.assert_array_equal(free_outcome.payments, np.zeros(3))
    gains = []
    for agent, valuation in enumerate(VALUATIONS):
        values = free_outcome.counterfactual.evaluate(
            agent, [Report(float(valuation)), Report(3.0 * float(valuation))]
        )
        np.testing.assert_array_equal(values.payments, 0.0)
        utilities = values.utilities(valuation)
        gains.append(utilities[1] - utilities[0])
        # With payments the same overbid does not pay.
        paid_values = paid_outcome.counterfactual.evaluate(
            agent, [Report(float(valuation)), Report(3.0 * float(valuation))]
        )
        paid_utilities = paid_values.utilities(valuation)
        assert paid_utilities[1] <= paid_utilities[0] + 1e-12
    assert max(gains) > 1e-4


@pytest.mark.parametrize("proposal", ["reference", "context_aware"])
def test_mosaic_payments_match_a_hand_computation(tiny_lm, proposal):
    platform = MosaicPlatform(tiny_lm, CANDIDATES, TAU, proposal, max_new_tokens=MAX_NEW_TOKENS)
    bids, exponents = np.array([1.0, 0.5, 1.5]), np.array([1.0, 2.0, 0.5])
    distorted = [
        Bidder(c, Report(float(b), float(e)))
        for c, b, e in zip(CONTEXTS, bids, exponents, strict=True)
    ]
    cases = [
        (True, truthful_bidders(), VALUATIONS, np.ones(3)),
        (False, distorted, bids, exponents),
    ]
    for truthful, bidders, b, e in cases:
        outcomes = platform.run_auctions(QUERIES, [bidders, bidders], seed=7)
        assert len(outcomes) == 2
        for outcome in outcomes:
            cf = outcome.counterfactual
            relevance = cf.relevance.numpy()
            log_weights = cf.log_weights.numpy()
            _, payments, _ = mosaic_referee(relevance, log_weights, b, e, TAU)
            np.testing.assert_allclose(outcome.payments, payments, rtol=1e-9, atol=1e-15)
            assert (outcome.payments >= -1e-12).all()
            if truthful:  # individual rationality of truthful reports
                utilities = VALUATIONS * outcome.allocations - outcome.payments
                assert (utilities >= -1e-12).all()


def test_mosaic_counterfactual_reproduces_the_round(tiny_lm):
    platform = MosaicPlatform(
        tiny_lm, CANDIDATES, TAU, "context_aware", max_new_tokens=MAX_NEW_TOKENS
    )
    reports = [Report(1.0), Report(0.5, 2.0), Report(1.5, 0.5)]
    bidders = [Bidder(c, r) for c, r in zip(CONTEXTS, reports, strict=True)]
    for outcome in platform.run_auctions(QUERIES, [bidders, bidders], seed=5):
        cf = outcome.counterfactual
        for agent, report in enumerate(reports):
            values = cf.evaluate(agent, [report, Report(0.0, 1.0)])
            np.testing.assert_allclose(
                values.allocations[0], outcome.allocations[agent], rtol=1e-12, atol=1e-15
            )
            np.testing.assert_allclose(
                values.payments[0], outcome.payments[agent], rtol=1e-12, atol=1e-15
            )
            assert values.payments[1] == 0.0  # a zero report pays exactly nothing
        utilities = cf.evaluate(1, reports[1:2]).utilities(0.7)
        np.testing.assert_allclose(
            utilities, 0.7 * outcome.allocations[1] - outcome.payments[1], rtol=1e-12
        )


def test_mosaic_is_deterministic_given_the_seed(tiny_lm):
    platform = MosaicPlatform(
        tiny_lm, CANDIDATES, TAU, "context_aware", max_new_tokens=MAX_NEW_TOKENS
    )
    first = platform.run_auctions(QUERIES, [truthful_bidders()] * 2, seed=11)
    again = platform.run_auctions(QUERIES, [truthful_bidders()] * 2, seed=11)
    other = platform.run_auctions(QUERIES, [truthful_bidders()] * 2, seed=12)
    for a, b, c in zip(first, again, other, strict=True):
        assert a.text == b.text and a.token_ids == b.token_ids
        np.testing.assert_array_equal(a.allocations, b.allocations)
        np.testing.assert_array_equal(a.payments, b.payments)
        assert a.user_value == b.user_value and a.extras == b.extras
        torch.testing.assert_close(a.counterfactual.relevance, b.counterfactual.relevance)
        # A different seed draws other candidates (their scores differ).
        assert not torch.equal(a.counterfactual.relevance, c.counterfactual.relevance)


def test_mosaic_allocations_and_user_value_match_a_hand_computation(tiny_lm):
    bids, exponents = np.array([1.0, 0.5, 1.5]), np.array([1.0, 2.0, 0.5])
    distorted = [
        Bidder(c, Report(float(b), float(e)))
        for c, b, e in zip(CONTEXTS, bids, exponents, strict=True)
    ]
    for proposal in ["reference", "context_aware"]:
        platform = MosaicPlatform(tiny_lm, CANDIDATES, TAU, proposal, max_new_tokens=MAX_NEW_TOKENS)
        cases = [
            (True, truthful_bidders(), VALUATIONS, np.ones(3)),
            (False, distorted, bids, exponents),
        ]
        for truthful, bidders, b, e in cases:
            for outcome in platform.run_auctions(QUERIES, [bidders] * 2, seed=4):
                cf = outcome.counterfactual
                relevance, log_weights = cf.relevance.numpy(), cf.log_weights.numpy()
                q, _, partition = mosaic_referee(relevance, log_weights, b, e, TAU)
                assert ((outcome.allocations >= 0) & (outcome.allocations <= 1)).all()
                np.testing.assert_allclose(outcome.allocations, relevance @ q, rtol=1e-9)
                np.testing.assert_allclose(
                    outcome.reported_allocations, relevance ** e[:, None] @ q, rtol=1e-9
                )
                a = np.exp(log_weights) / CANDIDATES
                user_value = -TAU * float(np.sum(q * np.log(q / a)))
                assert outcome.user_value == pytest.approx(user_value, rel=1e-9, abs=1e-12)
                # Minus a KL to the normalized reference, plus tau log(sum a): the weights'
                # sample mean is exactly 1 under the reference proposal only (then <= 0).
                normalized = a / a.sum()
                divergence = float(np.sum(q * np.log(q / normalized)))
                assert divergence >= -1e-12
                assert outcome.user_value == pytest.approx(
                    -TAU * divergence + TAU * np.log(a.sum()), rel=1e-9, abs=1e-12
                )
                if proposal == "reference":
                    assert a.sum() == pytest.approx(1.0, rel=1e-12)
                    assert outcome.user_value <= 1e-12
                assert outcome.extras["effective_candidates"] == pytest.approx(
                    1.0 / np.sum(q**2), rel=1e-9
                )
                chosen = int(outcome.extras["chosen_candidate"])
                assert q[chosen] > 0
                if truthful:
                    # Truthful: social welfare is the maximized objective, U(R) (Gibbs).
                    welfare = float(VALUATIONS @ outcome.allocations) + outcome.user_value
                    assert welfare == pytest.approx(partition, rel=1e-9, abs=1e-12)
                if proposal == "reference":
                    assert torch.equal(cf.log_weights, torch.zeros(CANDIDATES, dtype=torch.float64))


def test_mosaic_recorded_reply_is_the_scored_candidate(tiny_lm):
    """The chosen reply's relevance and importance weight are those recorded for its index."""
    platform = MosaicPlatform(
        tiny_lm, CANDIDATES, TAU, "context_aware", max_new_tokens=MAX_NEW_TOKENS
    )
    outcomes = platform.run_auctions(QUERIES, [truthful_bidders()] * 2, seed=21)
    for query, outcome in zip(QUERIES, outcomes, strict=True):
        tokens = list(outcome.token_ids)
        chosen = int(outcome.extras["chosen_candidate"])
        assert outcome.text == tiny_lm.decode(tokens).strip()
        assert outcome.extras["stopped_at_eos"] == float(len(tokens) < MAX_NEW_TOKENS)
        scores = score_replies(tiny_lm, [query], CONTEXTS, [tokens], MAX_NEW_TOKENS)
        torch.testing.assert_close(
            scores.relevance[:, 0], outcome.counterfactual.relevance[:, chosen], atol=1e-5, rtol=0
        )
        complete = tokens + ([tiny_lm.eos_token_id] if len(tokens) < MAX_NEW_TOKENS else [])
        reference, proposal = tiny_lm.sequence_logprob(
            [build_prompt(query), build_prompt(query, CONTEXTS)], [complete, complete]
        ).double()
        assert float(outcome.counterfactual.log_weights[chosen]) == pytest.approx(
            float(reference - proposal), abs=1e-4
        )


def test_candidates_past_the_sampling_budget_are_drawn_in_seeded_batches(tiny_lm, monkeypatch):
    """131,072 rows in one generate (convergence at support_samples = 65,536) held about 29 GB
    of cache and the process was killed; past the budget the rows are drawn a batch at a time."""
    import market_sim.platform.candidate_scoring as candidate_scoring

    prompts = [build_prompt(q, CONTEXTS) for q in QUERIES]
    whole = draw_candidates(tiny_lm, prompts, 4, MAX_NEW_TOKENS, 1.0, seed=5)
    rows = [prompt for prompt in prompts for _ in range(4)]
    assert [r for group in whole for r in group] == tiny_lm.sample(rows, MAX_NEW_TOKENS, 1.0, 5)
    positions = max(len(tiny_lm.encode_prompt(p)) for p in prompts) + MAX_NEW_TOKENS
    per_row = candidate_scoring.SAMPLING_BYTE_BUDGET // rows_per_generate(tiny_lm, positions)
    monkeypatch.setattr(candidate_scoring, "SAMPLING_BYTE_BUDGET", 3 * per_row + 1)
    assert rows_per_generate(tiny_lm, positions) == 3
    batched = draw_candidates(tiny_lm, prompts, 4, MAX_NEW_TOKENS, 1.0, seed=5)
    expected = [
        reply
        for batch, start in enumerate(range(0, len(rows), 3))
        for reply in tiny_lm.sample(
            rows[start : start + 3], MAX_NEW_TOKENS, 1.0, batch_seed(5, batch)
        )
    ]
    assert [r for group in batched for r in group] == expected
    assert [len(group) for group in batched] == [4] * len(prompts)
    # batch seeds never repeat a neighbouring caller's first batch (seed + b did)
    assert batch_seed(5, 0) == 5 and batch_seed(5, 1) not in {5, 6}


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_score_candidates_equals_unbatched_scoring(tiny_lm, temperature):
    """Batched, padded, chunked scoring equals one forward per row, EOS included when stopped."""
    relevance_temperature = 0.5
    prompts = [build_prompt(q, CONTEXTS) for q in QUERIES]
    candidates = draw_candidates(tiny_lm, prompts, 8, MAX_NEW_TOKENS, temperature, seed=2)
    lengths = [len(c) for group in candidates for c in group]
    assert min(lengths) < MAX_NEW_TOKENS  # some replies stopped at EOS ...
    assert max(lengths) == MAX_NEW_TOKENS  # ... and some were truncated
    contexts = [CONTEXTS] * len(QUERIES)
    scores = score_candidates(
        tiny_lm, QUERIES, contexts, candidates, MAX_NEW_TOKENS, temperature, prompts,
        relevance_temperature,
    )  # fmt: skip
    chunked = score_candidates(
        tiny_lm, QUERIES, contexts, candidates, MAX_NEW_TOKENS, temperature, prompts,
        relevance_temperature, max_rows=3,
    )  # fmt: skip
    assert scores.relevance.shape == (2, 3, 8) and scores.reference_logprob.shape == (2, 8)
    # Chunking changes which rows share a forward, so float32 matmul reductions may round
    # differently: each per-token log-prob moves by a few ulps and a reply's sum (magnitude up to
    # ~60 nats) by ~1e-7 relative. rtol=1e-5 is ~100 float32 ulps of the magnitude; atol=1e-6
    # covers relevance scores near 0, where relative error is meaningless.
    for name in ["reference_logprob", "proposal_logprob", "relevance"]:
        torch.testing.assert_close(
            getattr(chunked, name), getattr(scores, name), atol=1e-6, rtol=1e-5
        )
    eos = tiny_lm.eos_token_id
    for a, query in enumerate(QUERIES):
        for j, reply in enumerate(candidates[a]):
            complete = reply + ([eos] if len(reply) < MAX_NEW_TOKENS else [])
            ref = float(tiny_lm.sequence_logprob([build_prompt(query)], [complete], temperature)[0])
            gen = float(tiny_lm.sequence_logprob([prompts[a]], [complete], temperature)[0])
            assert float(scores.reference_logprob[a, j]) == pytest.approx(ref, abs=1e-4)
            assert float(scores.proposal_logprob[a, j]) == pytest.approx(gen, abs=1e-4)
            ref_tokens, _ = tiny_lm.continuation_logprobs(
                [build_prompt(query)], [complete], temperature
            )
            for i, context in enumerate(CONTEXTS):
                own, _ = tiny_lm.continuation_logprobs(
                    [build_prompt(query, [context])], [complete], temperature
                )
                mean_ratio = float((own[0] - ref_tokens[0]).double().mean())
                expected = 1.0 / (1.0 + np.exp(-mean_ratio / relevance_temperature))
                assert float(scores.relevance[a, i, j]) == pytest.approx(expected, abs=1e-5)


def test_reference_proposal_has_zero_importance_weights(tiny_lm):
    prompts = [build_prompt(q) for q in QUERIES]
    candidates = draw_candidates(tiny_lm, prompts, 8, MAX_NEW_TOKENS, 1.0, seed=6)
    scores = score_candidates(
        tiny_lm, QUERIES, [CONTEXTS] * 2, candidates, MAX_NEW_TOKENS, max_rows=3
    )
    assert torch.equal(scores.proposal_logprob, scores.reference_logprob)
    eos = tiny_lm.eos_token_id
    for a, query in enumerate(QUERIES):
        complete = [r + ([eos] if len(r) < MAX_NEW_TOKENS else []) for r in candidates[a]]
        expected = torch.stack(
            [tiny_lm.sequence_logprob([build_prompt(query)], [c])[0] for c in complete]
        ).double()
        torch.testing.assert_close(scores.reference_logprob[a], expected, atol=1e-4, rtol=0)
    platform = MosaicPlatform(tiny_lm, 8, TAU, "reference", max_new_tokens=MAX_NEW_TOKENS)
    for outcome in platform.run_auctions(QUERIES, [truthful_bidders()] * 2, seed=6):
        assert torch.equal(outcome.counterfactual.log_weights, torch.zeros(8, dtype=torch.float64))


# ------------------------------------------------------------------------- affine maximizer

SIZES = np.array([2.0, 1.0, 3.0])
SIZE_MULTIPLIERS = np.linspace(0.0, 3.0, 31)


@pytest.mark.parametrize("divergence", ["kl", "chi2", "tv"])
@pytest.mark.parametrize("distortion", ["reward_scale", "blend"])
def test_affine_maximizer_truthful_reporting_is_optimal(tiny_lm, divergence, distortion):
    platform = AffineMaximizerPlatform(
        tiny_lm,
        CANDIDATES,
        divergence,
        regularization=0.5,
        group_distortion=distortion,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    assert platform.report_space.distortion == distortion
    low, high = GROUP_DISTORTION_RANGES[distortion]
    scales = np.concatenate([np.geomspace(low, high, 9), [1.0]])
    outcomes = platform.run_auctions(QUERIES, [truthful_bidders(SIZES)] * 2, seed=8)
    for outcome in outcomes:
        assert outcome.extras["divergence"] > 1e-6  # the rule moved away from pi_init
        assert (outcome.payments >= -1e-12).all()
        cf = outcome.counterfactual
        for agent, size in enumerate(SIZES):
            truthful = cf.evaluate(agent, [Report(float(size))])
            np.testing.assert_allclose(
                truthful.allocations[0], outcome.allocations[agent], rtol=1e-9
            )
            np.testing.assert_allclose(
                truthful.payments[0], outcome.payments[agent], rtol=1e-9, atol=1e-14
            )
            truthful_utility = float(truthful.utilities(size)[0])
            assert truthful_utility >= -1e-12
            deviations = cf.evaluate(agent, grid_reports(size, SIZE_MULTIPLIERS, scales))
            assert (deviations.payments >= -1e-12).all()
            assert deviations.utilities(size).max() <= truthful_utility + 1e-9
            assert np.ptp(deviations.allocations) > 1e-4  # deviations do move the policy


def test_affine_maximizer_without_payments_exaggeration_pays(tiny_lm):
    platform = AffineMaximizerPlatform(
        tiny_lm, CANDIDATES, "kl", 0.5, payment="none", max_new_tokens=MAX_NEW_TOKENS
    )
    outcome = platform.run_auctions([QUERY], [truthful_bidders(SIZES)], seed=8)[0]
    np.testing.assert_array_equal(outcome.payments, np.zeros(3))
    gains = []
    for agent, size in enumerate(SIZES):
        values = outcome.counterfactual.evaluate(
            agent, [Report(float(size), 1.0), Report(float(size), 4.0)]
        )
        np.testing.assert_array_equal(values.payments, 0.0)
        utilities = values.utilities(size)
        gains.append(utilities[1] - utilities[0])
    assert max(gains) > 1e-4


def kl_solution(scores, init, lam):
    """pi* = init exp(g / lam) / Z and the optimal value max_pi <pi, g> - lam KL(pi || init)."""
    policy = softmax(np.log(init) + scores / lam)
    value = lam * log_mean_exp(scores / lam + np.log(init * len(init)))
    return policy, value


def test_affine_maximizer_kl_policy_and_payments_match_the_closed_form(tiny_lm):
    lam = 0.5
    platform = AffineMaximizerPlatform(
        tiny_lm, CANDIDATES, "kl", lam, max_new_tokens=MAX_NEW_TOKENS
    )
    outcomes = platform.run_auctions(QUERIES, [truthful_bidders(SIZES)] * 2, seed=9)
    for outcome in outcomes:
        cf = outcome.counterfactual
        rm = cf.true_rewards
        np.testing.assert_array_equal(cf.reported, rm)  # truthful: reported = true
        np.testing.assert_array_equal(cf.weights, SIZES)
        assert rm.shape == (3, CANDIDATES)
        np.testing.assert_allclose(rm.max(-1), 1.0)  # max-normalized
        init = np.full(CANDIDATES, 1.0 / CANDIDATES)
        scores = SIZES @ rm
        policy, _ = kl_solution(scores, init, lam)
        np.testing.assert_allclose(outcome.allocations, rm @ policy, rtol=1e-9)
        kl = lam * float(np.sum(policy * np.log(policy / init)))
        assert outcome.user_value == pytest.approx(-kl, rel=1e-9)
        assert outcome.extras["divergence"] == pytest.approx(kl, rel=1e-9)
        assert outcome.extras["policy_effective_outcomes"] == pytest.approx(
            1.0 / np.sum(policy**2), rel=1e-9
        )
        for i in range(3):
            without = scores - SIZES[i] * rm[i]
            _, best_without = kl_solution(without, init, lam)
            payment = best_without - (policy @ without - kl)
            assert outcome.payments[i] == pytest.approx(payment, rel=1e-8, abs=1e-13)


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"divergence": "js"}, "divergence must be kl, chi2 or tv, got 'js'"),
        ({"payment": "vcg"}, "payment must be affine_maximizer or none, got 'vcg'"),
        (
            {"group_distortion": "epsilon"},
            "group_distortion must be one of reward_scale, blend, got 'epsilon'",
        ),
        ({"candidates": 0}, "candidates must be >= 1, got 0"),
        ({"regularization": 0.0}, "regularization must be > 0, got 0.0"),
    ],
)
def test_affine_maximizer_rejects_invalid_arguments(random_lm, kwargs, message):
    with pytest.raises(ValueError) as error:
        AffineMaximizerPlatform(random_lm, **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"proposal": "oracle"}, "proposal must be one of reference, context_aware, got 'oracle'"),
        ({"payment": "vcg"}, "payment must be mosaic or none, got 'vcg'"),
        ({"candidates": 0}, "candidates must be >= 1, got 0"),
        ({"tau": 0.0}, "tau must be > 0, got 0.0"),
    ],
)
def test_mosaic_rejects_invalid_arguments(random_lm, kwargs, message):
    with pytest.raises(ValueError) as error:
        MosaicPlatform(random_lm, **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("platform_class", [MosaicPlatform, AffineMaximizerPlatform])
def test_mismatched_batches_are_rejected_and_empty_batches_are_empty(random_lm, platform_class):
    platform = platform_class(random_lm, candidates=2, max_new_tokens=4)
    with pytest.raises(ValueError, match="one list of bidders per query"):
        platform.run_auctions(QUERIES, [truthful_bidders()], seed=0)
    assert platform.run_auctions([], [], seed=0) == []


def test_scoring_rows_per_forward_follow_the_logit_budget(tiny_lm):
    from market_sim.platform.candidate_scoring import SCORING_LOGIT_BUDGET, rows_per_forward

    # The bundled LM keeps its 512 rows; a 49k vocabulary gets budget / ((40 + 1) x 49,152).
    assert rows_per_forward(512, MAX_NEW_TOKENS, tiny_lm.vocab_size) == 512
    assert rows_per_forward(512, 40, 49_152) == SCORING_LOGIT_BUDGET // (41 * 49_152) == 33
    assert rows_per_forward(512, 10**6, 10**6) == 1  # never zero rows


def test_continuation_scoring_keeps_only_the_continuation_logits(tiny_lm, monkeypatch):
    """The forward computes [B, width + 1, V] logits, not [B, prompt + reply, V]."""
    shapes = []
    forward = tiny_lm.model.forward

    def spy(*args, **kwargs):
        output = forward(*args, **kwargs)
        shapes.append(tuple(output.logits.shape))
        return output

    monkeypatch.setattr(tiny_lm.model, "forward", spy)
    prompts = [build_prompt(q, CONTEXTS) for q in QUERIES]
    replies = [tiny_lm.encode(" Fly nonstop."), tiny_lm.encode(" Relax")]
    tiny_lm.continuation_logprobs(prompts, replies)
    width = max(len(r) for r in replies)
    assert shapes == [(len(prompts), width + 1, tiny_lm.vocab_size)]

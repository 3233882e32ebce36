"""Ad-slot baselines: hand-computed payments, textbook revenues, VCG truthfulness, GSP regret."""

import functools

import numpy as np
import pytest

from market_sim.incentives.regret import estimate_regret
from market_sim.mechanisms.slot_auctions import ranked_slot_auction, slot_auction
from market_sim.mechanisms.slot_auctions_array import bidder_outcome, rank_slot_auction
from market_sim.platform.base import Report, ReportBatch, ReportSpace
from market_sim.platform.report_spaces import BIDS_ONLY
from market_sim.platform.slot_auction import SlotAuctionCounterfactual
from market_sim.scenario import RegretConfig

BIDS = np.array([[3.0, 1.0, 2.0, 0.5]])
RATES = np.array([0.5, 0.3])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("first_price", [0.5 * 3.0, 0.0, 0.3 * 2.0, 0.0]),
        ("second_price", [0.5 * 1.0, 0.0, 0.3 * 1.0, 0.0]),
        ("gsp", [0.5 * 2.0, 0.0, 0.3 * 1.0, 0.0]),
        ("vcg", [(0.5 - 0.3) * 2.0 + 0.3 * 1.0, 0.0, 0.3 * 1.0, 0.0]),
    ],
)
def test_hand_computed_payments(kind, expected):
    outcome = slot_auction(BIDS, RATES, kind)
    np.testing.assert_allclose(outcome.payments[0], expected, atol=1e-12)
    np.testing.assert_array_equal(outcome.slots[0], [0, -1, 1, -1])
    np.testing.assert_allclose(outcome.allocations[0], [0.5, 0.0, 0.3, 0.0])


def test_one_slot_second_price_gsp_and_vcg_coincide():
    bids = np.random.default_rng(0).random((500, 5))
    second = slot_auction(bids, [1.0], "second_price").payments
    np.testing.assert_allclose(slot_auction(bids, [1.0], "gsp").payments, second)
    np.testing.assert_allclose(slot_auction(bids, [1.0], "vcg").payments, second)
    winners = bids.argmax(1)
    np.testing.assert_allclose(second.sum(1), np.sort(bids, 1)[:, -2])
    assert (second.argmax(1) == winners).all()


def test_ties_follow_priority_and_zero_bids_are_not_shown():
    bids = np.array([[1.0, 1.0, 0.0]])
    first = slot_auction(bids, [1.0, 0.5, 0.2], "gsp", priority=np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(first.slots[0], [1, 0, -1])
    assert first.payments[0, 1] == pytest.approx(1.0)  # pays the tied bid below it
    assert first.payments[0, 0] == 0.0 and first.allocations[0, 2] == 0.0


@pytest.mark.parametrize("bidders", [2, 4, 6])
def test_truthful_second_price_revenue_is_textbook(bidders):
    values = np.random.default_rng(bidders).random((200_000, bidders))
    revenue = slot_auction(values, [1.0], "second_price").payments.sum(1)
    standard_error = revenue.std() / np.sqrt(len(revenue))
    assert abs(revenue.mean() - (bidders - 1) / (bidders + 1)) < 4 * standard_error


@pytest.mark.parametrize("bidders", [2, 4])
def test_first_price_equilibrium_bids_give_the_same_revenue(bidders):
    values = np.random.default_rng(10 + bidders).random((200_000, bidders))
    bids = (bidders - 1) / bidders * values
    revenue = slot_auction(bids, [1.0], "first_price").payments.sum(1)
    standard_error = revenue.std() / np.sqrt(len(revenue))
    assert abs(revenue.mean() - (bidders - 1) / (bidders + 1)) < 4 * standard_error
    # and no bidder gains by deviating from (n-1)/n v against the others' equilibrium bids
    # (ex interim: average over the others' values for a fixed own value)
    own_value = 0.8
    others = bids[:20_000, 1:]
    best_other = others.max(1)
    candidates = np.linspace(0, own_value, 81)
    expected = [((c > best_other) * (own_value - c)).mean() for c in candidates]
    best = candidates[int(np.argmax(expected))]
    assert best == pytest.approx((bidders - 1) / bidders * own_value, abs=0.02)


def test_vcg_is_truthful_by_deviation_search():
    rng = np.random.default_rng(7)
    rates = np.array([0.6, 0.35, 0.1])
    deviations = np.linspace(0, 2, 201)
    for _ in range(200):
        values = rng.random(5)
        priority = rng.permutation(5).astype(float)
        for agent in range(5):
            candidates = np.tile(values, (len(deviations), 1))
            candidates[:, agent] = deviations * values[agent]
            outcome = slot_auction(candidates, rates, "vcg", priority)
            utility = values[agent] * outcome.allocations[:, agent] - outcome.payments[:, agent]
            truthful = slot_auction(values[None], rates, "vcg", priority)
            truthful_utility = (
                values[agent] * truthful.allocations[0, agent] - truthful.payments[0, agent]
            )
            assert utility.max() <= truthful_utility + 1e-12
            assert truthful_utility >= -1e-12


FINE_SEARCH = RegretConfig(refinements=6)


def regret_of(kind, values, agent, rates, config=FINE_SEARCH):
    counterfactual = SlotAuctionCounterfactual(values, -np.arange(len(values)), rates, kind)
    return estimate_regret(
        lambda reports: counterfactual.evaluate(agent, reports),
        float(values[agent]),
        Report(float(values[agent])),
        ReportSpace(None),
        config,
    )


def test_regret_recovers_the_first_price_gain_by_hand():
    # Bidder 0 values the slot at 1 and bids truthfully against a bid of 0.5: it pays 1 and
    # gains 0; bidding just above 0.5 would win at price 0.5, a gain of 0.5 (the supremum).
    estimate = regret_of("first_price", np.array([1.0, 0.5]), 0, np.array([1.0]))
    assert estimate.truthful_utility == pytest.approx(0.0)
    assert 0.49 < estimate.regret <= 0.5
    assert estimate.best_multiplier == pytest.approx(0.5, abs=0.01)
    coarse = regret_of(
        "first_price", np.array([1.0, 0.5]), 0, np.array([1.0]), RegretConfig(refinements=0)
    )
    assert coarse.regret == pytest.approx(0.4)  # the coarse grid alone finds m = 0.6
    assert estimate.evaluations > coarse.evaluations


def test_regret_is_zero_for_vcg_and_positive_for_gsp_shading():
    # Two slots with close click-through rates: the top bidder gains by dropping to slot 2.
    values, rates = np.array([10.0, 9.0, 1.0]), np.array([1.0, 0.9])
    gsp = regret_of("gsp", values, 0, rates)
    # truthful: slot 1 at 9 per click -> 1.0; shading below 9: slot 2 at 1 per click -> 8.1
    assert gsp.truthful_utility == pytest.approx(1.0)
    assert gsp.regret == pytest.approx(7.1)
    assert regret_of("vcg", values, 0, rates).regret == pytest.approx(0.0, abs=1e-12)
    assert regret_of("second_price", values, 0, np.array([1.0])).regret == 0.0


def test_gsp_regret_through_a_narrow_slot_is_found_with_the_jump_bids():
    """Found by an audit: rivals bid 0.75 and 0.65 for slots of rates 1 and 0.9; bidding in
    (0.65, 0.75) takes slot 2 for 0.9 x 0.65 = 0.585 against 1 - 0.75 = 0.25 truthful. The
    grid (step 0.2) has no point in that 0.1-wide piece, and the search reported 0."""
    bids, rates = np.array([1.0, 0.75, 0.65]), np.array([1.0, 0.9])
    engine = SlotAuctionCounterfactual(bids, np.array([2.0, 1.0, 0.0]), rates, "gsp")
    evaluate = functools.partial(engine.evaluate, 0)
    for peaks in (1, 3):
        blind = estimate_regret(evaluate, 1.0, Report(1.0), BIDS_ONLY, RegretConfig(peaks=peaks))
        assert blind.regret == 0.0  # the grid alone misses it: this instance needs the jumps
        found = estimate_regret(
            evaluate,
            1.0,
            Report(1.0),
            BIDS_ONLY,
            RegretConfig(peaks=peaks),
            jump_bids=engine.jump_bids(0),
        )
        # 0.9 - 0.585 - 0.25 = 0.065, up to the rounding of two products (1e-16 relative)
        assert found.regret == pytest.approx(0.065, rel=1e-12)
        assert 0.65 <= found.best_multiplier < 0.75


@pytest.mark.parametrize("kind", ["first_price", "second_price", "gsp", "vcg"])
def test_regret_with_jump_bids_is_the_supremum_of_a_dense_scan(kind):
    """Random auctions of 2-5 bidders and 1-5 slots, with zero bids, tied bids and a rival bid
    at the top of the deviation space [0, 2v] mixed in: the search with the jump bids (the other
    bids and 0) finds exactly the best utility of a brute-force scan of 20001 points of [0, 2v],
    the midpoints between neighbouring jumps, and each jump and the next float above it. Each
    rule is constant (first price: falling) between jumps, so no bid beats the scan's best."""
    rng = np.random.default_rng(11)
    config = RegretConfig()
    for _ in range(300):
        bidders = int(rng.integers(2, 6))
        values = rng.uniform(0.5, 1.5, bidders)
        bids = values * np.clip(rng.normal(0.9, 0.3, bidders), 0.0, 2.0)
        bids[rng.random(bidders) < 0.15] = 0.0
        if bidders > 2 and rng.random() < 0.3:
            bids[2] = bids[1]  # a tie between rivals
        if rng.random() < 0.2:
            bids[1] = bids[0]  # a rival tied with the bid played
        top = config.multiplier_max * values[0]
        if rng.random() < 0.1:
            bids[-1] = top
        rates = np.sort(rng.random(int(rng.integers(1, bidders + 1))))[::-1]
        engine = SlotAuctionCounterfactual(
            bids, rng.permutation(bidders).astype(float), rates, kind, float(rng.choice([1, 24]))
        )
        evaluate = functools.partial(engine.evaluate, 0)
        value = float(values[0])
        estimate = estimate_regret(
            evaluate, value, Report(float(bids[0])), BIDS_ONLY, config, engine.jump_bids(0)
        )
        jumps = np.unique(np.append(bids[1:], 0.0))
        scan = np.concatenate(
            [
                np.linspace(0.0, top, 20001),
                jumps,
                np.nextafter(jumps, np.inf),
                (jumps[:-1] + jumps[1:]) / 2,
                [top],
            ]
        )
        scan = scan[scan <= top]
        utilities = evaluate(ReportBatch(scan, np.ones_like(scan))).utilities(value)
        best = max(float(utilities.max()), estimate.truthful_utility)
        # The same bids evaluated by the same closed form give the same floats: no tolerance.
        assert estimate.best_utility == best
        assert estimate.regret == best - estimate.truthful_utility


# --- array rules (market_sim.mechanisms.slot_auctions_array) against per-auction references ---


def textbook_slot_auction(bids, rates, kind, priority):
    """One auction, scalar Python, straight from the module's formulas (the reference)."""
    order = sorted(range(len(bids)), key=lambda i: (-bids[i], -priority[i]))
    ranked = [bids[i] for i in order] + [0.0] * (len(rates) + 1)
    rate = list(rates) + [0.0] * (len(bids) + 1)  # c_j, zero past the k slots
    allocations, payments = [0.0] * len(bids), [0.0] * len(bids)
    for j, bidder in enumerate(order):
        if ranked[j] <= 0 or rate[j] <= 0:
            continue
        allocations[bidder] = rate[j]
        if kind == "first_price":
            payments[bidder] = rate[j] * ranked[j]
        elif kind == "second_price":
            payments[bidder] = rate[j] * ranked[len(rates)]
        elif kind == "gsp":
            payments[bidder] = rate[j] * ranked[j + 1]
        else:
            payments[bidder] = sum(
                (rate[m] - rate[m + 1]) * ranked[m + 1] for m in range(j, len(rates))
            )
    return allocations, payments


def random_instances(seed, auctions=300):
    """Bids with ties and zeros (rounded to a coarse grid) and random tie-break permutations."""
    rng = np.random.default_rng(seed)
    bidders = int(rng.integers(2, 7))
    bids = np.round(rng.random((auctions, bidders)) * 4) / 4  # many ties, some zeros
    priority = np.argsort(rng.random((auctions, bidders)), axis=1).astype(np.float64)
    rates = np.sort(rng.random(int(rng.integers(1, bidders + 2))))[::-1]
    return bids, priority, rates


@pytest.mark.parametrize("kind", ["first_price", "second_price", "gsp", "vcg"])
@pytest.mark.parametrize("seed", range(6))
def test_array_rules_equal_the_per_auction_reference(kind, seed):
    bids, priority, rates = random_instances(seed)
    array = rank_slot_auction(bids, rates, kind, priority)
    sorted_rule = ranked_slot_auction(bids, rates, kind, priority)
    for k in range(len(bids)):
        allocations, payments = textbook_slot_auction(bids[k], rates, kind, priority[k])
        # The reference sums VCG terms in another order: agree to a few ulps of the payment.
        np.testing.assert_allclose(array.payments[k], payments, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(array.allocations[k], allocations)
    # Against the sorted rule the arithmetic is the same, so the numbers are bit-equal.
    np.testing.assert_array_equal(array.payments, sorted_rule.payments)
    np.testing.assert_array_equal(array.allocations, sorted_rule.allocations)
    np.testing.assert_array_equal(array.slots, sorted_rule.slots)


@pytest.mark.parametrize("kind", ["first_price", "second_price", "gsp", "vcg"])
@pytest.mark.parametrize("seed", range(4))
def test_bidder_outcome_equals_rerunning_the_auction(kind, seed):
    bids, priority, rates = random_instances(10 + seed, auctions=60)
    candidates = np.round(np.random.default_rng(seed).random((len(bids), 9)) * 4) / 4
    for agent in range(bids.shape[1]):
        others = np.delete(np.arange(bids.shape[1]), agent)
        allocations, payments = bidder_outcome(
            bids[:, others], priority[:, others], priority[:, agent], candidates, rates, kind
        )
        for k in range(len(bids)):
            reference = SlotAuctionCounterfactual(bids[k], priority[k], rates, kind)
            values = reference.evaluate(agent, ReportBatch(candidates[k], np.ones(9)))
            # Same arithmetic as the sorted rule the counterfactual runs: bit-equal.
            np.testing.assert_array_equal(payments[k], values.payments)
            np.testing.assert_array_equal(allocations[k], values.allocations)


def test_array_revenue_is_the_sum_of_payments_and_second_price_is_textbook():
    rng = np.random.default_rng(3)
    values = rng.random((200_000, 4))
    priority = rng.random((200_000, 4))
    outcome = rank_slot_auction(values, np.array([1.0]), "second_price", priority)
    revenue = outcome.payments.sum(1)
    np.testing.assert_array_equal(revenue, np.sort(values, 1)[:, -2])  # one winner pays b_(2)
    assert abs(revenue.mean() - 3 / 5) < 4 * revenue.std() / np.sqrt(len(revenue))


@pytest.mark.parametrize(
    ("bids", "rates", "message"),
    [
        ([[1.0, np.nan]], [1.0, 0.5], "bids must be finite and non-negative"),
        ([[np.inf, np.inf, 1.0]], [0.5, 0.5], "bids must be finite and non-negative"),
        ([[1.0, -0.5]], [1.0], "bids must be finite and non-negative"),
        ([[3.0, 2.0, 1.0]], [1.0, 0.0], "click_through_rates must lie in (0, 1]"),
    ],
)
def test_slot_auction_refuses_bids_and_rates_outside_its_domain(bids, rates, message):
    # NaN and inf bids used to give NaN payments (0 * inf in VCG); a zero-rate slot used to
    # lower the uniform price to the bid below it (values (3, 2, 1): winner paid 1, not 2).
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        slot_auction(np.array(bids), np.array(rates), "vcg")

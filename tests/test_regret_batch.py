"""The batched regret search equals the single search, auction by auction, bit for bit."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from market_sim.incentives.regret import estimate_regret
from market_sim.incentives.regret_batch import estimate_bid_regret_rows, row_linspace
from market_sim.market.array_round import counterfactual_utilities
from market_sim.platform.base import Report
from market_sim.platform.report_spaces import BIDS_ONLY
from market_sim.platform.slot_auction import SlotAuctionCounterfactual, slot_jump_bids
from market_sim.scenario.schema import RegretConfig

BUDGETS = [
    RegretConfig(),  # 11 points to 2x, 3 zooms of 5
    RegretConfig(refinements=0),
    RegretConfig(multiplier_max=5.0, multiplier_points=2, refinements=6, refine_points=3),
    RegretConfig(multiplier_points=21, refinements=2, refine_points=9),
]


def slot_instance(seed: int, auctions: int = 60):
    """Valuations (some 0), bids around them with ties, tie-break ranks, rates, slot value."""
    rng = np.random.default_rng(seed)
    bidders = int(rng.integers(2, 6))
    valuations = np.round(rng.random((auctions, bidders)) * 8) / 4  # ties and zeros
    shading = rng.choice([0.0, 0.5, 1.0, 1.2, rng.random()], size=(auctions, bidders))
    bids = valuations * shading
    priority = np.argsort(rng.random((auctions, bidders)), axis=1).astype(np.float64)
    rates = np.sort(rng.random(int(rng.integers(1, bidders + 2))))[::-1]
    return valuations, bids, priority, rates, float(rng.choice([1.0, 24.0]))


@pytest.mark.parametrize("jumps", [False, True], ids=["grid", "jumps"])
@pytest.mark.parametrize("kind", ["first_price", "second_price", "gsp", "vcg"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("budget", range(len(BUDGETS)))
def test_batched_search_equals_the_single_search_of_every_auction(kind, seed, budget, jumps):
    config = BUDGETS[budget]
    valuations, bids, priority, rates, slot_value = slot_instance(seed)
    platform = SimpleNamespace(click_through_rates=rates, kind=kind, slot_value=slot_value)
    scales = np.ones_like(bids)
    for agent in range(bids.shape[1]):
        utilities = functools.partial(
            counterfactual_utilities, platform, agent, valuations, bids, priority
        )
        batched = estimate_bid_regret_rows(
            utilities,
            valuations[:, agent],
            bids[:, agent],
            scales[:, agent],
            config,
            jump_bids=slot_jump_bids(bids, agent) if jumps else None,
        )
        for k in range(len(bids)):
            engine = SlotAuctionCounterfactual(bids[k], priority[k], rates, kind, slot_value)
            single = estimate_regret(
                functools.partial(engine.evaluate, agent),
                float(valuations[k, agent]),
                Report(float(bids[k, agent]), 1.0),
                BIDS_ONLY,
                config,
                jump_bids=engine.jump_bids(agent) if jumps else None,
            )
            # The same arithmetic on the same counterfactual values: no tolerance.
            assert (
                batched.regret[k],
                batched.best_response_gain[k],
                batched.truthful_utility[k],
                batched.best_multiplier[k],
                batched.best_distortion[k],
            ) == (
                single.regret,
                single.best_response_gain,
                single.truthful_utility,
                single.best_multiplier,
                single.best_distortion,
            ), (agent, k)


def test_the_batched_search_finds_the_known_best_deviation():
    """Second price, one slot: truthful is optimal (regret 0); first price shades to the rival."""
    valuations = np.array([[1.0, 0.6]])
    bids = valuations.copy()
    priority = np.array([[0.0, 1.0]])
    config = RegretConfig(refinements=6)
    found = {}
    for kind in ("second_price", "first_price"):
        platform = SimpleNamespace(click_through_rates=np.ones(1), kind=kind, slot_value=1.0)
        utilities = functools.partial(
            counterfactual_utilities, platform, 0, valuations, bids, priority
        )
        found[kind] = estimate_bid_regret_rows(
            utilities, valuations[:, 0], bids[:, 0], np.ones(1), config
        )
    assert found["second_price"].regret[0] == 0.0
    # v - p = 1.0 - 0.6: 0.4 up to the rounding of one subtraction (relative 1e-16), far inside
    assert found["second_price"].truthful_utility[0] == pytest.approx(0.4, rel=1e-12)
    # First price against a rival bid of 0.6: the supremum 1 - 0.6 = 0.4 is approached from
    # above 0.6; the last zoom's spacing is 2 / 10 / 2**6 = 0.003 of the value.
    assert 0.4 - 0.004 < found["first_price"].regret[0] < 0.4
    assert found["first_price"].best_multiplier[0] > 0.6


@pytest.mark.parametrize("points", [1, 2, 3, 5, 9])
def test_row_linspace_is_numpy_linspace_row_by_row(points):
    low = np.array([0.0, 0.3, 1.0, 5e-324, 2.0, -1.0])
    high = np.array([1.0, 0.3, 1.0 + 2e-16, 1e-323, 2.5, 7.0])  # zero and subnormal steps too
    rows = row_linspace(low, high, points)
    for k in range(len(low)):
        np.testing.assert_array_equal(rows[k], np.linspace(low[k], high[k], points))


def test_more_than_one_peak_is_refused():
    with pytest.raises(ValueError, match="regret.peaks = 3"):
        estimate_bid_regret_rows(
            np.zeros_like, np.ones(2), np.ones(2), np.ones(2), RegretConfig(peaks=3)
        )


def test_the_array_round_zooms_more_peaks_one_search_at_a_time(monkeypatch):
    """``regret.peaks = 2`` takes the single search, whose first bracket is the batched one's.

    The second peak can only raise the best deviation found, and regret takes no random draw,
    so the two runs are the same market: every other column is equal.
    """
    from pathlib import Path

    from market_sim.market import array_round
    from market_sim.run import run_scenario
    from market_sim.scenario import load_scenario

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "classic_auctions.toml"
    common = ["rounds=3", "auctions_per_round=16", "regret.every=1", "mechanism.kind=first_price"]
    one = run_scenario(load_scenario(scenario, [*common, "regret.peaks=1"])).agents

    def not_batched(*args, **kwargs):
        raise AssertionError("regret.peaks = 2 must not take the batched search")

    monkeypatch.setattr(array_round, "estimate_bid_regret_rows", not_batched)
    two = run_scenario(load_scenario(scenario, [*common, "regret.peaks=2"])).agents
    searched = ["run_id", "regret", "best_response_gain", "best_deviation_multiplier"]
    assert one.drop(searched).equals(two.drop(searched))  # truthful utility included
    assert two["regret"].is_not_null().all() and (two["regret"] >= one["regret"]).all()

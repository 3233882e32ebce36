"""Learning advertisers on the bundled LM: what each token-auction payment rule teaches them."""

import json
from pathlib import Path

import numpy as np
import pytest

from market_sim.run import run_scenario
from market_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "learning_token_auction.toml"


def learn(payment, tmp_path, overrides=("rounds=300",)):
    """Bid-only Hedge learners (21 multipliers in [0, 2]) under one payment rule.

    Returns:
        ``bid_ratio_final``, each learner's best fixed multiplier in hindsight, and each
        learner's policy mean.
    """
    overrides = [
        *overrides,
        f'mechanism.payment="{payment}"',
        "regret.enabled=false",
        "advertisers.0.strategy.distortion_count=1",
        "advertisers.1.strategy.distortion_count=1",
    ]
    out = tmp_path / payment
    summary = run_scenario(load_scenario(SCENARIO, overrides), out_dir=out).summary
    learners = json.loads((out / "learners.json").read_text()).values()
    hindsight = [s["multipliers"][int(np.argmax(s["cumulative_utility"]))] for s in learners]
    policy_mean = [float(np.dot(s["policy"], s["multipliers"])) for s in learners]
    return summary["bid_ratio_final"], hindsight, policy_mean


def assert_payment_rules_teach_their_incentives(tmp_path, overrides=("rounds=300",)):
    """Second price teaches truthful bids, first price shaded ones, no payment the top bid."""
    second_price, best_second, policy_second = learn("second_price", tmp_path, overrides)
    first_price, best_first, policy_first = learn("first_price", tmp_path, overrides)
    no_payment, best_none, policy_none = learn("none", tmp_path, overrides)
    # the best fixed multiplier in hindsight: truthful, the lowest positive bid, the top
    assert best_second == [1.0, 1.0] and best_first == [0.1, 0.1] and best_none == [2.0, 2.0]
    # What they end up playing (last 20% of rounds) and their policies' means. Under second
    # price the utility is flat near m = 1 and falls faster below it than above it, so Hedge's
    # spread-out policy leans above 1 (about 1.11 here, 1.04 in the shipped joint scenario).
    assert abs(second_price - 1) < 0.15 and all(abs(m - 1) < 0.15 for m in policy_second)
    assert first_price < 0.2 and all(m < 0.2 for m in policy_first)
    assert no_payment > 1.3 and all(m > 1.3 for m in policy_none)


@pytest.mark.slow
def test_payment_rules_teach_truthful_shaded_and_maximal_bids(tmp_path):
    """300 rounds of one auction each."""
    assert_payment_rules_teach_their_incentives(tmp_path)

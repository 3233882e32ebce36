"""One line per setting of a scenario known to be slow, said before the run starts.

The mechanism's own slow settings come from its plugin
(:attr:`~market_sim.plugins.base.MechanismPlugin.slow_settings`); the rest (regret every round,
many LM auctions) hold for every mechanism.
"""

from __future__ import annotations

from market_sim.plugins import mechanism_plugin
from market_sim.scenario.schema import Scenario

SECONDS_PER_LM_ROUND = 0.07
"""Measured cost of one round of an LM mechanism, bundled model, 2 CPU cores (README)."""
SLOW_RUN_SECONDS = 600.0
SLOW_REGRET_ROUNDS = 100
"""Runs longer than this warn when the regret search runs every round."""


def slow_setting_warnings(scenario: Scenario, runs: int = 1) -> list[str]:
    """One line per setting of ``scenario`` known to be slow (empty when none).

    Args:
        scenario: The resolved scenario.
        runs: How many runs of it will be made (a sweep's grid points x seeds).
    """
    plugin = mechanism_plugin(scenario.mechanism.kind)
    lines = list(plugin.slow_settings(scenario.mechanism))
    regret = scenario.regret
    if regret.enabled and regret.every == 1 and scenario.rounds > SLOW_REGRET_ROUNDS:
        lines.append(
            f"regret.every = 1 over {scenario.rounds} rounds: the regret search runs every round"
        )
    if plugin.decodes_per_auction:
        rounds = scenario.rounds * scenario.auctions_per_round * runs
        seconds = rounds * SECONDS_PER_LM_ROUND
        if seconds > SLOW_RUN_SECONDS:
            lines.append(
                f"{rounds} LM auctions: about {seconds / 60:.0f} min on 2 CPU cores with the "
                f"bundled model (measured {SECONDS_PER_LM_ROUND * 1000:.0f} ms per round)"
            )
    return lines

"""Strategy kind -> factory: fixed reports and learners, chosen per advertiser in the scenario."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from market_sim.config.fields import ParamValue
from market_sim.market.learners import LEARNER_FACTORIES
from market_sim.market.strategies import FixedDistortion, Strategy, StrategySetup, fixed_strategy

StrategyFactory = Callable[[Mapping[str, ParamValue], StrategySetup], Strategy]

STRATEGY_FACTORIES: dict[str, StrategyFactory] = {
    "truthful": lambda params, setup: FixedDistortion(),
    "fixed": fixed_strategy,
    **LEARNER_FACTORIES,
}
"""Strategy kind -> factory taking the validated parameters and the run's setup."""


def make_strategy(
    kind: str, params: Mapping[str, ParamValue], setup: StrategySetup | None = None
) -> Strategy:
    """Build the strategy of a kind from its validated parameters.

    Raises:
        ValueError: The kind has no factory, or its parameters do not fit the mechanism.
    """
    if kind not in STRATEGY_FACTORIES:
        raise ValueError(
            f"strategy kind {kind!r} unknown; allowed: {', '.join(STRATEGY_FACTORIES)}"
        )
    return STRATEGY_FACTORIES[kind](params, setup or StrategySetup())

"""Strategy kind -> factory: fixed reports and learners, chosen per advertiser in the scenario.

Built-in kinds are listed here; a plugin's kind (:mod:`market_sim.scenario.strategy_plugins`)
brings its own factory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from market_sim.config.fields import ParamValue
from market_sim.market.learners import LEARNER_FACTORIES
from market_sim.market.strategies import FixedDistortion, Strategy, StrategySetup, fixed_strategy
from market_sim.scenario.strategy_plugins import strategy_plugins

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
    factory = STRATEGY_FACTORIES.get(kind)
    if factory is None:
        plugin = strategy_plugins().get(kind)
        if plugin is None:
            every = [*STRATEGY_FACTORIES, *strategy_plugins()]
            raise ValueError(f"strategy kind {kind!r} unknown; allowed: {', '.join(every)}")
        factory = plugin.factory
    return factory(params, setup or StrategySetup())

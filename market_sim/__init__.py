"""market-sim: an ad marketplace whose ads are written by a language model.

The common entry points (imported lazily, so that ``market_sim.scenario`` and the CLI's error
paths do not pay for importing torch and transformers)::

    from market_sim import load_scenario, run_scenario
    result = run_scenario(load_scenario("scenarios/hawaii.toml", ["rounds=50"]), out_dir="out")
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LanguageModel": "market_sim.lm.model",
    "RunResult": "market_sim.run",
    "run_scenario": "market_sim.run",
    "Scenario": "market_sim.scenario",
    "ScenarioError": "market_sim.scenario",
    "load_scenario": "market_sim.scenario",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'market_sim' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)

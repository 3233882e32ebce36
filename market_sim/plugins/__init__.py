"""Mechanism plugins: one module per mechanism, registered here.

Each plugin (:class:`~market_sim.plugins.base.MechanismPlugin`) owns its typed config, its report
space and its platform factory; scenario parsing, the registry, the resolved ``scenario.toml``,
the run id and the key reference derive from them. A new mechanism is one module that defines a
config, a platform and a plugin, plus one call to :func:`register_mechanism` (here for built-ins,
or through the ``market_sim.mechanisms`` entry-point group for another package).
"""

from market_sim.plugins.ad_slots import AD_SLOTS
from market_sim.plugins.affine_maximizer import AFFINE_MAXIMIZER
from market_sim.plugins.base import MechanismConfig, MechanismPlugin
from market_sim.plugins.mosaic import MOSAIC
from market_sim.plugins.registry import (
    build_platform,
    mechanism_choices,
    mechanism_kinds,
    mechanism_plugin,
    mechanism_plugins,
    read_values,
    register_mechanism,
    registered,
    unregister_mechanism,
)
from market_sim.plugins.token_auction import TOKEN_AUCTION

BUILT_IN_PLUGINS = (TOKEN_AUCTION, MOSAIC, AFFINE_MAXIMIZER, AD_SLOTS)
"""The mechanisms this repository ships (and documents in ``docs/scenario-keys.md``)."""

for _plugin in BUILT_IN_PLUGINS:
    register_mechanism(_plugin)

__all__ = [
    "BUILT_IN_PLUGINS",
    "MechanismConfig",
    "MechanismPlugin",
    "build_platform",
    "mechanism_choices",
    "mechanism_kinds",
    "mechanism_plugin",
    "mechanism_plugins",
    "read_values",
    "register_mechanism",
    "registered",
    "unregister_mechanism",
]

"""Where a run's mechanism comes from, when it is not market-sim's own: its plugin's origin.

market-sim's version (``summary.json``'s ``versions``) pins its built-in mechanisms; a mechanism
added by a plugin is code of another package or script, and a result computed with it can only
be recomputed with that code. :func:`plugin_origin` names it for the run's provenance.
"""

from __future__ import annotations

import functools
from importlib import metadata

from market_sim.plugins.registry import entry_point_package, mechanism_plugin


@functools.cache
def module_distributions() -> dict[str, list[str]]:
    """Top-level import name -> the installed distributions providing it (read once)."""
    return dict(metadata.packages_distributions())


def plugin_origin(kind: str) -> dict[str, str | None] | None:
    """The plugin that runs ``kind``: its name, module, package and package version.

    The package is the one whose ``market_sim.mechanisms`` entry point loaded the plugin, else
    the installed distribution that provides the module of its settings class (None for a
    plugin defined in a script or test that no distribution provides).

    Returns:
        ``{"name", "module", "package", "version"}``, or None for a built-in mechanism (one
        defined in ``market_sim``).
    """
    plugin = mechanism_plugin(kind)
    module = plugin.config_type.__module__
    if module == "market_sim" or module.startswith("market_sim."):
        return None
    package = entry_point_package(plugin.name)
    if package is None:
        providers = module_distributions().get(module.split(".")[0], [])
        if providers:
            package = (providers[0], metadata.version(providers[0]))
    return {
        "name": plugin.name,
        "module": module,
        "package": package[0] if package else None,
        "version": package[1] if package else None,
    }

"""Where a run's mechanism comes from, when it is not market-sim's own: its plugin's origin.

market-sim's version (``summary.json``'s ``versions``) pins its built-in mechanisms; a mechanism
added by a plugin is code of another package or script, and a result computed with it can only
be recomputed with that code. :func:`plugin_origin` names it for the run's provenance.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from market_sim.plugins.registry import entry_point_package, mechanism_plugin

MAIN_MODULES = ("__main__", "__mp_main__")
"""A script's module name in its own process, and in the processes ``multiprocessing`` spawns
(sweep workers): both are recorded as ``__main__``, so a sweep's records do not depend on its
number of workers."""


@functools.cache
def module_distributions() -> dict[str, list[str]]:
    """Top-level import name -> the installed distributions providing it (read once)."""
    return dict(metadata.packages_distributions())


def module_file(module: str) -> Path | None:
    """The resolved source file of an imported module, if it has one."""
    loaded = sys.modules.get(module)
    name = getattr(loaded, "__file__", None)
    return Path(name).resolve() if name else None


def providing_distribution(module: str) -> tuple[str, str] | None:
    """``(distribution, version)`` of the installed distribution whose files hold ``module``.

    Matching the top-level name alone would credit a local ``analysis/mech.py`` to whichever
    installed distribution ships an ``analysis`` package: the module's file must be one of the
    distribution's files.
    """
    source = module_file(module)
    if source is None:
        return None
    for name in module_distributions().get(module.split(".")[0], []):
        files = metadata.distribution(name).files or []
        if any(Path(file.locate()).resolve() == source for file in files):
            return name, metadata.version(name)
    return None


@functools.cache
def file_sha256(path: Path) -> str:
    """SHA-256 of a source file (read once per process)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plugin_origin(kind: str) -> dict[str, str | None] | None:
    """The plugin that runs ``kind``: its name, module, package, version and source hash.

    The package is the one whose ``market_sim.mechanisms`` entry point loaded the plugin, else
    the installed distribution whose files hold the module of its settings class. A plugin that
    no distribution provides (a script's, a test's) gets no package; the SHA-256 of its
    module's source file identifies its code instead.

    Returns:
        ``{"name", "module", "package", "version", "source_sha256"}`` (``source_sha256`` only
        when there is no package), or None for a built-in mechanism (defined in ``market_sim``).
    """
    plugin = mechanism_plugin(kind)
    module = plugin.config_type.__module__
    if module == "market_sim" or module.startswith("market_sim."):
        return None
    package = entry_point_package(plugin.name) or providing_distribution(module)
    source = module_file(module) if package is None else None
    return {
        "name": plugin.name,
        "module": "__main__" if module in MAIN_MODULES else module,
        "package": package[0] if package else None,
        "version": package[1] if package else None,
        "source_sha256": file_sha256(source) if source is not None else None,
    }


def plugin_origins(kinds: Iterable[str]) -> dict[str, dict[str, str | None]]:
    """Kind -> :func:`plugin_origin` of each of ``kinds`` that a plugin outside market-sim runs.

    Returns:
        An empty dict when every kind is built in.
    """
    origins = {kind: plugin_origin(kind) for kind in dict.fromkeys(kinds)}
    return {kind: origin for kind, origin in origins.items() if origin is not None}

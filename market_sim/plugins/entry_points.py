"""Load the plugins an installed package names in an entry-point group, one line per failure.

Mechanism plugins (``market_sim.mechanisms``) and strategy plugins (``market_sim.strategies``)
are loaded the same way: each entry point is imported and registered; one that fails to import,
loads the wrong type, or clashes is skipped with one ``market-sim: warning:`` line naming it and
its package, so that one broken package stops no command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import Any

from market_sim.config.fields import first_line


@dataclass
class LoadedEntryPoints:
    """What loading one group gave.

    Attributes:
        skipped: ``entry point ... (value, package ...): why`` of each skipped entry point.
        packages: Registered name -> ``(distribution, version)`` of the package that named it.
    """

    skipped: list[str] = field(default_factory=list)
    packages: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def register_entry_points(
    found: list[EntryPoint] | Any,
    what: str,
    expected: type,
    register: Callable[[Any], Any],
    name_of: Callable[[Any], str],
    warned_env: str,
) -> LoadedEntryPoints:
    """Import and register every entry point in ``found``.

    Args:
        found: The group's entry points (``importlib.metadata.entry_points(group=...)``).
        what: ``mechanism`` or ``strategy`` (named in the warning line).
        expected: The type an entry point must load.
        register: Registers one loaded plugin (raises ``ValueError`` on a clash).
        name_of: The name a registered plugin is known by (for ``packages``).
        warned_env: Environment variable listing the entry points already warned about in
            this process tree (spawned sweep workers load them again; one line per tree).

    Returns:
        The skipped entry points (with why) and the packages of those registered.
    """
    loaded = LoadedEntryPoints()
    for entry_point in found:
        package = entry_point.dist.name if entry_point.dist is not None else "?"
        where = f"entry point {entry_point.name!r} ({entry_point.value}, package {package})"
        try:
            plugin = entry_point.load()
            if not isinstance(plugin, expected):
                raise TypeError(f"loads a {type(plugin).__name__}, not a {expected.__name__}")
            register(plugin)
        except Exception as error:  # noqa: BLE001 - any failure of a third-party import
            loaded.skipped.append(f"{where}: {first_line(error)}")
            warned = os.environ.get(warned_env, "").split("\n")
            if where not in warned:
                os.environ[warned_env] = "\n".join([*warned, where]).strip("\n")
                print(
                    f"market-sim: warning: {what} {where} skipped: {first_line(error)}",
                    file=sys.stderr,
                )
        else:
            if entry_point.dist is not None:  # recorded in the provenance of runs that use it
                version = getattr(entry_point.dist, "version", None)
                loaded.packages[name_of(plugin)] = (package, version)
    return loaded

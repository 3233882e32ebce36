"""Grid keys that only some mechanism kinds read: ``mechanism.<plugin>.<key>``.

Such a key applies to its plugin's kinds only: runs of other kinds are planned once, without
it (:func:`applicable_point`), and ``sweep.json`` lists which kinds each applies to
(:func:`grid_scope_lines`). A plain ``mechanism.<key>`` that a kind of the sweep does not read is
an error naming that kind (:func:`check_per_kind_keys_apply`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from market_sim.plugins import MechanismPlugin, mechanism_plugins
from market_sim.scenario import ScenarioError
from market_sim.sweep.backends import (
    SweepError,
)
from market_sim.sweep.grid import Grid


def check_per_kind_keys_apply(grid: Grid, kinds: set[str]) -> None:
    """Refuse a per-kind grid key whose plugin runs none of ``kinds`` (it would do nothing).

    Raises:
        SweepError: Naming the key and the kinds the sweep runs.
    """
    for key in grid:
        plugin = per_kind_plugin(key)
        if plugin is not None and not kinds & set(plugin.kinds):
            raise SweepError(
                f"--grid {key}: no run of this sweep is of kind {', '.join(plugin.kinds)} "
                f"(its kinds: {', '.join(sorted(kinds))}), so the key would change nothing"
            )


def per_kind_plugin(key: str) -> MechanismPlugin | None:
    """The plugin a grid key is scoped to: ``mechanism.<plugin name>.<key>``, else None."""
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "mechanism":
        return None
    return next((plugin for plugin in mechanism_plugins() if plugin.name == parts[1]), None)


def applicable_point(point: Sequence[tuple[str, Any]], kind: str) -> tuple[tuple[str, Any], ...]:
    """The grid values that apply to a run of ``kind``: per-kind keys of other kinds dropped.

    ``mechanism.mosaic.tau`` applies to MOSAIC runs only; a token-auction run of the same sweep
    is the same run for every value of it, so it is planned once, without that key.
    """
    kept = []
    for key, value in point:
        plugin = per_kind_plugin(key)
        if plugin is None or kind in plugin.kinds:
            kept.append((key, value))
    return tuple(kept)


def grid_scope_lines(grid: Grid) -> list[str]:
    """One line per per-kind grid key, saying which kinds it applies to."""
    lines = []
    for key in grid:
        plugin = per_kind_plugin(key)
        if plugin is not None:
            lines.append(f"--grid {key} applies to kind {', '.join(plugin.kinds)} only")
    return lines


def with_per_kind_hint(error: ScenarioError, grid: Grid) -> ScenarioError:
    """Add to "does not read this key" on a grid key how to scope it to the kinds that read it."""
    if error.key not in grid or "does not read this key" not in error.message:
        return error
    name = error.key.rpartition(".")[2]
    return ScenarioError(
        error.key,
        f"{error.message}; in a sweep across kinds, write the grid key as "
        f"mechanism.<plugin>.{name} to sweep it for that plugin's kinds only",
    )

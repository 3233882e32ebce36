"""The registered mechanism plugins: kind -> plugin, and the platform factory built from them.

Built-in plugins are registered by :mod:`market_sim.plugins`; an installed package adds its own
through the ``market_sim.mechanisms`` entry-point group (each entry point loads a
:class:`~market_sim.plugins.base.MechanismPlugin`), and a script or test can call
:func:`register_mechanism`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from market_sim.config.fields import (
    ChoiceList,
    Flag,
    FloatList,
    FloatRange,
    IntList,
    IntRange,
    TextList,
)
from market_sim.config.settings import Setting
from market_sim.config.summary_keys import SUMMARY_FIELDS
from market_sim.plugins.base import MechanismConfig, MechanismPlugin
from market_sim.plugins.entry_points import register_entry_points

if TYPE_CHECKING:
    from market_sim.lm.model import LanguageModel
    from market_sim.platform.base import Platform

ENTRY_POINT_GROUP = "market_sim.mechanisms"

_PLUGINS: dict[str, MechanismPlugin] = {}
"""Plugin name -> plugin, in registration order."""
_ENTRY_POINTS_LOADED: list[bool] = []
_ENTRY_POINT_PACKAGES: dict[str, tuple[str, str | None]] = {}
"""Plugin name -> (distribution, version) of the installed package whose entry point loaded it."""
_SKIPPED_ENTRY_POINTS: list[str] = []
"""``entry point ... (value, package ...): why`` of each entry point skipped in this process."""
WARNED_ENV = "MARKET_SIM_SKIPPED_ENTRY_POINTS"
"""Entry points already warned about in this process or its parent, one per line (spawned
sweep workers load the entry points again and would repeat the warning)."""


def register_mechanism(plugin: MechanismPlugin) -> MechanismPlugin:
    """Make ``plugin``'s kinds available to scenarios, sweeps and the market.

    Raises:
        ValueError: Its name or one of its kinds is taken by another registered plugin
            (registering the same plugin object again is a no-op), its name and a key of
            any registered plugin (its own included) coincide, or a string-valued key of it is
            named like a ``summary.json`` field
            (:data:`market_sim.config.summary_keys.SUMMARY_FIELDS`).
    """
    if _PLUGINS.get(plugin.name) is plugin:
        return plugin
    taken = {kind: other.name for other in _PLUGINS.values() for kind in other.kinds}
    taken.update({other.name: other.name for other in _PLUGINS.values()})
    for name in (plugin.name, *plugin.kinds):
        if name in taken:
            raise ValueError(f"mechanism {name!r} is already registered by plugin {taken[name]!r}")
    # [mechanism.<plugin name>] is a per-kind table: a key named like a plugin would be read as
    # one (its value "expected a table"), in this plugin's scenarios or every other's.
    keys: dict[str, str] = {"kind": "every plugin"}  # key -> the first plugin that reads it
    for other in _PLUGINS.values():
        for item in other.settings:
            keys.setdefault(item.name, other.name)
    if plugin.name in keys:
        raise ValueError(
            f"mechanism plugin {plugin.name!r} is named like a key of plugin "
            f"{keys[plugin.name]!r} ([mechanism.<plugin>] tables would clash): rename it"
        )
    names = {*(other.name for other in _PLUGINS.values()), plugin.name}
    for item in plugin.settings:
        if item.name in SUMMARY_FIELDS and is_string_valued(item):
            raise ValueError(
                f"mechanism plugin {plugin.name!r}: its key {item.name!r} is named like a "
                "summary.json field, where a run records its mechanism's keys: rename it"
            )
        if item.name in names:
            raise ValueError(
                f"mechanism plugin {plugin.name!r}: its key {item.name!r} is named like the "
                "plugin itself or another ([mechanism.<plugin>] tables would clash): rename it"
            )
    _PLUGINS[plugin.name] = plugin
    return plugin


NON_STRING_SPECS = (IntRange, FloatRange, Flag, TextList, FloatList, IntList, ChoiceList)
"""Specs whose values are never a string; a run records string values in ``summary.json``."""


def is_string_valued(item: Setting) -> bool:
    """Whether a setting may hold a string (every spec but the numeric, flag and list ones)."""
    return not isinstance(item.spec, NON_STRING_SPECS)


def unregister_mechanism(name: str) -> None:
    """Remove the plugin called ``name`` (tests that register their own)."""
    _PLUGINS.pop(name, None)
    _ENTRY_POINT_PACKAGES.pop(name, None)


@contextmanager
def registered(plugin: MechanismPlugin) -> Iterator[MechanismPlugin]:
    """Register ``plugin`` for the duration of a ``with`` block.

    Raises:
        ValueError: As :func:`register_mechanism`: a built-in cannot be shadowed, so leaving the
            block never removes another plugin.
    """
    register_mechanism(plugin)
    try:
        yield plugin
    finally:
        unregister_mechanism(plugin.name)


@contextmanager
def only_registered(plugins: Sequence[MechanismPlugin]) -> Iterator[None]:
    """Within the block, only ``plugins`` are registered (no entry points loaded).

    The key reference documents this repository's mechanisms
    (:data:`market_sim.plugins.BUILT_IN_PLUGINS`): a plugin installed beside it, or registered
    by a script, must not end up in ``docs/scenario-keys.md``.
    """
    saved, loaded = dict(_PLUGINS), list(_ENTRY_POINTS_LOADED)
    _PLUGINS.clear()
    _PLUGINS.update({plugin.name: plugin for plugin in plugins})
    _ENTRY_POINTS_LOADED[:] = [True]
    try:
        yield
    finally:
        _PLUGINS.clear()
        _PLUGINS.update(saved)
        _ENTRY_POINTS_LOADED[:] = loaded


def load_entry_point_plugins() -> None:
    """Register the plugins of installed packages (once per process).

    An entry point that fails to import, loads something other than a
    :class:`~market_sim.plugins.base.MechanismPlugin`, or clashes with a registered plugin is
    skipped with one line on stderr naming it and its package: one broken package must not stop
    every command, the built-in mechanisms included.
    """
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED.append(True)
    _SKIPPED_ENTRY_POINTS.clear()
    loaded = register_entry_points(
        entry_points(group=ENTRY_POINT_GROUP),
        "mechanism",
        MechanismPlugin,
        register_mechanism,
        lambda plugin: plugin.name,
        WARNED_ENV,
    )
    _SKIPPED_ENTRY_POINTS.extend(loaded.skipped)
    _ENTRY_POINT_PACKAGES.update(loaded.packages)


def ignore_installed_plugins() -> None:
    """Load no entry-point plugin in this process: the built-ins and explicit registrations only.

    The test suite calls it, so that its results do not depend on the packages installed beside
    market-sim (an installed copy of ``examples/posted_price_plugin`` would otherwise clash with
    the tests' own posted price). Tests of entry-point loading reset it.
    """
    _ENTRY_POINTS_LOADED[:] = [True]
    _SKIPPED_ENTRY_POINTS.clear()


def skipped_entry_points() -> tuple[str, ...]:
    """The mechanism entry points this process skipped, each with why (empty: none)."""
    load_entry_point_plugins()
    return tuple(_SKIPPED_ENTRY_POINTS)


def entry_point_package(name: str) -> tuple[str, str | None] | None:
    """``(distribution, version)`` of the package whose entry point registered plugin ``name``."""
    return _ENTRY_POINT_PACKAGES.get(name)


def mechanism_plugins() -> tuple[MechanismPlugin, ...]:
    """Every registered plugin, in registration order."""
    load_entry_point_plugins()
    return tuple(_PLUGINS.values())


def mechanism_kinds() -> tuple[str, ...]:
    """Every registered ``mechanism.kind``, in registration order."""
    return tuple(kind for plugin in mechanism_plugins() for kind in plugin.kinds)


def mechanism_plugin(kind: str) -> MechanismPlugin:
    """The plugin that runs ``kind``.

    Raises:
        KeyError: No registered plugin runs it.
    """
    for plugin in mechanism_plugins():
        if kind in plugin.kinds:
            return plugin
    raise KeyError(f"no mechanism plugin runs kind {kind!r}; registered: {mechanism_kinds()}")


def mechanism_choices(config: MechanismConfig) -> dict[str, str]:
    """The string-valued keys ``config`` reads (its variant: payment rule, aggregation, ...).

    ``summary.json`` records them beside the kind (a kind records none it does not read, so an
    ad-slot run has no ``payment``); analysis labels a kind's variants by its ``aggregation``,
    ``payment`` and ``settlement`` and by string-valued ``mechanism.*`` grid keys.
    """
    values = read_values(config)
    return {name: value for name, value in values.items() if isinstance(value, str)}


def read_values(config: MechanismConfig) -> dict[str, Any]:
    """Every key ``config``'s kind reads, with its value: the mechanism as it runs.

    Two configs with the same kind and read values are the same mechanism, whatever keys of
    other kinds they carry.
    """
    plugin = mechanism_plugin(config.kind)
    return {item.name: getattr(config, item.name) for item in plugin.read_settings(config)}


def build_platform(
    config: MechanismConfig, lm: LanguageModel, queries: Sequence[str] = ()
) -> Platform:
    """The platform of ``config.kind``, built by its plugin.

    Args:
        config: The resolved mechanism table (the plugin's config type).
        lm: The platform language model.
        queries: The scenario's query pool (read by platforms that prepare per pool).

    Raises:
        KeyError: No registered plugin runs the kind.
        MechanismOutputError: The plugin built no platform of the kind, or one whose report
            space differs from the plugin's (see
            :func:`~market_sim.platform.outcome_checks.check_platform`).
    """
    from market_sim.platform.outcome_checks import check_platform  # brings polars: run time

    plugin = mechanism_plugin(config.kind)
    platform = plugin.build(config, lm, queries)
    check_platform(config.kind, platform, plugin.report_space(config))
    return platform

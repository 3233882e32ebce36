"""Strategy plugins: an advertiser's strategy kind defined outside market-sim.

A :class:`StrategyPlugin` names a kind, its parameters (name -> spec with range and default, as
the built-in kinds declare theirs in :data:`~market_sim.scenario.schema.STRATEGY_PARAMS`), a
one-line doc of the kind and of each parameter, and a factory ``(params, setup) -> Strategy``
(the protocol of :mod:`market_sim.market.strategies`). :func:`register_strategy` makes the kind
available to scenarios (validated like a built-in kind, every error one line naming the key),
to the key reference and to the market; an installed package adds its own through the
``market_sim.strategies`` entry-point group, loaded once per process (sweep workers included)
and skipped with one warning line when it fails.

A run records each plugin strategy it used in ``summary.json`` under
``provenance.strategy_plugins`` (:func:`strategy_origins`: module, package, version and the
SHA-256 of its source, as parsed), and a run resumed from a checkpoint refuses other code.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from market_sim.config.fields import (
    REQUIRED,
    Flag,
    FloatRange,
    IntRange,
    ParamValue,
)
from market_sim.plugins import origin as plugin_code
from market_sim.plugins.entry_points import register_entry_points
from market_sim.scenario.schema import (
    STRATEGY_KIND_DOCS,
    STRATEGY_PARAM_DOCS,
    STRATEGY_PARAMS,
    StrategyParamSpec,
)

ENTRY_POINT_GROUP = "market_sim.strategies"
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
MAX_NAME_LENGTH = 64
CROSS_CHECKED_PARAMS: dict[str, tuple[str, ...]] = {
    "multiplier_count": ("multiplier_min", "multiplier_max"),
    "initial_multiplier": ("multiplier_min", "multiplier_max"),
    "distortion_count": ("distortion_min", "distortion_max"),
}
"""Parameters the loader checks against others (``check_strategy_ranges``): declared together."""
StrategyFactory = Callable[[Mapping[str, ParamValue], Any], Any]
"""``(validated parameters, StrategySetup) -> Strategy``."""


@dataclass(frozen=True)
class StrategyPlugin:
    """An advertiser strategy kind and everything the scenario, the docs and the market need.

    Attributes:
        kind: The ``advertisers[].strategy.kind`` value (lowercase letters, digits, ``_``).
        summary: One line: what the strategy does (the key reference's).
        params: Parameter name -> spec (:class:`~market_sim.config.fields.FloatRange`,
            :class:`~market_sim.config.fields.IntRange` or
            :class:`~market_sim.config.fields.Flag`, each with its default). A learner over
            the bid-multiplier x distortion grid may reuse the grid's keys of
            :data:`~market_sim.scenario.schema.LEARNER_SPACE_PARAMS` (``contextual`` is read by
            the built-in learners only).
        param_docs: Parameter name -> one line, for each parameter without a built-in doc
            (:data:`~market_sim.scenario.schema.STRATEGY_PARAM_DOCS`); a plugin's own line
            wins over the built-in one in its section of the reference.
        factory: ``(params, setup) -> Strategy``: ``params`` validated and defaults filled,
            ``setup`` the run's :class:`~market_sim.market.strategies.StrategySetup`.
    """

    kind: str
    summary: str
    params: Mapping[str, StrategyParamSpec]
    param_docs: Mapping[str, str]
    factory: StrategyFactory


_STRATEGIES: dict[str, StrategyPlugin] = {}
_ENTRY_POINTS_LOADED: list[bool] = []
_ENTRY_POINT_PACKAGES: dict[str, tuple[str, str | None]] = {}
_SKIPPED: list[str] = []
WARNED_ENV = "MARKET_SIM_SKIPPED_STRATEGY_ENTRY_POINTS"
"""Entry points already warned about in this process tree, one per line."""


def register_strategy(plugin: StrategyPlugin) -> StrategyPlugin:
    """Make ``plugin``'s kind available to scenarios, the key reference and the market.

    Registering the same plugin object again is a no-op.

    Raises:
        ValueError: Its kind is not a lowercase name or is taken (by a built-in kind or
            another plugin), a parameter spec is not a float, integer or flag spec with a
            default, a parameter has no doc, or its factory is not callable.
    """
    if not isinstance(plugin.kind, str) or not isinstance(plugin.params, Mapping):
        raise ValueError(
            f"strategy plugin {plugin.kind!r}: kind must be a str and params a mapping"
        )
    if _STRATEGIES.get(plugin.kind) is plugin:
        return plugin
    if not KIND_PATTERN.fullmatch(plugin.kind) or len(plugin.kind) > MAX_NAME_LENGTH:
        raise ValueError(
            f"strategy kind {plugin.kind!r}: use lowercase letters, digits and _ "
            "(it is a scenario value)"
        )
    if plugin.kind in STRATEGY_PARAMS or plugin.kind in _STRATEGIES:
        raise ValueError(f"strategy kind {plugin.kind!r} is already registered")
    where = f"strategy kind {plugin.kind!r}"
    if not callable(plugin.factory):
        raise ValueError(f"{where}: factory is not callable")
    docs = {**STRATEGY_PARAM_DOCS, **plugin.param_docs}
    for line in (plugin.summary, *docs.values()):
        if not isinstance(line, str) or not line.strip() or "\n" in line:
            raise ValueError(f"{where}: summary and param_docs must be one-line strings")
    for name, spec in plugin.params.items():
        if (
            name == "kind"
            or not isinstance(name, str)
            or not KIND_PATTERN.fullmatch(name)
            or not isinstance(spec, FloatRange | IntRange | Flag)
        ):
            raise ValueError(
                f"{where}: parameter {name!r} must be a lowercase name other than 'kind' and "
                "a FloatRange, IntRange or Flag"
            )
        if spec.default is REQUIRED:
            raise ValueError(f"{where}: parameter {name!r} needs a default")
        try:
            spec.parse(spec.default, name)
        except ValueError as error:
            raise ValueError(f"{where}: the default of {error}") from None
        if name not in docs:
            raise ValueError(f"{where}: parameter {name!r} has no doc (param_docs)")
    for name, partners in CROSS_CHECKED_PARAMS.items():
        missing = [partner for partner in partners if partner not in plugin.params]
        if name in plugin.params and missing:
            raise ValueError(
                f"{where}: parameter {name!r} is checked against {', '.join(partners)}: "
                f"declare {', '.join(missing)} too (LEARNER_SPACE_PARAMS has them all)"
            )
    _STRATEGIES[plugin.kind] = plugin
    return plugin


def unregister_strategy(kind: str) -> None:
    """Remove a registered plugin kind (tests, scripts); built-in kinds stay."""
    _STRATEGIES.pop(kind, None)
    _ENTRY_POINT_PACKAGES.pop(kind, None)


@contextmanager
def registered_strategy(plugin: StrategyPlugin) -> Iterator[StrategyPlugin]:
    """Register ``plugin`` for the ``with`` block only (if it was registered, it stays).

    Yields:
        The plugin.
    """
    added = _STRATEGIES.get(plugin.kind) is not plugin
    register_strategy(plugin)
    try:
        yield plugin
    finally:
        if added:
            unregister_strategy(plugin.kind)


@contextmanager
def only_built_in_strategies() -> Iterator[None]:
    """No plugin strategy for the ``with`` block (the shipped key reference's view).

    Yields:
        None; the registered plugins and the entry-point state are restored after.
    """
    saved, loaded = dict(_STRATEGIES), list(_ENTRY_POINTS_LOADED)
    _STRATEGIES.clear()
    _ENTRY_POINTS_LOADED[:] = [True]
    try:
        yield
    finally:
        _STRATEGIES.clear()
        _STRATEGIES.update(saved)
        _ENTRY_POINTS_LOADED[:] = loaded


def load_strategy_entry_points() -> None:
    """Register the strategy plugins of installed packages (once per process).

    An entry point that fails to import, loads something other than a
    :class:`StrategyPlugin`, or clashes is skipped with one line on stderr naming it and its
    package.
    """
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED.append(True)
    loaded = register_entry_points(
        entry_points(group=ENTRY_POINT_GROUP),
        "strategy",
        StrategyPlugin,
        register_strategy,
        lambda plugin: plugin.kind,
        WARNED_ENV,
    )
    _SKIPPED.extend(loaded.skipped)
    _ENTRY_POINT_PACKAGES.update(loaded.packages)


def ignore_installed_strategies() -> None:
    """Load no entry-point strategy in this process (the test suite's setting)."""
    _ENTRY_POINTS_LOADED[:] = [True]
    _SKIPPED.clear()


def strategy_plugins() -> dict[str, StrategyPlugin]:
    """Kind -> plugin of every registered plugin strategy (entry points loaded first)."""
    load_strategy_entry_points()
    return dict(_STRATEGIES)


def strategy_params() -> dict[str, Mapping[str, StrategyParamSpec]]:
    """Kind -> parameter specs of every strategy kind: the built-ins, then the plugins."""
    return {
        **STRATEGY_PARAMS,
        **{kind: plugin.params for kind, plugin in strategy_plugins().items()},
    }


def strategy_kind_doc(kind: str) -> str:
    """The one-line doc of a strategy kind."""
    plugin = strategy_plugins().get(kind)
    return plugin.summary if plugin is not None else STRATEGY_KIND_DOCS[kind]


def strategy_param_docs(kind: str) -> dict[str, str]:
    """Parameter -> one-line doc for ``kind``'s section (a plugin's own lines win)."""
    plugin = strategy_plugins().get(kind)
    own = dict(plugin.param_docs) if plugin is not None else {}
    return {**STRATEGY_PARAM_DOCS, **own}


def unknown_kind_hint() -> str:
    """Appended to an unknown strategy kind: where a plugin's kind comes from."""
    if _SKIPPED:
        return f" (a strategy plugin failed to load: {'; '.join(_SKIPPED)})"
    return (
        " (a plugin's kind is known where it is registered: register_strategy in a script's "
        "process, or a market_sim.strategies entry point of an installed package)"
    )


def strategy_origin(kind: str, modules: Iterable[str] = ()) -> dict[str, Any] | None:
    """Where a plugin strategy's code comes from; None for a built-in kind.

    Args:
        kind: The strategy kind.
        modules: Further modules holding its code (the run passes the module of each
            strategy object its factory built).

    Returns:
        ``{"module", "package", "version", "sources": {module: sha256}, "code_hash"}``:
        ``module`` defines the factory (a ``functools.partial`` is unwrapped), ``sources``
        hashes it and ``modules``, those outside market-sim, as parsed (as for mechanism
        plugins: :mod:`market_sim.plugins.origin`). Code they import is not hashed.
    """
    plugin = strategy_plugins().get(kind)
    if plugin is None:
        return None
    factory = plugin.factory
    while isinstance(factory, functools.partial):
        factory = factory.func
    factory_module = getattr(factory, "__module__", None) or "__main__"
    names = sorted(
        {
            plugin_code.recorded_module(name)
            for name in (factory_module, *modules)
            if not plugin_code.is_built_in(name)
        }
    )
    package = _ENTRY_POINT_PACKAGES.get(kind) or plugin_code.providing_distribution(factory_module)
    return {
        "module": plugin_code.recorded_module(factory_module),
        "package": package[0] if package else None,
        "version": package[1] if package else None,
        "sources": {name: plugin_code.source_sha256(name) for name in names},
        "code_hash": plugin_code.CODE_HASH,
    }


def strategy_origins(
    kinds: Iterable[str], modules: Mapping[str, Iterable[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`strategy_origin` of each plugin kind among ``kinds`` (built-ins left out).

    Args:
        kinds: Strategy kinds (repeats are fine).
        modules: Kind -> further modules of its code (the classes of its strategy objects).
    """
    modules = modules or {}
    origins = {kind: strategy_origin(kind, modules.get(kind, ())) for kind in dict.fromkeys(kinds)}
    return {kind: origin for kind, origin in origins.items() if origin is not None}


def changed_strategy_code(recorded: object) -> list[str]:
    """The plugin kinds of a run's ``provenance.strategy_plugins`` whose code differs now.

    Each kind's record is compared as a mechanism plugin's is
    (:func:`~market_sim.plugins.origin.changed_plugin_code`: its modules' code hashes, the hash
    scheme, its package's version); a kind no longer registered differs too. A record that is
    not a table (none: built-in strategies only) gives none.
    """
    if not isinstance(recorded, Mapping):
        return []
    registered = strategy_plugins()
    return [
        kind
        for kind, origin in recorded.items()
        if kind not in registered or plugin_code.changed_plugin_code(origin)
    ]

"""The ``[mechanism]`` table: validated by the plugin of its kind, and nothing else.

``kind`` is read first and picks the plugin (:mod:`market_sim.plugins`); the table's other keys
must be keys that plugin reads, else the error names the kind and the keys it reads. A scenario
swept across kinds keeps each kind's settings in a ``[mechanism.<plugin name>]`` table (e.g.
``[mechanism.ad_slots]``): it is validated against its plugin, and its keys are read only when
one of the plugin's kinds runs and they apply (a key gated on ``policy_space`` applies only with
that policy space); the top-level keys win over it (so ``--set mechanism.payment=...``
overrides a file's ``[mechanism.token_auction]``). The resolved dump holds ``kind`` and the keys
the kind reads, flat; per-kind tables are not dumped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from market_sim.config.fields import (
    Choice,
    ScenarioError,
    check_known_keys,
    child_key,
    did_you_mean,
    parse_field,
    require_table,
    show,
)
from market_sim.config.settings import Setting, settings_of
from market_sim.plugins import (
    MechanismConfig,
    MechanismPlugin,
    mechanism_kinds,
    mechanism_plugin,
    mechanism_plugins,
)
from market_sim.plugins.registry import skipped_entry_points

DEFAULT_KIND = "token_auction"


UNREGISTERED_KIND_HINT = (
    " (a plugin's kind is known where it is registered: register_mechanism in a script's "
    "process, or a market_sim.mechanisms entry point of an installed package for the "
    "market-sim commands)"
)
"""Appended to an unknown ``mechanism.kind``: where a plugin's kind comes from."""


def kind_spec() -> Choice:
    """``mechanism.kind``: one of the registered kinds."""
    return Choice(mechanism_kinds(), default=DEFAULT_KIND)


def parse_mechanism(table: Mapping[str, Any], key: str = "mechanism") -> MechanismConfig:
    """Validate a mechanism table with the plugin of its kind.

    Args:
        table: The raw ``[mechanism]`` table (or an audited mechanism's merged table).
        key: Its dotted key (``audit.mechanisms[i]`` for an audited mechanism).

    Returns:
        The plugin's config, every default filled.

    Raises:
        ScenarioError: An unknown kind, a key the kind does not read, an invalid value, or a
            cross-key rule of the plugin.
    """
    try:
        kind = parse_field(table, "kind", kind_spec(), key)
    except ScenarioError as error:
        if not isinstance(table.get("kind"), str):
            raise
        skipped = skipped_entry_points()
        hint = (
            f" (a mechanism plugin failed to load: {'; '.join(skipped)})"
            if skipped
            else UNREGISTERED_KIND_HINT
        )
        raise ScenarioError(error.key, f"{error.message}{hint}") from None
    plugin = mechanism_plugin(kind)
    per_kind = per_kind_tables(table, key)
    own_table = per_kind.get(plugin.name, {})
    top = {name: value for name, value in table.items() if name != "kind" and name not in per_kind}
    merged = {**own_table, **top}
    origin = {name: key if name in top else child_key(key, plugin.name) for name in merged}
    gates = {name for item in plugin.settings for name in item.when}
    gate_values = {
        item.name: parse_field(merged, item.name, item.spec, origin.get(item.name, key))
        for item in plugin.settings
        if item.name in gates
    }
    read = tuple(item for item in plugin.settings if item.is_read(gate_values))
    check_read(top, origin, plugin, kind, read, gate_values)
    kind_text = f"{child_key(key, 'kind')} {show(kind)}"
    values = {
        item.name: parse_setting(merged, item, origin.get(item.name, key), kind_text)
        for item in read
    }
    plugin.check(values, key)
    return plugin.config_type(kind=kind, **values)


def parse_setting(table: Mapping[str, Any], item: Setting, key: str, kind_text: str) -> Any:
    """Parse one key; a value outside a choice's list says whose list it is (``kind_text``)."""
    try:
        return parse_field(table, item.name, item.spec, key)
    except ScenarioError as error:
        if not isinstance(item.spec, Choice) or not error.message.startswith("unknown value"):
            raise
        message = error.message.replace("; allowed:", f" for {kind_text}; allowed:", 1)
        raise ScenarioError(error.key, message) from error


def per_kind_tables(table: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    """The ``[mechanism.<plugin name>]`` tables, each checked against its plugin's keys."""
    tables = {}
    for plugin in mechanism_plugins():
        if plugin.name not in table:
            continue
        table_key = child_key(key, plugin.name)
        sub_table = require_table(table[plugin.name], table_key)
        check_known_keys(sub_table, tuple(item.name for item in plugin.settings), table_key)
        for item in plugin.settings:
            if item.name in sub_table:
                parse_field(sub_table, item.name, item.spec, table_key)
        tables[plugin.name] = sub_table
    return tables


def check_read(
    table: Mapping[str, Any],
    origin: Mapping[str, str],
    plugin: MechanismPlugin,
    kind: str,
    read: tuple[Setting, ...],
    gate_values: Mapping[str, Any],
) -> None:
    """Refuse the first top-level key (sorted) the kind does not read, naming what it reads."""
    read_names = tuple(item.name for item in read)
    for name in sorted(str(name) for name in table if name not in read_names):
        gated = [item for item in plugin.settings if item.name == name]
        if gated:
            when = gated[0].when
            current = ", ".join(f"{gate} = {show(gate_values[gate])}" for gate in when)
            needed = ", ".join(
                f"{gate} = {' or '.join(show(value) for value in values)}"
                for gate, values in when.items()
            )
            reader = f"{plugin.title} with {current} (it reads it with {needed})"
        else:
            reader = f"{plugin.title} (kind {show(kind)})"
        others = [
            other.name
            for other in mechanism_plugins()
            if other is not plugin and any(item.name == name for item in other.settings)
        ]
        elsewhere = f"; {name} is read by: {', '.join(others)}" if others else ""
        if name in mechanism_kinds() and not others:  # [mechanism.gsp] for [mechanism.ad_slots]
            elsewhere = (
                f"; a table of settings for kind {show(name)} is named after its plugin: "
                f"[mechanism.{mechanism_plugin(name).name}]"
            )
        raise ScenarioError(
            child_key(origin[name], name),
            f"{reader} does not read this key{did_you_mean(name, read_names)}; it reads: "
            f"{', '.join(read_names)}{elsewhere}",
        )


def merge_audited(base: Mapping[str, Any], partial: Mapping[str, Any]) -> dict[str, Any]:
    """An audited mechanism's table: ``partial`` merged over the scenario's ``[mechanism]``.

    An entry of the scenario's plugin inherits every key of the scenario's table. An entry of
    another plugin inherits only the keys every mechanism reads (``max_new_tokens``,
    ``temperature``) and the per-kind tables, so ``{ kind = "mosaic" }`` audits MOSAIC with its
    own defaults (payment ``mosaic``) rather than the token auction's ``payment``.
    """
    base_kind = base.get("kind", DEFAULT_KIND)
    kind = partial.get("kind", base_kind)
    known = mechanism_kinds()
    if kind not in known or base_kind not in known:
        return {**base, **partial}  # the unknown kind is reported by parse_mechanism
    if mechanism_plugin(kind) is mechanism_plugin(base_kind):
        return {**base, **partial}
    shared = {item.name for item in settings_of(MechanismConfig)}
    shared |= {plugin.name for plugin in mechanism_plugins()}
    return {**{name: value for name, value in base.items() if name in shared}, **partial}


def mechanism_to_plain(config: MechanismConfig) -> dict[str, Any]:
    """The resolved table of ``config``: ``kind`` and the keys its kind reads."""
    return mechanism_plugin(config.kind).plain(config)

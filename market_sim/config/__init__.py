"""Typed settings: the field specs every configuration table is validated with, and their bounds.

The lowest layer of configuration: :mod:`~market_sim.config.fields` turns raw TOML values into
typed values or one-line errors naming the dotted key, :mod:`~market_sim.config.bounds` states the
numeric bounds the simulation's arithmetic handles, and :mod:`~market_sim.config.settings`
declares a dataclass field together with its spec and one-line documentation. Scenario parsing
and the mechanism plugins both build on them.
"""

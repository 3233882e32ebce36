"""Default vocabulary of eva's structured query grammar (pure data, no imports).

It belongs to the scenario layer: ``[eva]`` keys are validated against it before eva (a layer
above) is imported.

A structured query is ``intent + topic + persona + constraints`` rendered as one line of text
(:mod:`market_sim.eva.grammar`). The topics come from the scenario's query pool; the other parts
come from these lists unless a scenario's ``[eva.grammar]`` table replaces them.
"""

from __future__ import annotations

DEFAULT_INTENTS: tuple[str, ...] = (
    "",
    "best",
    "cheap",
    "quick tips for",
    "how to plan",
    "compare options for",
    "step by step plan for",
    "pros and cons of",
)
"""Intent prefixes, listed from shallow to deep: ``deepen`` moves a query to a later one. The
empty intent renders the topic alone."""

DEFAULT_CONSTRAINTS: tuple[str, ...] = (
    "on a budget",
    "this weekend",
    "for beginners",
    "near me",
    "with kids",
    "without a car",
    "in winter",
    "that is eco friendly",
)
"""General constraints ``add_constraint`` appends."""

DEFAULT_DETAILS: tuple[str, ...] = (
    "for two people",
    "under $100",
    "in early March",
    "for 3 days",
    "under $500",
    "for a week",
    "with a $50 budget",
    "in the evening",
)
"""Concrete details (numbers, dates, amounts) ``concretize`` appends as constraints."""

DEFAULT_PERSONAS: tuple[str, ...] = (
    "",
    "for a student",
    "for a family",
    "for a retiree",
    "for a busy parent",
    "for a first timer",
    "for a small business",
)
"""Personas; the empty persona renders nothing."""

EVOLVE_OPERATORS: tuple[str, ...] = (
    "add_constraint",
    "concretize",
    "deepen",
    "shift_topic",
    "shift_persona",
    "mix",
)
"""Mutation operators: in depth (the first three) and in breadth (the last three)."""

"""Structured queries and the mutation grammar the eva creator evolves them with.

A query is four parts rendered as one line of text::

    <intent> <topic> <persona> <constraint 1> <constraint 2> ...

e.g. ``StructuredQuery("vacation in Hawaii", "how to plan", "for a family", ("on a budget",))``
renders ``"how to plan vacation in Hawaii for a family on a budget"``. A query read from a
scenario's pool is its topic alone (empty intent and persona, no constraints), so it renders
exactly as written.

Operators (docs/design.md, section 6), each returning a *different* valid query or None when it
does not apply:

* in depth: ``add_constraint`` (append a general constraint), ``concretize`` (append a concrete
  detail: an amount, a date, a party size), ``deepen`` (move to a deeper intent: intents are
  listed from shallow to deep);
* in breadth: ``shift_topic`` (another topic of the vocabulary), ``shift_persona`` (another
  persona), ``mix`` (the partner's topic with this query's intent, persona (the partner's when
  this one has none) and the constraints of both, first ``max_constraints`` kept).

Choices among the options of an operator are uniform, drawn from the caller's generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from market_sim.scenario.eva_vocabulary import (
    DEFAULT_CONSTRAINTS,
    DEFAULT_DETAILS,
    DEFAULT_INTENTS,
    DEFAULT_PERSONAS,
    EVOLVE_OPERATORS,
)


def one_line(text: str) -> str:
    """Collapse whitespace runs to single spaces and strip."""
    return " ".join(text.split())


@dataclass(frozen=True)
class StructuredQuery:
    """A user query by parts.

    Attributes:
        topic: What the query is about, e.g. ``"vacation in Hawaii"`` (non-empty, one line).
        intent: Intent prefix, e.g. ``"compare options for"`` (empty: none).
        persona: Who asks, e.g. ``"for a student"`` (empty: nobody in particular).
        constraints: Constraints and concrete details, in the order they were added.
    """

    topic: str
    intent: str = ""
    persona: str = ""
    constraints: tuple[str, ...] = ()

    def render(self) -> str:
        """The query text: the non-empty parts joined by single spaces."""
        parts = [self.intent, self.topic, self.persona, *self.constraints]
        return one_line(" ".join(part for part in parts if part))

    @classmethod
    def from_text(cls, text: str) -> StructuredQuery:
        """A pool query read as text: the whole text is its topic."""
        return cls(topic=one_line(text))


@dataclass(frozen=True)
class QueryGrammar:
    """The vocabulary of each part, and the operators over it.

    Attributes:
        topics: Topics ``shift_topic`` may move to (held-out topics must not be among them).
        intents: Intent prefixes from shallow to deep (``""`` allowed: no intent).
        constraints: General constraints (``add_constraint``).
        details: Concrete details (``concretize``).
        personas: Personas (``""`` allowed: none).
        max_constraints: Most constraints plus details a query may carry.
    """

    topics: tuple[str, ...]
    intents: tuple[str, ...] = DEFAULT_INTENTS
    constraints: tuple[str, ...] = DEFAULT_CONSTRAINTS
    details: tuple[str, ...] = DEFAULT_DETAILS
    personas: tuple[str, ...] = DEFAULT_PERSONAS
    max_constraints: int = 3

    def __post_init__(self) -> None:
        """Reject an empty topic list or a cap below one."""
        if not self.topics:
            raise ValueError("topics: the grammar needs at least one topic")
        if self.max_constraints < 1:
            raise ValueError(f"max_constraints must be >= 1, got {self.max_constraints}")

    def problems(self, query: StructuredQuery) -> list[str]:
        """Why ``query`` is not a valid query of this grammar (empty list: it is valid).

        Valid: a non-empty one-line topic; an intent and a persona of the vocabulary (the empty
        intent and persona are always allowed: pool queries have none, and an empty intent is
        the shallowest); distinct
        constraints, each a constraint or a detail of the vocabulary, at most
        ``max_constraints`` of them. Topics need not be in :attr:`topics` (pool queries bring
        their own).
        """
        found = []
        if not query.topic or query.topic != one_line(query.topic):
            found.append(f"topic {query.topic!r} must be non-empty text on one line")
        if query.intent and query.intent not in self.intents:
            found.append(f"intent {query.intent!r} is not one of the grammar's intents")
        if query.persona and query.persona not in self.personas:
            found.append(f"persona {query.persona!r} is not one of the grammar's personas")
        allowed = set(self.constraints) | set(self.details)
        unknown = [c for c in query.constraints if c not in allowed]
        if unknown:
            found.append(f"constraints {unknown!r} are not in the grammar's vocabulary")
        if len(set(query.constraints)) != len(query.constraints):
            found.append("constraints repeat")
        if len(query.constraints) > self.max_constraints:
            found.append(
                f"{len(query.constraints)} constraints exceed max_constraints="
                f"{self.max_constraints}"
            )
        return found

    def is_valid(self, query: StructuredQuery) -> bool:
        """Whether :meth:`problems` finds nothing."""
        return not self.problems(query)

    def mutate(
        self,
        query: StructuredQuery,
        operator: str,
        rng: np.random.Generator,
        partner: StructuredQuery | None = None,
    ) -> StructuredQuery | None:
        """Apply one operator (see the module docstring).

        Args:
            query: The parent.
            operator: One of :data:`~market_sim.scenario.eva_vocabulary.EVOLVE_OPERATORS`.
            rng: Draws the choice among the operator's options.
            partner: The second parent of ``mix`` (ignored by the other operators).

        Returns:
            A valid query different from ``query``, or None when the operator has no option
            (e.g. ``deepen`` at the deepest intent, ``mix`` without a partner).

        Raises:
            ValueError: Unknown operator.
        """
        if operator not in EVOLVE_OPERATORS:
            allowed = ", ".join(EVOLVE_OPERATORS)
            raise ValueError(f"operator {operator!r} unknown; allowed: {allowed}")
        child = getattr(self, f"_{operator}")(query, rng, partner)
        if child is None or child == query or child.render() == query.render():
            return None
        return child

    def _add_constraint(self, query, rng, partner) -> StructuredQuery | None:
        return self._append(query, self.constraints, rng)

    def _concretize(self, query, rng, partner) -> StructuredQuery | None:
        return self._append(query, self.details, rng)

    def _deepen(self, query, rng, partner) -> StructuredQuery | None:
        start = self.intents.index(query.intent) + 1 if query.intent in self.intents else 0
        deeper = [intent for intent in self.intents[start:] if intent]
        if not deeper:
            return None
        return _replace(query, intent=_pick(deeper, rng))

    def _shift_topic(self, query, rng, partner) -> StructuredQuery | None:
        options = [topic for topic in self.topics if topic != query.topic]
        return _replace(query, topic=_pick(options, rng)) if options else None

    def _shift_persona(self, query, rng, partner) -> StructuredQuery | None:
        options = [persona for persona in self.personas if persona != query.persona]
        return _replace(query, persona=_pick(options, rng)) if options else None

    def _mix(self, query, rng, partner) -> StructuredQuery | None:
        if partner is None or partner == query:
            return None
        merged = tuple(dict.fromkeys((*query.constraints, *partner.constraints)))
        return StructuredQuery(
            topic=partner.topic,
            intent=query.intent,
            persona=query.persona or partner.persona,
            constraints=merged[: self.max_constraints],
        )

    def _append(
        self, query: StructuredQuery, vocabulary: Sequence[str], rng: np.random.Generator
    ) -> StructuredQuery | None:
        if len(query.constraints) >= self.max_constraints:
            return None
        options = [item for item in vocabulary if item not in query.constraints]
        if not options:
            return None
        return _replace(query, constraints=(*query.constraints, _pick(options, rng)))


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _replace(query: StructuredQuery, **changes: object) -> StructuredQuery:
    parts = {
        "topic": query.topic,
        "intent": query.intent,
        "persona": query.persona,
        "constraints": query.constraints,
    }
    parts.update(changes)
    return StructuredQuery(**parts)  # type: ignore[arg-type]

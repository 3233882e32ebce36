"""The query pool of the eva creator: queries with their lineage, and the held-out split.

Every query ever admitted gets a :class:`PoolQuery` record: a stable id, its structure, its
text, the generation it was born in, its parent(s), the operator and the engine that wrote its
text (``seed`` for the scenario's own queries, ``grammar`` or ``lm``). The lineage is complete:
every evolved query's parents are records of the same pool, so any query can be traced back to
the scenario's seed queries (:meth:`QueryPool.ancestry`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from market_sim.eva.errors import EvaSettingError
from market_sim.eva.grammar import StructuredQuery, one_line

SEED_ENGINE = "seed"


@dataclass(frozen=True)
class PoolQuery:
    """One query with its lineage.

    Attributes:
        query_id: Stable id (``q00000``, ``q00001``, ... in order of admission).
        query: Its structure.
        text: The text served to the LM (the rendered structure, or an LM rewrite of it).
        generation: Creator generation it was born in (0 for seed queries).
        parent_id: Id of the query it was evolved from (None for seed queries).
        second_parent_id: Id of the second parent of a ``mix`` (else None).
        operator: The mutation operator (None for seed queries).
        engine: ``seed``, ``grammar`` or ``lm``.
    """

    query_id: str
    query: StructuredQuery
    text: str
    generation: int = 0
    parent_id: str | None = None
    second_parent_id: str | None = None
    operator: str | None = None
    engine: str = SEED_ENGINE


class QueryPool:
    """The active pool and the record of every query ever admitted.

    Args:
        seeds: The scenario's training queries (texts; each becomes a topic-only query).
    """

    def __init__(self, seeds: Sequence[str]) -> None:
        self.records: dict[str, PoolQuery] = {}
        self.active: list[str] = []
        self.informativeness: dict[str, float] = {}
        self._texts: set[str] = set()
        for text in seeds:
            self.admit(StructuredQuery.from_text(text), one_line(text))

    def admit(
        self,
        query: StructuredQuery,
        text: str,
        generation: int = 0,
        parent_id: str | None = None,
        second_parent_id: str | None = None,
        operator: str | None = None,
        engine: str = SEED_ENGINE,
    ) -> PoolQuery:
        """Record a query and make it active.

        Raises:
            ValueError: Its text is already in the pool, or a parent is unknown.
        """
        if text in self._texts:
            raise ValueError(f"query {text!r} is already in the pool")
        for parent in (parent_id, second_parent_id):
            if parent is not None and parent not in self.records:
                raise ValueError(f"parent {parent!r} is not a query of this pool")
        record = PoolQuery(
            f"q{len(self.records):05d}",
            query,
            text,
            generation,
            parent_id,
            second_parent_id,
            operator,
            engine,
        )
        self.records[record.query_id] = record
        self._texts.add(text)
        self.active.append(record.query_id)
        return record

    def texts(self) -> set[str]:
        """Texts of every query ever admitted (active or retired); a copy."""
        return set(self._texts)

    def known(self, text: str) -> bool:
        """Whether a query with this text was ever admitted."""
        return text in self._texts

    def active_queries(self) -> list[PoolQuery]:
        """The active queries in order of admission."""
        return [self.records[query_id] for query_id in self.active]

    def retire_to(self, capacity: int, protected: Iterable[str] = ()) -> list[str]:
        """Shrink the active pool to ``capacity`` queries, least informative first.

        Queries whose informativeness was never measured, and ``protected`` ones, are kept
        while others remain; ties retire the older query first.

        Returns:
            The retired ids.
        """
        keep = set(protected)
        candidates = [
            query_id
            for query_id in self.active
            if query_id in self.informativeness and query_id not in keep
        ]
        order = {query_id: index for index, query_id in enumerate(self.records)}
        candidates.sort(key=lambda query_id: (self.informativeness[query_id], order[query_id]))
        excess = max(len(self.active) - capacity, 0)
        retired = candidates[:excess]
        gone = set(retired)
        self.active = [query_id for query_id in self.active if query_id not in gone]
        return retired

    def ancestry(self, query_id: str) -> list[str]:
        """Ids from ``query_id`` back to its seed query along first parents."""
        chain = [query_id]
        while (parent := self.records[chain[-1]].parent_id) is not None:
            chain.append(parent)
        return chain

    def lineage_rows(self) -> list[dict[str, object]]:
        """One plain record per admitted query (for ``queries.parquet``)."""
        active = set(self.active)
        return [
            {
                "query_id": record.query_id,
                "text": record.text,
                "generation": record.generation,
                "parent_id": record.parent_id,
                "second_parent_id": record.second_parent_id,
                "operator": record.operator,
                "engine": record.engine,
                "topic": record.query.topic,
                "intent": record.query.intent,
                "persona": record.query.persona,
                "constraints": list(record.query.constraints),
                "informativeness": self.informativeness.get(record.query_id),
                "active": record.query_id in active,
            }
            for record in self.records.values()
        ]


def split_heldout(
    items: Sequence[str], heldout: Sequence[str], fraction: float, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """The training pool and the held-out queries.

    Explicit ``heldout`` queries win; otherwise ``round(fraction * len(items))`` items (at
    least one, at most ``len(items) - 1``) are drawn without replacement, uniformly, and held
    out. Both lists keep the order of ``items``.

    Returns:
        ``(training, heldout)``.

    Raises:
        EvaSettingError: A split would leave one side empty.
    """
    if heldout:
        held = set(heldout)
        return [item for item in items if item not in held], list(heldout)
    if fraction <= 0:
        return list(items), []
    if len(items) < 2:
        raise EvaSettingError("queries.items: a held-out split needs at least 2 queries")
    count = min(max(int(np.floor(fraction * len(items) + 0.5)), 1), len(items) - 1)
    chosen = set(rng.choice(len(items), size=count, replace=False).tolist())
    training = [item for index, item in enumerate(items) if index not in chosen]
    held_out = [item for index, item in enumerate(items) if index in chosen]
    return training, held_out

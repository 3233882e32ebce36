"""Query streams: the interface the market reads, and the static pool.

The eva stream, which evolves its pool, lives in :mod:`market_sim.eva.stream`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class QueryStream(Protocol):
    """What the market asks of a query stream."""

    def next_query(self) -> str:
        """The next round's query."""
        ...

    def round_fields(self) -> dict[str, object]:
        """Extra columns for the round record of the query just served."""
        ...

    def lineage(self) -> list[dict[str, object]] | None:
        """One record per query the stream ever served from (None: a fixed pool)."""
        ...


class StaticQueryStream:
    """One query per round from a fixed pool.

    Args:
        items: The query pool (non-empty).
        order: ``cycle`` (round r gets ``items[r % len(items)]``) or ``sample`` (uniform with
            replacement, so queries recur).
        rng: Random generator used by ``sample``.
    """

    def __init__(self, items: Sequence[str], order: str, rng: np.random.Generator) -> None:
        if not items:
            raise ValueError("queries.items: the query pool is empty")
        if order not in ("cycle", "sample"):
            raise ValueError(f"queries.order: {order!r} unknown; allowed: cycle, sample")
        self.items = tuple(items)
        self.order = order
        self.rng = rng
        self._served = 0

    def next_query(self) -> str:
        """The next round's query."""
        if self.order == "cycle":
            query = self.items[self._served % len(self.items)]
        else:
            query = self.items[int(self.rng.integers(len(self.items)))]
        self._served += 1
        return query

    def round_fields(self) -> dict[str, object]:
        """Extra columns of the round record (none for a static pool)."""
        return {}

    def lineage(self) -> None:
        """A fixed pool has no lineage."""
        return None

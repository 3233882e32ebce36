"""The eva query stream of a market run (``queries.stream = "eva"``).

The market starts from the scenario's queries (every item: a market run trains nothing, so
nothing is held out). Every ``eva.evolve_every`` rounds (of ``auctions_per_round`` = K queries
each; a generation always falls between two rounds, never inside one) the creator runs one
generation on the active pool (:func:`~market_sim.eva.creator.creator_step`): k replies per
active query from the platform LM, their reward spread (:mod:`market_sim.eva.reward`, the
advertisers' expected valuations) as informativeness, parents sampled in proportion, children
admitted. Auctions are served from the active pool, cycled in order of admission or sampled
uniformly (``queries.order``). The platform LM is not trained during a market run, so
mechanisms are compared on the same model (``market-sim eva`` trains solvers; it does not save
them yet).

Every draw comes from the market's generator, so a run is reproducible from its seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from market_sim.config.bounds import SEED_MAX_31_BIT
from market_sim.eva.creator import Rewriter, creator_step
from market_sim.eva.grammar import one_line
from market_sim.eva.pool import PoolQuery, QueryPool
from market_sim.eva.query_split import QuerySplit
from market_sim.eva.setup import (
    build_grammar,
    build_reward,
    build_rewriter,
    eva_config,
    evolve_settings,
)
from market_sim.eva.solver import reward_spread
from market_sim.lm.model import LanguageModel
from market_sim.scenario.prompt_fit import QueryFits
from market_sim.scenario.schema import Scenario


class EvaQueryStream:
    """One query per auction from a pool the creator evolves (see the module docstring).

    Args:
        scenario: The scenario (``[queries]``, ``[eva]``, advertisers, reply settings).
        lm: The platform LM (replies for the estimate; it is also the judge).
        rng: The market's generator.
    """

    def __init__(self, scenario: Scenario, lm: LanguageModel, rng: np.random.Generator) -> None:
        self.config = eva_config(scenario)
        self.order = scenario.queries.order
        self.lm = lm
        self.rng = rng
        items = list(dict.fromkeys(one_line(item) for item in scenario.queries.items))
        self.pool = QueryPool(items)
        self.grammar = build_grammar(self.config, QuerySplit(items, []))
        self.reward = build_reward(scenario, lm)
        self.rewriter: Rewriter | None = build_rewriter(scenario, lm)
        self.admissible = QueryFits(scenario, lm)
        self.auctions_per_round = scenario.auctions_per_round
        self.generation = 0
        self._served = 0
        self.last: PoolQuery | None = None

    def next_query(self) -> str:
        """The next auction's query (after a creator generation every ``evolve_every`` rounds).

        With K = ``auctions_per_round``, query number s (from 0) opens a round when s % K == 0;
        the creator runs before it when rounds_done = s // K is a positive multiple of
        ``evolve_every``. With K = 1 this is every ``evolve_every`` queries, as before.
        """
        opens_round = self._served % self.auctions_per_round == 0
        rounds_done = self._served // self.auctions_per_round
        if opens_round and rounds_done > 0 and rounds_done % self.config.evolve_every == 0:
            self.evolve()
        active = self.pool.active_queries()
        if self.order == "cycle":
            query = active[self._served % len(active)]
        else:
            query = active[int(self.rng.integers(len(active)))]
        self._served += 1
        self.last = query
        return query.text

    def evolve(self) -> None:
        """One creator generation on the active pool."""
        self.generation += 1
        seed = int(self.rng.integers(SEED_MAX_31_BIT))
        config = self.config

        creator_step(
            self.pool,
            reward_spread(self.lm, self.reward, config.replies, config.informativeness, seed),
            config.sample_fraction,
            evolve_settings(config),
            self.grammar,
            self.generation,
            self.rng,
            rewriter=self.rewriter,
            admissible=self.admissible,
        )
        self.pool.retire_to(config.max_pool)

    def lineage(self) -> list[dict[str, Any]]:
        """Every query admitted, with its lineage (``queries.parquet`` of the run)."""
        return self.pool.lineage_rows()

    def round_fields(self) -> dict[str, Any]:
        """Columns for the round record: the served query's id and birth generation."""
        if self.last is None:
            return {}
        return {"query_id": self.last.query_id, "query_generation": self.last.generation}

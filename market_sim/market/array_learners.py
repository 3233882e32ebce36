r"""Strategies over a round of K auctions as array operations (the no-LM path's learners).

Each adapter wraps the market's own strategy object (:mod:`market_sim.market.strategies`,
:mod:`market_sim.market.learners`) and updates that object's state, so ``state()``,
``snapshot()`` and ``learners.json`` are the same objects as on the generic path. The semantics
are the batched-round semantics of :mod:`market_sim.market.learners`: the policy is the one held
at the start of the round, every auction draws its own action from it, and the learner updates
once from the K outcomes, in auction order. Given the same draws, an adapter's update equals the
scalar learner's ``update_round`` (tested):

* fixed / truthful: ``bid = m v``, no draw, no update;
* Hedge: ``[K]`` uniforms, inverse-CDF actions; :math:`S \mathrel{+}= \sum_k u_{k,\cdot}` with
  ``[K, A]`` counterfactual utilities summed in auction order;
* EXP3: ``[K]`` uniforms; rewards rescaled by the range observed up to each auction (running
  min / max), importance-weighted gains added in auction order (``np.add.at``);
* epsilon-greedy: ``[K]`` uniforms then ``[K]`` uniform action indices; counts and sums;
* UCB1: deterministic, one action for the whole round.

Only the order of the random draws differs from the generic path (one block per advertiser
instead of one draw per auction), which :mod:`market_sim.market.array_round` documents.
Contextual and policy-gradient learners have no adapter (those runs take the generic path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from market_sim.market.learners import EmpiricalMeans, EpsilonGreedy, Exp3, GridLearner, Hedge, Ucb1
from market_sim.market.strategies import FixedDistortion, Strategy

CounterfactualUtilities = Callable[[np.ndarray], np.ndarray]
"""``[K, A]`` candidate bids -> ``[K, A]`` utilities of one advertiser, others held fixed."""


@dataclass(frozen=True)
class BidderRound:
    """One advertiser's side of a round of K auctions.

    Attributes:
        valuations: ``[K]`` its valuation in each auction.
        actions: ``[K]`` the grid action it played (zeros for fixed strategies).
        utilities: ``[K]`` realized utilities ``v * allocation - payment``.
        counterfactual_utilities: Its utilities under other bids, same randomness.
    """

    valuations: np.ndarray
    actions: np.ndarray
    utilities: np.ndarray
    counterfactual_utilities: CounterfactualUtilities


class ArrayStrategy(Protocol):
    """A strategy that reports and learns for K auctions at once.

    Attributes:
        strategy: The wrapped scalar strategy (its state is what the run records and saves).
    """

    strategy: Strategy

    def reports(
        self, valuations: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``([K] actions, [K] bids, [K] report scales)`` for the round's valuations."""
        ...

    def learn(self, outcome: BidderRound) -> None:
        """Update once from the round's K outcomes."""
        ...

    def candidate_bids(self, valuations: np.ndarray) -> np.ndarray | None:
        """``[K, A]`` the bids whose counterfactual utilities :meth:`learn` will ask for.

        None when it asks for none (bandit feedback, fixed strategies). Replicates in lockstep
        compute the utilities of every replicate's candidates in one call.
        """
        ...


class ArrayFixed:
    """Fixed distortion (truthful when ``m = d = 1``): ``bid = m v``."""

    def __init__(self, strategy: FixedDistortion) -> None:
        self.strategy = strategy

    def reports(
        self, valuations: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """No draw; the same distortion in every auction."""
        count = valuations.shape[0]
        bids = self.strategy.bid_multiplier * valuations
        return np.zeros(count, dtype=np.int64), bids, np.full(count, self.strategy.distortion)

    def learn(self, outcome: BidderRound) -> None:
        """Fixed strategies do not learn."""

    def candidate_bids(self, valuations: np.ndarray) -> None:
        """No counterfactual is read."""
        return None


def sample_indices(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """``[K]`` categorical draws by inverse CDF, one per uniform (as ``learners.sample_index``)."""
    cumulative = np.cumsum(probabilities)
    indices = np.searchsorted(cumulative, uniforms * cumulative[-1], side="right")
    return np.minimum(indices, len(probabilities) - 1)


class ArrayGridLearner:
    """Shared reporting of grid learners: actions -> ``bid = m_a v``, ``scale = d_a``.

    Args:
        learner: The wrapped grid learner.
    """

    def __init__(self, learner: GridLearner) -> None:
        self.strategy: GridLearner = learner
        self.policy = learner.policy()

    def reports(
        self, valuations: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw K actions from the start-of-round policy."""
        self.policy = self.strategy.policy()
        actions = self.choose(valuations.shape[0], rng)
        grid = self.strategy.grid
        return actions, grid.multipliers[actions] * valuations, grid.distortions[actions]

    def choose(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``[K]`` actions (default: inverse CDF of ``[K]`` uniforms on the policy)."""
        return sample_indices(self.policy, rng.random(count))

    def learn(self, outcome: BidderRound) -> None:
        """Update the wrapped learner, then count the round."""
        self.update(outcome)
        self.strategy.rounds += 1

    def update(self, outcome: BidderRound) -> None:
        """Learner-specific update."""
        raise NotImplementedError

    def candidate_bids(self, valuations: np.ndarray) -> np.ndarray | None:
        """None: only full-information learners read counterfactual utilities."""
        return None


class ArrayHedge(ArrayGridLearner):
    """Hedge: cumulative utilities += the round's ``[K, A]`` counterfactual utilities summed."""

    strategy: Hedge

    def candidate_bids(self, valuations: np.ndarray) -> np.ndarray:
        """``[K, A]`` bids ``v_k m_a`` of every grid multiplier in every auction."""
        return valuations[:, None] * self.strategy.grid.multipliers[None, :]

    def update(self, outcome: BidderRound) -> None:
        r""":math:`S \mathrel{+}= \sum_k u_{k,\cdot}`; the spread widens with every auction's."""
        utilities = outcome.counterfactual_utilities(self.candidate_bids(outcome.valuations))
        # add.reduce over axis 0 accumulates row after row: the scalar learner's order.
        self.strategy.cumulative += np.add.reduce(utilities, axis=0)
        self.strategy.range.observe(utilities)


def running_bounds(
    previous_low: float, previous_high: float, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``[K]`` running minimum and maximum of ``values``, starting from the previous bounds."""
    lows = np.minimum.accumulate(np.concatenate([[previous_low], values]))[1:]
    highs = np.maximum.accumulate(np.concatenate([[previous_high], values]))[1:]
    return lows, highs


class ArrayExp3(ArrayGridLearner):
    """EXP3: importance-weighted gains of each auction's played action, in auction order."""

    strategy: Exp3

    def update(self, outcome: BidderRound) -> None:
        r"""Gains :math:`\hat G_{a_k} \mathrel{+}= r_k / p_{a_k}` in auction order.

        :math:`r_k` is auction k's utility rescaled by the range observed up to it.
        """
        learner = self.strategy
        utilities = outcome.utilities
        lows, highs = running_bounds(learner.range.low, learner.range.high, utilities)
        spreads = highs - lows
        with np.errstate(divide="ignore", invalid="ignore"):
            rewards = np.where(spreads > 0, (utilities - lows) / spreads, 0.5)
        np.add.at(learner.estimated_gain, outcome.actions, rewards / self.policy[outcome.actions])
        learner.range.observe(utilities)


class ArrayEmpiricalMeans(ArrayGridLearner):
    """Count and sum each auction's played action and utility (epsilon-greedy, UCB1)."""

    strategy: EmpiricalMeans

    def update(self, outcome: BidderRound) -> None:
        """Counts and utility sums per action, in auction order."""
        learner = self.strategy
        learner.counts += np.bincount(outcome.actions, minlength=learner.size)
        np.add.at(learner.sums, outcome.actions, outcome.utilities)
        learner.range.observe(outcome.utilities)


class ArrayEpsilonGreedy(ArrayEmpiricalMeans):
    """Epsilon-greedy: explore with probability epsilon per auction, else the greedy action."""

    strategy: EpsilonGreedy

    def choose(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``[K]`` uniforms decide exploration, then ``[K]`` uniform actions."""
        explore = rng.random(count) < self.strategy.epsilon
        picks = rng.integers(self.strategy.size, size=count)
        return np.where(explore, picks, self.strategy.greedy())


class ArrayUcb1(ArrayEmpiricalMeans):
    """UCB1: one deterministic action for the whole round."""

    strategy: Ucb1

    def choose(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """The UCB1 action of the start of the round, K times."""
        return np.full(count, self.strategy.choose(rng), dtype=np.int64)


ARRAY_ADAPTERS: dict[type, type] = {
    FixedDistortion: ArrayFixed,
    Hedge: ArrayHedge,
    Exp3: ArrayExp3,
    EpsilonGreedy: ArrayEpsilonGreedy,
    Ucb1: ArrayUcb1,
}
"""Exact strategy class -> its array adapter (subclasses and other kinds have none)."""


def array_strategy(strategy: Strategy) -> ArrayStrategy | None:
    """The array adapter of a strategy, or None when its kind has none."""
    adapter = ARRAY_ADAPTERS.get(type(strategy))
    return adapter(strategy) if adapter is not None else None

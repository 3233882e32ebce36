r"""Advertisers that learn how to bid and what to report, over repeated rounds.

Every learner plays reports ``Report(m * valuation, d)`` (:mod:`market_sim.market.action_grid`) and
maximizes its own quasi-linear utility. Rates are set from the regret bounds for the run's
horizon T (the ``horizon`` of :class:`~market_sim.market.strategies.StrategySetup`; per context
``T / contexts`` for contextual learners), never by hand against a result. A parameter left at 0
means "from the bound".

Utilities are in valuation units whose range is not known in advance, so every learner divides
them by the range of utilities it has observed so far, :math:`R_t` = the largest minus the
smallest utility seen (:class:`UtilityRange`; for Hedge every action's counterfactual utility in
every auction, for bandit learners the realized utilities). This is the usual scale-free
practice; the rate is then non-increasing, as the bounds require. For Hedge the bound needs less:
Hedge is unchanged by shifting one round's utilities, so the largest per-round spread across
actions would do, and it is smaller when the level of utilities moves between rounds (e.g.
valuations drawn per round under a mechanism that pays a zero bid something). The overall range
is the conservative choice kept here: it can only lower the rate below the bound's.

* ``hedge``: multiplicative weights with full information. After each round the platform's
  counterfactual (same randomness, no new LM call) gives the utility :math:`u_{t,k}` of every
  action k, and :math:`w_k \propto \exp(\eta_t \sum_{s \le t} u_{s,k})` with
  :math:`\eta_t = \sqrt{8 \ln N / T} / R_t` over N actions (Freund and Schapire;
  Cesa-Bianchi and Lugosi 2.2).
* ``exp3``: bandit feedback (Auer et al. 2002): :math:`p = (1-\gamma)\,\mathrm{softmax}(\gamma
  \hat G / N) + \gamma / N` with importance-weighted gains of rewards rescaled to [0, 1] by the
  observed range and :math:`\gamma = \min(1, \sqrt{N \ln N / ((e - 1) T)})`.
* ``epsilon_greedy``: explore uniformly with probability
  :math:`\epsilon = \min(1, (N \ln T / T)^{1/3})` (the rate that balances exploration and
  exploitation for a fixed horizon), else play the best empirical mean; untried actions first.
* ``ucb1``: every action once, then :math:`\arg\max_k \bar u_k + c R_t \sqrt{\ln t / n_k}`,
  :math:`c = \sqrt 2` (Auer, Cesa-Bianchi and Fischer 2002).
* ``policy_gradient``: a Gaussian policy over :math:`\log m` (and :math:`\log d` where the
  distortion is learned), REINFORCE with a running-mean baseline and Adam at learning rate
  :math:`1/\sqrt{U}`, U its number of updates (T with one auction per round; a rule of thumb
  for a step size over U steps, not a regret bound); the sampled multiplier is clipped to the
  allowed range.

Batched rounds (``auctions_per_round = K``): a learner samples its action **per auction**, K
independent draws from the policy it holds at the start of the round, and updates **once per
round** from the K outcomes, in auction order. Per-auction sampling keeps every auction an unbiased
draw of the policy (the importance weights of EXP3 and the REINFORCE score need the action actually
played in that auction, with its probability), and a round of K auctions then is exactly K plays of
a policy with feedback delayed by at most K - 1 auctions; sampling once per round would instead
correlate the K auctions and cut the exploration by K. The horizon T of the grid learners' rates is
the number of auctions played, ``rounds * K``; policy gradient's is its number of Adam steps (one
per round in which it plays). Per kind: Hedge adds the summed counterfactual utilities of the K
auctions; EXP3, epsilon-greedy and UCB1 add each auction's (importance-weighted) estimate of its
played action (UCB1, deterministic, plays one action for the whole round); policy gradient takes
one Adam step on the mean REINFORCE gradient of the K samples; a contextual learner hands each
query's auctions to that query's learner. With K = 1 every update is the one-auction update.

The grid learners keep the one-auction rates for T auctions whatever K, so that K only batches
the updates and a K = 1 and a K = 16 run of the same scenario run the same learner. The price is
in the worst-case bound: Hedge's K summed utilities span up to K R per update, and at
:math:`\eta = \sqrt{8 \ln N / T} / R` its regret bound is :math:`(1 + K) R \sqrt{T \ln N / 8}`
instead of :math:`2 R \sqrt{T \ln N / 8}`; a rate tuned to the delay,
:math:`\eta / \sqrt K`, would give :math:`2 \sqrt K R \sqrt{T \ln N / 8}` (2.1x smaller at K
= 16). Set ``learning_rate`` (or ``exploration``) by hand to run the delay-tuned rates.

Randomness comes only from the generator the market passes to :meth:`report` (the model's seeded
numpy generator), so a run's learning is reproducible from the scenario seed.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from market_sim.config.fields import ParamValue
from market_sim.market.action_grid import ActionGrid, ReportBounds, report_bounds
from market_sim.market.strategies import Feedback, Strategy, StrategySetup
from market_sim.platform.base import Report
from market_sim.scenario.schema import POLICY_GRADIENT_MIN_STD

MIN_STD = POLICY_GRADIENT_MIN_STD
"""Floor of the policy-gradient standard deviation (log-multiplier units)."""
BASELINE_DECAY = 0.9
"""Weight of the past in the policy-gradient running-mean baseline."""


class MissingCounterfactualError(ValueError):
    """A full-information learner got an auction without a counterfactual."""


class UtilityRange:
    """The range of utilities observed so far: largest minus smallest (0 until two differ)."""

    def __init__(self) -> None:
        self.low = math.inf
        self.high = -math.inf
        self.spread = 0.0

    def observe(self, utilities: np.ndarray | float) -> None:
        """Widen the range with new utilities; for a vector, its own spread counts too."""
        values = np.atleast_1d(np.asarray(utilities, dtype=np.float64))
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.spread = max(self.spread, float(np.ptp(values)), self.high - self.low)


def sample_index(probabilities: np.ndarray, rng: np.random.Generator) -> int:
    """One draw from a categorical distribution (inverse CDF of one uniform)."""
    cumulative = np.cumsum(probabilities)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(probabilities) - 1)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a vector."""
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


class GridLearner(ABC):
    """A learner over a finite :class:`ActionGrid`.

    Args:
        grid: The actions.
        horizon: Auctions it will play (its rates are tuned to it).
    """

    kind = "grid"

    def __init__(self, grid: ActionGrid, horizon: int) -> None:
        self.grid = grid
        self.horizon = max(1, horizon)
        self.action = 0
        self.played: list[int] = []
        self.rounds = 0
        self.range = UtilityRange()

    @property
    def size(self) -> int:
        """Number of actions N."""
        return self.grid.size

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        """Choose an action for one auction (kept until the round's update) as a report."""
        self.action = self.choose(rng)
        self.played.append(self.action)
        return self.grid.report(self.action, valuation)

    def update(self, feedback: Feedback) -> None:
        """Learn from a round of one auction."""
        self.update_round([feedback])

    def update_round(self, feedbacks: Sequence[Feedback]) -> None:
        """Learn once from the K auctions of the round (the K actions played, in order).

        Raises:
            ValueError: The number of feedbacks differs from the number of reports made.
        """
        if len(feedbacks) != len(self.played):
            raise ValueError(
                f"{self.kind}: {len(feedbacks)} feedbacks for {len(self.played)} reports"
            )
        self.learn_round(self.played, feedbacks)
        self.played = []
        self.rounds += 1

    @abstractmethod
    def choose(self, rng: np.random.Generator) -> int:
        """The action to play in one auction (the policy is fixed within a round)."""

    @abstractmethod
    def learn_round(self, actions: Sequence[int], feedbacks: Sequence[Feedback]) -> None:
        """Update from the outcomes of the round's actions (``actions[k]`` got ``feedbacks[k]``)."""

    @abstractmethod
    def policy(self) -> np.ndarray:
        """``[N]`` the probability of each action in the next auction (UCB1: one-hot)."""

    def state(self) -> dict[str, float]:
        """Expected multiplier and distortion under the current policy, and its peak."""
        policy = self.policy()
        return {
            "mean_multiplier": float(policy @ self.grid.multipliers),
            "mean_distortion": float(policy @ self.grid.distortions),
            "top_probability": float(policy.max()),
        }

    def snapshot(self) -> dict[str, Any]:
        """The grid, the policy and the learner's statistics."""
        return {
            "kind": self.kind,
            "horizon": self.horizon,
            "rounds": self.rounds,
            "multipliers": self.grid.multipliers.tolist(),
            "distortions": self.grid.distortions.tolist(),
            "policy": self.policy().tolist(),
            "utility_spread": self.range.spread,
            **self.statistics(),
        }

    def statistics(self) -> dict[str, Any]:
        """Learner-specific arrays for the snapshot."""
        return {}


class Hedge(GridLearner):
    r"""Multiplicative weights on full-information counterfactual utilities.

    Args:
        grid: The actions.
        horizon: Auctions it will play.
        learning_rate: :math:`\eta` per unit of utility spread; 0 means
            :math:`\sqrt{8 \ln N / T}` (N actions).
    """

    kind = "hedge"

    def __init__(self, grid: ActionGrid, horizon: int, learning_rate: float = 0.0) -> None:
        super().__init__(grid, horizon)
        bound_rate = math.sqrt(8 * math.log(max(self.size, 2)) / self.horizon)
        self.learning_rate = learning_rate or bound_rate
        self.cumulative = np.zeros(self.size)

    def policy(self) -> np.ndarray:
        r"""Softmax of the cumulative utilities at rate :math:`\eta / R_t`."""
        if self.range.spread <= 0:
            return np.full(self.size, 1.0 / self.size)
        return softmax(self.learning_rate / self.range.spread * self.cumulative)

    def choose(self, rng: np.random.Generator) -> int:
        """Sample from the weights."""
        return sample_index(self.policy(), rng)

    def learn_round(self, actions: Sequence[int], feedbacks: Sequence[Feedback]) -> None:
        r"""Add every action's counterfactual utility summed over the round's auctions.

        :math:`S_k \mathrel{+}= \sum_{a=1}^{K} u_{a,k}`, each auction's ``[N]`` utilities from
        its own counterfactual (the played actions do not matter: full information).

        Raises:
            MissingCounterfactualError: The mechanism gave no counterfactual.
        """
        total = np.zeros(self.size)
        for feedback in feedbacks:
            if feedback.counterfactual is None:
                raise MissingCounterfactualError(
                    "hedge needs full-information feedback; the mechanism gives none"
                )
            values = feedback.counterfactual(self.grid.reports(feedback.valuation))
            utilities = values.utilities(feedback.valuation)
            total += utilities
            self.range.observe(utilities)
        self.cumulative += total

    def statistics(self) -> dict[str, Any]:
        """Cumulative utilities and the rate."""
        return {"cumulative_utility": self.cumulative.tolist(), "learning_rate": self.learning_rate}


class Exp3(GridLearner):
    r"""EXP3 with importance-weighted estimates of range-normalized rewards.

    Args:
        grid: The actions.
        horizon: Auctions it will play.
        exploration: :math:`\gamma`; 0 means :math:`\min(1, \sqrt{N \ln N / ((e-1) T)})`.
    """

    kind = "exp3"

    def __init__(self, grid: ActionGrid, horizon: int, exploration: float = 0.0) -> None:
        super().__init__(grid, horizon)
        k = max(self.size, 2)
        bound = min(1.0, math.sqrt(k * math.log(k) / ((math.e - 1) * self.horizon)))
        self.exploration = exploration or bound
        self.estimated_gain = np.zeros(self.size)
        self._policy = np.full(self.size, 1.0 / self.size)

    def policy(self) -> np.ndarray:
        """Exponential weights mixed with uniform exploration."""
        weights = softmax(self.exploration / self.size * self.estimated_gain)
        return (1 - self.exploration) * weights + self.exploration / self.size

    def choose(self, rng: np.random.Generator) -> int:
        """Sample from the mixed policy (kept for the importance weight; fixed within a round)."""
        self._policy = self.policy()
        return sample_index(self._policy, rng)

    def learn_round(self, actions: Sequence[int], feedbacks: Sequence[Feedback]) -> None:
        r"""Importance-weighted gain of each auction's played action, reward rescaled to [0, 1].

        :math:`\hat G_{a_k} \mathrel{+}= r_k / p_{a_k}` for each auction k in order, where
        :math:`r_k` is its utility rescaled by the range observed up to it.
        """
        for action, feedback in zip(actions, feedbacks, strict=True):
            self.range.observe(feedback.utility)
            spread = self.range.high - self.range.low
            reward = (feedback.utility - self.range.low) / spread if spread > 0 else 0.5
            self.estimated_gain[action] += reward / self._policy[action]

    def statistics(self) -> dict[str, Any]:
        """Estimated gains and the exploration rate."""
        return {"estimated_gain": self.estimated_gain.tolist(), "exploration": self.exploration}


class EmpiricalMeans(GridLearner):
    """Shared bookkeeping of learners that compare empirical mean utilities."""

    def __init__(self, grid: ActionGrid, horizon: int) -> None:
        super().__init__(grid, horizon)
        self.counts = np.zeros(self.size, dtype=np.int64)
        self.sums = np.zeros(self.size)

    def means(self) -> np.ndarray:
        """``[N]`` mean utility per action (+inf where untried, so untried go first)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.inf)

    def learn_round(self, actions: Sequence[int], feedbacks: Sequence[Feedback]) -> None:
        """Record each auction's played action and utility."""
        for action, feedback in zip(actions, feedbacks, strict=True):
            self.range.observe(feedback.utility)
            self.counts[action] += 1
            self.sums[action] += feedback.utility

    def greedy(self) -> int:
        """The action with the best empirical mean (lowest index on ties)."""
        return int(np.argmax(self.means()))

    def one_hot(self, action: int) -> np.ndarray:
        """``[N]`` the policy that plays ``action`` for sure."""
        policy = np.zeros(self.size)
        policy[action] = 1.0
        return policy

    def statistics(self) -> dict[str, Any]:
        """Counts and utility sums per action."""
        return {"counts": self.counts.tolist(), "utility_sums": self.sums.tolist()}


class EpsilonGreedy(EmpiricalMeans):
    r"""Explore uniformly with probability epsilon, else exploit the best mean.

    Args:
        grid: The actions.
        horizon: Auctions it will play.
        epsilon: Exploration probability; 0 means :math:`\min(1, (N \ln T / T)^{1/3})`.
    """

    kind = "epsilon_greedy"

    def __init__(self, grid: ActionGrid, horizon: int, epsilon: float = 0.0) -> None:
        super().__init__(grid, horizon)
        bound = (self.size * math.log(max(self.horizon, 2)) / self.horizon) ** (1 / 3)
        self.epsilon = epsilon or min(1.0, bound)

    def choose(self, rng: np.random.Generator) -> int:
        """Uniform with probability epsilon (a uniform and an integer drawn either way)."""
        explore = rng.random() < self.epsilon
        pick = int(rng.integers(self.size))
        return pick if explore else self.greedy()

    def policy(self) -> np.ndarray:
        """``[N]`` the draw of :meth:`choose`: epsilon / N each, + 1 - epsilon on the greedy."""
        return (1.0 - self.epsilon) * self.one_hot(self.greedy()) + self.epsilon / self.size

    def statistics(self) -> dict[str, Any]:
        """Counts, sums and epsilon."""
        return {**super().statistics(), "epsilon": self.epsilon}


class Ucb1(EmpiricalMeans):
    r"""UCB1 with the confidence width scaled by the observed utility spread.

    Args:
        grid: The actions.
        horizon: Auctions it will play.
        exploration: The constant c of :math:`c R_t \sqrt{\ln t / n_k}`; 0 means
            :math:`\sqrt 2`.
    """

    kind = "ucb1"

    def __init__(self, grid: ActionGrid, horizon: int, exploration: float = 0.0) -> None:
        super().__init__(grid, horizon)
        self.exploration = exploration or math.sqrt(2.0)

    def choose(self, rng: np.random.Generator) -> int:
        """:meth:`next_action` (UCB1 draws nothing)."""
        return self.next_action()

    def next_action(self) -> int:
        """Every action once, then the largest upper confidence bound (t = plays so far)."""
        if (self.counts == 0).any():
            return int(np.argmin(self.counts))
        plays = int(self.counts.sum())
        width = self.exploration * self.range.spread * np.sqrt(math.log(plays) / self.counts)
        return int(np.argmax(self.sums / self.counts + width))

    def policy(self) -> np.ndarray:
        """``[N]`` one-hot on :meth:`next_action`."""
        return self.one_hot(self.next_action())

    def statistics(self) -> dict[str, Any]:
        """Counts, sums and c."""
        return {**super().statistics(), "exploration": self.exploration}


class PolicyGradient:
    r"""A Gaussian policy over the log multiplier (and log distortion), trained by REINFORCE.

    A round of K auctions draws K independent samples (one per auction) and takes ONE Adam step
    on the batch loss :math:`-\frac1K \sum_k A_k \log \pi(x_k)` with advantages
    :math:`A_k = (u_k - b) / R` against the baseline b held at its start-of-round value; b then
    moves toward the round's mean utility (the first round's mean sets it). In the first round
    b is 0, as no utility has been seen: with K = 1 that round's range R is 0 and it takes no
    step; with K > 1 its advantages are :math:`u_k / R`, uncentred, so that one step's gradient
    is unbiased but noisier than a centred one. Adam steps once per round, so its rate is set from
    the number of updates :math:`T / k`, k its auctions per update: K, or for one query's
    learner of a contextual strategy over Q queries its auctions in a round that draws its
    query: :math:`\max(1, K / Q)` when the queries come in turn (``cycle``), in expectation
    :math:`(K / Q) / (1 - (1 - 1/Q)^K)` when drawn at random (``sample``; 1.46 at K = Q = 4).

    The standard deviation is :math:`e^{\log\sigma}`, projected after each Adam step onto
    :math:`\sigma \ge` :data:`MIN_STD` (``log_std`` set to ``log MIN_STD`` where it fell below),
    not clamped inside the loss: a clamp passes no gradient below the floor, so a spread that
    had stepped under it could never grow again, however much spreading paid.

    Args:
        bounds: The allowed multiplier and distortion ranges.
        horizon: Auctions it will play (T).
        learning_rate: Adam's step size; 0 means :math:`1 / \sqrt{T / k}`.
        initial_multiplier: Starting mean multiplier.
        initial_std: Starting standard deviation of the log multiplier (and log distortion),
            at least :data:`MIN_STD`.
        auctions_per_update: k, the auctions one update averages over (at least 1).
    """

    kind = "policy_gradient"

    def __init__(
        self,
        bounds: ReportBounds,
        horizon: int,
        learning_rate: float = 0.0,
        initial_multiplier: float = 1.0,
        initial_std: float = 0.3,
        auctions_per_update: float = 1.0,
    ) -> None:
        if not initial_std >= MIN_STD:
            raise ValueError(f"initial_std: must be at least {MIN_STD}, got {initial_std}")
        self.bounds = bounds
        self.horizon = max(1, horizon)
        updates = max(1, math.ceil(self.horizon / max(1.0, auctions_per_update)))
        self.learning_rate = learning_rate or 1.0 / math.sqrt(updates)
        dims = 2 if bounds.learns_distortion else 1
        start = [math.log(max(initial_multiplier, 1e-6))] + [0.0] * (dims - 1)
        self.mean = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        self.log_std = torch.full((dims,), math.log(initial_std), dtype=torch.float64)
        self.log_std.requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.mean, self.log_std], lr=self.learning_rate)
        self.samples: list[torch.Tensor] = []
        self.baseline = 0.0
        self.rounds = 0
        self.range = UtilityRange()

    def _clip(self, sample: np.ndarray) -> tuple[float, float]:
        bounds = self.bounds
        multiplier = float(
            np.clip(np.exp(sample[0]), max(bounds.multiplier_min, 1e-6), bounds.multiplier_max)
        )
        if not bounds.learns_distortion:
            return multiplier, 1.0
        distortion = float(np.clip(np.exp(sample[1]), bounds.distortion_min, bounds.distortion_max))
        return multiplier, distortion

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        """Sample log-multiplier (and log-distortion) from the Gaussian policy."""
        noise = rng.standard_normal(self.mean.shape[0])
        with torch.no_grad():
            std = self.log_std.exp()
            sample = self.mean + std * torch.from_numpy(noise)
        self.samples.append(sample)
        multiplier, distortion = self._clip(sample.numpy())
        return Report(bid=multiplier * valuation, report_scale=distortion)

    def update(self, feedback: Feedback) -> None:
        """Learn from a round of one auction."""
        self.update_round([feedback])

    def update_round(self, feedbacks: Sequence[Feedback]) -> None:
        """One REINFORCE step on the round's range-normalized advantages (see the class).

        Raises:
            ValueError: The number of feedbacks differs from the number of samples drawn.
        """
        if len(feedbacks) != len(self.samples):
            raise ValueError(
                f"{self.kind}: {len(feedbacks)} feedbacks for {len(self.samples)} reports"
            )
        utilities = np.array([feedback.utility for feedback in feedbacks], dtype=np.float64)
        self.range.observe(utilities)
        spread = self.range.spread
        advantages = (
            np.zeros_like(utilities) if spread <= 0 else (utilities - self.baseline) / spread
        )
        mean_utility = float(utilities.mean())
        self.baseline = (
            mean_utility
            if self.rounds == 0
            else BASELINE_DECAY * self.baseline + (1 - BASELINE_DECAY) * mean_utility
        )
        std = self.log_std.exp()
        samples = torch.stack(self.samples)
        log_probs = torch.distributions.Normal(self.mean, std).log_prob(samples).sum(dim=-1)
        self.optimizer.zero_grad()
        (-(torch.from_numpy(advantages) * log_probs).mean()).backward()
        self.optimizer.step()
        with torch.no_grad():  # projected onto std >= MIN_STD: the gradient still reaches it there
            self.log_std.clamp_(min=math.log(MIN_STD))
        self.samples = []
        self.rounds += 1

    def state(self) -> dict[str, float]:
        """The policy's median multiplier and distortion and its spread."""
        with torch.no_grad():
            center = self._clip(self.mean.numpy())
            std = float(self.log_std.exp()[0])
        return {"mean_multiplier": center[0], "mean_distortion": center[1], "log_std": std}

    def snapshot(self) -> dict[str, Any]:
        """Policy parameters and the baseline."""
        with torch.no_grad():
            return {
                "kind": self.kind,
                "horizon": self.horizon,
                "rounds": self.rounds,
                "mean": self.mean.tolist(),
                "log_std": self.log_std.tolist(),
                "baseline": self.baseline,
                "learning_rate": self.learning_rate,
                "utility_spread": self.range.spread,
            }


class Contextual:
    """One independent learner per query (built on first sight of the query).

    In a round of K auctions each query's learner reports for that query's auctions and then
    learns once from their feedbacks (its own batched update).

    Args:
        make_learner: Builds a fresh learner.
    """

    def __init__(self, make_learner: Callable[[], Strategy]) -> None:
        self.make_learner = make_learner
        self.learners: dict[str, Strategy] = {}
        self.current: Strategy = make_learner()
        self.reporters: list[Strategy] = []
        self.kind = f"contextual_{getattr(self.current, 'kind', 'learner')}"

    def report(self, valuation: float, query: str, rng: np.random.Generator) -> Report:
        """Delegate to the query's learner."""
        if query not in self.learners:
            self.learners[query] = self.make_learner() if self.learners else self.current
        self.current = self.learners[query]
        self.reporters.append(self.current)
        return self.current.report(valuation, query, rng)

    def update(self, feedback: Feedback) -> None:
        """Learn from a round of one auction."""
        self.update_round([feedback])

    def update_round(self, feedbacks: Sequence[Feedback]) -> None:
        """Give each query's learner the feedbacks of its auctions (in order), one update each.

        Raises:
            ValueError: The number of feedbacks differs from the number of reports made.
        """
        if len(feedbacks) != len(self.reporters):
            raise ValueError(
                f"{self.kind}: {len(feedbacks)} feedbacks for {len(self.reporters)} reports"
            )
        groups: dict[int, tuple[Strategy, list[Feedback]]] = {}
        for learner, feedback in zip(self.reporters, feedbacks, strict=True):
            groups.setdefault(id(learner), (learner, []))[1].append(feedback)
        for learner, own in groups.values():
            learner.update_round(own)
        self.reporters = []

    def state(self) -> dict[str, float]:
        """State of the learner of the query it last reported for."""
        return self.current.state()

    def snapshot(self) -> dict[str, Any]:
        """Every query's learner."""
        return {
            "kind": self.kind,
            "contexts": {query: learner.snapshot() for query, learner in self.learners.items()},
        }


GRID_LEARNERS: dict[str, tuple[type[GridLearner], str | None]] = {
    "hedge": (Hedge, "learning_rate"),
    "exp3": (Exp3, "exploration"),
    "epsilon_greedy": (EpsilonGreedy, "epsilon"),
    "ucb1": (Ucb1, "exploration"),
}
"""Grid learner kind -> (class, name of its rate parameter)."""


def learner_horizon(params: Mapping[str, ParamValue], setup: StrategySetup) -> int:
    """The horizon a learner tunes to: per query when contextual."""
    if params["contextual"]:
        return max(1, math.ceil(setup.horizon / max(setup.contexts, 1)))
    return setup.horizon


StrategyFactory = Callable[[Mapping[str, ParamValue], StrategySetup], Strategy]


def grid_learner_factory(kind: str) -> StrategyFactory:
    """The factory of a grid learner kind (contextual when ``params['contextual']``)."""
    cls, rate_name = GRID_LEARNERS[kind]

    def build(params: Mapping[str, ParamValue], setup: StrategySetup) -> Strategy:
        bounds = report_bounds(params, setup.report_space, setup.where)
        grid = ActionGrid.from_params(params, bounds)
        horizon = learner_horizon(params, setup)
        rate = float(params[rate_name]) if rate_name else 0.0
        make = functools.partial(cls, grid, horizon, rate)  # picklable, for checkpoints
        return Contextual(make) if params["contextual"] else make()

    return build


def query_auctions_per_round(setup: StrategySetup) -> float:
    r"""A query's auctions in a round that draws it (in expectation for random draws), >= 1.

    K auctions over Q queries: in turn (``cycle``) every round holds :math:`\max(1, K / Q)`
    of a query it holds; drawn uniformly (``sample``) a query is in a round with probability
    :math:`1 - (1 - 1/Q)^K` and has K / Q auctions there on average, hence their ratio.
    """
    auctions, queries = setup.auctions_per_round, max(setup.contexts, 1)
    if auctions <= 1:
        return 1.0  # exactly, whatever the order (the ratio below rounds to 1 +- 2e-16)
    if setup.query_order == "sample":
        return (auctions / queries) / (1.0 - (1.0 - 1.0 / queries) ** auctions)
    return max(1.0, auctions / queries)


def policy_gradient_factory(params: Mapping[str, ParamValue], setup: StrategySetup) -> Strategy:
    """The factory of the policy-gradient learner."""
    bounds = report_bounds(params, setup.report_space, setup.where)
    initial = float(params["initial_multiplier"])
    if not bounds.multiplier_min <= initial <= bounds.multiplier_max or initial <= 0:
        raise ValueError(
            f"{setup.where}.initial_multiplier must lie in (0, multiplier_max] and within "
            f"[multiplier_min, multiplier_max], got {initial}"
        )
    horizon = learner_horizon(params, setup)
    per_update = (
        query_auctions_per_round(setup) if params["contextual"] else setup.auctions_per_round
    )

    make = functools.partial(  # picklable, for checkpoints
        PolicyGradient,
        bounds,
        horizon,
        float(params["learning_rate"]),
        initial,
        float(params["initial_std"]),
        per_update,
    )
    return Contextual(make) if params["contextual"] else make()


LEARNER_FACTORIES: dict[str, StrategyFactory] = {
    **{kind: grid_learner_factory(kind) for kind in GRID_LEARNERS},
    "policy_gradient": policy_gradient_factory,
}
"""Learner kind -> factory; their parameters are in ``STRATEGY_PARAMS``."""

"""Typed, frozen schema of a validated scenario, and the registries that define what is allowed.

Every dataclass has defaults, so a scenario can also be built in code. The loader
(:mod:`market_sim.scenario.load`) fills every default, so a loaded scenario is fully resolved.

Mechanism kinds are not listed here: each is a plugin (:mod:`market_sim.plugins`) that declares
its own typed config, and ``Scenario.mechanism`` holds that config. The built-in strategy kinds
are declared here (:data:`STRATEGY_PARAMS`: parameter names with their ranges and defaults); a
strategy from outside market-sim registers as a plugin
(:mod:`market_sim.scenario.strategy_plugins`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from market_sim.config.bounds import MAX_MULTIPLIER, MAX_RATE
from market_sim.config.fields import Flag, FloatRange, FrozenParams, IntRange, ParamValue
from market_sim.mechanisms.options import AGGREGATIONS, PROPOSALS
from market_sim.plugins import MechanismConfig
from market_sim.plugins.token_auction import TokenAuctionConfig
from market_sim.scenario.eva_vocabulary import (
    DEFAULT_CONSTRAINTS,
    DEFAULT_DETAILS,
    DEFAULT_INTENTS,
    DEFAULT_PERSONAS,
    EVOLVE_OPERATORS,
)

# --------------------------------------------------------------------------- registries


QUERY_STREAMS: tuple[str, ...] = ("static", "eva")
"""``static``: a fixed pool; ``eva``: a pool that a creator evolves towards informative queries
(configured by the ``[eva]`` table)."""
QUERY_ORDERS: tuple[str, ...] = ("cycle", "sample")

INFORMATIVENESS_MEASURES: tuple[str, ...] = ("gap", "variance", "max_mean")
"""How the eva creator scores a query from the rewards of its k replies."""
REWRITERS: tuple[str, ...] = ("auto", "lm", "grammar")
"""Who applies the eva mutation operators: the platform ``lm``, the structured ``grammar``, or
``auto`` (the LM when it can rewrite, the grammar otherwise)."""

MAX_AUCTIONS_PER_ROUND = 4096
"""Largest ``auctions_per_round``: one round's K x (n + 1) rows must fit one LM batch."""
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")


VALUATION_DISTS: tuple[str, ...] = ("fixed", "uniform", "lognormal")
VALUATION_REDRAWS: tuple[str, ...] = ("once", "round")

StrategyParamSpec = FloatRange | IntRange | Flag

LEARNER_SPACE_PARAMS: dict[str, StrategyParamSpec] = {
    "multiplier_min": FloatRange(min=0.0, max=MAX_MULTIPLIER, default=0.0),
    "multiplier_max": FloatRange(min=0.0, max=MAX_MULTIPLIER, exclusive_min=True, default=2.0),
    "multiplier_count": IntRange(min=1, max=10_000, default=21),
    "distortion_min": FloatRange(min=0.0, max=MAX_MULTIPLIER, exclusive_min=True, default=0.25),
    "distortion_max": FloatRange(min=0.0, max=MAX_MULTIPLIER, exclusive_min=True, default=4.0),
    "distortion_count": IntRange(min=1, max=1_000, default=1),
    "contextual": Flag(default=False),
}
"""The strategy space every learner shares: bid multipliers (linear grid; ``multiplier_count = 1``
with ``multiplier_min = multiplier_max`` fixes the bid) x report distortions (geometric grid;
``distortion_count = 1`` keeps the report truthful), optionally per query."""

RATE_FROM_BOUND = FloatRange(min=0.0, max=MAX_RATE, default=0.0)
"""A learning or exploration rate; 0 (the default) means "from the regret bound for T"."""

POLICY_GRADIENT_MIN_STD = 0.02
"""Floor of the policy-gradient standard deviation (log-multiplier units)."""

STRATEGY_PARAMS: dict[str, dict[str, StrategyParamSpec]] = {
    "truthful": {},
    "fixed": {
        "bid_multiplier": FloatRange(min=0.0, max=MAX_MULTIPLIER, default=1.0),
        "distortion": FloatRange(min=0.0, max=MAX_MULTIPLIER, exclusive_min=True, default=1.0),
    },
    "hedge": {**LEARNER_SPACE_PARAMS, "learning_rate": RATE_FROM_BOUND},
    "exp3": {**LEARNER_SPACE_PARAMS, "exploration": FloatRange(min=0.0, max=1.0, default=0.0)},
    "epsilon_greedy": {
        **LEARNER_SPACE_PARAMS,
        "epsilon": FloatRange(min=0.0, max=1.0, default=0.0),
    },
    "ucb1": {**LEARNER_SPACE_PARAMS, "exploration": RATE_FROM_BOUND},
    "policy_gradient": {
        **LEARNER_SPACE_PARAMS,
        "learning_rate": RATE_FROM_BOUND,
        "initial_multiplier": FloatRange(
            min=0.0, max=MAX_MULTIPLIER, exclusive_min=True, default=1.0
        ),
        "initial_std": FloatRange(min=POLICY_GRADIENT_MIN_STD, max=MAX_MULTIPLIER, default=0.3),
    },
}
"""Built-in strategy kind -> its parameters (name -> range and default); plugins add theirs
through :func:`~market_sim.scenario.strategy_plugins.register_strategy`."""

STRATEGY_KINDS: tuple[str, ...] = tuple(STRATEGY_PARAMS)
"""The built-in strategy kinds (the keys of :data:`STRATEGY_PARAMS`; plugins' kinds:
:func:`~market_sim.scenario.strategy_plugins.strategy_params`)."""

STRATEGY_KIND_DOCS: dict[str, str] = {
    "truthful": "bids the valuation, reports the true preferences.",
    "fixed": "a fixed bid multiplier and report distortion.",
    "hedge": "full-information multiplicative weights over the strategy grid.",
    "exp3": "bandit-feedback exponential weights over the strategy grid.",
    "epsilon_greedy": "the best empirical mean, a uniform grid point with probability epsilon.",
    "ucb1": "the upper confidence bound of each grid point's empirical mean.",
    "policy_gradient": "a Gaussian policy on the log multiplier (and distortion), REINFORCE.",
}
"""One line per strategy kind (the key reference's)."""

STRATEGY_PARAM_DOCS: dict[str, str] = {
    "bid_multiplier": "Bid = bid_multiplier x valuation.",
    "distortion": "Report distortion (the mechanism's report_scale; 1 = truthful).",
    "multiplier_min": "Smallest bid multiplier of the grid.",
    "multiplier_max": "Largest bid multiplier of the grid.",
    "multiplier_count": "Points of the linear multiplier grid (1 fixes the bid).",
    "distortion_min": "Smallest report distortion of the geometric grid.",
    "distortion_max": "Largest report distortion of the geometric grid.",
    "distortion_count": "Points of the distortion grid (1 keeps reports truthful).",
    "contextual": "Learn one strategy per query instead of one for all.",
    "learning_rate": "Learning (or Adam step) rate; 0: from the run's length T.",
    "exploration": "EXP3's gamma (0: from the run's length T) or UCB1's c (0: sqrt(2)).",
    "epsilon": "Probability of a uniform exploration step (0: from the regret bound).",
    "initial_multiplier": "Initial mean bid multiplier of the Gaussian policy.",
    "initial_std": "Initial standard deviation of the log multiplier (and log distortion); "
    "the policy's spread never goes below 0.02.",
}
"""One line per strategy parameter (the key reference's; a test checks every one has it)."""

DEFAULT_SWEEP_LAMBDAS: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class ModelConfig:
    """Which language model the platform runs, and where.

    Attributes:
        path: ``bundled:<name>``, ``cache:<name>`` (downloaded by ``market-sim lm get``),
            ``hub:<id>``, or the path of a local transformers model folder (a relative path is
            resolved against the scenario file's folder; see :mod:`market_sim.lm.references`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        prompt_format: ``auto`` (chat when the tokenizer has a chat template), ``plain`` or
            ``chat``; see :mod:`market_sim.prompting`. Resolved from the tokenizer's files when
            the scenario loads (:mod:`market_sim.scenario.model_table`).
        weights_sha256: sha256 of the model's one weights file: filled from the manifest of a
            ``cache:`` model, or set by the user to pin the weights; None otherwise.
    """

    path: str = "bundled:tiny-ads"
    device: str = "auto"
    dtype: str = "auto"
    prompt_format: str = "auto"
    weights_sha256: str | None = None


@dataclass(frozen=True)
class RegretConfig:
    """How the regret estimator searches deviations (docs/design.md, section 5).

    The search covers bids ``m * valuation`` with ``m`` in ``[0, multiplier_max]`` and, where the
    mechanism reads one, report distortions on its default range: a grid of
    ``multiplier_points`` x ``distortion_points``, then ``refinements`` rounds of a
    ``refine_points``-per-axis grid on the bracket around each of ``peaks`` points: the best
    one, then the next best local maxima of the coarse grid (each round shrinks a bracket by
    ``(refine_points - 1) / 2``).

    Attributes:
        enabled: Measure regret at all.
        every: Measure every this many rounds (1 = every round).
        multiplier_max: Largest bid multiplier searched.
        multiplier_points: Coarse grid points on the multiplier axis.
        distortion_points: Coarse grid points on the distortion axis.
        refinements: Zoom rounds after the coarse grid.
        refine_points: Points per axis in each zoom round.
        peaks: Coarse-grid peaks each zoom round refines (1: the best point alone).
    """

    enabled: bool = True
    every: int = 1
    multiplier_max: float = 2.0
    multiplier_points: int = 11
    distortion_points: int = 5
    refinements: int = 3
    refine_points: int = 5
    peaks: int = 1


QUERY_HELDOUT_FRACTION = 0.25
"""Default share of the query pool the eva stream holds out when no queries are named."""


@dataclass(frozen=True)
class QueryConfig:
    """The stream of user queries, one per round.

    Attributes:
        stream: ``static`` (a fixed pool) or ``eva`` (a pool evolved by a creator, see
            :class:`EvaConfig`).
        items: The final query pool: the inline items followed by the file's queries. For the
            ``eva`` stream, the training pool the creator starts from.
        file: The query file the pool was (partly) read from, if any, as the scenario names
            it (relative paths are relative to the scenario file's folder). The resolved dump
            writes ``file_merged = true`` next to it, so that loading the dump takes ``items``
            as final and does not read the file again.
        file_sha256: SHA-256 of the query file's bytes (``None`` without a file): the run id
            depends on the file's contents, not on where it lies.
        order: ``cycle`` through the pool in order, or ``sample`` uniformly each round.
        heldout: Read only by the ``eva`` stream: explicit held-out queries (never in
            ``items``) on which the creator's progress is measured.
        heldout_fraction: Read only by the ``eva`` stream, when ``heldout`` is empty: the share
            in [0, 1) of ``items`` held out by a seeded split (done by the stream, not the
            loader; 0 = no held-out set).
    """

    stream: str = "static"
    items: tuple[str, ...] = ()
    file: str | None = None
    file_sha256: str | None = None
    order: str = "cycle"
    heldout: tuple[str, ...] = ()
    heldout_fraction: float = QUERY_HELDOUT_FRACTION


@dataclass(frozen=True)
class ValuationConfig:
    """An advertiser's hidden valuation: a fixed value or a distribution.

    Only the fields of the chosen ``dist`` are set; the others are ``None``.

    Attributes:
        dist: ``fixed``, ``uniform`` or ``lognormal``.
        value: The valuation (``fixed``).
        low: Lower end (``uniform``).
        high: Upper end (``uniform``).
        mean: Mean of the log of the valuation (``lognormal``).
        sigma: Standard deviation of the log of the valuation (``lognormal``; mean + 6 sigma at
            most ln 1e6, and draws above 1e6, rarer than 1e-9, are cut to it).
        redraw: ``once`` (drawn at the start of the run) or ``round`` (drawn every round);
            ``None`` for ``fixed``.
    """

    dist: str = "fixed"
    value: float | None = 1.0
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    sigma: float | None = None
    redraw: str | None = None


@dataclass(frozen=True)
class StrategyConfig:
    """How an advertiser turns its valuation into a report.

    Parameters not given are filled from :data:`STRATEGY_PARAMS` when the kind is registered.

    Attributes:
        kind: One of :data:`STRATEGY_KINDS`.
        params: Kind-specific parameters (e.g. ``bid_multiplier`` and ``distortion`` for ``fixed``).
    """

    kind: str = "truthful"
    params: Mapping[str, ParamValue] = field(default_factory=FrozenParams)

    def __post_init__(self) -> None:
        defaults = {name: spec.default for name, spec in STRATEGY_PARAMS.get(self.kind, {}).items()}
        object.__setattr__(self, "params", FrozenParams({**defaults, **self.params}))

    def __hash__(self) -> int:
        return hash((self.kind, self.params))

    def param(self, name: str) -> ParamValue:
        """Return parameter ``name``.

        Raises:
            KeyError: If the strategy kind has no such parameter.
        """
        if name not in self.params:
            raise KeyError(f"strategy {self.kind!r} has no parameter {name!r}")
        return self.params[name]

    @property
    def bid_multiplier(self) -> float:
        """Bid = multiplier * valuation (1.0 for truthful)."""
        return float(self.params.get("bid_multiplier", 1.0))

    @property
    def distortion(self) -> float:
        """The fixed report distortion (the mechanism's ``report_scale``; 1.0 = truthful)."""
        return float(self.params.get("distortion", 1.0))


@dataclass(frozen=True)
class AdvertiserConfig:
    """One advertiser.

    Attributes:
        name: Unique brand name.
        context: The brand context that conditions the advertiser's LM distribution.
        mentions: Strings whose case-insensitive presence in a reply counts as a brand mention;
            defaults to ``(name,)``.
        valuation: The hidden valuation.
        strategy: How reports are chosen.
    """

    name: str
    context: str
    mentions: tuple[str, ...] = ()
    valuation: ValuationConfig = field(default_factory=ValuationConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)

    def __post_init__(self) -> None:
        if not self.mentions:
            object.__setattr__(self, "mentions", (self.name,))


@dataclass(frozen=True)
class LambdaSweepConfig:
    """A sweep over the bid share of the first of two advertisers.

    Attributes:
        lambdas: Weights in [0, 1] of the first advertiser.
        samples: Replies sampled per lambda.
        aggregations: Aggregations to sweep (``linear``, ``log_linear``).
    """

    lambdas: tuple[float, ...] = DEFAULT_SWEEP_LAMBDAS
    samples: int = 32
    aggregations: tuple[str, ...] = AGGREGATIONS


DEFAULT_CONVERGENCE_SIZES: tuple[int, ...] = tuple(2**k for k in range(9))


@dataclass(frozen=True)
class ConvergenceConfig:
    """MOSAIC convergence on an enumerable output space (``market-sim convergence``).

    Attributes:
        sizes: The candidate counts M to evaluate (default 1, 2, 4, ..., 256).
        support_samples: Replies drawn per query from EACH proposal; the distinct complete
            replies of both draws form the enumerable output space Y.
        proposals: Proposals compared (``reference``, ``context_aware``).
    """

    sizes: tuple[int, ...] = DEFAULT_CONVERGENCE_SIZES
    support_samples: int = 256
    proposals: tuple[str, ...] = PROPOSALS


@dataclass(frozen=True)
class QueryGrammarConfig:
    """Vocabulary of the structured query grammar (``[eva.grammar]``).

    A structured query is ``intent + topic + persona + constraints``; the topics are the query
    pool's plus ``topics``. The defaults come from :mod:`market_sim.scenario.eva_vocabulary`.

    Attributes:
        topics: Extra topics ``shift_topic`` may move to, besides the pool's.
        intents: Intent prefixes from shallow to deep (``deepen`` moves to a later one); the
            empty string renders the topic alone.
        constraints: General constraints ``add_constraint`` appends.
        details: Concrete details (numbers, dates, amounts) ``concretize`` appends.
        personas: Personas ``shift_persona`` chooses from; the empty string renders nothing.
    """

    topics: tuple[str, ...] = ()
    intents: tuple[str, ...] = DEFAULT_INTENTS
    constraints: tuple[str, ...] = DEFAULT_CONSTRAINTS
    details: tuple[str, ...] = DEFAULT_DETAILS
    personas: tuple[str, ...] = DEFAULT_PERSONAS


@dataclass(frozen=True)
class EvaConfig:
    """The eva query stream's settings (``[eva]``).

    A creator evolves the query pool towards informative queries, and the platform LM is trained
    with DPO on preference pairs of replies to them. Filled with its defaults when
    ``queries.stream = "eva"``, even without an ``[eva]`` table.

    Attributes:
        replies: k, the replies sampled per query to estimate its informativeness and to build
            a preference pair (best vs worst).
        informativeness: How a query is scored from its k reply rewards (see
            :data:`INFORMATIVENESS_MEASURES`): ``gap`` (max - min), ``variance`` or
            ``max_mean`` (max - mean).
        sample_fraction: Share f in (0, 1] of the active pool sampled as parents each
            generation (``max(1, floor(f * size + 1/2))`` queries, in proportion to their normalized
            informativeness).
        variants: New queries the creator writes per selected query.
        operators: Mutation operators the creator draws from (see
            :data:`~market_sim.scenario.eva_vocabulary.EVOLVE_OPERATORS`).
        rewriter: Who writes a child's text: ``grammar`` (the structure rendered), ``lm`` (an
            LM rewrite that must carry the added phrase, else the rendering) or ``auto`` (the
            LM unless the model is a bundled one, which cannot follow instructions).
        max_pool: Largest size of the active pool: beyond it, the least informative measured
            queries are retired (this generation's children are kept).
        max_constraints: Most constraints a structured query carries.
        user_weight: Weight w_0 of the user's score in the reply reward
            ``w_0 s_0 + sum_i v_i s_i`` (:mod:`market_sim.eva.reward`).
        pairs: Training queries per generation, each giving one (best, worst) DPO pair
            (queries without a reward spread give none); the same for eva and the static
            baseline.
        original_share: Share in [0, 1] of the solver's training pairs drawn from the
            generation's sampled parents rather than from their children (all of them when
            the generation made no child).
        beta: DPO temperature (> 0).
        steps: DPO optimizer steps per generation (0 = score and evolve without training).
        learning_rate: DPO learning rate.
        batch_size: Pairs per DPO step.
        heldout_replies: Replies sampled per held-out query to measure the model.
        evolve_every: Market stream: rounds between creator generations.
        grammar: Vocabulary of the structured query grammar.
    """

    replies: int = 6
    informativeness: str = "gap"
    sample_fraction: float = 0.25
    variants: int = 4
    operators: tuple[str, ...] = EVOLVE_OPERATORS
    rewriter: str = "auto"
    max_pool: int = 256
    max_constraints: int = 3
    user_weight: float = 1.0
    pairs: int = 32
    original_share: float = 0.2
    beta: float = 0.1
    steps: int = 16
    learning_rate: float = 5e-5
    batch_size: int = 8
    heldout_replies: int = 8
    evolve_every: int = 50
    grammar: QueryGrammarConfig = field(default_factory=QueryGrammarConfig)


AUDIT_TOP = 10


@dataclass(frozen=True)
class AuditConfig:
    """Which mechanisms a query audit compares, and what it reports (``[audit]``).

    Attributes:
        mechanisms: The mechanisms to audit, each a full resolved mechanism (a partial table in
            the file is merged over the scenario's ``[mechanism]``); empty = the scenario's own
            mechanism only.
        top: Queries reported per mechanism (the most informative ones).
        uniform: Also run the uniform-parent baseline.
        draws: Auctions per query whose regrets are averaged (common random numbers: draw d
            uses the same seed for every query).
    """

    mechanisms: tuple[MechanismConfig, ...] = ()
    top: int = AUDIT_TOP
    uniform: bool = True
    draws: int = 4


@dataclass(frozen=True)
class Scenario:
    """A fully validated scenario.

    Attributes:
        name: Scenario name.
        description: Free text.
        seed: Seed of every random draw of the run (>= 0).
        rounds: Number of rounds (>= 1).
        auctions_per_round: K, the auctions of a round, run as one platform batch.
            At most ``MAX_AUCTIONS_PER_ROUND``; learners update once per round from the K
            outcomes.
        model: The platform language model.
        mechanism: The auction.
        queries: The query stream.
        advertisers: The advertisers (at least one, unique names).
        regret: The deviation search of the regret estimator.
        lambda_sweep: Optional two-advertiser lambda sweep.
        convergence: Optional MOSAIC convergence experiment.
        eva: The eva query stream's settings: set when the file has an ``[eva]`` table or
            ``queries.stream = "eva"``, else ``None`` (and left out of the resolved dump).
        audit: Optional query audit (``[audit]``).
    """

    name: str = "scenario"
    description: str = ""
    seed: int = 0
    rounds: int = 100
    auctions_per_round: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
    mechanism: MechanismConfig = field(default_factory=TokenAuctionConfig)
    queries: QueryConfig = field(default_factory=QueryConfig)
    advertisers: tuple[AdvertiserConfig, ...] = ()
    regret: RegretConfig = field(default_factory=RegretConfig)
    lambda_sweep: LambdaSweepConfig | None = None
    convergence: ConvergenceConfig | None = None
    eva: EvaConfig | None = None
    audit: AuditConfig | None = None

    def advertiser(self, name: str) -> AdvertiserConfig:
        """Return the advertiser called ``name``.

        Raises:
            KeyError: If there is none.
        """
        for advertiser in self.advertisers:
            if advertiser.name == name:
                return advertiser
        raise KeyError(f"no advertiser named {name!r}")

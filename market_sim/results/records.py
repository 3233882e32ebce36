"""The columns of ``rounds.parquet`` and ``agents.parquet``: names, dtypes, units, fillers.

One :class:`Column` per column, grouped in two :class:`RecordTable` s, :data:`ROUNDS` (one row
per auction) and :data:`AGENTS` (one row per (auction, advertiser)). The writers build their
frames through :meth:`RecordTable.frame` (rows collected as columns, the generic round) and
:meth:`RecordTable.conform` (a frame built column-wise, the array round): both refuse a column
the schema does not declare, cast every column to its declared dtype and put the columns in
the declared order. ``analysis/`` reads column names and dtypes from here.

Units: ``money`` is the currency of bids and valuations; ``allocation`` is what the mechanism
allocates (token auction: the sum over reply steps of ``1 - TV``; slot auctions: click-through
rate x ``slot_value``; MOSAIC and the affine maximizer: the reward of the reply), so
``valuation x allocation`` is money; ``1`` marks a dimensionless ratio or multiplier.

Who fills a column (:attr:`Column.filled_by`): :data:`EVERY_RUN`, mechanism kinds (the
mechanism's ``AuctionOutcome.extras``), the eva query stream, or strategy kinds (their
``state()``). A column filled by a mechanism, a stream or a strategy is **optional**: it is
written only by runs whose filler ran (:attr:`Column.when` states any further condition).

Mechanism extras (``AuctionOutcome.extras``): the built-in mechanisms' extras are declared one
by one and keep the unprefixed names they had before this schema existed (``n_tokens``,
``candidates``, ...; a prefix would rename columns of every existing result). Any other extra
must carry the prefix :data:`EXTRA_PREFIX` (``extra_<name>``, float64): a mechanism plugin can
add its own extras without an edit here, and a writer refuses an unprefixed extra it does not
declare. Strategy state columns are ``strategy_<key>`` (:data:`STRATEGY_PREFIX`), float64: a
strategy plugin's state keys need no edit here either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

EVERY_RUN = "every run"
"""``filled_by`` of a column every run writes."""
EVA_STREAM = "eva query stream"
"""``filled_by`` of a column the eva query stream writes (``queries.stream = "eva"``)."""
STRATEGY_PREFIX = "strategy_"
"""Prefix of the agents' strategy-state columns (``strategy_<key>`` of ``Strategy.state()``)."""
EXTRA_PREFIX = "extra_"
"""Prefix of a mechanism extra not declared one by one in :data:`ROUNDS` (written as float64)."""

TOKEN_AUCTION = "token_auction"
MOSAIC = "mosaic"
AFFINE_MAXIMIZER = "affine_maximizer"
SLOT_AUCTIONS: tuple[str, ...] = ("first_price", "second_price", "gsp", "vcg")
MECHANISMS: tuple[str, ...] = (TOKEN_AUCTION, MOSAIC, AFFINE_MAXIMIZER, *SLOT_AUCTIONS)
"""Every mechanism kind that writes rounds (a test keeps this in step with the registry)."""

GRID_LEARNERS: tuple[str, ...] = ("hedge", "exp3", "epsilon_greedy", "ucb1")
"""Strategy kinds whose state is a policy over an action grid."""
FIXED_STRATEGIES: tuple[str, ...] = ("fixed", "truthful")

Group = Literal["core", "regret", "stream", "extra", "strategy"]
SAMPLED = "mechanism.policy_space = candidates"
FINE_TUNED = "mechanism.policy_space = fine_tuned"


@dataclass(frozen=True)
class Column:
    """One column of a record table.

    Attributes:
        name: The column name in the Parquet file.
        dtype: Its polars dtype (every writer casts to it).
        unit: ``money``, ``allocation``, ``tokens``, ``count``, ``index``, ``flag`` (1.0 or
            0.0), ``1`` (dimensionless), ``nats``, ``probability``, ``id`` or ``text``.
        doc: One line: what the value is.
        filled_by: Who writes it: :data:`EVERY_RUN`, mechanism kinds, :data:`EVA_STREAM` or
            strategy kinds.
        group: ``core`` and ``regret`` columns are in every run (``regret`` ones are null where
            not measured); ``stream``, ``extra`` and ``strategy`` ones only where filled.
        when: ``(filler, condition)`` pairs: a filler named here writes the column only under
            its condition (the others of ``filled_by`` always do).
    """

    name: str
    dtype: pl.DataType | type[pl.DataType]
    unit: str
    doc: str
    filled_by: tuple[str, ...] = (EVERY_RUN,)
    group: Group = "core"
    when: tuple[tuple[str, str], ...] = ()

    @property
    def optional(self) -> bool:
        """Whether a run may lack the column (it is written only where its filler ran)."""
        return self.group in ("stream", "extra", "strategy")

    @property
    def nullable(self) -> bool:
        """Whether a value may be null (regret off measured rounds, a state a strategy lacks)."""
        return self.group in ("regret", "strategy")


class UndeclaredColumnError(ValueError):
    """A writer produced a column the record schema does not declare."""


@dataclass(frozen=True)
class RecordTable:
    """The columns of one results file, in the order they are written.

    Attributes:
        file: The file name in a run folder.
        columns: Its columns.
        families: Columns declared by prefix: the :attr:`Column.name` of each is a prefix, and
            any column whose name starts with it has its dtype (written after ``columns``, in
            the order they first appear).
    """

    file: str
    columns: tuple[Column, ...]
    families: tuple[Column, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every declared column name, in file order."""
        return tuple(column.name for column in self.columns)

    @property
    def schema(self) -> dict[str, pl.DataType | type[pl.DataType]]:
        """``name -> dtype`` of every declared column."""
        return {column.name: column.dtype for column in self.columns}

    def __getitem__(self, name: str) -> Column:
        """The declared column ``name`` (KeyError naming the file if undeclared)."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.file} declares no column {name!r}")

    def filled_by(self, filler: str) -> tuple[Column, ...]:
        """The :data:`EVERY_RUN` columns and those ``filler`` writes unconditionally.

        Args:
            filler: A mechanism kind, :data:`EVA_STREAM` or a strategy kind.
        """
        return tuple(
            column
            for column in self.columns
            if EVERY_RUN in column.filled_by
            or (filler in column.filled_by and filler not in dict(column.when))
        )

    def column(self, name: str) -> Column | None:
        """The column declaring ``name``: its own, else its prefix family's (None if neither)."""
        for column in self.columns:
            if column.name == name:
                return column
        for family in self.families:
            if name.startswith(family.name):
                return family
        return None

    def check_names(self, names: Sequence[str]) -> None:
        """Raise :class:`UndeclaredColumnError` naming the first column not declared here."""
        for name in names:
            if self.column(name) is None:
                prefixes = "".join(f"; or name it {f.name}<name>" for f in self.families)
                raise UndeclaredColumnError(
                    f"{self.file}: column {name!r} is not declared in "
                    f"market_sim.results.records{prefixes}"
                )

    def ordered(self, names: Sequence[str]) -> list[tuple[str, Column]]:
        """``names`` with their columns: declared order, then family members as given.

        Raises:
            UndeclaredColumnError: A name neither declared nor in a family.
        """
        present = set(names)
        ordered = [(column.name, column) for column in self.columns if column.name in present]
        declared = {column.name for column in self.columns}
        for name in names:
            column = self.column(name)
            if column is None:
                self.check_names([name])  # raises, naming it
            elif name not in declared:
                ordered.append((name, column))
        return ordered

    def frame(self, columns: Mapping[str, Sequence[object]]) -> pl.DataFrame:
        """A typed frame from value lists of every declared column (``None`` where not filled).

        An optional column whose values are all ``None`` was filled by nobody in this run and is
        left out; every other column is built with its declared dtype, strictly (a value that
        does not fit the dtype raises instead of becoming null).
        """
        return pl.DataFrame(
            [
                pl.Series(name, list(columns[name]), dtype=column.dtype, strict=True)
                for name, column in self.ordered(list(columns))
                if not (column.optional and all(v is None for v in columns[name]))
            ]
        )

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with declared columns only, each cast to its dtype, in declared order."""
        return frame.select(
            pl.col(name).cast(column.dtype, strict=True)
            for name, column in self.ordered(frame.columns)
        )


def _extra(name: str, unit: str, doc: str, *kinds: str, sampled_affine: bool = False) -> Column:
    """A mechanism-specific round column (``AuctionOutcome.extras``), always float64.

    ``sampled_affine``: the affine maximizer writes it only on sampled replies.
    """
    when = ((AFFINE_MAXIMIZER, SAMPLED),) if sampled_affine else ()
    return Column(name, pl.Float64, unit, doc, kinds, "extra", when)


def _strategy(key: str, unit: str, doc: str, *kinds: str) -> Column:
    """A strategy-state column of the agents table, ``strategy_<key>``."""
    return Column(STRATEGY_PREFIX + key, pl.Float64, unit, doc, kinds, "strategy")


def _regret(name: str, unit: str, doc: str) -> Column:
    """A regret-estimator column (null where not measured)."""
    return Column(name, pl.Float64, unit, doc, (EVERY_RUN,), "regret")


ROUNDS = RecordTable(
    "rounds.parquet",
    (
        Column("run_id", pl.String, "id", "the run's id (scenario, seed, hash of the scenario)"),
        Column("round", pl.Int64, "index", "round, from 0 (the model's steps - 1 in its round)"),
        Column("auction", pl.Int64, "index", "auction within the round, from 0 to K - 1"),
        Column("query", pl.String, "text", "the user's query"),
        Column("mechanism", pl.String, "id", "the mechanism kind that ran the auction"),
        Column("text", pl.String, "text", "the reply shown to the user"),
        Column("revenue", pl.Float64, "money", "sum of the advertisers' payments"),
        Column("advertiser_value", pl.Float64, "money", "sum over advertisers of v_i x_i"),
        Column("user_value", pl.Float64, "allocation", "the user's value of the reply"),
        Column("social_welfare", pl.Float64, "money", "advertiser_value + user_value"),
        Column(
            "brands_mentioned",
            pl.List(pl.String),
            "text",
            "names of the advertisers the reply mentions, in advertiser order",
        ),
        Column("round_seed", pl.Int64, "id", "seed of the platform's random draws this round"),
        Column("query_id", pl.String, "id", "id of the served query", (EVA_STREAM,), "stream"),
        Column(
            "query_generation",
            pl.Int64,
            "index",
            "generation in which the served query was born",
            (EVA_STREAM,),
            "stream",
        ),
        _extra("n_tokens", "tokens", "reply length", *MECHANISMS),
        _extra("stopped_at_eos", "flag", "1.0 when the reply ended at a stop token", *MECHANISMS),
        _extra("slots_filled", "count", "advertisers shown (bid > 0)", *SLOT_AUCTIONS),
        _extra(
            "candidates",
            "count",
            "candidate replies M",
            MOSAIC,
            AFFINE_MAXIMIZER,
            sampled_affine=True,
        ),
        _extra(
            "distinct_candidates",
            "count",
            "distinct candidate replies",
            MOSAIC,
            AFFINE_MAXIMIZER,
            sampled_affine=True,
        ),
        _extra("effective_candidates", "count", "1 / sum of squared reply probabilities", MOSAIC),
        _extra(
            "chosen_candidate",
            "index",
            "the candidate shown",
            MOSAIC,
            AFFINE_MAXIMIZER,
            sampled_affine=True,
        ),
        _extra(
            "policy_effective_outcomes",
            "count",
            "1 / sum of squared policy probabilities",
            AFFINE_MAXIMIZER,
            sampled_affine=True,
        ),
        _extra(
            "divergence",
            "allocation",
            "f-divergence of the chosen policy from the reference (= -user_value)",
            AFFINE_MAXIMIZER,
        ),
        Column(
            "grid_point",
            pl.Float64,
            "index",
            "the fine-tuned copy shown",
            (AFFINE_MAXIMIZER,),
            "extra",
            ((AFFINE_MAXIMIZER, FINE_TUNED),),
        ),
        Column(
            "grid_base_weight",
            pl.Float64,
            "1",
            "the chosen copy's weight on the reference reward",
            (AFFINE_MAXIMIZER,),
            "extra",
            ((AFFINE_MAXIMIZER, FINE_TUNED),),
        ),
    ),
    families=(
        Column(
            EXTRA_PREFIX,
            pl.Float64,
            "the mechanism's",
            "an extra of a mechanism not declared above, extra_<name>",
            ("any mechanism plugin",),
            "extra",
        ),
    ),
)
"""``rounds.parquet``: one row per auction."""

AGENTS = RecordTable(
    "agents.parquet",
    (
        Column("run_id", pl.String, "id", "the run's id"),
        Column("round", pl.Int64, "index", "round, from 0"),
        Column("auction", pl.Int64, "index", "auction within the round"),
        Column("agent", pl.String, "text", "the advertiser's name"),
        Column("valuation", pl.Float64, "money", "v_i, money per unit of allocation"),
        Column("bid", pl.Float64, "money", "the reported bid b_i"),
        Column("report_scale", pl.Float64, "1", "the reported distortion d_i (1: truthful)"),
        Column("allocation", pl.Float64, "allocation", "x_i, measured with true preferences"),
        Column("reported_allocation", pl.Float64, "allocation", "x_i measured with the reports"),
        Column("value", pl.Float64, "money", "v_i x_i"),
        Column("payment", pl.Float64, "money", "what the advertiser pays"),
        Column("utility", pl.Float64, "money", "value - payment"),
        _regret("regret", "money", "best deviation's utility - utility of the truthful report"),
        _regret(
            "best_response_gain",
            "money",
            "best deviation's utility - the played report's, both in the round's counterfactual "
            "(the realized utility, except under ex-post settlement: expected payments)",
        ),
        _regret(
            "truthful_utility",
            "money",
            "utility had it reported truthfully, in the round's counterfactual (also on "
            "unmeasured rounds if truthful and the counterfactual is the realized outcome)",
        ),
        _regret("best_deviation_multiplier", "1", "bid / valuation of the best deviation"),
        _regret("best_deviation_distortion", "1", "report distortion of the best deviation"),
        Column("mentioned", pl.Boolean, "flag", "whether the reply mentions the brand"),
        _strategy("bid_multiplier", "1", "the fixed bid / valuation", *FIXED_STRATEGIES),
        _strategy("distortion", "1", "the fixed report distortion", *FIXED_STRATEGIES),
        _strategy(
            "mean_multiplier",
            "1",
            "bid multiplier expected under the policy of the round's start (policy gradient: "
            "its median, exp of the mean log multiplier, clipped to the range)",
            *GRID_LEARNERS,
            "policy_gradient",
        ),
        _strategy(
            "mean_distortion",
            "1",
            "distortion expected under the policy (policy gradient: its median, as above)",
            *GRID_LEARNERS,
            "policy_gradient",
        ),
        _strategy(
            "top_probability",
            "1",
            "largest action probability of the next auction's draw (epsilon-greedy: "
            "1 - epsilon + epsilon / N over N actions; UCB1: 1, its next action is determined)",
            *GRID_LEARNERS,
        ),
        _strategy("log_std", "1", "the policy's spread (its std, exp(log_std))", "policy_gradient"),
    ),
    families=(
        Column(
            STRATEGY_PREFIX,
            pl.Float64,
            "the strategy's",
            "a state key of a strategy not declared above, strategy_<key>",
            ("any strategy plugin",),
            "strategy",
        ),
    ),
)
"""``agents.parquet``: one row per (auction, advertiser), advertisers in their order."""

REGRET_COLUMNS: tuple[str, ...] = tuple(c.name for c in AGENTS.columns if c.group == "regret")
"""The regret estimator's columns, in file order."""

CONVERGENCE = RecordTable(
    "convergence.parquet",
    (
        Column("query", pl.String, "text", "the query"),
        Column("proposal", pl.String, "id", "reference or context_aware proposal"),
        Column("candidates", pl.Int64, "count", "candidate replies M"),
        Column("kl", pl.Float64, "nats", "KL(P_M || pi*)"),
        Column("tv", pl.Float64, "probability", "total variation between P_M and pi*"),
        Column("reward_gap", pl.Float64, "allocation", "E_pi*[R] - E_P_M[R]"),
        Column("support_size", pl.Int64, "count", "distinct replies in the finite space Y"),
        Column("reference_coverage", pl.Float64, "probability", "pi_ref's mass on Y"),
        Column("proposal_coverage", pl.Float64, "probability", "the proposal's mass on Y"),
        Column("tau", pl.Float64, "allocation", "MOSAIC's regularization weight"),
        Column("seed", pl.Int64, "id", "the scenario's seed"),
    ),
)
"""``convergence.parquet`` (MOSAIC convergence experiment): one row per (query, proposal, M)."""
CONVERGENCE_DISTANCES: tuple[str, ...] = ("kl", "tv", "reward_gap")
"""The convergence table's distances to pi*, in the order figures show them."""

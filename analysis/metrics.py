"""Per-mechanism metrics with confidence intervals over seeds, brand shares, frontiers.

Learning curves over rounds are in :mod:`analysis.learning_curves`.

Conventions:

* Every run is one observation; a CI is over the runs (seeds) of a group, from
  :mod:`analysis.stats` (Student t, 95% by default, null for fewer than two runs), intersected
  with the metric's range when it has one (:data:`METRIC_RANGES`: revenue, regret and ratios are
  non-negative, rates lie in [0, 1]), so no interval crosses a bound the quantity cannot cross.
* A run's mechanism ``label`` is its ``mechanism`` kind, followed in brackets by the variant
  columns (:data:`VARIANT_COLUMNS`, and string-valued ``mechanism.*`` grid keys) that take more
  than one value among the runs of that kind, e.g. ``token_auction (log_linear)``. New mechanism
  kinds therefore need no code here.
* The other grid keys that vary are *parameters*: groups are ``label`` x parameters, so runs with
  different parameters are never pooled. Runs of one group whose resolved scenarios differ in
  anything else than the seed, the grid keys and the label's own keys (a sweep rerun with another
  ``--rounds`` into the same folder) are not pooled either: a ``setting`` column naming the
  differing values joins the groups and a :class:`PoolingWarning` says so.
* Each label also has a readable name (``mechanism_name``, :mod:`analysis.names`) and a family.
* Metrics are the numeric columns of the runs table (every numeric ``summary.json`` key) except
  identifiers, grid keys and wall-clock keys, so new summary keys show up without code changes.
* polars does not keep row order after ``group_by``: every result is sorted explicitly.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import polars as pl

from analysis.load import RepeatedRunWarning, Results, SweepTableWarning
from analysis.names import family, mechanism_name, slot_count, sort_key
from analysis.stats import CONFIDENCE, Range, clip_interval, t_quantile, wilson_interval
from market_sim.results import HEADLINE_SUMMARY_KEYS
from market_sim.results.layout import WALL_CLOCK_KEYS

VARIANT_COLUMNS: tuple[str, ...] = ("aggregation", "payment", "settlement")
"""Summary keys that distinguish variants of one mechanism kind."""

HEADLINE_METRICS: tuple[str, ...] = HEADLINE_SUMMARY_KEYS
"""Summary metrics listed first (the results contract); any other numeric key follows."""

NOT_METRICS: frozenset[str] = frozenset(
    {"seed", "rounds", "auctions_per_round", "run_path", "run_dir", "index"}
)
AGENT_METRICS: tuple[str, ...] = (
    "bid_ratio",
    "report_scale",
    "report_scale_deviation",
    "utility",
    "payment",
    "value",
    "regret",
    "truthful_utility",
)
"""Per agent-round quantities averaged per run by :func:`agent_run_metrics` (when present)."""

NON_NEGATIVE: Range = (0.0, None)
UNIT_INTERVAL: Range = (0.0, 1.0)
METRIC_RANGES: dict[str, Range] = {
    "revenue_mean": NON_NEGATIVE,
    "advertiser_value_mean": NON_NEGATIVE,
    "ir_violation_rate": UNIT_INTERVAL,
    "bid_ratio_final": NON_NEGATIVE,
    "report_scale_final": NON_NEGATIVE,
    "report_scale_deviation_final": NON_NEGATIVE,
    "regret_mean": NON_NEGATIVE,
    "regret_max": NON_NEGATIVE,
    "best_response_gain_mean": NON_NEGATIVE,
    "bid_ratio": NON_NEGATIVE,
    "report_scale": NON_NEGATIVE,
    "report_scale_deviation": NON_NEGATIVE,
    "payment": NON_NEGATIVE,
    "value": NON_NEGATIVE,
    "regret": NON_NEGATIVE,
}
"""Range of each metric that has one. Payments are non-negative under every mechanism (token
auction ``0 <= pay_i <= b_i x_i``; MOSAIC's payment is at least zero because log-sum-exp is
convex; affine-maximizer and ad-slot payments are non-negative), so revenue is; valuations and
allocations are non-negative, so advertiser value is; regret and best-response gains are maxima
over deviations that include the report played. Utility, user value and social welfare may be
negative and are unbounded here."""

LABEL = "label"
NAME = "mechanism_name"
FAMILY = "family"
SETTING = "setting"
UNLABELLED = "unknown"
LABEL_SCENARIO_KEYS: tuple[str, ...] = (
    "seed",
    "mechanism.kind",
    "mechanism.aggregation",
    "mechanism.payment",
    "mechanism.settlement",
)
"""Scenario keys that may differ within a group without splitting it (seed, label keys)."""
NOT_METRIC_PREFIXES: tuple[str, ...] = ("versions.", "provenance.")


class PoolingWarning(UserWarning):
    """Runs of one group differ in their resolved scenarios; they were kept apart."""


T = TypeVar("T")
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

SAID_WARNINGS: tuple[type[Warning], ...] = (PoolingWarning, RepeatedRunWarning, SweepTableWarning)
"""Warnings the commands say as one ``market-sim: warning:`` line each."""


def said_warnings(action: Callable[[], T]) -> tuple[T, list[str]]:
    """Run ``action``; return its result and the distinct messages of :data:`SAID_WARNINGS`.

    Every such warning is recorded (not only its first occurrence); other warnings are raised
    again as they came.
    """
    with warnings.catch_warnings(record=True) as caught:
        for category in SAID_WARNINGS:
            warnings.simplefilter("always", category)
        result = action()
    for other in caught:
        if not issubclass(other.category, SAID_WARNINGS):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    messages = [str(w.message) for w in caught if issubclass(w.category, SAID_WARNINGS)]
    return result, list(dict.fromkeys(messages))


# --------------------------------------------------------------------------- labels and columns


def label_columns(runs: pl.DataFrame, grid_keys: Sequence[str]) -> list[str]:
    """Columns that may distinguish mechanism variants (see the module docstring)."""
    candidates = [col for col in VARIANT_COLUMNS if col in runs.columns]
    for key in grid_keys:
        in_mechanism = key.startswith("mechanism.") and key != "mechanism.kind"
        if in_mechanism and key in runs.columns and runs.schema[key] == pl.String:
            candidates.append(key)
    return candidates


def varying_label_columns(runs: pl.DataFrame, grid_keys: Sequence[str]) -> dict[str, list[str]]:
    """Mechanism kind -> the label columns that take more than one value among its runs."""
    columns = label_columns(runs, grid_keys)
    kinds = runs["mechanism"].fill_null(UNLABELLED).cast(pl.String)
    return {
        kind: [
            col for col in columns if runs.filter(kinds == kind)[col].cast(pl.String).n_unique() > 1
        ]
        for kind in kinds.unique().to_list()
    }


def add_labels(runs: pl.DataFrame, grid_keys: Sequence[str] = ()) -> pl.DataFrame:
    """Add the ``label`` column: mechanism kind plus the variant values that vary within it."""
    if "mechanism" not in runs.columns:
        return runs.with_columns(pl.lit(UNLABELLED).alias(LABEL))
    labels = []
    kinds = runs["mechanism"].fill_null(UNLABELLED).cast(pl.String)
    varying = varying_label_columns(runs, grid_keys)
    for index, kind in enumerate(kinds.to_list()):
        values = [runs[col][index] for col in varying[kind]]
        parts = [str(value) for value in values if value is not None]  # a null: not "None"
        parts = list(dict.fromkeys(parts))
        labels.append(f"{kind} ({', '.join(parts)})" if parts else kind)
    return runs.with_columns(pl.Series(LABEL, labels, dtype=pl.String))


def parameter_keys(runs: pl.DataFrame, grid_keys: Sequence[str]) -> list[str]:
    """Grid keys that vary and are not part of the mechanism label."""
    folded = set(label_columns(runs, grid_keys)) | {"mechanism.kind"}
    return [
        key
        for key in grid_keys
        if key in runs.columns and key not in folded and runs[key].n_unique() > 1
    ]


def metric_columns(runs: pl.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Numeric run-level metric columns: headline metrics first, then the rest sorted."""
    skip = set(NOT_METRICS) | set(exclude)
    numeric = [
        name
        for name, dtype in runs.schema.items()
        if (dtype.is_numeric() or dtype == pl.Boolean)
        and name not in skip
        and name.split(".")[0] not in WALL_CLOCK_KEYS
        and not name.startswith(NOT_METRIC_PREFIXES)
    ]
    headline = [name for name in HEADLINE_METRICS if name in numeric]
    return headline + sorted(set(numeric) - set(headline))


def add_names(runs: pl.DataFrame, scenarios: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:
    """Add ``mechanism_name`` (readable, :func:`analysis.names.mechanism_name`) and ``family``.

    Two labels that would share a name (variants the name does not show) keep their label in
    brackets, so a name always means one label. A label whose runs differ in their slot count
    (a sweep over ``mechanism.click_through_rates``) is named without it: one label gets one
    name, and the rates stay a setting of the table and figures.
    """
    variant_columns = [col for col in VARIANT_COLUMNS if col in runs.columns]
    names, plain_names, families = [], [], []
    for row in runs.iter_rows(named=True):
        kind = str(row.get("mechanism") or UNLABELLED)
        scenario = scenarios.get(row.get("run_path", ""), {})
        variants = {col: row[col] for col in variant_columns}
        names.append(mechanism_name(kind, variants, slot_count(scenario)))
        plain_names.append(mechanism_name(kind, variants, slots_vary=True))
        families.append(family(kind))
    named = runs.with_columns(
        pl.Series(NAME, names, dtype=pl.String),
        pl.Series("_plain_name", plain_names, dtype=pl.String),
        pl.Series(FAMILY, families, dtype=pl.String),
    )
    named = named.with_columns(
        pl.when(pl.col(NAME).n_unique().over(LABEL) > 1)
        .then(pl.col("_plain_name"))
        .otherwise(pl.col(NAME))
        .alias(NAME)
    ).drop("_plain_name")
    pairs = named.select(LABEL, NAME).unique()
    shared = pairs.filter(pl.col(NAME).is_duplicated())[NAME].to_list()
    return named.with_columns(
        pl.when(pl.col(NAME).is_in(shared))
        .then(pl.format("{} [{}]", pl.col(NAME), pl.col(LABEL)))
        .otherwise(pl.col(NAME))
        .alias(NAME)
    )


def label_order(runs: pl.DataFrame) -> list[str]:
    """Labels in figure order: family, kind, payment, variants (:func:`analysis.names.sort_key`)."""
    variant_columns = [col for col in VARIANT_COLUMNS if col in runs.columns]
    first = runs.unique(LABEL, keep="first", maintain_order=True)
    keyed = [
        (
            sort_key(str(row.get("mechanism") or ""), {c: row[c] for c in variant_columns}),
            row[LABEL],
        )
        for row in first.iter_rows(named=True)
    ]
    return [label for _, label in sorted(keyed)]


def scenario_differences(
    runs: pl.DataFrame,
    by: Sequence[str],
    scenarios: Mapping[str, Mapping[str, Any]],
    ignore: Sequence[str],
) -> list[str]:
    """Scenario keys whose values differ between runs of one group of ``by`` (sorted).

    A run without ``scenario.toml`` (an older or hand-copied folder) takes its length,
    ``rounds`` and ``auctions_per_round``, from its ``summary.json`` (the runs table) and is
    compared on those alone: runs of 200 and 37 rounds are not pooled because one lost its
    scenario, and the scenario keys it cannot show do not all count as differing.
    """
    skip = set(ignore)
    differing: set[str] = set()
    for _, group in runs.group_by(*by):
        rows = group.iter_rows(named=True)
        flats = [
            (run_scenario_keys(row, scenarios), bool(scenarios.get(row["run_path"])))
            for row in rows
        ]
        keys = {key for flat, _ in flats for key in flat} - skip
        for key in keys:
            values = {
                json.dumps(flat.get(key), sort_keys=True, default=str)
                for flat, whole in flats
                if whole or key in flat
            }
            if len(values) > 1:
                differing.add(key)
    return sorted(differing)


SUMMARY_SCENARIO_KEYS: tuple[str, ...] = ("rounds", "auctions_per_round")
"""Scenario keys that ``summary.json`` records too (read where ``scenario.toml`` is missing)."""


def run_scenario_keys(
    run: Mapping[str, Any], scenarios: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A run's resolved scenario as dotted keys, or its summary's :data:`SUMMARY_SCENARIO_KEYS`."""
    scenario = scenarios.get(run["run_path"])
    if scenario:
        return dict(scenario)
    return {key: run[key] for key in SUMMARY_SCENARIO_KEYS if run.get(key) is not None}


def split_settings(
    runs: pl.DataFrame, by: list[str], results: Results
) -> tuple[pl.DataFrame, list[str]]:
    """Keep apart runs of one group whose resolved scenarios differ (see the module docstring).

    Returns:
        ``(runs, by)`` unchanged when every group is homogeneous; else ``runs`` with a
        ``setting`` column (``key=value, ...`` of the differing keys) and ``[*by, "setting"]``,
        after a :class:`PoolingWarning`.
    """
    if "run_path" not in runs.columns:
        return runs, by
    ignore = [*LABEL_SCENARIO_KEYS, *results.grid_keys]
    differing = scenario_differences(runs, by, results.scenarios, ignore)
    if not differing:
        return runs, by
    flats = [run_scenario_keys(row, results.scenarios) for row in runs.iter_rows(named=True)]
    settings = [
        ", ".join(f"{key}={json.dumps(flat.get(key), default=str)}" for key in differing)
        for flat in flats
    ]
    warnings.warn(
        PoolingWarning(
            f"runs of the same mechanism and grid values differ in {', '.join(differing)} "
            "(beyond seed and the grid keys); they are grouped by setting, not pooled"
        ),
        stacklevel=2,
    )
    return runs.with_columns(pl.Series(SETTING, settings, dtype=pl.String)), [*by, SETTING]


def labelled_runs(results: Results) -> tuple[pl.DataFrame, list[str]]:
    """The runs with labels, names and families, and the grouping columns.

    Returns:
        ``(runs, by)`` with ``by = [label, *parameters]``, plus ``setting`` when runs of one
        group differ in their resolved scenarios (:func:`split_settings`).
    """
    runs = add_labels(results.runs, results.grid_keys)
    runs = add_names(runs, results.scenarios)
    return split_settings(runs, [LABEL, *parameter_keys(runs, results.grid_keys)], results)


# --------------------------------------------------------------------------- summaries


def summarize(
    frame: pl.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    confidence: float = CONFIDENCE,
    ranges: Mapping[str, Range] | None = None,
) -> pl.DataFrame:
    """Mean and t confidence interval of each metric per group, one row per (group, metric).

    Args:
        frame: One row per observation (a run).
        by: Grouping columns.
        metrics: Numeric columns to summarize (nulls and NaNs are dropped per metric).
        confidence: Confidence level of the interval.
        ranges: Metric -> its range; the interval is intersected with it
            (:func:`analysis.stats.clip_interval`). Default :data:`METRIC_RANGES`.

    Returns:
        Columns ``*by, metric, n, mean, std, ci_low, ci_high`` sorted by ``by`` then metric
        order; ``std`` and the bounds are null when ``n < 2``.
    """
    ranges = METRIC_RANGES if ranges is None else ranges
    metrics = [m for m in metrics if m in frame.columns]
    schema = {**{col: frame.schema[col] for col in by}, "metric": pl.String}
    if not metrics or frame.height == 0:
        empty = {"n": pl.UInt32, **{c: pl.Float64 for c in ("mean", "std", "ci_low", "ci_high")}}
        return pl.DataFrame(schema={**schema, **empty})
    long = (
        frame.select(*by, *[pl.col(m).cast(pl.Float64) for m in metrics])
        .unpivot(on=metrics, index=list(by), variable_name="metric", value_name="_value")
        .filter(pl.col("_value").is_not_null() & pl.col("_value").is_not_nan())
    )
    grouped = long.group_by(*by, "metric").agg(
        pl.len().alias("n"),
        pl.col("_value").mean().alias("mean"),
        pl.col("_value").std().alias("std"),
    )
    quantiles = {
        n: t_quantile(0.5 + confidence / 2, n - 1) for n in grouped["n"].unique() if n >= 2
    }
    bounds: list[tuple[float | None, float | None]] = []
    for metric, n, mean, std in grouped.select("metric", "n", "mean", "std").iter_rows():
        if n < 2 or std is None:
            bounds.append((None, None))
            continue
        half = quantiles[n] * std / math.sqrt(n)
        bounds.append(clip_interval(mean - half, mean + half, ranges.get(metric, (None, None))))
    order = {m: i for i, m in enumerate(metrics)}
    return (
        grouped.with_columns(
            pl.when(pl.col("n") >= 2).then(pl.col("std")).alias("std"),
            pl.Series("ci_low", [b[0] for b in bounds], dtype=pl.Float64),
            pl.Series("ci_high", [b[1] for b in bounds], dtype=pl.Float64),
            pl.col("metric").replace_strict(order, return_dtype=pl.Int64).alias("_order"),
        )
        .sort(*by, "_order")
        .drop("_order")
    )


def mechanism_summary(
    results: Results, metrics: Sequence[str] | None = None, confidence: float = CONFIDENCE
) -> pl.DataFrame:
    """Run-level metrics per mechanism label and parameter setting, with CIs over seeds.

    The metrics (default: every numeric summary key) are revenue, advertiser / user / social
    welfare, utility, IR violation rate, bid ratio, regret and whatever else the runs report;
    see :func:`summarize` for the columns.
    """
    runs, by = labelled_runs(results)
    chosen = metric_columns(runs, exclude=results.grid_keys) if metrics is None else metrics
    return summarize(runs, by, chosen, confidence)


def with_agent_columns(agents: FrameT) -> FrameT:
    """Add derived agent columns where their inputs exist (to a DataFrame or a LazyFrame).

    ``bid_ratio`` is bid / valuation (null when valuation <= 0); ``log2_report_scale`` is
    ``log2 report_scale`` (0 = truthful; its mean is the log of the geometric mean scale, so a
    learner drawing uniformly from a geometric grid symmetric about 1 averages 0) and
    ``report_scale_deviation`` its absolute value (1 = a factor of 2 either way), as
    ``summary.json``'s ``report_scale_deviation_final``; both null when ``report_scale <= 0``.
    """
    names = set(agents.collect_schema().names())
    columns = []
    if {"bid", "valuation"} <= names:
        columns.append(
            pl.when(pl.col("valuation") > 0)
            .then(pl.col("bid") / pl.col("valuation"))
            .alias("bid_ratio")
        )
    if "report_scale" in names:
        scale = pl.col("report_scale").cast(pl.Float64)  # an all-null column reads as Null
        log_scale = pl.when(scale > 0).then(scale.log(2))
        columns.append(log_scale.abs().alias("report_scale_deviation"))
        columns.append(log_scale.alias("log2_report_scale"))
    return agents.with_columns(columns) if columns else agents


def agent_run_metrics(agents: pl.DataFrame) -> pl.DataFrame:
    """Per run: the mean over agent-auctions of each of :data:`AGENT_METRICS` that is present."""
    agents = with_agent_columns(agents)
    present = [m for m in AGENT_METRICS if m in agents.columns]
    means = [pl.col(m).cast(pl.Float64).mean().alias(m) for m in present]
    return agents.group_by("run_path").agg(means).sort("run_path")


def agent_summary(
    results: Results, agents: pl.DataFrame, confidence: float = CONFIDENCE
) -> pl.DataFrame:
    """Agent-level metrics per mechanism label and parameter setting, with CIs over seeds.

    Each run contributes the mean of each of :data:`AGENT_METRICS` over its agent-auctions (bid
    ratio, report scale and distortion, utility, payment, value, regret, ...).
    """
    runs, by = labelled_runs(results)
    per_run = agent_run_metrics(agents).join(runs.select("run_path", *by), on="run_path")
    present = [m for m in AGENT_METRICS if m in per_run.columns]
    return summarize(per_run, by, present, confidence)


# --------------------------------------------------------------------------- lambda sweep


def brand_shares(shares: pl.DataFrame, confidence: float = CONFIDENCE) -> pl.DataFrame:
    """Lambda-sweep shares in long form with Wilson intervals.

    Args:
        shares: ``shares.parquet`` rows (``aggregation``, ``lambda``, ``samples``,
            ``share_<category>``), e.g. from :func:`analysis.load.load_shares`.
        confidence: Confidence level.

    Returns:
        Columns ``[source,] aggregation, lambda, samples, category, share, ci_low, ci_high``.
    """
    share_cols = [col for col in shares.columns if col.startswith("share_")]
    if not share_cols:
        return pl.DataFrame()
    index = [c for c in ("source", "aggregation", "lambda", "samples") if c in shares.columns]
    long = shares.unpivot(on=share_cols, index=index, variable_name="category", value_name="share")
    long = long.with_columns(pl.col("category").str.strip_prefix("share_"))
    n = long["samples"] if "samples" in long.columns else pl.Series([0] * long.height)
    bounds = [
        wilson_interval(share, int(count), confidence)
        for share, count in zip(long["share"], n, strict=True)
    ]
    return long.with_columns(
        pl.Series("ci_low", [b[0] for b in bounds], dtype=pl.Float64),
        pl.Series("ci_high", [b[1] for b in bounds], dtype=pl.Float64),
    ).sort([c for c in ("source", "aggregation", "category", "lambda") if c in long.columns])


# --------------------------------------------------------------------------- frontier


def frontier(
    results: Results,
    parameter: str,
    x: str = "social_welfare_mean",
    y: str = "revenue_mean",
    confidence: float = CONFIDENCE,
) -> pl.DataFrame:
    """Points of the ``y``-vs-``x`` frontier as ``parameter`` moves, per mechanism label.

    Returns:
        One row per (label, other parameters, parameter value): ``x_mean``, ``x_low``,
        ``x_high``, ``y_mean``, ``y_low``, ``y_high``, ``n``; sorted by label then parameter.
    """
    runs, by = labelled_runs(results)
    if parameter not in by:
        by = [*by, parameter]
    table = summarize(runs, by, [x, y], confidence)
    parts = []
    for metric, prefix in ((x, "x"), (y, "y")):
        part = table.filter(pl.col("metric") == metric).select(
            *by,
            pl.col("n"),
            pl.col("mean").alias(f"{prefix}_mean"),
            pl.col("ci_low").alias(f"{prefix}_low"),
            pl.col("ci_high").alias(f"{prefix}_high"),
        )
        parts.append(part)
    joined = parts[0].join(parts[1].drop("n"), on=by, how="inner", nulls_equal=True)
    others = [col for col in by if col not in (LABEL, parameter)]
    return joined.sort(LABEL, *others, parameter)

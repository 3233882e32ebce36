"""Learning curves: per-window means of agent metrics over rounds, with CIs over runs (seeds).

:func:`agent_round_sums` reduces a round's agent rows to one row of sums and counts (what
``plot`` keeps while it reads ``agents.parquet`` in chunks); :func:`learning_curves` turns
either those sums or the rows themselves into curves, one point per window of rounds, pooled
over the seeds of each group as the other metrics are (:mod:`analysis.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

from analysis.metrics import LABEL, FrameT, summarize, with_agent_columns
from analysis.stats import CONFIDENCE

WINDOWS_PER_CURVE = 20
"""Points of a learning curve by default (:func:`default_window`)."""


ROUND_SUMS_MARKER = "agent_rows"
"""The column that marks a frame of :func:`agent_round_sums` (agent rows summed per round)."""


def agent_round_sums(agents: FrameT, metrics: Sequence[str], keys: Sequence[str]) -> FrameT:
    r"""Per ``keys`` group (a run's round): each metric's sum and count, and the round's K.

    What :func:`learning_curves` needs of a round's :math:`K n` agent rows, in one row: a
    window's mean over its rows is :math:`\sum \text{sum}_m / \sum \text{count}_m` over its
    rounds. ``plot`` reads ``agents.parquet`` in chunks and keeps only these sums
    (:func:`analysis.load.load_run_files`), so a run of :math:`10^7` auctions of 4 advertisers
    is held as one row per round instead of :math:`4 \cdot 10^7` rows. It accepts its own
    outputs: applied to a concatenation of them (recognized by the :data:`ROUND_SUMS_MARKER`
    column) it adds them up, so chunks of one round merge as the round's rows would sum, up
    to float64 rounding of the sum's order.

    Args:
        agents: Agent rows (``round``, ``auction`` where K > 1, the metrics; derived metrics
            already added by :func:`with_agent_columns`), or a concatenation of this function's
            outputs. A DataFrame or a LazyFrame (the result is of the same kind).
        metrics: Metric columns to sum (those absent are left out).
        keys: Grouping columns, e.g. ``("round",)`` within one run's file.

    Returns:
        One row per group in first-seen order: ``*keys``, ``auctions`` (the largest
        ``auction`` + 1, 1 without the column), :data:`ROUND_SUMS_MARKER` (rows summed), and per
        metric ``<metric>_sum`` (float64, nulls skipped) and ``<metric>_count`` (its non-null
        rows).
    """
    names = agents.collect_schema().names()
    grouped = agents.group_by(*keys, maintain_order=True)
    if ROUND_SUMS_MARKER in names:  # partial sums of chunks: add them up
        present = [m for m in metrics if f"{m}_sum" in names]
        return grouped.agg(
            pl.col("auctions").max(),
            pl.col(ROUND_SUMS_MARKER).sum(),
            *[pl.col(f"{m}_sum").sum() for m in present],
            *[pl.col(f"{m}_count").sum() for m in present],
        )
    present = [m for m in metrics if m in names]
    # a file without the column (an older version) has K = 1, also when pooled with others
    auctions = (pl.col("auction").max() + 1).fill_null(1) if "auction" in names else pl.lit(1)
    return grouped.agg(
        auctions.cast(pl.Int64).alias("auctions"),
        pl.len().cast(pl.Int64).alias(ROUND_SUMS_MARKER),
        *[pl.col(m).cast(pl.Float64).sum().alias(f"{m}_sum") for m in present],
        *[pl.col(m).count().cast(pl.Int64).alias(f"{m}_count") for m in present],
    )


def default_window(rounds: int, windows: int = WINDOWS_PER_CURVE) -> int:
    """Round-window width giving about ``windows`` points on a learning curve."""
    return max(1, math.ceil(rounds / windows))


def learning_curves(
    agents: pl.DataFrame,
    by: Sequence[str] = (LABEL,),
    metrics: Sequence[str] = ("bid_ratio", "report_scale"),
    window: int | None = None,
    confidence: float = CONFIDENCE,
) -> pl.DataFrame:
    """Per-window means of agent metrics over rounds, with CIs over runs (seeds).

    Each run contributes one value per window: the mean over its agents and the rounds of the
    window. Windows are ``[k * w, (k + 1) * w)`` rounds, w = ``window``, or by default
    :func:`default_window` of each group's own longest run, so that a group of 19 rounds gets
    as many points as one of 300 (runs compared at equal auctions with different K). A window's
    point sits at the middle of the rounds present in it (``round_mid``: a group's last window
    may be partial). With batched rounds (``auctions_per_round = K``) a round's K auctions (its
    K x n agent rows) fall in the same window, so curves are by round, the unit in which
    learners update; ``auction_mid`` places the same point on an axis of auctions, the first
    auction numbered 0: the rounds ``a..b`` hold auctions ``a K .. (b + 1) K - 1``. Replicate
    markets run in lockstep (``market-sim run --seeds``) are separate runs, pooled over seeds
    like any others.

    Args:
        agents: Agent rows with ``run_path``, ``round``, the ``by`` columns and inputs of the
            metrics (``bid_ratio`` is derived from ``bid`` and ``valuation``); K is read from
            ``auction`` (the largest index + 1 per run), 1 without it. Or their
            :func:`agent_round_sums` by ``(*by, "run_path", "round")``, derived metrics
            included (what ``plot`` loads: the same curves up to float64 summation order).
        by: Grouping columns (runs of one group are the seeds).
        metrics: Agent metrics to follow.
        window: Rounds per window (>= 1), the same for every group (default: about 20 windows
            over each group's longest run).
        confidence: Confidence level.

    Returns:
        Columns ``*by, window, round_start, round_mid, metric, n, mean, std, ci_low, ci_high,
        rounds_per_window, auctions_per_round, auction_mid``; ``auctions_per_round`` and
        ``auction_mid`` are null where the runs of a group's window differ in K.
    """
    if window is not None and window < 1:
        raise ValueError(f"window: rounds per window must be at least 1, got {window}")
    by = [col for col in by if col in agents.columns]
    if ROUND_SUMS_MARKER not in agents.columns:
        agents = agent_round_sums(with_agent_columns(agents), metrics, [*by, "run_path", "round"])
    metrics = [m for m in metrics if f"{m}_sum" in agents.columns]
    if not metrics or agents.height == 0:
        return summarize(pl.DataFrame(), [], [])
    if window is None:
        last_round = pl.col("round").max().over(by or [pl.lit(0)])
        lasts = agents.select(last_round.unique()).to_series().to_list()
        widths = {last: default_window(int(last) + 1) for last in lasts}
        width = last_round.replace_strict(widths, return_dtype=pl.Int64)
    else:
        width = pl.lit(window, dtype=pl.Int64)
    auctions = pl.col("auctions").max().over("run_path")
    agents = agents.with_columns(
        width.alias("rounds_per_window"), auctions.cast(pl.Int64).alias("_auctions")
    ).with_columns((pl.col("round") // pl.col("rounds_per_window")).alias("window"))
    per_run = agents.group_by(*by, "run_path", "window").agg(
        pl.when(pl.col(f"{m}_count").sum() > 0)
        .then(pl.col(f"{m}_sum").sum() / pl.col(f"{m}_count").sum())
        .alias(m)
        for m in metrics
    )
    extents = agents.group_by(*by, "window").agg(
        pl.col("round").min().alias("_first"),
        pl.col("round").max().alias("_last"),
        pl.col("rounds_per_window").first(),
        pl.when(pl.col("_auctions").min() == pl.col("_auctions").max())
        .then(pl.col("_auctions").min())
        .alias("_auctions_per_round"),
    )
    curves = summarize(per_run, [*by, "window"], metrics, confidence).join(
        extents, on=[*by, "window"], how="left", nulls_equal=True
    )
    span = pl.col("_first") + pl.col("_last")
    return (
        curves.with_columns(
            (pl.col("window") * pl.col("rounds_per_window")).alias("round_start"),
            (span / 2).alias("round_mid"),
            (((span + 1) * pl.col("_auctions_per_round") - 1) / 2).alias("auction_mid"),
        )
        .select(
            *by,
            "window",
            "round_start",
            "round_mid",
            "metric",
            "n",
            "mean",
            "std",
            "ci_low",
            "ci_high",
            "rounds_per_window",
            # A sweep over auctions_per_round has it among the ``by`` columns already.
            *(
                []
                if "auctions_per_round" in by
                else [pl.col("_auctions_per_round").alias("auctions_per_round")]
            ),
            "auction_mid",
        )
        .sort(*by, "metric", "window")
    )

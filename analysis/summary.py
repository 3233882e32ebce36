"""The summary table behind ``market-sim summary``: headline metrics per mechanism with 95% CIs.

One function, :func:`summary_table`, computes every number; the formats (:func:`format_summary`)
only render it, so ``--format json`` and ``--format csv`` carry the analysis' floats unrounded
(``table`` and ``markdown`` round to 4 significant digits for reading).

Per run, the metrics are the ``summary.json`` keys of :data:`SUMMARY_METRICS`; the last two
cover the same rows, the last 20% of rounds: ``bid_ratio_final`` and
``report_scale_deviation_final``, the mean of ``|log2 report_scale|`` (null, so left out, for a
mechanism that reads no report scale, rather than a 0 that would read as "truthful"; result
folders written before it existed lack it). Each run is one observation; groups are the
mechanism label, the grid keys that vary, any ``--by`` keys, and ``setting`` when runs of one
group differ in their resolved scenarios (:func:`analysis.metrics.split_settings`). Intervals
are 95% Student t intervals over the runs of a group, intersected with the metric's range
(:data:`analysis.metrics.METRIC_RANGES`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import polars as pl

from analysis.eva import EVA_FILE, eva_table, find_result_files, load_eva
from analysis.load import (
    Paths,
    Results,
    as_paths,
    load_results,
)
from analysis.metrics import (
    FAMILY,
    LABEL,
    NAME,
    label_order,
    labelled_runs,
    said_warnings,
    summarize,
)
from analysis.stats import CONFIDENCE

SUMMARY_METRICS: tuple[str, ...] = (
    "revenue_mean",
    "advertiser_value_mean",
    "user_value_mean",
    "social_welfare_mean",
    "utility_mean",
    "regret_mean",
    "regret_max",
    "ir_violation_rate",
    "bid_ratio_final",
    "report_scale_deviation_final",
)
"""Rows of the summary, in order."""
UNITS_NOTE = (
    "per run: *_mean of revenue and values per auction, of utility per agent-auction; "
    "regret_mean and regret_max (the run's largest) over the agent-auctions of the rounds "
    "regret is searched on (regret.every); ir_violation_rate over the agent-auctions whose "
    "truthful utility is known (those, and truthful reports); bid_ratio_final and "
    "report_scale_deviation_final (|log2 report_scale|) over the last 20% of rounds"
)
"""What each row's per-run number is a mean of, printed under the readable formats."""
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")
COLUMNS: tuple[str, ...] = ("n", "mean", "ci_low", "ci_high")


def summary_runs(results: Results, by: Sequence[str] = ()) -> tuple[pl.DataFrame, list[str]]:
    """One row per run with the summary metrics, and the grouping columns.

    Args:
        results: Loaded runs.
        by: Further grouping columns of the runs table (e.g. a grid key that did not vary).

    Raises:
        ValueError: A ``by`` column the runs table does not have.
    """
    runs, groups = labelled_runs(results)
    missing = [key for key in by if key not in runs.columns]
    if missing:
        grid = ", ".join(results.grid_keys) or "none"
        raise ValueError(
            f"--by: no column {', '.join(missing)} in the runs (grid keys: {grid}; any "
            "summary.json key also works)"
        )
    groups = [*groups, *[key for key in by if key not in groups]]
    return runs, groups


def summary_table(
    results: Results, by: Sequence[str] = (), confidence: float = CONFIDENCE
) -> pl.DataFrame:
    """The summary: per group and metric, ``n``, ``mean``, ``ci_low``, ``ci_high``.

    Returns:
        Columns ``mechanism_name, family, label, *groups, metric, n, mean, ci_low, ci_high``;
        mechanisms in figure order (family, kind, payment), metrics in
        :data:`SUMMARY_METRICS` order; metrics no run reports are left out.
    """
    runs, groups = summary_runs(results, by)
    table = summarize(runs, groups, SUMMARY_METRICS, confidence)
    names = runs.select(LABEL, NAME, FAMILY).unique(LABEL)
    rank = {label: index for index, label in enumerate(label_order(runs))}
    metric_rank = {metric: index for index, metric in enumerate(SUMMARY_METRICS)}
    rest = [col for col in groups if col != LABEL]
    return (
        table.join(names, on=LABEL, how="left")
        .with_columns(
            pl.col(LABEL).replace_strict(rank, return_dtype=pl.Int64).alias("_rank"),
            pl.col("metric").replace_strict(metric_rank, return_dtype=pl.Int64).alias("_metric"),
        )
        .sort("_rank", *rest, "_metric", nulls_last=True)
        .select(NAME, FAMILY, LABEL, *rest, "metric", *COLUMNS)
    )


def format_number(value: float | int | None) -> str:
    """4 significant digits; ``-`` for null."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def display_rows(table: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows for reading: mechanism, label, groups, metric, n, mean, 95% CI."""
    groups = [c for c in table.columns if c not in (NAME, FAMILY, LABEL, "metric", *COLUMNS)]
    header = ["mechanism", "label", *groups, "metric", "n", "mean", "95% CI"]
    rows = []
    for row in table.iter_rows(named=True):
        interval = (
            "-"
            if row["ci_low"] is None
            else f"[{format_number(row['ci_low'])}, {format_number(row['ci_high'])}]"
        )
        rows.append(
            [
                str(row[NAME]),
                str(row[LABEL]),
                *[format_number(row[g]) for g in groups],
                str(row["metric"]),
                str(row["n"]),
                format_number(row["mean"]),
                interval,
            ]
        )
    return header, rows


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces, a dashed rule under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header]]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *[line(r) for r in rows]])


def exact_text(table: pl.DataFrame, fmt: str) -> str:
    """``table`` as ``csv`` or ``json`` with every float exact (shortest round-trip form).

    CSV has no nested values: a list-valued setting (e.g. a sweep over
    ``mechanism.click_through_rates``) is written as its JSON text, ``[1.0, 0.5]``.
    """
    if fmt == "csv":
        nested = [name for name, dtype in table.schema.items() if dtype.is_nested()]
        table = table.with_columns(
            pl.Series(
                name,
                [None if value is None else json.dumps(value) for value in table[name].to_list()],
                pl.String,
            )
            for name in nested
        )
        buffer = io.StringIO()
        table.write_csv(buffer, float_precision=None)
        return buffer.getvalue().rstrip("\n")
    return json.dumps(table.to_dicts(), indent=2)


def format_summary(table: pl.DataFrame, fmt: str = "table") -> str:
    """Render :func:`summary_table` as ``table``, ``markdown``, ``csv`` or ``json``.

    ``csv`` and ``json`` keep every float exactly (shortest round-trip representation).

    Raises:
        ValueError: Unknown format.
    """
    if fmt in ("csv", "json"):
        return exact_text(table, fmt)
    if fmt in ("table", "markdown"):
        header, rows = display_rows(table)
        n_values = sorted(set(table["n"].to_list())) if table.height else []
        cut = (
            "cut at 0 (and 1) for quantities that cannot cross it (revenue, advertiser value, "
            "regret, rates, bid ratios; not utility, user value or welfare, which can be "
            "negative)"
        )
        interval = (
            "a single run per row, no interval"
            if n_values == [1]
            else f"95% t interval over runs, {cut}"
        )
        note = (
            f"n = runs (seeds) per row: {', '.join(map(str, n_values))}; {interval}\n{UNITS_NOTE}"
        )
        body = plain_table(header, rows) if fmt == "table" else markdown_table(header, rows)
        return f"{body}\n\n{note}"
    raise ValueError(f"--format: unknown value {fmt!r}; allowed: {', '.join(FORMATS)}")


def format_eva_table(table: pl.DataFrame, fmt: str = "table") -> str:
    """Render :func:`analysis.eva.eva_table` as ``table``, ``markdown``, ``csv`` or ``json``.

    ``csv`` and ``json`` keep every float exactly; ``table`` and ``markdown`` show each cell as
    mean [95% interval] to 4 significant digits.

    Raises:
        ValueError: Unknown format.
    """
    if fmt in ("csv", "json"):
        return exact_text(table, fmt)
    if fmt not in ("table", "markdown"):
        raise ValueError(f"--format: unknown value {fmt!r}; allowed: {', '.join(FORMATS)}")

    def cell(row: dict, prefix: str) -> str:
        mean = row[f"{prefix}_mean"]
        if mean is None:
            return "-"
        if row[f"{prefix}_ci_low"] is None:
            return format_number(mean)
        low, high = row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
        return f"{format_number(mean)} [{format_number(low)}, {format_number(high)}]"

    def seeds(row: dict) -> str:
        counts = [row[f"{prefix}_seeds"] for prefix in ("static", "eva", "difference")]
        shown = [str(count) if count is not None else "-" for count in counts]
        return shown[0] if len(set(shown)) == 1 else "/".join(shown)

    header = ["generation", "seeds", "static", "eva", "eva - static (paired)"]
    rows = [
        [
            str(row["generation"]),
            seeds(row),
            cell(row, "static"),
            cell(row, "eva"),
            cell(row, "difference"),
        ]
        for row in table.iter_rows(named=True)
    ]
    body = plain_table(header, rows) if fmt == "table" else markdown_table(header, rows)
    note = (
        "held-out reward per generation: mean over seeds [95% t interval, none for one seed]; "
        "eva - static: the interval of the per-seed differences (seeds: static/eva/paired "
        "where they differ)"
    )
    return f"{body}\n\n{note}"


def eva_report(paths: Paths, fmt: str = "table") -> str:
    """The rendered :func:`analysis.eva.eva_table` of every ``eva.parquet`` under ``paths``.

    Raises:
        FileNotFoundError: No ``eva.parquet`` under ``paths``.
        ValueError: An unknown format, or a (seed, method, generation) in two files.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown value {fmt!r}; allowed: {', '.join(FORMATS)}")
    files = find_result_files(paths, EVA_FILE)
    if not files:
        shown = ", ".join(str(p) for p in as_paths(paths))
        raise FileNotFoundError(f"{shown}: no {EVA_FILE} found")
    return format_eva_table(eva_table(load_eva(files)), fmt)


def summary_report(
    paths: Paths, by: Sequence[str] = (), fmt: str = "table"
) -> tuple[str, list[str]]:
    """Load the runs under ``paths`` and render their summary; also return pooling warnings.

    Returns:
        ``(text, warnings)``: the formatted :func:`summary_table`, and the message of each
        warning of :data:`analysis.metrics.SAID_WARNINGS` (runs kept apart or counted once).

    Raises:
        FileNotFoundError: No runs under ``paths``.
        ValueError: A ``by`` column that does not exist, or an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown value {fmt!r}; allowed: {', '.join(FORMATS)}")
    table, messages = said_warnings(lambda: summary_table(load_results(paths), by))
    return format_summary(table, fmt), messages

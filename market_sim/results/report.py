"""Plain-text tables for the terminal: a run's headline metrics and per-advertiser means."""

from __future__ import annotations

from typing import Any

import polars as pl

from market_sim.results import HEADLINE_SUMMARY_KEYS


def format_number(value: Any) -> str:
    """Numbers to 4 significant digits, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


TITLE_VARIANT_KEYS: tuple[str, ...] = ("aggregation", "payment", "settlement")
"""Summary keys shown beside the mechanism in a run's title, when its kind reads them."""


def format_run_summary(summary: dict[str, Any], agents: pl.DataFrame) -> str:
    """Headline metrics, then the mean of each advertiser's columns over rounds."""
    variant = ", ".join(
        str(summary[key])
        for key in TITLE_VARIANT_KEYS
        if key in summary and summary[key] != summary["mechanism"]  # not "mosaic (mosaic)"
    )
    variant = f" ({variant})" if variant else ""
    title = (
        f"{summary['scenario']}: {summary['mechanism']}{variant}, {summary['rounds']} rounds, "
        f"seed {summary['seed']}, "
        f"{format_number(summary.get('rounds_per_second'))} rounds/s on {summary['device']}"
    )
    headline = format_table(
        ["metric", "value"],
        [[key, format_number(summary.get(key))] for key in HEADLINE_SUMMARY_KEYS],
    )
    columns = ["valuation", "bid", "report_scale", "allocation", "value", "payment", "utility"]
    per_agent = agents.group_by("agent", maintain_order=True).agg(
        *[pl.col(c).mean() for c in columns], pl.col("mentioned").mean().alias("mention_rate")
    )
    agent_rows = [
        [row[0], *[format_number(float(v)) for v in row[1:]]] for row in per_agent.iter_rows()
    ]
    agent_table = format_table(["advertiser (mean)", *columns, "mention_rate"], agent_rows)
    return f"{title}\n\n{headline}\n\n{agent_table}"


def format_shares(shares: pl.DataFrame) -> str:
    """The lambda sweep's share table."""
    columns = [
        "aggregation",
        "lambda",
        "samples",
        "share_only_first",
        "share_only_second",
        "share_both",
        "share_neither",
    ]
    rows = [[format_number(v) for v in row] for row in shares.select(columns).iter_rows()]
    return format_table(columns, rows)

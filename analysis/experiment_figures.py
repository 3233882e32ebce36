"""Figures of the two LLM experiments: brand shares of a lambda sweep, MOSAIC convergence."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from analysis.figure_files import DPI
from analysis.figure_style import (
    CATEGORY_COLORS,
    FIGURE_SIZES,
    band,
    footer,
    matching,
    new_figure,
    save,
)
from analysis.metrics import (
    brand_shares,
)
from analysis.names import (
    OKABE_ITO,
)
from market_sim.results.records import CONVERGENCE, CONVERGENCE_DISTANCES


def brand_names(source: str | None) -> tuple[str, str]:
    """The two brands of a lambda sweep (``scenario.toml`` beside ``shares.parquet``)."""
    path = Path(source) / "scenario.toml" if source else None
    if path is not None and path.is_file():
        try:
            advertisers = tomllib.loads(path.read_text(encoding="utf-8")).get("advertisers", [])
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            advertisers = []  # unreadable: the categories keep their generic names
        if len(advertisers) == 2:
            return str(advertisers[0]["name"]), str(advertisers[1]["name"])
    return "first advertiser", "second advertiser"


def category_name(category: str, brands: tuple[str, str]) -> str:
    """``only_first`` -> ``only Alpha Airlines``; ``both`` and ``neither`` unchanged."""
    return {"only_first": f"only {brands[0]}", "only_second": f"only {brands[1]}"}.get(
        category, category
    )


def plot_brand_shares(shares: pl.DataFrame, out_dir: Path) -> list[Path]:
    """``brand_shares.png`` / ``.svg`` / ``.pdf`` (:func:`brand_share_figure`)."""
    return save(brand_share_figure(shares), out_dir, "brand_shares")


def brand_share_figure(shares: pl.DataFrame) -> Figure | None:
    """Lambda-sweep brand shares, one panel per aggregation, Wilson 95% bands.

    Categories are named by the brands when the sweep's ``scenario.toml`` is beside its
    ``shares.parquet`` (:func:`brand_names`).
    """
    long = brand_shares(shares) if shares.height else pl.DataFrame()
    if long.height == 0:
        return None
    sources = long["source"].unique().to_list() if "source" in long.columns else [None]
    brands = brand_names(sources[0] if len(sources) == 1 else None)
    aggregations = sorted(long["aggregation"].unique().to_list())
    fig = new_figure("brand_shares")
    axes = fig.subplots(1, len(aggregations), squeeze=False, sharey=True)[0]
    for ax, aggregation in zip(axes, aggregations, strict=True):
        mine = long.filter(pl.col("aggregation") == aggregation)
        for category in [c for c in CATEGORY_COLORS if c in mine["category"].to_list()]:
            rows = mine.filter(pl.col("category") == category)
            rows = rows.group_by("lambda").agg(pl.col("share", "ci_low", "ci_high").mean())
            rows = rows.sort("lambda").rename({"share": "mean"})
            band(
                ax, rows, "lambda", CATEGORY_COLORS[category], category_name(category, brands)
            ).set_marker("o")
        ax.set_title(f"{aggregation.replace('_', '-')} aggregation")
        ax.set_xlabel(f"λ, {brands[0]}'s share of the bids")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of replies")
    axes[0].legend(title="brands mentioned", fontsize="small")
    samples = sorted(set(long["samples"].to_list())) if "samples" in long.columns else []
    shown = ", ".join(map(str, samples)) or "?"
    footer(fig, f"n = {shown} replies per λ; bands: Wilson 95% interval")
    return fig


def plot_convergence(convergence: pl.DataFrame, out_dir: Path) -> list[Path]:
    r"""MOSAIC convergence: distance to pi* against the number of candidates M (log scale).

    Reads the columns :data:`market_sim.results.records.CONVERGENCE` declares: ``candidates``
    (M), the distances :data:`~market_sim.results.records.CONVERGENCE_DISTANCES` present, and
    optionally ``proposal`` and ``tau`` (one line per combination: runs at different tau are
    different experiments, never pooled). KL and TV share the left panel; the reward gap
    :math:`E_{\pi^*}[R] - E_{P_M}[R]` (in allocation units, and of either sign) gets its own.
    Each point is the mean over the rows at that M, one per (query, seed): queries are the
    sampled unit of one run, so the band is a t interval over those rows (the footer gives n).
    Without M or a distance there is nothing to draw.
    """
    x = CONVERGENCE["candidates"].name
    present = [c for c in CONVERGENCE_DISTANCES if c in convergence.columns]
    distances = [c for c in present if c != "reward_gap"]
    gaps = [c for c in present if c == "reward_gap"]
    if x not in convergence.columns or not distances + gaps or convergence.height == 0:
        return []
    from analysis.metrics import summarize

    by = [c for c in ("tau", "proposal") if c in convergence.columns]
    panels = [
        (metrics, label)
        for metrics, label in (
            (distances, "distance to π* (nats for KL, probability for TV)"),
            (gaps, "reward gap E_π*[R] − E_P_M[R] (allocation)"),
        )
        if metrics
    ]
    table = summarize(convergence, [*by, x], [*distances, *gaps])
    taus = convergence["tau"].unique().to_list() if "tau" in by else []
    width, height = FIGURE_SIZES["mosaic_convergence"]
    fig = Figure(figsize=(width * len(panels), height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metrics, y_label) in zip(axes, panels, strict=True):
        colors = itertools.cycle([*OKABE_ITO.values()])
        mine = table.filter(pl.col("metric").is_in(metrics))
        for row in mine.select(*by, "metric").unique().sort(*by, "metric").iter_rows(named=True):
            line = mine.filter(*matching(row)).sort(x)
            parts = [f"τ = {row['tau']:g}"] if len(taus) > 1 else []
            parts += [str(row[k]) for k in ("proposal", "metric") if k in row]
            band(ax, line, x, next(colors), " ".join(parts)).set_marker("o")
        if metrics == gaps:
            ax.axhline(0.0, color="#666666", linewidth=0.8, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("candidates M (log scale)")
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    tau_note = f"τ = {taus[0]:g}; " if len(taus) == 1 else ""
    counts = sorted(set(table["n"].to_list()))
    footer(
        fig,
        f"MOSAIC convergence; {tau_note}n = {', '.join(map(str, counts))} (query, seed) rows "
        "per point; mean, bands: 95% t interval over those rows",
    )
    return save(fig, out_dir, "mosaic_convergence")

"""Figures of ``market-sim eva`` (held-out reward by generation) and ``audit`` (regret found)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from analysis.bar_figures import grouped_bars
from analysis.eva import (
    audit_comparison,
    audit_comparison_summary,
    eva_paired_difference,
    eva_summary,
)
from analysis.figure_style import (
    CURRENCY,
    band,
    footer,
    method_colors,
    new_figure,
    save,
    seeds_note,
)
from analysis.metrics import (
    LABEL,
)
from analysis.names import (
    OKABE_ITO,
)


def plot_eva(frame: pl.DataFrame, out_dir: str | Path) -> list[Path]:
    """Held-out reward against generation, one line and 95% t band per method.

    A second panel shows the EVA minus static difference paired by seed
    (:func:`analysis.eva.eva_paired_difference`) when both methods are present.

    Args:
        frame: ``eva.parquet`` rows (:func:`analysis.eva.load_eva`).
        out_dir: Figure folder (created).

    Returns:
        ``eva_heldout.png``, ``.svg`` and ``.pdf``; [] when there is nothing to draw.
    """
    summary = eva_summary(frame) if frame.height else pl.DataFrame()
    if summary.height == 0:
        return []
    difference = eva_paired_difference(frame)
    panels = 2 if difference.height else 1
    fig = new_figure("eva_heldout")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    methods = summary["method"].unique().sort().to_list()
    colors = method_colors(methods)
    for method in methods:
        mine = summary.filter(pl.col("method") == method).sort("generation")
        seeds = mine["seeds"].max()
        label = f"{method} ({seeds} seed{'s' if seeds != 1 else ''})"
        band(
            ax, mine.rename({"heldout_reward_mean": "mean"}), "generation", colors[method], label
        ).set_marker("o")
    ax.set_xlabel("generation (solver updates; 0 = base model)")
    ax.set_ylabel("held-out reward (mean over queries x replies)")
    ax.set_title("Held-out reward by generation")
    ax.grid(alpha=0.3)
    ax.legend(title="method", fontsize="small")
    if panels == 2:
        ax = axes[1]
        band(
            ax,
            difference.rename({"difference_mean": "mean"}),
            "generation",
            colors.get("eva", OKABE_ITO["black"]),
            "eva - static",
        ).set_marker("o")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xlabel("generation (solver updates; 0 = base model)")
        ax.set_ylabel("held-out reward difference")
        ax.set_title("EVA minus static, paired by seed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    seeds = summary["seeds"].max()
    footer(fig, f"n = {seeds} seeds; mean over seeds; bands: 95% t interval over seeds")
    return save(fig, Path(out_dir), "eva_heldout")


AUDIT_PANELS: tuple[tuple[str, str, str], ...] = (
    ("regret_max_found", "Highest regret found", "max over queries"),
    ("top_mean", "Mean of the top {top} distinct queries", "mean over top queries"),
    ("all_mean", "Mean over all evaluated queries", "mean over queries"),
)
"""Panels of :func:`plot_audit`: (per-seed metric, title, y label)."""


def plot_audit(frame: pl.DataFrame, out_dir: str | Path, top: int = 10) -> list[Path]:
    """Regret found by the audit, grouped by mechanism, one bar per method (eva, uniform).

    Bars are means over seeds of the per-seed values of :func:`analysis.eva.audit_comparison`
    (highest regret found, mean of the ``top`` highest distinct queries, mean over all
    evaluated queries); error bars are 95% t intervals over seeds.

    Args:
        frame: ``audit.parquet`` rows (:func:`analysis.eva.load_audit`).
        out_dir: Figure folder (created).
        top: Queries averaged by the ``top_mean`` panel.

    Returns:
        ``audit_regret.png``, ``.svg`` and ``.pdf``; [] when there is nothing to draw.
    """
    per_seed = audit_comparison(frame, top=top) if frame.height else pl.DataFrame()
    if per_seed.height == 0:
        return []
    table = audit_comparison_summary(per_seed).rename({"method": LABEL})
    mechanisms = sorted(table["mechanism"].unique().to_list())
    colors = method_colors(table[LABEL].to_list())
    fig = new_figure("audit_regret")
    axes = fig.subplots(1, len(AUDIT_PANELS), squeeze=False)[0]
    for ax, (metric, title, ylabel) in zip(axes, AUDIT_PANELS, strict=True):
        grouped_bars(ax, table, metric, ["mechanism"], colors, f"regret, {ylabel} ({CURRENCY})")
        ax.set_xticks(np.arange(len(mechanisms)))
        ax.set_xticklabels(mechanisms, rotation=20, ha="right", fontsize="small")
        ax.set_title(title.format(top=top))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        title="audit",
        loc="outside lower center",
        ncols=min(4, len(names)),
        fontsize="small",
    )
    footer(
        fig,
        "max regret over advertisers per query; "
        + seeds_note(table["seeds"].to_list() if "seeds" in table.columns else []),
    )
    return save(fig, Path(out_dir), "audit_regret")

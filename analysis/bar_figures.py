"""Bar figures by mechanism (revenue, welfare, regret) and frontiers over a numeric parameter."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.figure_style import (
    CURRENCY,
    ERROR_BAR_HALO,
    MISSING_LABEL,
    SETTING_HATCHES,
    ZERO_LABEL,
    allocation_unit_note,
    error_bars,
    exchange_rate_note,
    footer,
    matching,
    new_figure,
    save,
    seeds_note,
    setting_name,
    shown_value,
)
from analysis.load import Results
from analysis.metrics import (
    FAMILY,
    LABEL,
    METRIC_RANGES,
    NAME,
    frontier,
    label_order,
    labelled_runs,
    mechanism_summary,
)
from analysis.names import (
    mechanism_color,
)


def family_axis(ax: Axes, families: Sequence[str]) -> None:
    """Name each family of consecutive mechanisms above the axes; dashed lines between them."""
    spans: list[tuple[str, int, int]] = []
    for index, name in enumerate(families):
        if spans and spans[-1][0] == name:
            spans[-1] = (name, spans[-1][1], index)
        else:
            spans.append((name, index, index))
    top = ax.secondary_xaxis("top")
    top.set_xticks([(first + last) / 2 for _, first, last in spans])
    top.set_xticklabels([name for name, _, _ in spans], fontsize="small", style="italic")
    top.tick_params(length=0)
    for _, first, _ in spans[1:]:
        ax.axvline(first - 0.5, color="grey", linewidth=0.8, linestyle="--")


def mechanism_bars(
    ax: Axes,
    table: pl.DataFrame,
    metric: str,
    mechanisms: Sequence[tuple[str, str, str]],
    settings: pl.DataFrame,
    per_bar_n: bool,
) -> bool:
    """Bars of ``metric`` with CIs, one group per mechanism, one hatched bar per setting.

    Args:
        ax: Target axes.
        table: :func:`analysis.metrics.mechanism_summary` rows with ``mechanism_name``.
        metric: The metric to draw.
        mechanisms: ``(label, name, family)`` in x order.
        settings: The parameter settings (one row each; zero columns for none).
        per_bar_n: Write ``n=`` on each bar (when the counts differ).

    Returns:
        Whether any value was drawn (else the panel should be dropped).
    """
    rows = table.filter(pl.col("metric") == metric)
    if rows.height == 0 or rows["mean"].is_null().all():
        return False
    params = settings.columns
    count = max(1, settings.height)
    width = 0.8 / count
    for position, (label, name, _) in enumerate(mechanisms):
        for offset, setting in enumerate(settings.iter_rows(named=True) if params else [{}]):
            mine = rows.filter(pl.col(LABEL) == label, *matching(setting))
            x = position + (offset - (count - 1) / 2) * width
            if mine.height == 0 or mine["mean"][0] is None:
                ax.text(x, 0, MISSING_LABEL, ha="center", va="bottom", fontsize="x-small")
                continue
            mean = float(mine["mean"][0])
            color = mechanism_color(name)
            ax.bar(
                [x],
                [mean],
                width,
                color=color,
                edgecolor="black",
                linewidth=0.5,
                hatch=SETTING_HATCHES[offset % len(SETTING_HATCHES)],
                label=name,
            )
            if mine["ci_low"][0] is not None:
                bars = ax.errorbar(
                    [x], [mean], yerr=error_bars(mine), fmt="none", ecolor="black", capsize=3
                )
                # a white halo keeps the interval visible inside a dark bar (VCG is black)
                for line in (*bars.lines[1], *bars.lines[2]):
                    line.set_path_effects(ERROR_BAR_HALO)
            if mean == 0.0:
                ax.plot([x - width / 2, x + width / 2], [0, 0], color=color, linewidth=3)
                ax.annotate(
                    ZERO_LABEL,
                    (x, 0.0),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize="small",
                )
            if per_bar_n:
                ax.text(x, 0, f"n={mine['n'][0]}", ha="center", va="top", fontsize="xx-small")
    ax.set_xticks(np.arange(len(mechanisms)))
    ax.set_xticklabels(
        [name for _, name, _ in mechanisms],
        rotation=30,
        ha="right",
        rotation_mode="anchor",
        fontsize="small",
    )
    ax.set_xlim(-0.6, len(mechanisms) - 0.4)
    family_axis(ax, [fam for _, _, fam in mechanisms])
    lower = METRIC_RANGES.get(metric, (None, None))[0]
    if lower is not None:
        ax.set_ylim(bottom=lower)
    if METRIC_RANGES.get(metric) == (0.0, 1.0):
        high = rows["ci_high"].fill_null(rows["mean"]).max()
        ax.set_ylim(0.0, max(0.05, min(1.0, 1.15 * float(high or 0.0))))
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    return True


def bar_figure(
    results: Results, name: str, panels: Sequence[tuple[str, str, str]]
) -> Figure | None:
    """A figure of bar panels ``(metric, title, y label)``; panels without values are dropped.

    Returns:
        The figure, or None when no panel has a value.
    """
    runs, by = labelled_runs(results)
    params = [col for col in by if col != LABEL]
    table = mechanism_summary(results, [metric for metric, _, _ in panels])
    order = label_order(runs)
    names = runs.select(LABEL, NAME, FAMILY).unique(LABEL)
    lookup = {row[LABEL]: (row[NAME], row[FAMILY]) for row in names.iter_rows(named=True)}
    mechanisms = [(label, *lookup[label]) for label in order]
    settings = runs.select(params).unique().sort(params) if params else pl.DataFrame()
    present = [
        panel
        for panel in panels
        if table.filter(pl.col("metric") == panel[0], pl.col("mean").is_not_null()).height
    ]
    if not present:
        return None
    fig = new_figure(name)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    counts = table.filter(pl.col("metric").is_in([p[0] for p in present]))["n"].to_list()
    per_bar_n = len(set(counts)) > 1
    for ax, (metric, title, ylabel) in zip(axes, present, strict=True):
        mechanism_bars(ax, table, metric, mechanisms, settings, per_bar_n)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    if params:
        handles = [
            Patch(
                facecolor="white",
                edgecolor="black",
                hatch=SETTING_HATCHES[i % len(SETTING_HATCHES)],
                label=setting_name(row, params),
            )
            for i, row in enumerate(settings.iter_rows(named=True))
        ]
        fig.legend(handles=handles, title="setting", loc="outside right upper", fontsize="small")
    footer(
        fig,
        seeds_note(counts, written_on_each=per_bar_n),
        exchange_rate_note(results, runs),
        allocation_unit_note(runs),
    )
    return fig


def grouped_bars(
    ax: Axes,
    table: pl.DataFrame,
    metric: str,
    params: Sequence[str],
    colors: dict[str, str],
    ylabel: str,
) -> bool:
    """Bars of ``metric`` with CIs: groups are ``params`` values, one bar per ``label``.

    Used by the audit figure (mechanisms as groups, search methods as bars).

    Returns:
        Whether anything was drawn.
    """
    rows = table.filter(pl.col("metric") == metric)
    if rows.height == 0:
        return False
    settings = rows.select(params).unique().sort(params) if params else pl.DataFrame({"_": [0]})
    labels = sorted(rows[LABEL].unique().to_list())
    width = 0.8 / len(labels)
    for offset, label in enumerate(labels):
        mine = rows.filter(pl.col(LABEL) == label)
        if params:
            mine = settings.join(mine, on=params, how="left", nulls_equal=True)
        x = np.arange(settings.height) + (offset - (len(labels) - 1) / 2) * width
        ax.bar(
            x,
            mine["mean"].fill_null(np.nan).to_numpy(),
            width,
            yerr=error_bars(mine.with_columns(pl.col("mean").fill_null(np.nan))),
            capsize=3,
            color=colors[label],
            edgecolor="black",
            linewidth=0.5,
            label=label,
        )
    ax.set_xticks(np.arange(settings.height))
    ax.set_xticklabels([setting_name(row, params) for row in settings.iter_rows(named=True)])
    ax.set_ylabel(ylabel)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    return True


def revenue_figure(results: Results) -> Figure | None:
    """Revenue per auction by mechanism."""
    panel = ("revenue_mean", "Revenue by mechanism", f"revenue per auction ({CURRENCY})")
    return bar_figure(results, "revenue_by_mechanism", [panel])


def welfare_figure(results: Results) -> Figure | None:
    """Advertiser, user and social welfare per auction by mechanism.

    The user's value is its allocation (steered tokens, a reply's steps, minus a divergence:
    the mechanism's unit) at valuation 1, so the labels say so: social welfare adds it to the
    advertisers' value in bid currency at that rate.
    """
    panels = [
        ("advertiser_value_mean", "Advertiser welfare", f"value per auction ({CURRENCY})"),
        ("user_value_mean", "User welfare", "allocation per auction (user valuation 1)"),
        ("social_welfare_mean", "Social welfare", f"advertiser + user value ({CURRENCY})"),
    ]
    return bar_figure(results, "welfare_by_mechanism", panels)


def regret_figure(results: Results) -> Figure | None:
    """Mean and maximum regret, and the IR violation rate, by mechanism (where measured)."""
    panels = [
        ("regret_mean", "Mean regret", f"mean over searched agent-auctions ({CURRENCY})"),
        ("regret_max", "Max regret", f"largest in the run ({CURRENCY})"),
        (
            "ir_violation_rate",
            "IR violations",
            "share with truthful utility < 0 (where known)",
        ),
    ]
    runs = results.runs
    if "regret_mean" not in runs.columns or runs["regret_mean"].null_count() == runs.height:
        return None
    return bar_figure(results, "regret_by_mechanism", panels)


def plot_revenue(results: Results, out_dir: Path) -> list[Path]:
    """``revenue_by_mechanism.png`` / ``.svg`` / ``.pdf`` (:func:`revenue_figure`)."""
    return save(revenue_figure(results), out_dir, "revenue_by_mechanism")


def plot_welfare(results: Results, out_dir: Path) -> list[Path]:
    """``welfare_by_mechanism.png`` / ``.svg`` / ``.pdf`` (:func:`welfare_figure`)."""
    return save(welfare_figure(results), out_dir, "welfare_by_mechanism")


def plot_regret(results: Results, out_dir: Path) -> list[Path]:
    """``regret_by_mechanism.png`` / ``.svg`` / ``.pdf`` (:func:`regret_figure`), if measured."""
    return save(regret_figure(results), out_dir, "regret_by_mechanism")


LABEL_OFFSETS: tuple[tuple[int, int], ...] = ((4, 4), (4, -11), (-14, 4), (-14, -11))
"""Offsets (points) of the frontier's parameter labels, one per mechanism in turn: two
mechanisms at one point no longer print their labels on top of each other."""


def plot_frontier(results: Results, parameter: str, out_dir: Path) -> list[Path]:
    """Revenue against social welfare as ``parameter`` moves, one line per mechanism."""
    points = frontier(results, parameter)
    if points.height < 2 or points.schema[parameter] == pl.String:
        return []
    runs, by = labelled_runs(results)
    names = dict(runs.select(LABEL, NAME).unique(LABEL).iter_rows())
    others = [col for col in by if col not in (LABEL, parameter)]
    name = f"frontier_{parameter.replace('.', '_')}"
    fig = new_figure(name)
    ax = fig.subplots()
    markers = itertools.cycle("osD^v<>")
    groups = points.select(LABEL, *others).unique()
    rank = {label: index for index, label in enumerate(label_order(runs))}
    ordered = sorted(groups.iter_rows(named=True), key=lambda g: (rank[g[LABEL]], str(g)))
    for index, group in enumerate(ordered):
        mine = points.filter(*matching(group)).sort(parameter)
        extra = setting_name(group, others) if others else ""
        ax.errorbar(
            mine["x_mean"].to_numpy(),
            mine["y_mean"].to_numpy(),
            xerr=error_bars(
                mine.rename({"x_mean": "mean", "x_low": "ci_low", "x_high": "ci_high"})
            ),
            yerr=error_bars(
                mine.rename({"y_mean": "mean", "y_low": "ci_low", "y_high": "ci_high"})
            ),
            color=mechanism_color(names[group[LABEL]]),
            marker=next(markers),
            capsize=2,
            label=f"{names[group[LABEL]]} {extra}".strip(),
        )
        for row in mine.iter_rows(named=True):  # each group's labels on their own side
            ax.annotate(
                shown_value(row[parameter]),
                (row["x_mean"], row["y_mean"]),
                textcoords="offset points",
                xytext=LABEL_OFFSETS[index % len(LABEL_OFFSETS)],
                color=mechanism_color(names[group[LABEL]]),
                fontsize="x-small",
                path_effects=ERROR_BAR_HALO,
            )
    ax.set_xlabel(f"social welfare per auction ({CURRENCY})")
    ax.set_ylabel(f"revenue per auction ({CURRENCY})")
    ax.set_title(f"Revenue vs welfare as {parameter.split('.')[-1]} moves (point labels)")
    ax.grid(alpha=0.3)
    ax.legend(title="mechanism", fontsize="small")
    footer(
        fig,
        seeds_note(points["n"].to_list(), "point"),
        exchange_rate_note(results, runs),
        allocation_unit_note(runs),
    )
    return save(fig, out_dir, name)

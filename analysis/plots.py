"""Paper-quality figures of sweeps, runs and lambda sweeps.

Each is written as PNG, SVG and PDF, with the same bytes on every rerun
(:mod:`analysis.figure_files`). Figures are drawn on :class:`matplotlib.figure.Figure` objects
directly (no pyplot state, so they render headless and are freed when dropped), at a fixed size
(:data:`FIGURE_SIZES`, inches, at :data:`DPI`) so that every PNG has a known pixel size.

Every figure of runs stands alone:

* mechanisms sit on the x axis under readable names ("token auction, second price", "uniform
  price, 2 slots", "GSP"), grouped by family (LLM-native, then ad slots; the family is named
  above the axes), in a fixed order (:mod:`analysis.names`);
* each mechanism has one colour in every figure and every sweep (:func:`mechanism_color`
  depends on the name only);
* the number of runs (seeds) behind each bar is stated under the figure, and written on the bar
  when it differs between bars; "mean over n seeds" is said only when n > 1;
* error bars are 95% t intervals over seeds, cut at the bounds of quantities that cannot be
  negative or exceed 1 (:data:`analysis.metrics.METRIC_RANGES`); a bar of exactly zero is drawn
  as a line and labelled ``0``; a value not measured is labelled ``n/a``; a panel with no value
  is dropped;
* a figure comparing ad slots with LLM-native mechanisms states the exchange rate between them
  (``mechanism.slot_value``: the value of an ad seen with certainty, in units of one steered
  token's value);
* no figure title sits above the axes' titles: explanations go below the axes.

:func:`plot_all` draws whatever the data supports and skips the rest.
"""

from __future__ import annotations

import itertools
import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.eva import (
    AUDIT_FILE,
    EVA_FILE,
    audit_comparison,
    audit_comparison_summary,
    eva_paired_difference,
    eva_summary,
    find_result_files,
    load_audit,
    load_eva,
)
from analysis.figure_files import DPI, write_figure
from analysis.load import Paths, Results, load_agents, load_convergence, load_results, load_shares
from analysis.metrics import (
    FAMILY,
    LABEL,
    METRIC_RANGES,
    NAME,
    SETTING,
    agent_round_sums,
    brand_shares,
    frontier,
    label_order,
    labelled_runs,
    learning_curves,
    mechanism_summary,
    with_agent_columns,
)
from analysis.names import (
    AD_SLOTS,
    EXTRA_COLORS,
    LLM_NATIVE,
    OKABE_ITO,
    OTHER_FAMILY,
    family,
    mechanism_color,
)
from market_sim.results.records import CONVERGENCE, CONVERGENCE_DISTANCES

CATEGORY_COLORS: dict[str, str] = {
    "only_first": OKABE_ITO["blue"],
    "only_second": OKABE_ITO["orange"],
    "both": OKABE_ITO["bluish_green"],
    "neither": "#999999",
}
METHOD_COLORS: dict[str, str] = {
    "eva": OKABE_ITO["vermillion"],
    "static": OKABE_ITO["blue"],
    "uniform": OKABE_ITO["blue"],
}
"""Fixed colour of each EVA method and its baselines (others: :data:`EXTRA_COLORS`)."""
SETTING_HATCHES: tuple[str, ...] = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")
"""Hatches telling apart parameter settings of one mechanism (its colour stays the same)."""

FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "revenue_by_mechanism": (7.2, 4.8),
    "welfare_by_mechanism": (14.0, 4.8),
    "frontier": (6.4, 4.8),
    "learning_curves": (11.0, 6.4),
    "regret_by_mechanism": (14.0, 4.8),
    "brand_shares": (11.0, 4.2),
    "mosaic_convergence": (6.4, 4.2),
    "eva_heldout": (11.0, 4.2),
    "audit_regret": (12.0, 4.6),
}
"""Figure name (frontier figures: ``frontier_<key>``) -> (width, height) in inches."""
CURRENCY = "bid currency"
ZERO_LABEL = "0"
MISSING_LABEL = "n/a"
LEARNING_COLUMNS = 3
LEARNING_FIELDS: tuple[str, ...] = ("round", "auction", "bid", "valuation", "report_scale")
"""The ``agents.parquet`` columns the learning curves read (:func:`learning_figure`)."""


class NoResultsError(FileNotFoundError):
    """No result files under the given paths."""


# --------------------------------------------------------------------------- colours and files


def mechanism_colors(names: Sequence[str]) -> dict[str, str]:
    """The fixed colour of each readable mechanism name (:func:`analysis.names.mechanism_color`)."""
    return {name: mechanism_color(name) for name in dict.fromkeys(names)}


def new_figure(name: str) -> Figure:
    """A figure of the registered size for ``name`` (``frontier_*`` share one size)."""
    key = "frontier" if name.startswith("frontier_") else name
    return Figure(figsize=FIGURE_SIZES[key], dpi=DPI, layout="constrained")


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name`` in every format (:func:`analysis.figure_files.write_figure`), release it."""
    paths = write_figure(fig, out_dir, name)
    fig.clear()
    return paths


def error_bars(frame: pl.DataFrame) -> np.ndarray:
    """``[[mean - low], [high - mean]]`` with zero where the interval is undefined."""
    mean = frame["mean"].to_numpy()
    low = frame["ci_low"].fill_null(np.nan).to_numpy()
    high = frame["ci_high"].fill_null(np.nan).to_numpy()
    return np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)


def seeds_note(counts: Sequence[int], what: str = "bar", written_on_each: bool = False) -> str:
    """``n = 3 seeds per bar; mean over seeds, error bars: ...`` (no "mean over" when n = 1).

    Args:
        counts: The n of every bar, point or curve point drawn (a range when they differ).
        what: What one n belongs to.
        written_on_each: The figure writes each ``n=`` beside its ``what`` (then said).
    """
    values = sorted({int(c) for c in counts})
    if not values:
        return ""
    on_each = f" (on each {what})" if written_on_each else ""
    shown = str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}{on_each}"
    if values[-1] == 1:
        return f"n = 1 seed per {what}: a single run, no interval"
    plural = "seed" if shown == "1" else "seeds"
    return (
        f"n = {shown} {plural} per {what}; mean over seeds, error bars: 95% t interval, "
        "cut at 0 (and 1) for quantities that cannot cross it"
    )


def exchange_rate_note(results: Results, runs: pl.DataFrame) -> str:
    """The ad-slot exchange rate, when a figure shows ad slots beside LLM-native mechanisms."""
    families = set(runs[FAMILY].to_list())
    if not {AD_SLOTS, LLM_NATIVE} <= families:  # the rate relates ad slots to steered tokens
        return ""
    paths = runs.filter(pl.col(FAMILY) == AD_SLOTS)["run_path"].to_list()
    values = sorted(
        {
            results.scenarios.get(path, {}).get("mechanism.slot_value")
            for path in paths
            if results.scenarios.get(path, {}).get("mechanism.slot_value") is not None
        }
    )
    if not values:
        return ""
    shown = ", ".join(f"{v:g}" for v in values)
    return (
        f"exchange rate: an ad seen with certainty is worth slot_value = {shown} steered tokens "
        "(value per token = valuation)"
    )


PER_TOKEN_KINDS = frozenset({"token_auction"})
"""LLM-native kinds whose allocation sums a share over the reply's tokens."""
PER_REPLY_KINDS = frozenset({"mosaic", "affine_maximizer"})
"""LLM-native kinds whose allocation is the reply's expected relevance (at most 1)."""


ERROR_BAR_HALO = [patheffects.Stroke(linewidth=3, foreground="white"), patheffects.Normal()]
"""Drawn under every error bar and cap."""


def allocation_unit_note(runs: pl.DataFrame) -> str:
    """The allocation units, when a figure mixes kinds whose units differ.

    That is per-token and per-reply LLM-native mechanisms, or a plugin's kind (family
    ``other``, units this module cannot know) beside another kind. A token auction's
    allocation sums ``1 - TV`` over the reply's tokens (up to ``max_new_tokens + 1``), MOSAIC's
    and the affine maximizer's is a reply's expected relevance: values and payments of the two
    kinds differ by about the reply length in scale.
    """
    kinds = set(runs["mechanism"].to_list()) if "mechanism" in runs.columns else set()
    plugins = sorted(kind for kind in kinds if family(kind) == OTHER_FAMILY)
    plugin_note = (
        f"{', '.join(plugins)}: a plugin's allocation and user value are in its own units"
        if plugins and len(kinds) > len(plugins)
        else ""
    )
    if not (kinds & PER_TOKEN_KINDS and kinds & PER_REPLY_KINDS):
        return plugin_note
    return "; ".join(
        part
        for part in (
            "allocation units differ: token auction = sum over the reply's tokens of 1 - TV "
            "(up to max_new_tokens + 1); MOSAIC, affine maximizer = the reply's expected "
            "relevance (at most 1)",
            plugin_note,
        )
        if part
    )


FOOTER_CHARACTER_WIDTH = 0.6
"""Mean character width of the footer's font, in multiples of its size (DejaVu Sans: about
0.55; a little more so that a wrapped line never reaches the figure's edge)."""


def footer(fig: Figure, *lines: str) -> None:
    """Explanations under the axes (never a title above them), wrapped to the figure's width.

    A line longer than the figure was cut at both edges (``supxlabel`` is centred).
    """
    size = FontProperties(size="small").get_size_in_points()
    width = int(fig.get_figwidth() * 72 / (FOOTER_CHARACTER_WIDTH * size))
    wrapped = [textwrap.fill(line, width) for line in lines if line]
    if wrapped:
        fig.supxlabel("\n".join(wrapped), fontsize="small", color="#333333")


# --------------------------------------------------------------------------- bar charts


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


def matching(values: Mapping[str, Any]) -> list[pl.Expr]:
    """Filters keeping the rows whose columns equal ``values``, a None matching a null.

    (``pl.col(k) == None`` is null on every row, so it would keep none: runs of a sweep
    whose grid key does not apply to their mechanism kind have a null there.)
    """
    return [pl.col(key).eq_missing(value) for key, value in values.items()]


def setting_name(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    """Label of a parameter setting, e.g. ``platform_weight=0.5``.

    A null reads ``n/a``: a grid key the run's mechanism does not read.
    """
    return ", ".join(f"{key.split('.')[-1]}={shown_value(row[key])}" for key in keys) or "all runs"


def shown_value(value: Any) -> str:
    """A parameter value as figures print it: ``n/a`` for a null (a key not read)."""
    return MISSING_LABEL if value is None else str(value)


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


def save_figure(fig: Figure | None, out_dir: Path, name: str) -> list[Path]:
    """:func:`save` a figure; [] for None (nothing to draw)."""
    return [] if fig is None else save(fig, out_dir, name)


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
    return save_figure(revenue_figure(results), out_dir, "revenue_by_mechanism")


def plot_welfare(results: Results, out_dir: Path) -> list[Path]:
    """``welfare_by_mechanism.png`` / ``.svg`` / ``.pdf`` (:func:`welfare_figure`)."""
    return save_figure(welfare_figure(results), out_dir, "welfare_by_mechanism")


def plot_regret(results: Results, out_dir: Path) -> list[Path]:
    """``regret_by_mechanism.png`` / ``.svg`` / ``.pdf`` (:func:`regret_figure`), if measured."""
    return save_figure(regret_figure(results), out_dir, "regret_by_mechanism")


# --------------------------------------------------------------------------- lines


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


LABEL_OFFSETS: tuple[tuple[int, int], ...] = ((4, 4), (4, -11), (-14, 4), (-14, -11))
"""Offsets (points) of the frontier's parameter labels, one per mechanism in turn: two
mechanisms at one point no longer print their labels on top of each other."""


def band(ax: Axes, frame: pl.DataFrame, x: str, color: str, label: str) -> Line2D:
    """A mean line with a shaded CI band (where defined).

    A curve of one point (a one-window run) is a marker with an error bar instead: a line and a
    band of one x draw nothing.

    Returns:
        The mean line (its style and label can still be changed).
    """
    xs = frame[x].to_numpy()
    means = frame["mean"].to_numpy()
    single = len(xs) == 1
    marker = "o" if single else None
    (line,) = ax.plot(xs, means, color=color, label=label, linewidth=1.5, marker=marker)
    low = frame["ci_low"].fill_null(np.nan).to_numpy()
    high = frame["ci_high"].fill_null(np.nan).to_numpy()
    if single and np.isfinite(low).all():
        ax.errorbar(xs, means, yerr=[means - low, high - means], fmt="none", ecolor=color)
    elif np.isfinite(low).any():
        ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
    return line


def is_constant(frame: pl.DataFrame, value: float) -> bool:
    """Whether every mean and bound of a curve equals ``value`` (nothing to show)."""
    columns = [frame[c].drop_nulls() for c in ("mean", "ci_low", "ci_high")]
    return all(((c - value).abs() <= 1e-12 * max(1.0, abs(value))).all() for c in columns)


def plot_learning_curves(
    results: Results, agents: pl.DataFrame, out_dir: Path, window: int | None = None
) -> list[Path]:
    """``learning_curves.png`` / ``.svg`` / ``.pdf`` (:func:`learning_figure`)."""
    return save_figure(learning_figure(results, agents, window), out_dir, "learning_curves")


def learning_axis(auctions_per_round: pl.Series) -> tuple[str, str]:
    """The learning curves' x column and label: by round, or by auction when K varies.

    Args:
        auctions_per_round: ``[points]`` each point's K (null where its runs differ in K).
    """
    counts = auctions_per_round.unique().to_list()
    if len(counts) > 1 and None not in counts:
        return "auction_mid", "auction"
    if len(counts) == 1 and counts[0] is not None and counts[0] > 1:
        return "round_mid", f"round ({counts[0]} auctions each)"
    return "round_mid", "round"


def learning_figure(
    results: Results, agents: pl.DataFrame, window: int | None = None
) -> Figure | None:
    """Small multiples, one panel per mechanism: bid / valuation and report scale over rounds.

    ``agents``: agent rows, or their per-round sums (:func:`learning_round_sums`, what
    :func:`plot_runs` loads). A report-scale line that stays at 1 (mechanisms without a
    distortion to learn) is not drawn; a mechanism with nothing to show has no panel. The x
    axis is the round, or, when the runs shown differ in auctions per round K (each run's K
    the same throughout), the auction (:func:`~analysis.metrics.learning_curves`'
    ``auction_mid``), on which runs of equal total auctions end together.
    """
    runs, by = labelled_runs(results)
    curves = learning_curves(agents, by=by, metrics=LEARNING_METRICS, window=window)
    if curves.height == 0:
        return None
    curves = geometric_report_scale(curves)
    x_column, x_label = learning_axis(curves["auctions_per_round"])
    names = dict(runs.select(LABEL, NAME).unique(LABEL).iter_rows())
    params = [col for col in by if col != LABEL]
    settings = curves.select(params).unique().sort(params) if params else pl.DataFrame()
    # not ":" (the truthful reference line); a dash-dot-dot for a fourth setting
    styles = ["-", "--", "-.", (0, (6, 2, 1, 2, 1, 2))]
    shown: list[tuple[str, list[tuple[dict, str, pl.DataFrame]]]] = []
    for label in label_order(runs):
        lines = []
        for index, setting in enumerate(settings.iter_rows(named=True) if params else [{}]):
            mine = curves.filter(pl.col(LABEL) == label, *matching(setting))
            for metric in LEARNING_METRICS:
                curve = mine.filter(pl.col("metric") == metric).sort(x_column)
                if curve.height and not (metric != "bid_ratio" and is_constant(curve, 1.0)):
                    lines.append(({**setting, "_style": styles[index % 4]}, metric, curve))
        if lines:
            shown.append((label, lines))
    if not shown:
        return None
    fig = new_figure("learning_curves")
    columns = min(LEARNING_COLUMNS, len(shown))  # fewer panels than columns fill the width
    rows = -(-len(shown) // columns)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, (label, lines) in zip(axes, shown, strict=False):
        color = mechanism_color(names[label])
        panel_settings = {setting["_style"] for setting, _, _ in lines}
        for setting, metric, curve in lines:
            extra = setting_name(setting, params) if params else ""
            what = (
                "bid / valuation"
                if metric == "bid_ratio"
                else "reported / true scale (geometric mean)"
            )
            line = band(ax, curve, x_column, color if metric == "bid_ratio" else "#444444", what)
            # one setting in the panel: the report scale dashed; several: each its own style
            solo = metric != "bid_ratio" and len(panel_settings) <= 1
            line.set_linestyle("--" if solo else setting["_style"])
            line.set_label(f"{what} {extra}".strip())
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":", label="truthful (1)")
        ax.set_title(names[label], fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    plotted = [curve for _, lines in shown for _, _, curve in lines]
    top = max(BAND_CUT * max(float(c["mean"].max()) for c in plotted), 1.5)
    cut = any((c["ci_high"].drop_nulls() > top).any() for c in plotted)
    axes[0].set_ylim(0.0, top)  # shared: every panel; ratios are non-negative
    for index, ax in enumerate(axes[: len(shown)]):
        if index + columns >= len(shown):  # lowest panel of its column
            ax.set_xlabel(x_label)
            ax.xaxis.set_tick_params(labelbottom=True)
        if index % columns == 0:
            ax.set_ylabel("ratio")
    counts = [int(curve["n"].min()) for _, lines in shown for _, _, curve in lines] + [
        int(curve["n"].max()) for _, lines in shown for _, _, curve in lines
    ]  # the range over every point drawn: a window some runs do not reach has fewer
    widths = sorted(set(curves["rounds_per_window"].drop_nulls().to_list()))
    shown_widths = str(widths[0]) if len(widths) == 1 else f"{widths[0]}-{widths[-1]}"
    per_curve = " (each curve its own)" if len(widths) > 1 else ""
    footer(
        fig,
        f"mean over agents per window of {shown_widths} "
        f"round{'' if shown_widths == '1' else 's'}{per_curve}; "
        + seeds_note(counts, "curve point").replace("error bars", "bands"),
        f"bands above {top:.3g} run off the axes" if cut else "",
    )
    return fig


BAND_CUT = 2.0
"""The learning curves' y axis ends at this multiple of the largest mean drawn (at 1.5 at least,
above the truthful line at 1): with 2 seeds a
t band is +-12.7 standard deviations, and the report scale's band, 2 ** (a log2 band), reached
5e5 and flattened every curve."""


LEARNING_METRICS: tuple[str, ...] = ("bid_ratio", "log2_report_scale")
"""What the learning curves follow; the report scale as the geometric mean (see below)."""


def geometric_report_scale(curves: pl.DataFrame) -> pl.DataFrame:
    """Curves of ``log2_report_scale`` as the geometric mean scale: ``2 ** mean``, ``2 ** CI``.

    The learners' distortion grids are geometric (0.25 ... 4), so the arithmetic mean of the
    scale reads a learner drawing uniformly from the grid as 1.55, over-sharpening; the mean of
    ``log2`` reads it as 0, and ``2 ** x`` maps the mean and both interval bounds (a monotone
    map) back to a scale with 1 = truthful, on the bid ratio's axis.
    """
    is_log = pl.col("metric") == "log2_report_scale"
    return curves.with_columns(
        pl.when(is_log).then(2.0 ** pl.col(column)).otherwise(pl.col(column)).alias(column)
        for column in ("mean", "ci_low", "ci_high")
    )


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
    return save_figure(brand_share_figure(shares), out_dir, "brand_shares")


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


# --------------------------------------------------------------------------- EVA


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """A stable colour per method: :data:`METHOD_COLORS`, then the others in sorted order."""
    colors: dict[str, str] = {}
    extra = itertools.cycle(EXTRA_COLORS)
    for method in sorted(set(methods)):
        colors[method] = METHOD_COLORS[method] if method in METHOD_COLORS else next(extra)
    return colors


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


# --------------------------------------------------------------------------- everything


def numeric_parameters(results: Results) -> list[str]:
    """Grid parameters with numeric values (candidates for a frontier figure).

    The ``setting`` column that keeps apart runs differing in an unswept key (for example
    ``auctions_per_round``) is a label, not a parameter.
    """
    runs, by = labelled_runs(results)
    return [col for col in by if col not in (LABEL, SETTING) and runs.schema[col].is_numeric()]


def plot_runs(results: Results, out_dir: Path) -> list[Path]:
    """Every figure drawn from runs (bars, frontiers, learning curves, regret)."""
    paths = plot_revenue(results, out_dir) + plot_welfare(results, out_dir)
    for parameter in numeric_parameters(results):
        paths += plot_frontier(results, parameter, out_dir)
    runs, by = labelled_runs(results)
    sums = load_agents(runs, by, fields=LEARNING_FIELDS, reduce=learning_round_sums)
    if sums.height and "round" in sums.columns:
        paths += plot_learning_curves(results, sums, out_dir)
    return paths + plot_regret(results, out_dir)


def learning_round_sums(agents: pl.DataFrame) -> pl.DataFrame:
    """One run's agent rows (or their partial sums) summed per round for the learning curves.

    :func:`~analysis.metrics.agent_round_sums` of :data:`LEARNING_METRICS`; a file without
    a ``round`` column (nothing to draw over) gives no row.
    """
    if "round" not in agents.columns:
        return agents.clear()
    return agent_round_sums(with_agent_columns(agents), LEARNING_METRICS, ["round"])


def plot_all(paths: Paths, out_dir: str | Path) -> list[Path]:
    """Draw every figure the results under ``paths`` support; return the files written.

    Args:
        paths: Sweep folders, run folders, lambda-sweep folders, ``market-sim eva`` /
            ``market-sim audit`` folders, or folders above them. Every ``eva.parquet`` (and
            every ``audit.parquet``) found is pooled into one figure.
        out_dir: Figure folder (created).

    Raises:
        NoResultsError: When there are no runs, no lambda-sweep shares, no convergence file, no
            ``eva.parquet`` and no ``audit.parquet``.
    """
    out = Path(out_dir)
    written: list[Path] = []
    try:
        results: Results | None = load_results(paths)
    except FileNotFoundError:
        results = None
    if results is not None:
        written += plot_runs(results, out)
    shares, convergence = load_shares(paths), load_convergence(paths)
    written += plot_brand_shares(shares, out)
    written += plot_convergence(convergence, out)
    eva_files, audit_files = (
        find_result_files(paths, EVA_FILE),
        find_result_files(paths, AUDIT_FILE),
    )
    if eva_files:
        written += plot_eva(load_eva(eva_files), out)
    if audit_files:
        written += plot_audit(load_audit(audit_files), out)
    found_any = results is not None or shares.height or convergence.height
    if not found_any and not eva_files and not audit_files:
        shown = paths if isinstance(paths, str | Path) else ", ".join(map(str, paths))
        raise NoResultsError(
            f"{shown}: no results found "
            "(summary.json, runs.parquet, shares.parquet, eva.parquet, audit.parquet)"
        )
    return written

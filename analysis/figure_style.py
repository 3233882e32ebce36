"""What every figure shares: sizes, colours, hatches, labels, notes under the axes, saving.

Sizes are fixed per figure name (:data:`FIGURE_SIZES`, inches), so that every PNG has a known
pixel size; colours of mechanisms come from :func:`analysis.names.mechanism_color`, by name
alone; notes under the axes (:func:`footer`) state the seeds behind each value and the units.
"""

from __future__ import annotations

import itertools
import textwrap
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

from analysis.figure_files import DPI, write_figure
from analysis.load import Results
from analysis.metrics import (
    FAMILY,
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


def mechanism_colors(names: Sequence[str]) -> dict[str, str]:
    """The fixed colour of each readable mechanism name (:func:`analysis.names.mechanism_color`)."""
    return {name: mechanism_color(name) for name in dict.fromkeys(names)}


def new_figure(name: str) -> Figure:
    """A figure of the registered size for ``name`` (``frontier_*`` share one size)."""
    key = "frontier" if name.startswith("frontier_") else name
    return Figure(figsize=FIGURE_SIZES[key], dpi=DPI, layout="constrained")


def save(fig: Figure | None, out_dir: Path, name: str) -> list[Path]:
    """Write ``name`` in every format (:func:`analysis.figure_files.write_figure`), release it.

    Returns:
        The files written; [] for None (nothing to draw).
    """
    if fig is None:
        return []
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


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """A stable colour per method: :data:`METHOD_COLORS`, then the others in sorted order."""
    colors: dict[str, str] = {}
    extra = itertools.cycle(EXTRA_COLORS)
    for method in sorted(set(methods)):
        colors[method] = METHOD_COLORS[method] if method in METHOD_COLORS else next(extra)
    return colors


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

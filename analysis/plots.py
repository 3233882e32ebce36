"""Paper-quality figures (PNG and SVG) of sweeps, runs and lambda sweeps.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (no pyplot state, so they
render headless and are freed when dropped), at a fixed size (:data:`FIGURE_SIZES`, inches, at
:data:`DPI`) so that every PNG has a known pixel size. Colours are colour-blind safe (Okabe-Ito,
then Paul Tol's *muted* set); every mechanism kind has a fixed colour and other labels (variants
such as ``token_auction (first_price)``) take the remaining colours in sorted label order, so a
mechanism has the same colour in every figure of a dataset. Error bars and bands are 95% t
intervals over seeds (:mod:`analysis.stats`).

:func:`plot_all` draws whatever the data supports and skips the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure

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
from analysis.load import Paths, Results, load_agents, load_convergence, load_results, load_shares
from analysis.metrics import (
    LABEL,
    brand_shares,
    frontier,
    labelled_runs,
    learning_curves,
    mechanism_summary,
)

OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
MECHANISM_COLORS: dict[str, str] = {
    "token_auction": OKABE_ITO["blue"],
    "mosaic": OKABE_ITO["vermillion"],
    "affine_maximizer": OKABE_ITO["bluish_green"],
    "first_price": OKABE_ITO["orange"],
    "second_price": OKABE_ITO["sky_blue"],
    "gsp": OKABE_ITO["reddish_purple"],
    "vcg": OKABE_ITO["black"],
}
"""Fixed colour of each mechanism kind named in the design."""
EXTRA_COLORS: tuple[str, ...] = (
    "#332288",
    "#CC6677",
    "#117733",
    "#88CCEE",
    "#882255",
    "#44AA99",
    "#999933",
    "#AA4499",
    "#DDCC77",
    OKABE_ITO["yellow"],
)
"""Colours for other labels, in order (Paul Tol muted, then Okabe-Ito yellow)."""
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

DPI = 150
FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "revenue_by_mechanism": (6.4, 4.2),
    "welfare_by_mechanism": (12.0, 4.2),
    "frontier": (6.4, 4.8),
    "learning_curves": (11.0, 4.2),
    "regret_by_mechanism": (11.0, 4.2),
    "brand_shares": (11.0, 4.2),
    "mosaic_convergence": (6.4, 4.2),
    "eva_heldout": (11.0, 4.2),
    "audit_regret": (12.0, 4.6),
}
"""Figure name (frontier figures: ``frontier_<key>``) -> (width, height) in inches."""
FORMATS: tuple[str, ...] = ("png", "svg")
CURRENCY = "bid currency"


class NoResultsError(FileNotFoundError):
    """No result files under the given paths."""


# --------------------------------------------------------------------------- colours and files


def mechanism_colors(labels: Sequence[str]) -> dict[str, str]:
    """A stable colour per label: fixed colours for mechanism kinds, then the others in order."""
    colors: dict[str, str] = {}
    extra = itertools.cycle(EXTRA_COLORS)
    for label in sorted(set(labels)):
        colors[label] = MECHANISM_COLORS[label] if label in MECHANISM_COLORS else next(extra)
    return colors


def new_figure(name: str) -> Figure:
    """A figure of the registered size for ``name`` (``frontier_*`` share one size)."""
    key = "frontier" if name.startswith("frontier_") else name
    return Figure(figsize=FIGURE_SIZES[key], dpi=DPI, layout="constrained")


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` and release the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=DPI, format=fmt)
        paths.append(path)
    fig.clear()
    return paths


def error_bars(frame: pl.DataFrame) -> np.ndarray:
    """``[[mean - low], [high - mean]]`` with zero where the interval is undefined."""
    mean = frame["mean"].to_numpy()
    low = frame["ci_low"].fill_null(np.nan).to_numpy()
    high = frame["ci_high"].fill_null(np.nan).to_numpy()
    return np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)


# --------------------------------------------------------------------------- bar charts


def setting_name(row: dict, keys: Sequence[str]) -> str:
    """Tick label of a parameter setting, e.g. ``platform_weight=0.5``."""
    return ", ".join(f"{key.split('.')[-1]}={row[key]}" for key in keys) or "all runs"


def grouped_bars(
    ax: Axes,
    table: pl.DataFrame,
    metric: str,
    params: Sequence[str],
    colors: dict[str, str],
    ylabel: str,
) -> bool:
    """Bars of ``metric`` with CIs: groups are parameter settings, one bar per mechanism label.

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


def bar_figure(
    results: Results,
    name: str,
    panels: Sequence[tuple[str, str, str]],
    out_dir: Path,
) -> list[Path]:
    """A figure of one or more bar panels ``(metric, title, y label)``; [] if nothing to draw."""
    runs, by = labelled_runs(results)
    params = [col for col in by if col != LABEL]
    table = mechanism_summary(results, [metric for metric, _, _ in panels])
    present = [panel for panel in panels if table.filter(pl.col("metric") == panel[0]).height]
    if not present:
        return []
    colors = mechanism_colors(runs[LABEL].to_list())
    fig = new_figure(name)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, (metric, title, ylabel) in zip(axes, present, strict=True):
        grouped_bars(ax, table, metric, params, colors, ylabel)
        ax.set_title(title)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        title="mechanism",
        loc="outside lower center",
        ncols=min(3, len(names)),
        fontsize="small",
    )
    fig.suptitle("mean over seeds, error bars: 95% t interval")
    return save(fig, out_dir, name)


def plot_revenue(results: Results, out_dir: Path) -> list[Path]:
    """Revenue per round by mechanism."""
    panel = ("revenue_mean", "Revenue by mechanism", f"revenue per round ({CURRENCY})")
    return bar_figure(results, "revenue_by_mechanism", [panel], out_dir)


def plot_welfare(results: Results, out_dir: Path) -> list[Path]:
    """Advertiser, user and social welfare per round by mechanism."""
    unit = f"value per round ({CURRENCY})"
    panels = [
        ("advertiser_value_mean", "Advertiser welfare", unit),
        ("user_value_mean", "User welfare", unit),
        ("social_welfare_mean", "Social welfare", unit),
    ]
    return bar_figure(results, "welfare_by_mechanism", panels, out_dir)


def plot_regret(results: Results, out_dir: Path) -> list[Path]:
    """Mean and maximum regret, and the IR violation rate, by mechanism (where computed)."""
    unit = f"regret per agent-round ({CURRENCY})"
    panels = [
        ("regret_mean", "Mean regret", unit),
        ("regret_max", "Max regret", unit),
        ("ir_violation_rate", "IR violations", "share of agent-rounds with truthful utility < 0"),
    ]
    runs = results.runs
    if "regret_mean" not in runs.columns or runs["regret_mean"].null_count() == runs.height:
        return []
    return bar_figure(results, "regret_by_mechanism", panels, out_dir)


# --------------------------------------------------------------------------- lines


def plot_frontier(results: Results, parameter: str, out_dir: Path) -> list[Path]:
    """Revenue against social welfare as ``parameter`` moves, one line per mechanism label."""
    points = frontier(results, parameter)
    if points.height < 2 or points.schema[parameter] == pl.String:
        return []
    runs, by = labelled_runs(results)
    colors = mechanism_colors(runs[LABEL].to_list())
    others = [col for col in by if col not in (LABEL, parameter)]
    name = f"frontier_{parameter.replace('.', '_')}"
    fig = new_figure(name)
    ax = fig.subplots()
    markers = itertools.cycle("osD^v<>")
    groups = points.select(LABEL, *others).unique().sort(LABEL, *others)
    for group in groups.iter_rows(named=True):
        mine = points.filter(*[pl.col(k) == v for k, v in group.items()]).sort(parameter)
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
            color=colors[group[LABEL]],
            marker=next(markers),
            capsize=2,
            label=f"{group[LABEL]} {extra}".strip(),
        )
        for row in mine.iter_rows(named=True):
            ax.annotate(
                f"{row[parameter]}",
                (row["x_mean"], row["y_mean"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize="x-small",
            )
    ax.set_xlabel(f"social welfare per round ({CURRENCY})")
    ax.set_ylabel(f"revenue per round ({CURRENCY})")
    ax.set_title(f"Revenue vs welfare as {parameter.split('.')[-1]} moves (point labels)")
    ax.grid(alpha=0.3)
    ax.legend(title="mechanism", fontsize="small")
    return save(fig, out_dir, name)


def band(ax: Axes, frame: pl.DataFrame, x: str, color: str, label: str) -> None:
    """A mean line with a shaded CI band (where defined)."""
    xs = frame[x].to_numpy()
    ax.plot(xs, frame["mean"].to_numpy(), color=color, label=label, linewidth=1.5)
    low = frame["ci_low"].fill_null(np.nan).to_numpy()
    high = frame["ci_high"].fill_null(np.nan).to_numpy()
    if np.isfinite(low).any():
        ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)


def plot_learning_curves(
    results: Results, agents: pl.DataFrame, out_dir: Path, window: int | None = None
) -> list[Path]:
    """Bid / valuation and report scale over rounds, one line per mechanism label and setting."""
    runs, by = labelled_runs(results)
    curves = learning_curves(agents, by=by, window=window)
    panels = [
        ("bid_ratio", "Bid ratio", "bid / valuation (ratio)", 1.0),
        ("report_scale", "Report distortion", "reported / true scale (ratio)", 1.0),
    ]
    present = [
        p for p in panels if curves.height and curves.filter(pl.col("metric") == p[0]).height
    ]
    if not present:
        return []
    colors = mechanism_colors(runs[LABEL].to_list())
    params = [col for col in by if col != LABEL]
    styles = itertools.cycle(["-", "--", ":", "-."])
    fig = new_figure("learning_curves")
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    groups = curves.select(by).unique().sort(by)
    style_of = {tuple(row.values()): next(styles) for row in groups.iter_rows(named=True)}
    for ax, (metric, title, ylabel, truthful) in zip(axes, present, strict=True):
        for group in groups.iter_rows(named=True):
            mine = curves.filter(
                pl.col("metric") == metric, *[pl.col(k) == v for k, v in group.items()]
            )
            label = f"{group[LABEL]} {setting_name(group, params) if params else ''}".strip()
            band(ax, mine.sort("round_mid"), "round_mid", colors[group[LABEL]], label)
            ax.lines[-1].set_linestyle(style_of[tuple(group.values())])
        ax.axhline(truthful, color="grey", linewidth=0.8, linestyle=":", label="truthful")
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, names, loc="outside lower center", ncols=min(4, len(names)), fontsize="small"
    )
    fig.suptitle("mean over agents per round window; bands: 95% t interval over seeds")
    return save(fig, out_dir, "learning_curves")


def plot_brand_shares(shares: pl.DataFrame, out_dir: Path) -> list[Path]:
    """Lambda-sweep brand shares, one panel per aggregation, Wilson 95% bands."""
    long = brand_shares(shares) if shares.height else pl.DataFrame()
    if long.height == 0:
        return []
    aggregations = sorted(long["aggregation"].unique().to_list())
    fig = new_figure("brand_shares")
    axes = fig.subplots(1, len(aggregations), squeeze=False, sharey=True)[0]
    for ax, aggregation in zip(axes, aggregations, strict=True):
        mine = long.filter(pl.col("aggregation") == aggregation)
        for category in sorted(mine["category"].unique().to_list()):
            rows = mine.filter(pl.col("category") == category)
            rows = rows.group_by("lambda").agg(pl.col("share", "ci_low", "ci_high").mean())
            rows = rows.sort("lambda").rename({"share": "mean"})
            color = CATEGORY_COLORS.get(category, "#777777")
            band(ax, rows, "lambda", color, category.replace("_", " "))
            ax.lines[-1].set_marker("o")
        ax.set_title(f"{aggregation} aggregation")
        ax.set_xlabel("λ, first advertiser's bid share")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of replies")
    axes[0].legend(title="brands mentioned", fontsize="small")
    fig.suptitle("Brand shares per λ; bands: Wilson 95% interval")
    return save(fig, out_dir, "brand_shares")


CANDIDATE_COLUMNS: tuple[str, ...] = ("candidates", "M", "m", "num_candidates", "n_candidates")
DISTANCE_COLUMNS: tuple[str, ...] = ("kl", "tv", "reward_gap", "distance")


def plot_convergence(convergence: pl.DataFrame, out_dir: Path) -> list[Path]:
    """MOSAIC convergence: distance to pi* against the number of candidates M (log scale).

    Expects a ``*convergence*.parquet`` with a candidates column (:data:`CANDIDATE_COLUMNS`),
    distance columns (:data:`DISTANCE_COLUMNS`), optionally ``proposal`` (one line each) and
    ``seed`` (CI over seeds). Anything else is skipped.
    """
    x = next((c for c in CANDIDATE_COLUMNS if c in convergence.columns), None)
    ys = [c for c in DISTANCE_COLUMNS if c in convergence.columns]
    if x is None or not ys or convergence.height == 0:
        return []
    from analysis.metrics import summarize

    by = [c for c in ("proposal",) if c in convergence.columns]
    table = summarize(convergence, [*by, x], ys)
    fig = new_figure("mosaic_convergence")
    ax = fig.subplots()
    colors = itertools.cycle([*OKABE_ITO.values()])
    series = table.select(*by, "metric").unique().sort(*by, "metric")
    for row in series.iter_rows(named=True):
        mine = table.filter(*[pl.col(k) == v for k, v in row.items()]).sort(x)
        label = " ".join(str(v) for v in row.values())
        band(ax, mine, x, next(colors), label)
        ax.lines[-1].set_marker("o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("candidates M (log scale)")
    ax.set_ylabel("distance to π* (nats for KL, probability for TV)")
    ax.set_title("MOSAIC convergence")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
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
        ``eva_heldout.png`` and ``.svg``; [] when there is nothing to draw.
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
        band(ax, mine.rename({"heldout_reward_mean": "mean"}), "generation", colors[method], label)
        ax.lines[-1].set_marker("o")
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
        )
        ax.lines[-1].set_marker("o")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xlabel("generation (solver updates; 0 = base model)")
        ax.set_ylabel("held-out reward difference")
        ax.set_title("EVA minus static, paired by seed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("mean over seeds; bands: 95% t interval over seeds")
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
        ``audit_regret.png`` and ``.svg``; [] when there is nothing to draw.
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
    fig.suptitle(
        "Max regret over advertisers per query; mean over seeds, error bars: 95% t interval"
    )
    return save(fig, Path(out_dir), "audit_regret")


# --------------------------------------------------------------------------- everything


def numeric_parameters(results: Results) -> list[str]:
    """Grid parameters with numeric values (candidates for a frontier figure)."""
    _, by = labelled_runs(results)
    return [col for col in by if col != LABEL and results.runs.schema[col].is_numeric()]


def plot_runs(results: Results, out_dir: Path) -> list[Path]:
    """Every figure drawn from runs (bars, frontiers, learning curves, regret)."""
    paths = plot_revenue(results, out_dir) + plot_welfare(results, out_dir)
    for parameter in numeric_parameters(results):
        paths += plot_frontier(results, parameter, out_dir)
    runs, by = labelled_runs(results)
    agents = load_agents(runs, by)
    if agents.height and "round" in agents.columns:
        paths += plot_learning_curves(results, agents, out_dir)
    return paths + plot_regret(results, out_dir)


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

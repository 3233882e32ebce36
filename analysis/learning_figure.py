"""Learning curves over rounds: bid / valuation and the report distortion, a band per mechanism."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from analysis.figure_style import (
    band,
    footer,
    is_constant,
    matching,
    new_figure,
    save,
    seeds_note,
    setting_name,
)
from analysis.learning_curves import agent_round_sums, learning_curves
from analysis.load import Results
from analysis.metrics import (
    LABEL,
    NAME,
    label_order,
    labelled_runs,
    with_agent_columns,
)
from analysis.names import (
    mechanism_color,
)

LEARNING_COLUMNS = 3


LEARNING_FIELDS: tuple[str, ...] = ("round", "auction", "bid", "valuation", "report_scale")
"""The ``agents.parquet`` columns the learning curves read (:func:`learning_figure`)."""


def plot_learning_curves(
    results: Results, agents: pl.DataFrame, out_dir: Path, window: int | None = None
) -> list[Path]:
    """``learning_curves.png`` / ``.svg`` / ``.pdf`` (:func:`learning_figure`)."""
    return save(learning_figure(results, agents, window), out_dir, "learning_curves")


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
    :func:`analysis.plots.plot_runs` loads). A report-scale line that stays at 1 (mechanisms
    without a distortion to learn) is not drawn; a mechanism with nothing to show has no panel.
    The x axis is the round, or, when the runs shown differ in auctions per round K (each run's K
    the same throughout), the auction (:func:`~analysis.learning_curves.learning_curves`'
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


def learning_round_sums(agents: pl.DataFrame) -> pl.DataFrame:
    """One run's agent rows (or their partial sums) summed per round for the learning curves.

    :func:`~analysis.learning_curves.agent_round_sums` of :data:`LEARNING_METRICS`; a file without
    a ``round`` column (nothing to draw over) gives no row.
    """
    if "round" not in agents.columns:
        return agents.clear()
    return agent_round_sums(with_agent_columns(agents), LEARNING_METRICS, ["round"])

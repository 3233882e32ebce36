"""Paper-quality figures of sweeps, runs and lambda sweeps.

Each is written as PNG, SVG and PDF, with the same bytes on every rerun
(:mod:`analysis.figure_files`). Figures are drawn on :class:`matplotlib.figure.Figure` objects
directly (no pyplot state, so they render headless and are freed when dropped), at a fixed size
(:data:`analysis.figure_style.FIGURE_SIZES`, inches, at
:data:`analysis.figure_files.DPI`) so that every PNG has a known pixel size.

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

:func:`plot_all` draws whatever the data supports and skips the rest. The figures themselves
are drawn in one module per kind, over the shared conventions of :mod:`analysis.figure_style`:

* :mod:`analysis.bar_figures`: revenue, welfare and regret by mechanism, and frontiers;
* :mod:`analysis.learning_figure`: learning curves over rounds;
* :mod:`analysis.experiment_figures`: brand shares of a lambda sweep, MOSAIC convergence;
* :mod:`analysis.eva_figures`: eva's held-out reward and the audit's regret;
* :mod:`analysis.tokens`: token ownership of a reply.
"""

from __future__ import annotations

from pathlib import Path

from analysis.bar_figures import plot_frontier, plot_regret, plot_revenue, plot_welfare
from analysis.eva import (
    AUDIT_FILE,
    EVA_FILE,
    find_result_files,
    load_audit,
    load_eva,
)
from analysis.eva_figures import plot_audit, plot_eva
from analysis.experiment_figures import plot_brand_shares, plot_convergence
from analysis.learning_figure import LEARNING_FIELDS, learning_round_sums, plot_learning_curves
from analysis.load import Paths, Results, load_agents, load_convergence, load_results, load_shares
from analysis.metrics import (
    LABEL,
    SETTING,
    labelled_runs,
)


class NoResultsError(FileNotFoundError):
    """No result files under the given paths."""


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

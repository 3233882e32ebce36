r"""Who wrote each token: a token-auction reply coloured by the participant that carried each token.

Input: ``tokens.parquet`` rows (written by
:func:`market_sim.experiments.token_trace.trace_run`), one per generated token: ``round``,
``position``, ``token`` (its text), ``carrier`` (a participant's name, ``user`` for the
platform's unsponsored distribution), ``carrier_share`` and ``payment``
(the sum of the advertisers' payments for that token).

*Carried* is defined per token :math:`y_t` of the reply, with the participants'
(reported) next-token distributions :math:`p_0` (user), :math:`p_1, \dots, p_n` and weights
:math:`\lambda_i = b_i / \sum_j b_j` (:math:`b_0` the platform weight):

* under ex-post settlement (stable sampling), the carrier is the participant whose interval
  holds the round's uniform draw: it emitted the token from its own distribution;
* otherwise, the participant with the largest weighted share of the token's probability under
  linear aggregation, :math:`\arg\max_i \lambda_i p_i(y_t) / \sum_j \lambda_j p_j(y_t)`, and
  ``carrier_share`` is that share (under log-linear aggregation this linear share is an
  attribution, not the probability the token was drawn with).

The figure (PNG, SVG, PDF) lays the tokens out in reading order, each on a box in its carrier's
colour, the per-token payment as a bar beneath it; :func:`token_html` gives the same as an HTML
snippet (one ``<span>`` per token, share and payment in its tooltip).
"""

from __future__ import annotations

import html
import tomllib
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.figure_files import DPI, write_figure
from analysis.names import EXTRA_COLORS
from market_sim.results import SUMMARY_FILE
from market_sim.results.files import atomic_write_text

TOKENS_FILE = "tokens.parquet"
USER = "user"
USER_COLOR = "#DDDDDD"
CARRIER_COLORS: tuple[str, ...] = ("#88CCEE", "#DDCC77", "#CC6677", "#44AA99", "#AA4499")
"""Pale colours (dark text stays readable on them) for the advertisers, in scenario order."""
TOKENS_PER_LINE = 12


def carrier_colors(carriers: Sequence[str]) -> dict[str, str]:
    """``user`` grey, advertisers in first-seen order on :data:`CARRIER_COLORS`."""
    palette = [*CARRIER_COLORS, *EXTRA_COLORS]
    advertisers = [c for c in dict.fromkeys(carriers) if c != USER]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(advertisers)}
    return {USER: USER_COLOR, **colors}


def token_figure(tokens: pl.DataFrame, rounds: Sequence[int], advertisers: Sequence[str]) -> Figure:
    """Replies of ``rounds``, one block per round: coloured tokens, payment bars beneath.

    Args:
        tokens: ``tokens.parquet`` rows.
        rounds: Rounds to draw (in order).
        advertisers: Advertiser names in scenario order (fixes their colours and the legend).

    Returns:
        The figure (one axes per round).
    """
    colors = carrier_colors([*advertisers, *tokens["carrier"].to_list()])
    lines_per_round = []
    for rnd in rounds:
        count = tokens.filter(pl.col("round") == rnd).height
        lines_per_round.append(max(1, -(-count // TOKENS_PER_LINE)))
    fig = Figure(figsize=(11.0, 0.9 + 0.75 * sum(lines_per_round)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(rounds), 1, squeeze=False, height_ratios=lines_per_round)[:, 0]
    top_payment = float(tokens["payment"].max() or 0.0) or 1.0
    for ax, rnd, lines in zip(axes, rounds, lines_per_round, strict=True):
        mine = tokens.filter(pl.col("round") == rnd).sort("position")
        for index, row in enumerate(mine.iter_rows(named=True)):
            x, line = index % TOKENS_PER_LINE, index // TOKENS_PER_LINE
            y = lines - 1 - line
            ax.text(
                x + 0.5,
                y + 0.62,
                row["token"].strip() or "·",
                ha="center",
                va="center",
                fontsize="small",
                bbox={"boxstyle": "round,pad=0.25", "facecolor": colors[row["carrier"]], "lw": 0},
            )
            height = 0.22 * float(row["payment"]) / top_payment
            ax.bar(x + 0.5, height, width=0.35, bottom=y + 0.2, color="#333333")
            ax.text(x + 0.5, y + 0.17, f"{row['payment']:.2g}", ha="center", va="top", fontsize=6)
        ax.set_xlim(0, TOKENS_PER_LINE)
        ax.set_ylim(0, lines)
        ax.set_axis_off()
        total = float(mine["payment"].sum())
        query = f" ({mine['query'][0]!r})" if "query" in mine.columns and mine.height else ""
        ax.set_title(
            f"round {rnd}{query}: payment {total:.3g} in all", fontsize="small", loc="left"
        )
    handles = [Patch(facecolor=colors[name], label=name) for name in [USER, *advertisers]]
    fig.legend(handles=handles, title="token carried by", loc="outside right upper")
    fig.supxlabel(
        "under each token: its payment (advertisers' sum; tallest bar = "
        f"{top_payment:.3g}). Carried: the ex-post owner, else the largest weighted share "
        "λ_i p_i(token) under linear aggregation; · = end of reply",
        fontsize="small",
    )
    return fig


def token_html(tokens: pl.DataFrame, rounds: Sequence[int], advertisers: Sequence[str]) -> str:
    """An HTML snippet: per round a ``<p>`` of ``<span>`` tokens in their carrier's colour."""
    colors = carrier_colors([*advertisers, *tokens["carrier"].to_list()])
    blocks = []
    for rnd in rounds:
        spans = []
        for row in tokens.filter(pl.col("round") == rnd).sort("position").iter_rows(named=True):
            tip = (
                f"{row['carrier']} (share {row['carrier_share']:.2f}), payment {row['payment']:.4g}"
            )
            spans.append(
                f'<span style="background:{colors[row["carrier"]]}" '
                f'title="{html.escape(tip)}">{html.escape(row["token"])}</span>'
            )
        blocks.append(f'<p class="reply" data-round="{rnd}">{"".join(spans)}</p>')
    legend = " ".join(
        f'<span style="background:{colors[name]}">{html.escape(name)}</span>'
        for name in [USER, *advertisers]
    )
    return (
        f'<div class="token-ownership">\n<p>carried by: {legend}</p>\n'
        + "\n".join(blocks)
        + "\n</div>\n"
    )


def plot_token_ownership(
    tokens: pl.DataFrame, advertisers: Sequence[str], out_dir: Path, rounds: int = 3
) -> list[Path]:
    """Write ``token_ownership.png``, ``.svg``, ``.pdf`` and ``.html`` for the first rounds."""
    shown = sorted(tokens["round"].unique().to_list())[:rounds]
    if not shown:
        return []
    paths = write_figure(token_figure(tokens, shown, advertisers), out_dir, "token_ownership")
    html_path = out_dir / "token_ownership.html"
    atomic_write_text(html_path, token_html(tokens, shown, advertisers))
    return [*paths, html_path]


def is_token_auction_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run whose ``scenario.toml`` names the token auction.

    Read as plain TOML, without importing torch or validating the scenario (the replay does
    that): it only spares ``plot`` of other runs the seconds of loading torch and transformers.
    """
    scenario_path = Path(run_dir) / "scenario.toml"
    if not (Path(run_dir) / SUMMARY_FILE).is_file() or not scenario_path.is_file():
        return False
    try:
        scenario = tomllib.loads(scenario_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # the replay reads it again and reports what is wrong in one line
    mechanism = scenario.get("mechanism")
    return not isinstance(mechanism, dict) or mechanism.get("kind") == "token_auction"


def plot_run_tokens(run_dir: Path, out_dir: Path, rounds: int = 3) -> list[Path]:
    """Token-ownership figure (PNG, SVG, PDF, HTML) and ``tokens.parquet`` of a run's first rounds.

    Replays the run (:func:`market_sim.experiments.token_trace.replay_run_tokens`: loads its
    model) and draws :func:`plot_token_ownership` into ``out_dir``; the run folder is not
    touched.

    Returns:
        The files written; [] when the run is not a token-auction run of one auction per round
        or its replay does not reproduce the recorded replies.
    """
    if not is_token_auction_run(run_dir):  # the replay would load torch and the model
        return []
    from market_sim.experiments.token_trace import replay_run_tokens
    from market_sim.results.files import atomic_write, check_finite_frame

    replayed = replay_run_tokens(run_dir, rounds)
    if replayed is None:
        return []
    tokens, advertisers = replayed
    out_dir.mkdir(parents=True, exist_ok=True)
    check_finite_frame(tokens, TOKENS_FILE)
    atomic_write(out_dir / TOKENS_FILE, tokens.write_parquet)
    return [*plot_token_ownership(tokens, advertisers, out_dir, rounds), out_dir / TOKENS_FILE]

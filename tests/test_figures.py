"""Figures read back from their matplotlib objects: names, order, colours, intervals, n, notes."""

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from analysis.bar_figures import regret_figure, revenue_figure, welfare_figure
from analysis.experiment_figures import brand_names, brand_share_figure, plot_brand_shares
from analysis.learning_figure import learning_figure
from analysis.load import load_agents, load_results
from analysis.metrics import labelled_runs
from analysis.names import EXTRA_COLORS, NAME_COLORS, mechanism_color, mechanism_name

if TYPE_CHECKING:
    from market_sim.lm.model import LanguageModel

ROUNDS = 4
SLOT_VALUE = 24.0
# (kind, payment) -> revenue per seed; large spreads make t intervals reach below zero
RUNS = {
    ("token_auction", "second_price"): [0.5, 4.0, 0.2],
    ("token_auction", "none"): [0.0, 0.0, 0.0],
    ("second_price", ""): [3.0, 3.5, 2.5],
    ("vcg", ""): [2.0, 2.5, 3.0],
    ("gsp", ""): [2.2, 2.6, 0.1],
}
SCENARIO = """name = "figures"
seed = {seed}
rounds = {rounds}

[mechanism]
kind = "{kind}"
payment = "{payment}"
click_through_rates = [1.0, 0.5]
slot_value = {slot_value}

[[advertisers]]
name = "Alpha Airlines"

[[advertisers]]
name = "Beta Resort"
"""


def write_run(folder: Path, kind: str, payment: str, seed: int, revenue: float) -> None:
    folder.mkdir(parents=True)
    token = kind == "token_auction"
    agents = [
        {
            "round": r,
            "agent": a,
            "valuation": 1.0,
            "bid": 0.5 + 0.1 * r,
            "report_scale": 1.0 + 0.2 * seed if token else 1.0,
        }
        for r in range(ROUNDS)
        for a in ("Alpha Airlines", "Beta Resort")
    ]
    pl.DataFrame(agents).write_parquet(folder / "agents.parquet")
    text = SCENARIO.format(
        seed=seed, rounds=ROUNDS, kind=kind, payment=payment, slot_value=SLOT_VALUE
    )
    (folder / "scenario.toml").write_text(text)
    regret = 0.0 if kind == "vcg" or payment == "none" else [0.05, 0.9, 0.0][seed]
    summary = {
        "mechanism": kind,
        "payment": payment,
        "aggregation": "linear",
        "seed": seed,
        "rounds": ROUNDS,
        "revenue_mean": revenue,
        "advertiser_value_mean": 2.0,
        "user_value_mean": 1.0 - seed,
        "social_welfare_mean": 3.0 - seed,
        "regret_mean": regret,
        "regret_max": 2 * regret,
        "ir_violation_rate": 0.0,
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    for (kind, payment), revenues in RUNS.items():
        for seed, revenue in enumerate(revenues):
            write_run(root / f"{kind}-{payment}-{seed}", kind, payment, seed, revenue)
    return load_results(root)


def bars_by_name(fig: Figure) -> dict[str, list]:
    """Readable name -> bar patches, over every axes of a figure."""
    bars: dict[str, list] = {}
    for ax in fig.axes:
        for container in ax.containers:
            if isinstance(container, BarContainer):
                bars.setdefault(container.get_label(), []).extend(container.patches)
    return bars


def figure_text(fig: Figure) -> str:
    texts = [t.get_text() for t in fig.texts]
    if fig._supxlabel is not None:
        texts.append(fig._supxlabel.get_text())
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.texts] + [ax.get_title()]
    return "\n".join(texts)


def interval_bounds(fig: Figure, title: str) -> list[tuple[float, float]]:
    """(low, high) of every error bar in the axes titled ``title``."""
    ax = next(a for a in fig.axes if a.get_title() == title)
    bounds = []
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            for segment in container.lines[2][0].get_segments():
                bounds.append((float(segment[0][1]), float(segment[1][1])))
    return bounds


EXPECTED_ORDER = [
    "token auction, second price",
    "token auction, no payment",
    "uniform price, 2 slots",
    "GSP",
    "VCG",
]


def test_mechanisms_named_ordered_by_family_and_labelled(results):
    fig = revenue_figure(results)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == EXPECTED_ORDER
    assert ax.get_ylabel() == "revenue per auction (bid currency)"
    top = ax.child_axes[0]  # family names above the axes, over their mechanisms
    assert [t.get_text() for t in top.get_xticklabels()] == ["LLM-native", "ad slots"]
    assert list(top.get_xticks()) == [0.5, 3.0]
    assert fig._suptitle is None  # nothing above the axes' titles


def test_each_mechanism_keeps_one_colour_across_figures(results):
    revenue, welfare = bars_by_name(revenue_figure(results)), bars_by_name(welfare_figure(results))
    assert set(revenue) == set(welfare) == set(EXPECTED_ORDER)
    for name in EXPECTED_ORDER:
        colours = {tuple(p.get_facecolor()) for p in revenue[name] + welfare[name]}
        assert len(colours) == 1, name
        assert colours == {tuple(revenue[name][0].get_facecolor())}
    # the colour depends on the name only, not on which other mechanisms are shown
    assert mechanism_color("VCG") == mechanism_color(mechanism_name("vcg"))
    assert len({mechanism_color(n) for n in EXPECTED_ORDER}) == len(EXPECTED_ORDER)


def test_intervals_of_non_negative_quantities_stay_above_zero(results):
    revenue = interval_bounds(revenue_figure(results), "Revenue by mechanism")
    assert len(revenue) == 5
    assert revenue[1] == (0.0, 0.0)  # no payment: revenue 0 in every seed, a degenerate interval
    assert min(low for low, _ in revenue) == 0.0  # a symmetric t interval would go below 0
    regret = regret_figure(results)
    for title in ("Mean regret", "Max regret"):
        assert all(low >= 0.0 for low, _ in interval_bounds(regret, title)), title
    # user welfare may be negative: its interval is not cut
    welfare = interval_bounds(welfare_figure(results), "User welfare")
    assert min(low for low, _ in welfare) < 0.0


def test_zero_bars_are_labelled_and_n_and_exchange_rate_stated(results):
    fig = revenue_figure(results)
    zeros = [t for t in fig.axes[0].texts if t.get_text() == "0"]
    assert [round(t.xy[0]) for t in zeros] == [EXPECTED_ORDER.index("token auction, no payment")]
    text = figure_text(fig)
    assert "n = 3 seeds per bar" in text and "mean over seeds" in text
    assert "slot_value = 24 steered tokens" in text
    ir = next(a for a in regret_figure(results).axes if a.get_title() == "IR violations")
    assert ir.get_ylim()[0] == 0.0 and len([t for t in ir.texts if t.get_text() == "0"]) == 5


def test_single_run_never_says_mean_over_seeds(tmp_path):
    write_run(tmp_path / "one", "vcg", "", 0, 2.0)
    text = figure_text(revenue_figure(load_results(tmp_path)))
    assert "n = 1 seed per bar" in text and "mean over" not in text
    assert "slot_value" not in text  # one family: no exchange rate to state


def test_learning_curves_are_small_multiples_without_flat_distortion(results):
    runs, by = labelled_runs(results)
    fig = learning_figure(results, load_agents(runs, by))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == EXPECTED_ORDER
    for ax in visible:
        labels = [line.get_label() for line in ax.lines]
        has_distortion = "reported / true scale (geometric mean)" in labels
        assert has_distortion == ax.get_title().startswith("token auction"), ax.get_title()
        for collection in ax.collections:  # bands of non-negative ratios stay above zero
            assert collection.get_paths()[0].vertices[:, 1].min() >= 0.0
    assert "n = 3 seeds per curve" in figure_text(fig)
    assert "mean over agents per window of " in figure_text(fig)


def test_the_report_scale_curve_is_the_geometric_mean():
    """Scales 1/4 and 4 (a learner indifferent on the grid 0.25 ... 4) plotted at 2.125, read as
    over-sharpening; their geometric mean is 1 (truthful on average), as is that of the other
    run's 1/2 and 2."""
    from analysis.learning_curves import learning_curves
    from analysis.learning_figure import LEARNING_METRICS, geometric_report_scale

    agents = pl.DataFrame(
        {
            "run_path": ["a", "a", "b", "b"],
            "label": ["x"] * 4,
            "round": [0, 0, 0, 0],
            "agent": ["p", "q", "p", "q"],
            "bid": [1.0] * 4,
            "valuation": [1.0] * 4,
            "report_scale": [0.25, 4.0, 0.5, 2.0],
        }
    )
    curves = geometric_report_scale(
        learning_curves(agents, by=["label"], metrics=LEARNING_METRICS, window=1)
    )
    scale = curves.filter(pl.col("metric") == "log2_report_scale").row(0, named=True)
    assert scale["n"] == 2 and scale["mean"] == 1.0  # 2 ** 0, exact
    # per run log2 means 0 and 0: a zero-width interval at 1
    assert (scale["ci_low"], scale["ci_high"]) == (1.0, 1.0)


def test_runs_kept_apart_by_an_unswept_key_still_plot_every_figure(tmp_path):
    # auctions_per_round = 1 and 8 of one mechanism: kept apart by ``setting``, which is a
    # label, not a numeric grid parameter to draw a frontier over (it used to raise KeyError).
    from analysis.plots import plot_all

    for seed, revenue in enumerate([1.0, 1.5]):
        write_run(tmp_path / "runs" / f"k1-{seed}", "second_price", "", seed, revenue)
        folder = tmp_path / "runs" / f"k8-{seed}"
        write_run(folder, "second_price", "", seed, revenue + 1.0)
        scenario = (folder / "scenario.toml").read_text()
        (folder / "scenario.toml").write_text(
            scenario.replace("rounds = 4", "rounds = 4\nauctions_per_round = 8")
        )
    with pytest.warns(UserWarning, match="differ"):
        paths = plot_all(tmp_path / "runs", tmp_path / "figures")
    names = {path.stem for path in paths}
    assert {"revenue_by_mechanism", "learning_curves", "regret_by_mechanism"} <= names


def test_brand_share_legend_names_the_brands(tmp_path):
    lam = tmp_path / "lambda"
    lam.mkdir()
    (lam / "scenario.toml").write_text(
        SCENARIO.format(seed=0, rounds=1, kind="token_auction", payment="", slot_value=1.0)
    )
    assert brand_names(str(lam)) == ("Alpha Airlines", "Beta Resort")
    pl.DataFrame(
        {
            "aggregation": ["linear"] * 2,
            "lambda": [0.0, 1.0],
            "samples": [20, 20],
            "share_only_first": [0.0, 0.9],
            "share_only_second": [0.9, 0.0],
            "share_both": [0.1, 0.1],
            "share_neither": [0.0, 0.0],
        }
    ).with_columns(pl.lit(str(lam)).alias("source")).write_parquet(lam / "shares.parquet")
    shares = pl.read_parquet(lam / "shares.parquet")
    fig = brand_share_figure(shares)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["only Alpha Airlines", "only Beta Resort", "both", "neither"]
    assert fig.axes[0].get_xlabel() == "λ, Alpha Airlines's share of the bids"
    assert "n = 20 replies per λ" in figure_text(fig)
    paths = plot_brand_shares(shares, tmp_path / "figs")
    assert [p.name for p in paths] == ["brand_shares.png", "brand_shares.svg", "brand_shares.pdf"]


def test_carrier_is_the_largest_weighted_share_or_the_ex_post_owner():
    import torch

    from market_sim.experiments.token_trace import carriers

    probabilities = torch.tensor([[[0.3, 0.7], [0.5, 0.5], [0.1, 0.9]]])  # user, 2 advertisers
    step = {
        "reported": probabilities.log(),
        "bids": torch.tensor([[1.0, 3.0]], dtype=torch.float64),
        "tokens": torch.tensor([0]),
        "owners": torch.tensor([-1]),
    }
    # platform weight 1: lambda = (1, 1, 3) / 5; masses of token 0: 0.06, 0.1, 0.06
    index, share = carriers(step, platform_weight=1.0)
    # log-probabilities are float32 (as the platform's): shares agree to float32 precision
    assert index == [1] and math.isclose(share[0], 0.1 / 0.22, rel_tol=1e-6)
    step["owners"] = torch.tensor([2])  # stable sampling chose advertiser 2: it carried the token
    index, share = carriers(step, platform_weight=1.0)
    assert index == [2] and math.isclose(share[0], 0.06 / 0.22, rel_tol=1e-6)


def write_token_auction_run(folder: Path, model_dir: Path, lm: "LanguageModel") -> Path:
    """A 3-round token-auction run of the random model in ``folder / "run"``; its folder."""
    import tomli_w

    from market_sim.run import run_scenario
    from market_sim.scenario import load_scenario

    data = {
        "name": "trace",
        "seed": 2,
        "rounds": 3,
        "model": {"path": str(model_dir), "device": "cpu"},
        "mechanism": {"kind": "token_auction", "max_new_tokens": 5},
        "queries": {"items": ["vacation in Hawaii"]},
        "advertisers": [
            {
                "name": "Alpha",
                "context": "Alpha: flights.",
                "valuation": {"dist": "fixed", "value": 1.0},
            },
            {
                "name": "Beta",
                "context": "Beta: rooms.",
                "valuation": {"dist": "fixed", "value": 0.5},
            },
        ],
    }
    (folder / "trace.toml").write_text(tomli_w.dumps(data))
    run_scenario(load_scenario(folder / "trace.toml"), out_dir=folder / "run", lm=lm)
    return folder / "run"


def test_token_trace_replays_the_run_and_its_payments_add_up(tmp_path, random_model_dir, random_lm):
    from analysis.tokens import token_figure, token_html
    from market_sim.experiments.token_trace import trace_run

    write_token_auction_run(tmp_path, random_model_dir, random_lm)
    tokens = trace_run(tmp_path / "run", random_lm, rounds=2)
    assert tokens["replay_matches"].all() and tokens["round"].unique().sort().to_list() == [0, 1]
    recorded = pl.read_parquet(tmp_path / "run" / "rounds.parquet").head(2)
    per_round = tokens.group_by("round").agg(pl.len(), pl.col("payment").sum()).sort("round")
    assert per_round["len"].to_list() == recorded["n_tokens"].cast(pl.UInt32).to_list()
    # the per-token payments add up to the round's revenue (float64 sums in another order)
    for mine, revenue in zip(per_round["payment"], recorded["revenue"], strict=True):
        assert math.isclose(mine, revenue, rel_tol=1e-9, abs_tol=1e-12)
    assert set(tokens["carrier"]) <= {"user", "Alpha", "Beta"}
    assert ((tokens["carrier_share"] > 0) & (tokens["carrier_share"] <= 1)).all()
    fig = token_figure(tokens, [0, 1], ["Alpha", "Beta"])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["user", "Alpha", "Beta"]
    # each block names its query (the reply alone did not say what it answered)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [
        f"round {row['round']} ({row['query']!r}): payment "
        f"{float(tokens.filter(pl.col('round') == row['round'])['payment'].sum()):.3g} in all"
        for row in recorded.iter_rows(named=True)
    ]
    snippet = token_html(tokens.with_columns(pl.lit("<b>").alias("token")), [0], ["Alpha", "Beta"])
    assert "&lt;b&gt;" in snippet and "<b>" not in snippet


def test_token_replay_uses_the_recorded_threads_and_warns_when_it_differs(
    tmp_path, random_model_dir, random_lm, capsys
):
    import torch

    from analysis.tokens import plot_run_tokens
    from market_sim.experiments.token_trace import recorded_threads

    run = write_token_auction_run(tmp_path, random_model_dir, random_lm)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["execution"]["torch_threads"] == torch.get_num_threads() == 1  # conftest
    summary["execution"]["torch_threads"] = 2
    (run / "summary.json").write_text(json.dumps(summary))
    with recorded_threads(run) as threads:
        assert threads == torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1  # restored
    # a recorded reply the replay cannot reproduce: round 1's text changed
    rounds = pl.read_parquet(run / "rounds.parquet")
    changed = pl.when(pl.col("round") == 1).then(pl.lit("not the reply")).otherwise("text")
    rounds.with_columns(changed.alias("text")).write_parquet(run / "rounds.parquet")
    assert plot_run_tokens(run, tmp_path / "figures", rounds=2) == []
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"market-sim: warning: {run}: the replay of round 1 does not reproduce the recorded "
        "reply (another torch version, device or thread count?); no token figure"
    )
    assert not (tmp_path / "figures").exists() and torch.get_num_threads() == 1


def test_token_figure_of_a_batched_run_is_skipped_with_a_warning(tmp_path, capsys):
    from analysis.tokens import plot_run_tokens

    scenario = Path(__file__).parent.parent / "scenarios" / "learning_token_auction.toml"
    text = scenario.read_text().replace("rounds = ", "auctions_per_round = 4\nrounds = ", 1)
    (tmp_path / "scenario.toml").write_text(text)
    (tmp_path / "summary.json").write_text("{}")
    assert plot_run_tokens(tmp_path, tmp_path / "figures") == []
    error = capsys.readouterr().err
    assert "no token figure" in error and "auctions_per_round = 4" in error


def test_allocation_units_are_stated_when_token_and_reply_mechanisms_share_an_axis(
    results, tmp_path
):
    """A token auction's value sums over up to 25 tokens, MOSAIC's is one reply's relevance:
    a welfare bar of 32 beside one of 0.35 read as MOSAIC creating 1% of the value."""
    assert "allocation units differ" not in figure_text(welfare_figure(results))
    for kind, payment in (("token_auction", "second_price"), ("mosaic", "mosaic")):
        for seed in (0, 1):
            write_run(tmp_path / f"{kind}-{seed}", kind, payment, seed, 1.0 + seed)
    text = figure_text(welfare_figure(load_results(tmp_path)))
    assert "allocation units differ: token auction = sum over the reply's tokens" in text


def test_a_long_footer_line_is_wrapped_inside_the_figure():
    """The frontier figure (6.4 in wide) cut its seeds note at both edges."""
    from matplotlib.figure import Figure

    from analysis.figure_style import footer

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    fig.subplots()
    line = "n = 2 seeds per point; " + "mean over seeds, error bars " * 10
    footer(fig, line, "short")
    fig.canvas.draw()  # the Agg canvas: text extents in pixels
    label = fig._supxlabel
    box = label.get_window_extent()
    assert label.get_text().count("\n") >= 2 and label.get_text().endswith("\nshort")
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width


def test_learning_bands_too_wide_to_read_run_off_the_axes_and_say_so(tmp_path):
    """Two seeds sharpening 1/4 and 4: the log2 band is +-12.7 sd, 2 ** it reached 5e5 and the
    y axis, shared by every panel, flattened every curve to the floor."""
    for seed, scale in ((0, 0.25), (1, 4.0)):
        folder = tmp_path / f"token-{seed}"
        write_run(folder, "token_auction", "second_price", seed, 1.0)
        agents = pl.read_parquet(folder / "agents.parquet")
        agents.with_columns(pl.lit(scale).alias("report_scale")).write_parquet(
            folder / "agents.parquet"
        )
    results = load_results(tmp_path)
    runs, by = labelled_runs(results)
    fig = learning_figure(results, load_agents(runs, by))
    low, high = fig.axes[0].get_ylim()
    # the largest mean drawn is the scale's geometric mean, sqrt(1/4 * 4) = 1 (bid ratios
    # 0.5 + 0.1 r stay below it), so the axis ends at 2 x 1
    assert (low, high) == (0.0, 2.0)
    assert f"bands above {high:.3g} run off the axes" in figure_text(fig)


def contrast_with_white(colour: str) -> float:
    """WCAG contrast ratio of a ``#RRGGBB`` colour against white: 1.05 / (L + 0.05)."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def test_fixed_mechanism_colours_stay_visible_on_white():
    # Lines, markers and point labels draw in these colours on a white background. Okabe-Ito's
    # yellow (1.3:1) vanished there; the bound is the lightest colour kept, Tol's pale cyan for
    # "token auction, no payment" (1.78:1), and the sanity check below pins the formula.
    assert contrast_with_white("#F0E442") < 1.4 and contrast_with_white("#000000") == 21.0
    faint = {n: c for n, c in NAME_COLORS.items() if contrast_with_white(c) < 1.75}
    assert faint == {}
    # the colours of other names too (found in review: Tol's sand, 1.6:1, was among them)
    assert [c for c in EXTRA_COLORS if contrast_with_white(c) < 1.75] == []
    # and the names a figure uses when its runs differ in slot count have the fixed colours
    for kind in ("first_price", "second_price"):
        varying = mechanism_name(kind, slots_vary=True)
        assert mechanism_color(varying) == mechanism_color(mechanism_name(kind, slots=2))


def test_token_figure_of_another_mechanism_is_skipped_without_loading_torch(tmp_path):
    # The replay imports torch and transformers (about 10 s here); `plot` of an ad-slot run
    # must not pay that. A fresh interpreter, since this one has torch loaded already.
    scenario = Path(__file__).parent.parent / "scenarios" / "classic_auctions.toml"
    (tmp_path / "scenario.toml").write_text(scenario.read_text())
    (tmp_path / "summary.json").write_text("{}")
    probe = (
        "import sys\nfrom pathlib import Path\nfrom analysis.tokens import plot_run_tokens\n"
        f"assert plot_run_tokens(Path({str(tmp_path)!r}), Path({str(tmp_path / 'f')!r})) == []\n"
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
    assert not (tmp_path / "f").exists()


def with_grid_key(results, key: str, values: dict[str, float | None]):
    """``results`` as if swept over ``key``: mechanism kind -> its value (None: a null)."""
    from analysis.load import Results

    column = pl.col("mechanism").replace_strict(values, default=None, return_dtype=pl.Float64)
    runs = results.runs.with_columns(column.alias(key))
    return Results(runs, (key,), results.sweep_dirs, results.run_dirs, results.scenarios)


def test_runs_whose_grid_key_is_null_are_drawn_like_the_others(results):
    # A sweep over a per-kind key (mechanism.mosaic.tau) leaves it null for the other kinds;
    # `== None` matched no row, so their bars read "n/a" and their curves were left out.
    swept = with_grid_key(results, "mechanism.tau", {"vcg": 0.5, "gsp": 1.0})
    heights = {
        name: [bar.get_height() for bar in bars]
        for name, bars in bars_by_name(revenue_figure(swept)).items()
    }
    assert heights["uniform price, 2 slots"] == pytest.approx([3.0])  # mean of 3.0, 3.5, 2.5
    assert heights["VCG"] == pytest.approx([2.5]) and heights["GSP"] == pytest.approx([4.9 / 3])
    runs, by = labelled_runs(swept)
    fig = learning_figure(swept, load_agents(runs, by))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == EXPECTED_ORDER
    # the token auctions' panel shows one setting (n/a): its report scale stays dashed
    scale = next(line for line in fig.axes[0].lines if "scale" in line.get_label())
    assert scale.get_linestyle() == "--" and scale.get_label().endswith("tau=n/a")


def test_runs_without_their_scenario_are_kept_apart_by_their_summarys_length(tmp_path):
    # Two 4-round runs and one of 2 rounds, scenario.toml gone: they used to pool silently.
    for seed in range(3):
        write_run(tmp_path / f"run-{seed}", "vcg", "", seed, 2.0)
        (tmp_path / f"run-{seed}" / "scenario.toml").unlink()
    summary_path = tmp_path / "run-2" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "rounds": 2}))
    with pytest.warns(UserWarning, match="differ in rounds"):
        runs, by = labelled_runs(load_results(tmp_path))
    assert by[-1] == "setting"
    assert sorted(runs["setting"].to_list()) == ["rounds=2", "rounds=4", "rounds=4"]


def test_a_one_window_curve_is_a_marker_with_its_interval(tmp_path):
    for seed, revenue in enumerate([1.0, 2.0]):
        folder = tmp_path / f"run-{seed}"
        write_run(folder, "vcg", "", seed, revenue)
        agents = pl.read_parquet(folder / "agents.parquet").filter(pl.col("round") == 0)
        agents.with_columns(pl.col("bid") + 0.1 * seed).write_parquet(folder / "agents.parquet")
    results = load_results(tmp_path)
    runs, by = labelled_runs(results)
    ax = learning_figure(results, load_agents(runs, by)).axes[0]
    line = next(line for line in ax.lines if line.get_label() == "bid / valuation")
    assert line.get_marker() == "o" and list(line.get_ydata()) == pytest.approx([0.55])
    (bounds,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    low, high = bounds.lines[2][0].get_segments()[0][:, 1]
    assert low < 0.5 and high > 0.6  # two runs at 0.5 and 0.6: a t interval around 0.55


def test_report_scale_curves_of_two_settings_are_told_apart(tmp_path):
    for seed in range(2):
        for k in (1, 8):
            folder = tmp_path / f"k{k}-{seed}"
            write_run(folder, "token_auction", "second_price", seed + 1, 1.0)
            text = (folder / "scenario.toml").read_text()
            (folder / "scenario.toml").write_text(
                text.replace("rounds = 4", f"rounds = 4\nauctions_per_round = {k}")
            )
    with pytest.warns(UserWarning, match="differ"):
        results = load_results(tmp_path)
        runs, by = labelled_runs(results)
        fig = learning_figure(results, load_agents(runs, by))
    scales = [line for line in fig.axes[0].lines if "scale" in line.get_label()]
    assert len(scales) == 2
    assert len({(line.get_linestyle(), line.get_label()) for line in scales}) == 2
    assert scales[0].get_linestyle() != scales[1].get_linestyle()


def test_the_learning_note_gives_the_range_of_n_over_the_points_drawn(tmp_path):
    # three seeds, one of which stopped after 2 of 4 rounds: windows 2 and 3 rest on 2 runs
    for seed in range(3):
        write_run(tmp_path / f"run-{seed}", "vcg", "", seed, 2.0)
    agents = pl.read_parquet(tmp_path / "run-2" / "agents.parquet")
    agents.filter(pl.col("round") < 2).write_parquet(tmp_path / "run-2" / "agents.parquet")
    results = load_results(tmp_path)
    runs, by = labelled_runs(results)
    text = figure_text(learning_figure(results, load_agents(runs, by)))
    assert "n = 2-3 seeds per curve point;" in text

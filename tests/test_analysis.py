"""Analysis: confidence intervals against hand computations, learning curves, headless figures."""

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread
from polars.testing import assert_frame_equal

import analysis.bar_figures
import analysis.experiment_figures
from analysis.figure_files import DPI
from analysis.figure_style import FIGURE_SIZES, mechanism_colors
from analysis.learning_curves import learning_curves
from analysis.load import load_agents, load_results, load_runs
from analysis.metrics import (
    AGENT_METRICS,
    add_labels,
    agent_summary,
    brand_shares,
    frontier,
    mechanism_summary,
    summarize,
)
from analysis.plots import NoResultsError, plot_all
from analysis.stats import (
    bootstrap_interval,
    clip_interval,
    clopper_pearson_interval,
    mean_ci,
    t_quantile,
    wilson_interval,
)
from market_sim.results.records import AGENTS, CONVERGENCE

T_975 = {1: 12.706204736174707, 2: 4.302652729749464, 4: 2.7764451051977934, 9: 2.262157162798205}
ROUNDS = 6
# revenue per (mechanism, platform_weight, seed): the CI test recomputes these by hand
REVENUE = {
    ("token_auction", 0.0): [1.0, 2.0, 4.0],
    ("token_auction", 0.5): [0.5, 1.5, 1.0],
    ("first_price", 0.0): [3.0, 3.5, 2.5],
    ("first_price", 0.5): [2.0, 2.5, 3.0],
}


def write_run(folder: Path, kind: str, weight: float, seed: int, revenue: float) -> None:
    folder.mkdir(parents=True)
    # bid ratio ramps from 0.5 to 1.0 over the rounds for first_price, flat 1 for token_auction
    agents = []
    for rnd in range(ROUNDS):
        for agent, valuation in (("Alpha", 1.0), ("Beta", 2.0)):
            ratio = 1.0 if kind == "token_auction" else 0.5 + 0.1 * rnd
            agents.append(
                {
                    "run_id": f"{kind}-w{weight}-{seed}",
                    "round": rnd,
                    "agent": agent,
                    "valuation": valuation,
                    "bid": ratio * valuation,
                    "report_scale": 1.0 + 0.1 * seed,
                    "utility": 0.5,
                    "payment": revenue / 2,
                    "value": 1.0,
                    "regret": 0.1 * seed if kind == "first_price" else 0.0,
                }
            )
    rounds = [
        {
            "run_id": f"{kind}-w{weight}-{seed}",
            "round": rnd,
            "mechanism": kind,
            "revenue": revenue,
            "advertiser_value": 2.0,
            "user_value": 1.0 + weight,
            "social_welfare": 3.0 + weight,
        }
        for rnd in range(ROUNDS)
    ]
    pl.DataFrame(agents).write_parquet(folder / "agents.parquet")
    pl.DataFrame(rounds).write_parquet(folder / "rounds.parquet")
    (folder / "scenario.toml").write_text("name = 'synthetic'\n")
    summary = {
        "mechanism": kind,
        "aggregation": "linear",
        "payment": "second_price",
        "rounds": ROUNDS,
        "auctions_per_round": 1,
        "seed": seed,
        "run_id": f"{kind}-w{weight}-{seed}",
        "revenue_mean": revenue,
        "advertiser_value_mean": 2.0,
        "user_value_mean": 1.0 + weight,
        "social_welfare_mean": 3.0 + weight,
        "utility_mean": 0.5,
        "ir_violation_rate": 0.0,
        "bid_ratio_final": 1.0,
        "regret_mean": 0.1 * seed if kind == "first_price" else 0.0,
        "regret_max": 0.2 * seed,
        "brand_new_metric": 7.0,
        "versions": {"torch": "x"},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A sweep folder in the results layout, built by hand, plus a lambda sweep and MOSAIC file."""
    root = tmp_path_factory.mktemp("analysis")
    sweep = root / "sweep"
    rows = []
    for (kind, weight), revenues in REVENUE.items():
        for seed, revenue in enumerate(revenues):
            name = f"{kind}-{weight}-seed{seed}"
            write_run(sweep / "runs" / name, kind, weight, seed, revenue)
            summary = json.loads((sweep / "runs" / name / "summary.json").read_text())
            summary.pop("versions")
            rows.append(
                {
                    "mechanism.kind": kind,
                    "mechanism.platform_weight": weight,
                    "seed": seed,
                    "run_dir": f"runs/{name}",
                    **{k: v for k, v in summary.items() if k != "seed"},
                }
            )
    pl.DataFrame(rows).write_parquet(sweep / "runs.parquet")
    grid = {
        "mechanism.kind": ["token_auction", "first_price"],
        "mechanism.platform_weight": [0, 0.5],
    }
    (sweep / "sweep.json").write_text(json.dumps({"grid": grid, "seeds": [0, 1, 2]}))
    lam = root / "lambda"
    lam.mkdir()
    pl.DataFrame(
        {
            "aggregation": ["linear"] * 3 + ["log_linear"] * 3,
            "lambda": [0.0, 0.5, 1.0] * 2,
            "samples": [40] * 6,
            "share_only_first": [0.0, 0.3, 0.9] * 2,
            "share_only_second": [0.9, 0.3, 0.0] * 2,
            "share_both": [0.1, 0.3, 0.1] * 2,
            "share_neither": [0.0, 0.1, 0.0] * 2,
        }
    ).write_parquet(lam / "shares.parquet")
    pl.DataFrame(
        {
            "proposal": ["reference"] * 8 + ["context"] * 8,
            "candidates": [1, 4, 16, 64] * 4,
            "seed": ([0] * 4 + [1] * 4) * 2,
            "tv": [0.9, 0.6, 0.3, 0.1, 0.8, 0.5, 0.3, 0.2]
            + [0.7, 0.3, 0.1, 0.05, 0.6, 0.3, 0.1, 0.0],
        }
    ).write_parquet(root / "mosaic_convergence.parquet")
    return root


def test_t_quantiles_match_tables():
    for df, expected in T_975.items():
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-9)
    assert t_quantile(0.025, 4) == pytest.approx(-T_975[4], abs=1e-9)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959966, abs=1e-5)


def test_mean_ci_by_hand():
    values = [1.0, 2.0, 4.0]
    mean = 7 / 3
    sd = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 2)
    half = T_975[2] * sd / math.sqrt(3)
    assert mean_ci(values) == pytest.approx((mean, mean - half, mean + half))
    single = mean_ci([5.0])
    assert single[0] == 5.0 and math.isnan(single[1])
    low, high = wilson_interval(0.3, 40)
    z = 1.959963984540054
    centre = (0.3 + z * z / 80) / (1 + z * z / 40)
    spread = z * math.sqrt(0.3 * 0.7 / 40 + z * z / 6400) / (1 + z * z / 40)
    assert (low, high) == pytest.approx((centre - spread, centre + spread))


def test_range_respecting_intervals():
    # clipping keeps an interval inside the range and leaves one already inside untouched
    assert clip_interval(-1.0, 2.0, (0.0, None)) == (0.0, 2.0)
    assert clip_interval(0.2, 1.4, (0.0, 1.0)) == (0.2, 1.0)
    assert clip_interval(-3.0, -1.0, (0.0, None)) == (0.0, 0.0)
    assert clip_interval(0.5, 0.7, (0.0, 1.0)) == (0.5, 0.7)
    mean, low, high = mean_ci([0.0, 0.0, 3.0], bounds=(0.0, None))
    assert low == 0.0 and high > mean == 1.0
    # the percentile bootstrap is deterministic and never leaves the sample's [min, max]
    values = [0.0, 0.5, 3.0, 0.1]
    first = bootstrap_interval(values)
    assert first == bootstrap_interval(values)
    assert 0.0 <= first[0] < first[1] <= 3.0
    # with 4 values every resample mean is one of the 4^4 equally likely means; the 2.5% and
    # 97.5% quantiles of the exact distribution lie within one attainable step of the estimate
    exact = np.sort([np.mean(c) for c in itertools.product(values, repeat=4)])
    assert exact[5] <= first[0] <= exact[8] and exact[-9] <= first[1] <= exact[-6]
    wide = [float(v) for v in np.linspace(0.0, 1.0, 12) ** 2]
    assert bootstrap_interval(wide) != bootstrap_interval(wide, seed=1)  # the seed is used
    assert math.isnan(bootstrap_interval([1.0])[0])
    # Clopper-Pearson: closed forms at the edges, (alpha/2)^(1/n) and 1 - (alpha/2)^(1/n)
    assert clopper_pearson_interval(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert clopper_pearson_interval(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    low, high = clopper_pearson_interval(12, 40)
    wilson = wilson_interval(0.3, 40)
    assert low < wilson[0] and high > wilson[1]  # exact interval is the more conservative


def test_mechanism_summary_cis_over_seeds(sweep_dir):
    results = load_results(sweep_dir / "sweep")
    assert results.grid_keys == ("mechanism.kind", "mechanism.platform_weight")
    assert results.runs.height == 12
    table = mechanism_summary(results)
    assert table.columns[:3] == ["label", "mechanism.platform_weight", "metric"]
    assert "brand_new_metric" in table["metric"].to_list()  # new summary keys need no code
    assert "auctions_per_round" not in table["metric"].to_list()  # a setting, not a metric
    for (kind, weight), revenues in REVENUE.items():
        row = table.filter(
            pl.col("label") == kind,
            pl.col("mechanism.platform_weight") == weight,
            pl.col("metric") == "revenue_mean",
        ).row(0, named=True)
        mean = sum(revenues) / 3
        sd = math.sqrt(sum((r - mean) ** 2 for r in revenues) / 2)
        half = T_975[2] * sd / math.sqrt(3)
        assert row["n"] == 3
        assert row["mean"] == pytest.approx(mean)
        # revenue cannot be negative: the t interval is cut at 0 (two groups reach below it)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(
            (max(0.0, mean - half), mean + half)
        )
    lows = table.filter(pl.col("metric") == "revenue_mean")["ci_low"].to_list()
    assert lows.count(0.0) == 2
    # sorted deterministically
    assert table.equals(mechanism_summary(results))


def test_summarize_single_observation_has_null_ci():
    frame = pl.DataFrame({"g": ["a", "a", "b"], "x": [1.0, 3.0, 5.0]})
    table = summarize(frame, ["g"], ["x"])
    assert table["g"].to_list() == ["a", "b"]
    assert table["ci_low"][0] == pytest.approx(2.0 - T_975[1] * math.sqrt(2) / math.sqrt(2))
    assert table["ci_low"][1] is None and table["std"][1] is None


def test_a_null_variant_is_left_out_of_the_label():
    # folders of two versions pooled: the older runs lack ``settlement`` (null there)
    runs = pl.DataFrame(
        {
            "mechanism": ["token_auction"] * 3,
            "payment": ["second_price", "first_price", "second_price"],
            "settlement": ["ex_post", None, None],
        }
    )
    assert add_labels(runs)["label"].to_list() == [
        "token_auction (second_price, ex_post)",
        "token_auction (first_price)",
        "token_auction (second_price)",
    ]


def test_labels_show_varying_variants():
    runs = pl.DataFrame(
        {
            "mechanism": ["token_auction", "token_auction", "gsp", "gsp"],
            "aggregation": ["linear", "log_linear", "linear", "linear"],
            "payment": ["second_price"] * 4,
        }
    )
    labels = add_labels(runs)["label"].to_list()
    assert labels == ["token_auction (linear)", "token_auction (log_linear)", "gsp", "gsp"]
    # a colour depends on the readable name only, whatever else a figure shows
    names = ["token auction, second price", "token auction, first price", "GSP"]
    colors = mechanism_colors(names)
    assert colors["GSP"] == mechanism_colors(["GSP", "new kind"])["GSP"]
    assert len(set(colors.values())) == 3


def test_agent_summary_and_learning_curves(sweep_dir):
    results = load_results(sweep_dir / "sweep")
    runs = add_labels(results.runs, results.grid_keys)
    agents = load_agents(runs, ["label", "mechanism.platform_weight", "seed"])
    assert agents.height == 12 * ROUNDS * 2
    summary = agent_summary(results, agents)
    ratio = summary.filter(pl.col("label") == "first_price", pl.col("metric") == "bid_ratio")
    assert ratio["mean"].to_list() == pytest.approx([0.75, 0.75])  # mean of 0.5..1.0
    distortion = summary.filter(
        pl.col("label") == "token_auction", pl.col("metric") == "report_scale_deviation"
    )
    # |log2 s| with s = 1, 1.1, 1.2 for seeds 0, 1, 2
    expected = (math.log2(1.1) + math.log2(1.2)) / 3
    assert distortion["mean"].to_list() == pytest.approx([expected, expected])
    curves = learning_curves(agents, by=["label"], window=2)
    first = curves.filter(pl.col("label") == "first_price", pl.col("metric") == "bid_ratio")
    assert first["window"].to_list() == [0, 1, 2]
    assert first["round_start"].to_list() == [0, 2, 4]
    assert first["mean"].to_list() == pytest.approx([0.55, 0.75, 0.95])
    assert first["n"].to_list() == [6, 6, 6]  # 3 seeds x 2 platform weights
    scale = curves.filter(pl.col("label") == "token_auction", pl.col("metric") == "report_scale")
    mean, low, high = mean_ci([1.0, 1.1, 1.2] * 2)
    assert scale["mean"][0] == pytest.approx(mean)
    assert (scale["ci_low"][0], scale["ci_high"][0]) == pytest.approx((low, high))


def test_the_learning_curves_read_only_the_columns_they_need(sweep_dir):
    from analysis.learning_figure import LEARNING_FIELDS, LEARNING_METRICS

    results = load_results(sweep_dir / "sweep")
    runs = add_labels(results.runs, results.grid_keys)
    by = ["label", "mechanism.platform_weight", "seed"]
    every = load_agents(runs, by)
    needed = load_agents(runs, by, fields=LEARNING_FIELDS)
    assert set(needed.columns) < set(every.columns)
    assert set(needed.columns) == {*LEARNING_FIELDS, *by, "run_path"} & set(every.columns)
    for window in (None, 2):
        assert_frame_equal(
            learning_curves(needed, by=["label"], metrics=LEARNING_METRICS, window=window),
            learning_curves(every, by=["label"], metrics=LEARNING_METRICS, window=window),
        )


def test_plot_keeps_round_sums_read_in_chunks_and_draws_the_same_curves(sweep_dir, monkeypatch):
    import analysis.load
    from analysis.learning_figure import LEARNING_FIELDS, LEARNING_METRICS, learning_round_sums

    results = load_results(sweep_dir / "sweep")
    runs = add_labels(results.runs, results.grid_keys)
    by = ["label", "mechanism.platform_weight", "seed"]
    every = load_agents(runs, by, fields=LEARNING_FIELDS)
    # 5 rows a chunk: two advertisers a round, so chunks end mid-round and must merge
    monkeypatch.setattr(analysis.load, "ROWS_PER_CHUNK", 5)
    sums = load_agents(runs, by, fields=LEARNING_FIELDS, reduce=learning_round_sums)
    assert sums.height == runs.height * ROUNDS  # one row per (run, round)
    assert sums["agent_rows"].to_list() == [2] * sums.height
    for window in (None, 2):
        # equal up to the order of float64 additions (a sum of 2 to 4 terms near 1)
        assert_frame_equal(
            learning_curves(sums, by=["label"], metrics=LEARNING_METRICS, window=window),
            learning_curves(every, by=["label"], metrics=LEARNING_METRICS, window=window),
            check_exact=False,
            rel_tol=1e-12,
        )


def test_round_sums_of_batched_rounds_in_chunks_equal_the_rounds_means(tmp_path, monkeypatch):
    import analysis.load
    from analysis.learning_figure import learning_round_sums
    from analysis.load import read_reduced
    from market_sim.results.records import AGENTS

    rows = batched_agent_rows("run", 4, 6)
    for row in rows:  # bid ratio: the round plus a quarter of the auction's index
        row["bid"] = row["round"] + row["auction"] / 4
    path = tmp_path / "agents.parquet"
    pl.DataFrame(rows).drop("run_path", "label").write_parquet(path)
    monkeypatch.setattr(analysis.load, "ROWS_PER_CHUNK", 3)  # 3 rows: rounds of 4 split
    sums = read_reduced(path, None, AGENTS, learning_round_sums)
    assert sums["round"].to_list() == list(range(6))
    assert sums["auctions"].to_list() == [4] * 6 and sums["agent_rows"].to_list() == [4] * 6
    # round r: bids r, r + 0.25, r + 0.5, r + 0.75 (exact in binary, so exact sums)
    assert sums["bid_ratio_sum"].to_list() == [4 * r + 1.5 for r in range(6)]
    assert sums["bid_ratio_count"].to_list() == [4] * 6
    curves = learning_curves(
        sums.with_columns(pl.lit("run").alias("run_path"), pl.lit("run").alias("label")),
        metrics=("bid_ratio",),
        window=2,
    )
    assert curves["mean"].to_list() == [0.875, 2.875, 4.875]
    assert curves["auction_mid"].to_list() == [3.5, 11.5, 19.5]


def test_a_run_without_an_auction_column_has_one_auction_a_round_when_pooled():
    # An older run (no ``auction`` column) beside a K = 3 run: read separately (as plot does)
    # it has K = 1; pooled raw rows used to give it a null K and borrow the other run's.
    batched = pl.DataFrame(batched_agent_rows("a", 3, 4))
    older = (
        pl.DataFrame(batched_agent_rows("b", 1, 4))
        .drop("auction")
        .with_columns(pl.lit("a").alias("label"))
    )
    pooled = pl.concat([batched, older], how="diagonal_relaxed")
    curves = learning_curves(pooled, metrics=("bid_ratio",), window=2)
    assert curves["auctions_per_round"].null_count() == curves.height  # K differs: 3 and 1
    alone = learning_curves(older, metrics=("bid_ratio",), window=2)
    assert alone["auctions_per_round"].to_list() == [1, 1]


def test_round_sums_of_an_empty_file_draw_nothing(tmp_path):
    from analysis.learning_figure import learning_round_sums
    from analysis.load import read_reduced
    from market_sim.results.records import AGENTS

    path = tmp_path / "agents.parquet"
    pl.DataFrame(schema={"round": pl.Int64, "bid": pl.Float64}).write_parquet(path)
    assert read_reduced(path, ["round", "bid"], AGENTS, learning_round_sums).height == 0


def batched_agent_rows(label: str, auctions_per_round: int, rounds: int) -> list[dict]:
    """One agent's rows over ``rounds`` rounds of K auctions; its bid ratio is the round."""
    return [
        {"run_path": label, "label": label, "round": r, "auction": a, "bid": r, "valuation": 1.0}
        for r in range(rounds)
        for a in range(auctions_per_round)
    ]


def test_learning_curves_of_runs_with_different_k_each_get_their_own_windows():
    """300 rounds of one auction against 19 rounds of 16 (about the same 300 auctions)."""
    agents = pl.DataFrame(batched_agent_rows("K=1", 1, 300) + batched_agent_rows("K=16", 16, 19))
    curves = learning_curves(agents, metrics=("bid_ratio",))
    single, batched = (curves.filter(pl.col("label") == label) for label in ("K=1", "K=16"))
    # about 20 points each: windows of 15 rounds and of 1 round
    assert single.height == 20 and single["rounds_per_window"].unique().to_list() == [15]
    assert batched.height == 19 and batched["rounds_per_window"].unique().to_list() == [1]
    assert batched["mean"].to_list() == pytest.approx(list(range(19)))  # the round, exactly
    # each point at the middle of its rounds, in rounds and in auctions (16 per round)
    assert single["round_mid"][-1] == 292.0 and single["auction_mid"][-1] == 292.0
    assert batched["round_mid"][-1] == 18.0 and batched["auction_mid"][-1] == 18 * 16 + 7.5
    assert batched["auctions_per_round"].unique().to_list() == [16]


def test_learning_curves_of_a_sweep_over_k_keep_k_as_a_grouping_column():
    """A sweep over auctions_per_round has it among ``by``; it used to be added twice."""
    rows = batched_agent_rows("K=1", 1, 8) + batched_agent_rows("K=4", 4, 8)
    agents = pl.DataFrame(rows).with_columns(
        pl.col("label").str.slice(2).cast(pl.Int64).alias("auctions_per_round")
    )
    curves = learning_curves(agents, by=("label", "auctions_per_round"), metrics=("bid_ratio",))
    assert curves.columns.count("auctions_per_round") == 1
    batched = curves.filter(pl.col("auctions_per_round") == 4)
    assert batched["auction_mid"].to_list() == [4 * r + 1.5 for r in range(8)]


def test_a_partial_last_window_is_placed_at_the_rounds_it_holds():
    agents = pl.DataFrame(batched_agent_rows("run", 4, 10))
    curves = learning_curves(agents, metrics=("bid_ratio",), window=4)
    assert curves["round_start"].to_list() == [0, 4, 8]
    assert curves["round_mid"].to_list() == [1.5, 5.5, 8.5]  # rounds 8 and 9 only
    assert curves["auction_mid"].to_list() == [7.5, 23.5, 35.5]  # auctions 32..39
    assert curves["mean"].to_list() == pytest.approx([1.5, 5.5, 8.5])


def test_learning_curves_refuse_an_empty_window():
    with pytest.raises(ValueError, match="window: rounds per window must be at least 1, got 0"):
        learning_curves(pl.DataFrame(batched_agent_rows("run", 1, 4)), window=0)


def test_a_window_of_runs_with_different_k_has_no_auction_position():
    agents = pl.DataFrame(batched_agent_rows("a", 1, 4) + batched_agent_rows("b", 2, 4))
    curves = learning_curves(agents.with_columns(pl.lit("x").alias("label")), window=2)
    assert curves["auctions_per_round"].null_count() == curves.height
    assert curves["auction_mid"].null_count() == curves.height


def test_learning_figure_axis_is_the_auction_only_when_k_differs():
    from analysis.learning_figure import learning_axis

    assert learning_axis(pl.Series([1, 1])) == ("round_mid", "round")
    assert learning_axis(pl.Series([4, 4])) == ("round_mid", "round (4 auctions each)")
    assert learning_axis(pl.Series([1, 16])) == ("auction_mid", "auction")
    assert learning_axis(pl.Series([1, None], dtype=pl.Int64)) == ("round_mid", "round")


def test_frontier_and_brand_shares(sweep_dir):
    results = load_results(sweep_dir / "sweep")
    points = frontier(results, "mechanism.platform_weight")
    assert points["label"].to_list() == ["first_price"] * 2 + ["token_auction"] * 2
    assert points["x_mean"].to_list() == pytest.approx([3.0, 3.5, 3.0, 3.5])
    shares = brand_shares(pl.read_parquet(sweep_dir / "lambda" / "shares.parquet"))
    row = shares.filter(
        pl.col("aggregation") == "linear", pl.col("lambda") == 0.5, pl.col("category") == "both"
    ).row(0, named=True)
    assert row["share"] == 0.3
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(0.3, 40))


def test_load_runs_from_plain_run_folders(sweep_dir):
    runs = load_runs([sweep_dir / "sweep" / "runs" / "first_price-0.0-seed1"])
    assert runs.height == 1 and runs["versions.torch"][0] == "x"
    everything = load_runs(sweep_dir)
    assert everything.height == 12  # runs inside a sweep are read once, through runs.parquet


EXPECTED_FIGURES = {
    "revenue_by_mechanism": "revenue_by_mechanism",
    "welfare_by_mechanism": "welfare_by_mechanism",
    "frontier_mechanism_platform_weight": "frontier",
    "learning_curves": "learning_curves",
    "regret_by_mechanism": "regret_by_mechanism",
    "brand_shares": "brand_shares",
    "mosaic_convergence": "mosaic_convergence",
}


def test_figures_render_headless(sweep_dir, tmp_path):
    paths = plot_all(sweep_dir, tmp_path / "figs")
    assert {p.stem for p in paths} == set(EXPECTED_FIGURES)
    for name, size_key in EXPECTED_FIGURES.items():
        png = tmp_path / "figs" / f"{name}.png"
        assert png.is_file() and (tmp_path / "figs" / f"{name}.svg").is_file()
        assert (tmp_path / "figs" / f"{name}.pdf").read_bytes().startswith(b"%PDF-"), name
        image = imread(png)
        width, height = FIGURE_SIZES[size_key]
        assert image.shape[:2] == (round(height * DPI), round(width * DPI)), name
        assert float(np.var(image[..., :3])) > 0, name


def test_figures_are_the_same_bytes_when_drawn_again(sweep_dir, tmp_path):
    # one figure: every figure is written by the same analysis.figure_files.write_figure
    results = load_results(sweep_dir / "sweep")
    first = analysis.bar_figures.plot_revenue(results, tmp_path / "first")
    second = analysis.bar_figures.plot_revenue(results, tmp_path / "second")
    assert [p.name for p in first] == [p.name for p in second]
    assert {p.suffix for p in first} == {".png", ".svg", ".pdf"}
    for one, other in zip(first, second, strict=True):
        assert one.read_bytes() == other.read_bytes(), one.name
    # no clock in the files (a rerun a minute later gives the same bytes too)
    svg = (tmp_path / "first" / "revenue_by_mechanism.svg").read_text(encoding="utf-8")
    assert "<dc:date>" not in svg
    assert b"/CreationDate" not in (tmp_path / "first" / "revenue_by_mechanism.pdf").read_bytes()
    assert not list((tmp_path / "first").glob(".*"))  # no temporary file left beside them


def test_plot_all_skips_what_is_absent(sweep_dir, tmp_path):
    paths = plot_all(sweep_dir / "lambda", tmp_path / "only-shares")
    assert [p.name for p in paths] == ["brand_shares.png", "brand_shares.svg", "brand_shares.pdf"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoResultsError):
        plot_all(tmp_path / "empty", tmp_path / "none")


def test_derived_report_scale_columns_of_an_all_null_column_are_null():
    """Polars reads a column of nulls as dtype Null, which has no log: it raised."""
    from analysis.metrics import with_agent_columns

    derived = with_agent_columns(pl.DataFrame({"report_scale": [None, None]}))
    assert derived["report_scale_deviation"].to_list() == [None, None]
    assert derived["log2_report_scale"].to_list() == [None, None]
    scales = with_agent_columns(pl.DataFrame({"report_scale": [0.25, 1.0, 4.0, 0.0]}))
    assert scales["report_scale_deviation"].to_list() == [2.0, 0.0, 2.0, None]  # exact powers of 2


def test_agent_metrics_are_schema_columns_or_derived_from_them():
    derived = {"bid_ratio": ("bid", "valuation"), "report_scale_deviation": ("report_scale",)}
    for metric in AGENT_METRICS:
        for name in derived.get(metric, (metric,)):
            assert AGENTS[name].dtype == pl.Float64, name
    assert CONVERGENCE["candidates"].dtype == pl.Int64


def test_agents_are_read_with_the_schema_dtypes(tmp_path):
    """A run written before the schema (brands/regret typed by inference) reads as declared."""
    folder = tmp_path / "old"
    write_run(folder, "vcg", 1.0, 0, 1.0)
    agents = pl.read_parquet(folder / "agents.parquet").with_columns(
        pl.col("round").cast(pl.Int32), pl.lit(None).alias("regret")
    )
    agents.write_parquet(folder / "agents.parquet")
    loaded = load_agents(load_runs(tmp_path))
    assert loaded.schema["round"] == pl.Int64 and loaded.schema["regret"] == pl.Float64
    assert loaded["round"].to_list() == agents["round"].cast(pl.Int64).to_list()


def test_convergence_figure_keeps_taus_apart_and_gives_the_reward_gap_its_own_axis(
    tmp_path, monkeypatch
):
    """Two runs at different tau used to be pooled into one line (and one interval)."""
    drawn = {}

    def keep(fig, out_dir, name):
        drawn[name] = fig
        return []

    monkeypatch.setattr(analysis.experiment_figures, "save", keep)
    rows = [
        {
            "query": q,
            "proposal": "reference",
            "candidates": m,
            "tau": tau,
            "seed": 0,
            "tv": tau * q_index / m,
            "reward_gap": -tau / m,
        }
        for tau in (0.1, 1.0)
        for q_index, q in enumerate(["a", "b", "c"], 1)
        for m in (1, 4, 16)
    ]
    analysis.experiment_figures.plot_convergence(pl.DataFrame(rows), tmp_path)
    distances, gaps = drawn["mosaic_convergence"].axes
    labels = [line.get_label() for line in distances.lines]
    assert labels == ["τ = 0.1 reference tv", "τ = 1 reference tv"]
    # the tau = 1 line is the mean over its own 3 queries only: (1 + 2 + 3) / 3 / M
    assert list(distances.lines[1].get_ydata()) == pytest.approx([2.0, 0.5, 0.125])
    assert [line.get_label() for line in gaps.lines if not line.get_label().startswith("_")] == [
        "τ = 0.1 reference reward_gap",
        "τ = 1 reference reward_gap",
    ]


def test_a_label_whose_runs_differ_in_slot_count_is_named_without_a_count():
    """It used to take one run's count (both rows of a CTR sweep read '1 slot')."""
    from analysis.metrics import add_names

    runs = pl.DataFrame(
        {
            "label": ["second_price", "second_price", "first_price"],
            "mechanism": ["second_price", "second_price", "first_price"],
            "run_path": ["one", "two", "three"],
        }
    )
    scenarios = {
        "one": {"mechanism.click_through_rates": [1.0]},
        "two": {"mechanism.click_through_rates": [1.0, 0.5]},
        "three": {"mechanism.click_through_rates": [1.0, 0.5]},
    }
    names = add_names(runs, scenarios)["mechanism_name"].to_list()
    assert names == ["second / uniform price", "second / uniform price", "first price, 2 slots"]


def test_a_plugins_kind_is_named_by_its_variants_and_its_units_are_flagged():
    """Two payment rules of one plugin read 'all_pay [all_pay (winner_pays)]'; figures mixing
    a plugin with built-in kinds said nothing about its units, or spoke of slot exchange rates."""
    from analysis.figure_style import allocation_unit_note, exchange_rate_note
    from analysis.metrics import add_names

    runs = pl.DataFrame(
        {
            "label": ["all_pay (all_pay)", "all_pay (winner_pays)", "first_price"],
            "mechanism": ["all_pay", "all_pay", "first_price"],
            "payment": ["all_pay", "winner_pays", None],
            "run_path": ["one", "two", "three"],
        }
    )
    scenarios = {"three": {"mechanism.click_through_rates": [1.0], "mechanism.slot_value": 24}}
    named = add_names(runs, scenarios)
    assert named["mechanism_name"].to_list() == [
        "all_pay",
        "all_pay, winner_pays",
        "first price, 1 slot",
    ]
    assert named["family"].to_list() == ["other", "other", "ad slots"]
    assert allocation_unit_note(named) == (
        "all_pay: a plugin's allocation and user value are in its own units"
    )
    assert allocation_unit_note(named.head(2)) == ""  # the plugin alone: nothing to compare
    results = SimpleNamespace(scenarios=scenarios)
    assert exchange_rate_note(results, named) == ""  # no steered tokens to relate slots to


def test_csv_summary_writes_a_list_valued_setting_as_json_text():
    import csv
    import io

    from analysis.summary import format_summary

    table = pl.DataFrame(
        {
            "label": ["second_price", "second_price"],
            "mechanism.click_through_rates": [[1.0], [1.0, 0.5]],
            "metric": ["revenue_mean"] * 2,
            "n": [2, 2],
            "mean": [0.1 + 0.2, 1 / 3],
        }
    )
    rows = list(csv.DictReader(io.StringIO(format_summary(table, "csv"))))
    assert [json.loads(r["mechanism.click_through_rates"]) for r in rows] == [[1.0], [1.0, 0.5]]
    assert [float(r["mean"]) for r in rows] == [0.1 + 0.2, 1 / 3]  # exact round trip


def test_csv_summary_leaves_a_missing_list_setting_blank_like_other_missing_cells():
    import csv
    import io

    from analysis.summary import format_summary

    table = pl.DataFrame(
        {
            "label": ["second_price", "token_auction"],
            "mechanism.click_through_rates": [[1.0, 0.5], None],
            "mechanism.tau": [None, 0.5],
        }
    )
    rows = list(csv.DictReader(io.StringIO(format_summary(table, "csv"))))
    assert [r["mechanism.click_through_rates"] for r in rows] == ["[1.0, 0.5]", ""]
    assert [r["mechanism.tau"] for r in rows] == ["", "0.5"]

"""EVA analysis: summaries and paired differences against hand computations, audit tables, plots."""

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from analysis.eva import (
    audit_comparison,
    audit_comparison_summary,
    audit_paired_difference,
    audit_top_queries,
    eva_paired_difference,
    eva_summary,
    eva_table,
    load_audit,
    load_eva,
)
from analysis.eva_figures import plot_audit, plot_eva
from analysis.figure_files import DPI
from analysis.figure_style import FIGURE_SIZES
from analysis.plots import NoResultsError, plot_all

T_975 = {1: 12.706204736174707, 2: 4.302652729749464}

# heldout_reward per (method, generation): {seed: value}
HELDOUT = {
    ("eva", 0): {0: 0.5, 1: 0.7, 2: 0.6},
    ("static", 0): {0: 0.5, 1: 0.7, 2: 0.6},
    ("eva", 1): {0: 1.0, 1: 2.0, 2: 3.0},
    ("static", 1): {0: 0.5, 1: 1.5, 2: 2.0},
    ("eva", 2): {0: 2.0, 1: 3.0, 2: 5.0},
    ("static", 2): {0: 1.0, 1: 2.5},  # seed 2 has no static run at generation 2
    ("eva", 3): {1: 4.0},
    ("static", 3): {0: 3.0},  # no seed has both methods at generation 3
}


def eva_frame(heldout=HELDOUT) -> pl.DataFrame:
    rows = []
    for (method, generation), values in heldout.items():
        for seed, reward in values.items():
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "generation": generation,
                    "heldout_reward": reward,
                    "heldout_reward_se": 0.1,
                    "train_pairs": 0 if generation == 0 else 8,
                    "pool_size": 16,
                    "informativeness_mean": 0.3 if method == "eva" else None,
                    "train_reward_mean": None if generation == 0 else 1.0,
                    "dpo_loss_first": None if generation == 0 else 0.69,
                    "dpo_loss_last": None if generation == 0 else 0.5,
                    "dpo_margin_last": None if generation == 0 else 0.2,
                }
            )
    return pl.DataFrame(
        rows,
        schema_overrides={
            "informativeness_mean": pl.Float64,
            "train_reward_mean": pl.Float64,
            "dpo_loss_first": pl.Float64,
            "dpo_loss_last": pl.Float64,
            "dpo_margin_last": pl.Float64,
        },
    )


def audit_row(mechanism, method, seed, generation, text, regret, query_id=None, **extra):
    return {
        "mechanism": mechanism,
        "method": method,
        "seed": seed,
        "generation": generation,
        "query_id": query_id or f"{method}-{seed}-{generation}-{text}",
        "text": text,
        "regret_max": regret,
        "regret_mean": None if regret is None else regret / 2,
        "parent_id": extra.get("parent_id"),
        "operator": extra.get("operator"),
    }


TA = "token_auction/first_price"


def audit_frame() -> pl.DataFrame:
    rows = [
        # eva, seed 0: "a" found twice (3.0 then 4.0), one null regret (not counted)
        audit_row(TA, "eva", 0, 0, "a", 3.0),
        audit_row(TA, "eva", 0, 0, "b", 5.0),
        audit_row(TA, "eva", 0, 1, "a", 4.0, parent_id="eva-0-0-a", operator="rephrase"),
        audit_row(TA, "eva", 0, 1, "c", 1.0),
        audit_row(TA, "eva", 0, 1, "d", None),
        audit_row(TA, "eva", 1, 0, "x", 2.0),
        audit_row(TA, "eva", 1, 0, "y", 2.0),
        audit_row(TA, "uniform", 0, 0, "a", 1.0),
        audit_row(TA, "uniform", 0, 0, "b", 0.5),
        audit_row(TA, "uniform", 0, 0, "c", 0.2),
        audit_row(TA, "uniform", 1, 0, "a", 0.4),
        # gsp: ties on regret 7.0 between "zeta" and "alpha"; "alpha" twice at 7.0
        audit_row("gsp", "eva", 0, 1, "zeta", 7.0),
        audit_row("gsp", "eva", 0, 2, "alpha", 7.0, parent_id="p", operator="specialize"),
        audit_row("gsp", "eva", 0, 0, "alpha", 7.0),
        audit_row("gsp", "eva", 0, 0, "mid", 5.0),
        audit_row("gsp", "eva", 0, 0, "low", 1.0),
        audit_row("gsp", "uniform", 0, 0, "huge", 9.0),
    ]
    return pl.DataFrame(rows, schema_overrides={"parent_id": pl.String, "operator": pl.String})


# --------------------------------------------------------------------------- eva.parquet


def test_eva_summary_matches_hand_computation():
    table = eva_summary(eva_frame())
    assert table.columns == [
        "method",
        "generation",
        "seeds",
        "heldout_reward_mean",
        "ci_low",
        "ci_high",
    ]
    assert table.select("method", "generation").rows() == [
        ("eva", 0),
        ("eva", 1),
        ("eva", 2),
        ("eva", 3),
        ("static", 0),
        ("static", 1),
        ("static", 2),
        ("static", 3),
    ]
    row = table.filter(pl.col("method") == "eva", pl.col("generation") == 1).row(0, named=True)
    half = T_975[2] * 1.0 / math.sqrt(3)  # values 1, 2, 3: s = 1
    assert row["seeds"] == 3
    assert row["heldout_reward_mean"] == pytest.approx(2.0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((2.0 - half, 2.0 + half))
    assert half == pytest.approx(4.302652729749464 * 0.5773502691896258)
    two = table.filter(pl.col("method") == "static", pl.col("generation") == 2).row(0, named=True)
    half = T_975[1] * math.sqrt(0.5 * 1.5**2) / math.sqrt(2)  # values 1.0, 2.5
    assert two["seeds"] == 2 and two["heldout_reward_mean"] == pytest.approx(1.75)
    assert (two["ci_low"], two["ci_high"]) == pytest.approx((1.75 - half, 1.75 + half))
    single = table.filter(pl.col("generation") == 3)
    assert single["seeds"].to_list() == [1, 1]
    assert single["heldout_reward_mean"].to_list() == [4.0, 3.0]
    assert single["ci_low"].is_null().all() and single["ci_high"].is_null().all()


def test_eva_summary_confidence_and_null_rewards():
    frame = eva_frame().with_columns(
        pl.when((pl.col("seed") == 2) & (pl.col("generation") == 1))
        .then(None)
        .otherwise(pl.col("heldout_reward"))
        .alias("heldout_reward")
    )
    row = eva_summary(frame, confidence=0.9).filter(
        pl.col("method") == "eva", pl.col("generation") == 1
    )
    # seed 2 dropped: values 1, 2 -> mean 1.5, s = sqrt(0.5), t_{0.95,1} = 6.313751514675043
    half = 6.313751514675043 * math.sqrt(0.5) / math.sqrt(2)
    assert row["seeds"][0] == 2
    assert (row["ci_low"][0], row["ci_high"][0]) == pytest.approx((1.5 - half, 1.5 + half))


def test_eva_paired_difference_uses_seeds_with_both_methods():
    table = eva_paired_difference(eva_frame())
    assert table.columns == [
        "generation",
        "seeds",
        "eva_mean",
        "static_mean",
        "difference_mean",
        "ci_low",
        "ci_high",
    ]
    assert table["generation"].to_list() == [0, 1, 2]  # generation 3: no seed has both
    assert table["seeds"].to_list() == [3, 3, 2]
    base = table.row(0, named=True)
    assert base["difference_mean"] == pytest.approx(0.0)
    assert (base["ci_low"], base["ci_high"]) == pytest.approx((0.0, 0.0))
    one = table.row(1, named=True)  # differences 0.5, 0.5, 1.0
    mean = 2.0 / 3.0
    s = math.sqrt(((0.5 - mean) ** 2 * 2 + (1.0 - mean) ** 2) / 2)
    half = T_975[2] * s / math.sqrt(3)
    assert one["difference_mean"] == pytest.approx(mean)
    assert (one["ci_low"], one["ci_high"]) == pytest.approx((mean - half, mean + half))
    two = table.row(2, named=True)  # seeds 0, 1 only: differences 1.0, 0.5
    half = T_975[1] * math.sqrt(0.125) / math.sqrt(2)
    assert two["difference_mean"] == pytest.approx(0.75)
    assert (two["eva_mean"], two["static_mean"]) == pytest.approx((2.5, 1.75))
    assert (two["ci_low"], two["ci_high"]) == pytest.approx((0.75 - half, 0.75 + half))


def test_eva_table_joins_the_summary_and_the_paired_difference_unchanged():
    frame = eva_frame()
    table = eva_table(frame)
    assert table["generation"].to_list() == [0, 1, 2, 3]
    summary = eva_summary(frame)
    for method in ("static", "eva"):
        own = summary.filter(pl.col("method") == method).sort("generation")
        assert table[f"{method}_seeds"].to_list() == own["seeds"].to_list()
        assert table[f"{method}_mean"].to_list() == own["heldout_reward_mean"].to_list()
        assert table[f"{method}_ci_low"].to_list() == own["ci_low"].to_list()
        assert table[f"{method}_ci_high"].to_list() == own["ci_high"].to_list()
    difference = eva_paired_difference(frame)
    paired = table.filter(pl.col("generation") < 3)
    assert paired["difference_seeds"].to_list() == difference["seeds"].to_list()
    assert paired["difference_mean"].to_list() == difference["difference_mean"].to_list()
    assert paired["difference_ci_low"].to_list() == difference["ci_low"].to_list()
    assert paired["difference_ci_high"].to_list() == difference["ci_high"].to_list()
    last = table.row(3, named=True)  # generation 3: one seed per method, none with both
    assert (last["static_mean"], last["eva_mean"]) == (3.0, 4.0)
    assert last["eva_ci_low"] is None and last["difference_seeds"] is None


def test_summary_command_prints_the_eva_table(tmp_path, capsys):
    import json

    from market_sim.cli import main

    frame = eva_frame()
    (tmp_path / "eva").mkdir()
    frame.write_parquet(tmp_path / "eva" / "eva.parquet")
    assert main(["summary", str(tmp_path / "eva"), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == eva_table(frame).to_dicts()  # floats exact: the same function
    assert main(["summary", str(tmp_path / "eva")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "generation",
        "seeds",
        "static",
        "eva",
        "eva",
        "-",
        "static",
        "(paired)",
    ]
    # generation 2: static 2 seeds, eva 3, 2 paired; eva - static = 0.75 (see above)
    row = next(line for line in lines if line.startswith("2 "))
    assert row.split()[1] == "2/3/2" and "0.75 [" in row
    (tmp_path / "empty").mkdir()
    assert main(["summary", str(tmp_path / "empty")]) == 2
    assert "no eva.parquet either" in capsys.readouterr().err
    assert main(["summary", str(tmp_path / "eva"), "--by", "seed"]) == 2
    assert "--by groups runs" in capsys.readouterr().err


def test_summary_of_runs_and_eva_results_prints_both_tables_but_one_document_only(tmp_path, capsys):
    from test_summary import write_run

    from market_sim.cli import main

    (tmp_path / "eva").mkdir()
    eva_frame().write_parquet(tmp_path / "eva" / "eva.parquet")
    write_run(tmp_path / "runs" / "vcg-0", "vcg", "", 0, 1.0)
    folders = [str(tmp_path / "eva"), str(tmp_path / "runs")]
    assert main(["summary", *folders]) == 0
    out = capsys.readouterr().out
    assert "revenue_mean" in out and "eva - static (paired)" in out
    for fmt in ("json", "csv"):
        assert main(["summary", *folders, "--format", fmt]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "summarize them separately" in error


def test_duplicate_eva_rows_raise():
    frame = eva_frame()
    doubled = pl.concat([frame, frame.filter(pl.col("seed") == 1, pl.col("generation") == 2)])
    with pytest.raises(ValueError, match="duplicated"):
        eva_paired_difference(doubled)
    with pytest.raises(ValueError, match="duplicated"):
        eva_summary(doubled)
    with pytest.raises(ValueError, match="missing column"):
        eva_summary(frame.drop("heldout_reward"))


def test_load_eva_and_audit(tmp_path):
    frame = eva_frame()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    frame.filter(pl.col("seed") == 0).write_parquet(tmp_path / "a" / "eva.parquet")
    frame.filter(pl.col("seed") != 0).write_parquet(tmp_path / "b" / "eva.parquet")
    loaded = load_eva([tmp_path / "a", tmp_path / "b" / "eva.parquet"])
    assert loaded.height == frame.height
    assert set(loaded["source"].to_list()) == {
        str((tmp_path / "a").resolve()),
        str((tmp_path / "b").resolve()),
    }
    assert eva_summary(loaded).equals(eva_summary(frame))
    with pytest.raises(FileNotFoundError, match="missing"):
        load_eva([tmp_path / "a", tmp_path / "missing"])
    with pytest.raises(FileNotFoundError, match="audit.parquet"):
        load_audit(tmp_path / "a")
    audit_frame().write_parquet(tmp_path / "a" / "audit.parquet")
    assert load_audit(str(tmp_path / "a")).height == audit_frame().height


# --------------------------------------------------------------------------- audit.parquet


def test_audit_comparison_per_seed():
    table = audit_comparison(audit_frame(), top=2)
    assert table.columns == [
        "mechanism",
        "method",
        "seed",
        "queries",
        "distinct_queries",
        "regret_max_found",
        "top_n",
        "top_mean",
        "all_mean",
    ]
    assert table.select("mechanism", "method", "seed").rows() == [
        ("gsp", "eva", 0),
        ("gsp", "uniform", 0),
        (TA, "eva", 0),
        (TA, "eva", 1),
        (TA, "uniform", 0),
        (TA, "uniform", 1),
    ]
    rows = {(r["mechanism"], r["method"], r["seed"]): r for r in table.iter_rows(named=True)}
    eva0 = rows[(TA, "eva", 0)]
    # null regret dropped; "a" counts once (best 4.0) in the top: top 2 = 5.0, 4.0
    assert (eva0["queries"], eva0["distinct_queries"]) == (4, 3)
    assert eva0["regret_max_found"] == 5.0
    assert (eva0["top_n"], eva0["top_mean"]) == (2, pytest.approx(4.5))
    assert eva0["all_mean"] == pytest.approx((3.0 + 5.0 + 4.0 + 1.0) / 4)
    assert rows[(TA, "eva", 1)]["top_mean"] == pytest.approx(2.0)
    assert rows[(TA, "uniform", 0)]["top_mean"] == pytest.approx(0.75)
    assert rows[(TA, "uniform", 0)]["all_mean"] == pytest.approx(1.7 / 3)
    assert (rows[(TA, "uniform", 1)]["top_n"], rows[(TA, "uniform", 1)]["top_mean"]) == (1, 0.4)
    assert rows[("gsp", "eva", 0)]["top_mean"] == pytest.approx(7.0)


def test_audit_summary_and_paired_difference():
    per_seed = audit_comparison(audit_frame(), top=2)
    summary = audit_comparison_summary(per_seed)
    assert summary.columns == [
        "mechanism",
        "method",
        "metric",
        "seeds",
        "mean",
        "ci_low",
        "ci_high",
    ]
    eva = summary.filter(pl.col("mechanism") == TA, pl.col("method") == "eva")
    assert eva["metric"].to_list() == [
        "queries",
        "distinct_queries",
        "regret_max_found",
        "top_mean",
        "all_mean",
    ]
    top = eva.filter(pl.col("metric") == "top_mean").row(0, named=True)
    half = T_975[1] * (abs(4.5 - 2.0) / math.sqrt(2)) / math.sqrt(2)  # seeds: 4.5, 2.0
    assert top["seeds"] == 2 and top["mean"] == pytest.approx(3.25)
    assert (top["ci_low"], top["ci_high"]) == pytest.approx((3.25 - half, 3.25 + half))
    gsp = summary.filter(pl.col("mechanism") == "gsp", pl.col("metric") == "top_mean")
    assert gsp["ci_low"].is_null().all()  # one seed
    difference = audit_paired_difference(per_seed)
    assert difference.columns == [
        "mechanism",
        "seeds",
        "eva_mean",
        "uniform_mean",
        "difference_mean",
        "ci_low",
        "ci_high",
    ]
    assert difference["mechanism"].to_list() == ["gsp", TA]
    assert difference["seeds"].to_list() == [1, 2]
    # gsp: 7.0 - 9.0; token auction: (4.5 - 0.75 + 2.0 - 0.4) / 2
    assert difference["difference_mean"].to_list() == pytest.approx([-2.0, 2.675])


def test_audit_top_queries_distinct_and_ties():
    table = audit_top_queries(audit_frame(), top=3)
    assert table.columns == [
        "mechanism",
        "rank",
        "text",
        "regret_max",
        "regret_mean",
        "method",
        "seed",
        "generation",
        "query_id",
        "operator",
        "parent_id",
    ]
    gsp = table.filter(pl.col("mechanism") == "gsp")
    # tie at 7.0 broken by text; "alpha" shown once, on its earliest generation; no uniform rows
    assert gsp["text"].to_list() == ["alpha", "zeta", "mid"]
    assert gsp["rank"].to_list() == [1, 2, 3]
    assert gsp["generation"].to_list() == [0, 1, 0]
    assert gsp["operator"][0] is None
    ta = table.filter(pl.col("mechanism") == TA)
    assert ta["text"].to_list() == ["b", "a", "x"]  # x, y tie at 2.0 (seed 1): text order
    assert ta["regret_max"].to_list() == [5.0, 4.0, 2.0]
    assert ta["operator"][1] == "rephrase" and ta["parent_id"][1] == "eva-0-0-a"
    everything = audit_top_queries(audit_frame(), top=1, method=None)
    assert everything.select("mechanism", "text").rows() == [("gsp", "huge"), (TA, "b")]


# --------------------------------------------------------------------------- figures


def check_png(path, size_key):
    image = imread(path)
    width, height = FIGURE_SIZES[size_key]
    assert image.shape[:2] == (round(height * DPI), round(width * DPI))
    assert float(np.var(image[..., :3])) > 0
    assert path.with_suffix(".svg").is_file()
    assert path.with_suffix(".pdf").read_bytes().startswith(b"%PDF-")


def test_plot_eva_and_audit_write_files(tmp_path):
    paths = plot_eva(eva_frame(), tmp_path)
    assert [p.name for p in paths] == ["eva_heldout.png", "eva_heldout.svg", "eva_heldout.pdf"]
    check_png(tmp_path / "eva_heldout.png", "eva_heldout")
    only_eva = plot_eva(eva_frame().filter(pl.col("method") == "eva"), tmp_path / "one")
    assert [p.name for p in only_eva] == ["eva_heldout.png", "eva_heldout.svg", "eva_heldout.pdf"]
    paths = plot_audit(audit_frame(), tmp_path, top=2)
    assert [p.name for p in paths] == ["audit_regret.png", "audit_regret.svg", "audit_regret.pdf"]
    check_png(tmp_path / "audit_regret.png", "audit_regret")
    assert plot_eva(eva_frame().clear(), tmp_path / "empty") == []


def test_plot_all_with_eva_and_audit_folders(tmp_path):
    eva_dir = tmp_path / "results" / "eva-run"
    eva_dir.mkdir(parents=True)
    eva_frame().write_parquet(eva_dir / "eva.parquet")
    paths = plot_all(eva_dir, tmp_path / "figs")
    assert [p.name for p in paths] == ["eva_heldout.png", "eva_heldout.svg", "eva_heldout.pdf"]
    audit_dir = tmp_path / "results" / "audit-run"
    audit_dir.mkdir()
    audit_frame().write_parquet(audit_dir / "audit.parquet")
    paths = plot_all(tmp_path / "results", tmp_path / "all")
    assert sorted(p.name for p in paths) == [
        "audit_regret.pdf",
        "audit_regret.png",
        "audit_regret.svg",
        "eva_heldout.pdf",
        "eva_heldout.png",
        "eva_heldout.svg",
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoResultsError, match="eva.parquet"):
        plot_all(tmp_path / "empty", tmp_path / "none")


def test_per_seed_copies_of_an_eva_output_are_not_counted_twice(tmp_path: Path) -> None:
    from analysis.eva import find_result_files

    frame = pl.DataFrame({"seed": [0], "method": ["eva"], "generation": [0]})
    (tmp_path / "seeds" / "seed-0").mkdir(parents=True)
    frame.write_parquet(tmp_path / "eva.parquet")
    frame.write_parquet(tmp_path / "seeds" / "seed-0" / "eva.parquet")
    assert find_result_files(tmp_path, "eva.parquet") == [(tmp_path / "eva.parquet").resolve()]
    (tmp_path / "eva.parquet").unlink()
    assert find_result_files(tmp_path, "eva.parquet") == [
        (tmp_path / "seeds" / "seed-0" / "eva.parquet").resolve()
    ]

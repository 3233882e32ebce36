"""market-sim summary: numbers equal the analysis' to the last digit; settings never pooled."""

import csv
import io
import json
import math
import warnings
from pathlib import Path

import polars as pl
import pytest

from analysis.load import load_results
from analysis.metrics import PoolingWarning, labelled_runs
from analysis.summary import SUMMARY_METRICS, UNITS_NOTE, format_summary, summary_table
from market_sim.cli import main

# (kind, payment, seed) -> revenue; report scales per seed make report_scale_deviation_final
# checkable
REVENUE = {
    ("token_auction", "second_price"): [1.0, 2.5, 4.0],
    ("token_auction", "first_price"): [3.0, 3.5, 5.0],
    ("vcg", ""): [0.0, 0.0, 0.0],
}
SCENARIO = """name = "synthetic"
seed = {seed}
rounds = {rounds}

[mechanism]
kind = "{kind}"
payment = "{payment}"
click_through_rates = [1.0, 0.5]
"""


def write_run(folder: Path, kind: str, payment: str, seed: int, revenue: float, rounds: int = 4):
    folder.mkdir(parents=True)
    scale = 1.0 + 0.5 * seed if kind == "token_auction" else 1.0
    agents = [
        {"round": r, "agent": a, "valuation": 1.0, "bid": 1.0, "report_scale": scale}
        for r in range(rounds)
        for a in ("Alpha", "Beta")
    ]
    pl.DataFrame(agents).write_parquet(folder / "agents.parquet")
    pl.DataFrame({"round": list(range(rounds)), "revenue": [revenue] * rounds}).write_parquet(
        folder / "rounds.parquet"
    )
    text = SCENARIO.format(seed=seed, rounds=rounds, kind=kind, payment=payment)
    (folder / "scenario.toml").write_text(text)
    summary = {
        "mechanism": kind,
        "payment": payment,
        "aggregation": "linear",
        "seed": seed,
        "rounds": rounds,
        "revenue_mean": revenue,
        "advertiser_value_mean": 2.0 + seed,
        "user_value_mean": 1.0,
        "social_welfare_mean": 3.0 + seed,
        "utility_mean": 0.5 * seed - 0.5,
        "regret_mean": 0.0 if kind == "vcg" else 0.1 * seed,
        "regret_max": 0.0 if kind == "vcg" else 0.3 * seed,
        "ir_violation_rate": 0.0,
        "bid_ratio_final": 1.0,
        # the run's own figure (market_sim.results.summarize); null where no scale is read
        "report_scale_deviation_final": math.log2(scale) if kind == "token_auction" else None,
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture()
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for (kind, payment), revenues in REVENUE.items():
        for seed, revenue in enumerate(revenues):
            write_run(root / f"{kind}-{payment}-{seed}", kind, payment, seed, revenue)
    return root


def cli_output(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_summary_json_and_csv_match_the_analysis_exactly(runs_dir, capsys):
    expected = summary_table(load_results(runs_dir))
    status, out, _ = cli_output(capsys, "summary", str(runs_dir), "--format", "json")
    assert status == 0
    assert json.loads(out) == expected.to_dicts()  # floats compared exactly: same function
    status, out, _ = cli_output(capsys, "summary", str(runs_dir), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [float(r["mean"]) for r in rows] == expected["mean"].to_list()
    assert [float(r["ci_high"]) for r in rows] == expected["ci_high"].to_list()
    # readable names in figure order: LLM-native first, payments in a fixed order, then slots
    names = list(dict.fromkeys(expected["mechanism_name"].to_list()))
    assert names == ["token auction, second price", "token auction, first price", "VCG"]
    # VCG reads no report scale: no report-scale deviation row (not a 0 that reads as truthful)
    assert expected.filter(pl.col("label") == "vcg")["metric"].to_list() == [
        metric for metric in SUMMARY_METRICS if metric != "report_scale_deviation_final"
    ]


def test_summary_values_by_hand(runs_dir):
    table = summary_table(load_results(runs_dir))

    def row(label: str, metric: str) -> dict:
        return table.filter(pl.col("label") == label, pl.col("metric") == metric).row(0, named=True)

    revenue = row("token_auction (second_price)", "revenue_mean")
    mean, sd = 2.5, 1.5  # revenues 1, 2.5, 4
    half = 4.302652729749464 * sd / math.sqrt(3)  # t_{0.975, 2}
    assert revenue["n"] == 3 and revenue["mean"] == pytest.approx(mean)
    assert revenue["ci_low"] == 0.0  # 2.5 - 3.73 < 0: revenue cannot be negative
    assert revenue["ci_high"] == pytest.approx(mean + half)
    # report-scale deviation |log2 scale| with scales 1, 1.5, 2 -> 0, 0.585, 1
    distortion = row("token_auction (second_price)", "report_scale_deviation_final")["mean"]
    assert distortion == pytest.approx(math.log2(3) / 3)  # (0 + log2 1.5 + 1) / 3
    zero = row("vcg", "regret_max")
    assert (zero["mean"], zero["ci_low"], zero["ci_high"]) == (0.0, 0.0, 0.0)
    # utility may be negative: its interval is the plain t interval
    utility = row("vcg", "utility_mean")
    assert utility["ci_low"] == pytest.approx(0.0 - 4.302652729749464 * 0.5 / math.sqrt(3))


def test_runs_of_different_settings_are_grouped_not_pooled(runs_dir, capsys):
    # a rerun with another number of rounds lands in the same folder
    write_run(runs_dir / "rerun-0", "vcg", "", 0, 1.0, rounds=6)
    write_run(runs_dir / "rerun-1", "vcg", "", 1, 3.0, rounds=6)
    with pytest.warns(PoolingWarning, match=r"differ in rounds"):
        table = summary_table(load_results(runs_dir))
    vcg = table.filter(pl.col("label") == "vcg", pl.col("metric") == "revenue_mean")
    assert vcg["setting"].to_list() == ["rounds=4", "rounds=6"]
    assert vcg["n"].to_list() == [3, 2]
    assert vcg["mean"].to_list() == pytest.approx([0.0, 2.0])
    status, out, err = cli_output(capsys, "summary", str(runs_dir))
    assert status == 0
    assert err.startswith("market-sim: warning: runs of the same mechanism and grid values differ")
    assert "rounds=6" in out


def test_seed_only_differences_are_pooled(runs_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoolingWarning)
        runs, by = labelled_runs(load_results(runs_dir))
    assert "setting" not in by and runs.height == 9


def test_summary_by_key_and_errors(runs_dir, capsys):
    table = summary_table(load_results(runs_dir), by=["seed"])
    assert set(table["n"].to_list()) == {1}
    assert table["ci_low"].null_count() == table.height  # one run per group: no interval
    status, _, err = cli_output(capsys, "summary", str(runs_dir), "--by", "nope")
    assert status == 2 and err.startswith("market-sim: error: --by: no column nope in the runs")
    status, _, err = cli_output(capsys, "summary", str(runs_dir / "absent"))
    assert status == 2 and "no such folder" in err
    with pytest.raises(ValueError, match="--format: unknown value 'xml'"):
        format_summary(table, "xml")
    status, out, _ = cli_output(capsys, "summary", str(runs_dir), "--format", "markdown")
    assert out.startswith("| mechanism | label | metric | n | mean | 95% CI |")
    # a reader of the printed table learns what each number is a mean of
    assert out.rstrip().endswith(UNITS_NOTE)


def test_several_folders_are_pooled_and_each_must_exist(runs_dir, capsys):
    folders = [runs_dir / "vcg--0", runs_dir / "vcg--2", runs_dir / "token_auction-second_price-1"]
    expected = summary_table(load_results(folders))
    status, out, _ = cli_output(capsys, "summary", *map(str, folders), "--format", "json")
    assert status == 0
    assert json.loads(out) == expected.to_dicts()
    revenue = [r for r in expected.to_dicts() if r["metric"] == "revenue_mean"]
    assert sorted((r["label"], r["n"]) for r in revenue) == [("token_auction", 1), ("vcg", 2)]
    status, _, err = cli_output(capsys, "summary", str(folders[0]), str(runs_dir / "absent"))
    assert status == 2 and err.strip().endswith("absent: no such folder")


def test_a_run_found_in_two_folders_counts_once(tmp_path, capsys):
    import shutil

    for seed in (0, 1):
        folder = tmp_path / "runs" / f"vcg-{seed}"
        write_run(folder, "vcg", "", seed, 1.0 + seed)
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "run_id": f"vcg-{seed}-ab"}))
    shutil.copytree(tmp_path / "runs" / "vcg-1", tmp_path / "copy" / "vcg-1")
    status, out, err = cli_output(
        capsys, "summary", str(tmp_path / "runs"), str(tmp_path / "copy"), "--format", "json"
    )
    assert status == 0
    assert "run id vcg-1-ab is in 2 folders" in err and "counted once" in err
    revenue = next(r for r in json.loads(out) if r["metric"] == "revenue_mean")
    assert revenue["n"] == 2 and revenue["mean"] == 1.5  # (1 + 2) / 2, exact in binary


def test_an_empty_folder_among_others_is_named_in_a_warning(runs_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, out, err = cli_output(capsys, "summary", str(runs_dir), str(tmp_path / "empty"))
    assert status == 0 and "revenue_mean" in out
    assert f"{tmp_path / 'empty'}: no runs and no eva results; skipped" in err


def test_one_run_id_with_different_results_counts_once_from_the_first_folder(tmp_path, capsys):
    """A CPU and a GPU run of one scenario with device = "auto" share a run id, as do a
    lockstep replicate and a solo run of its seed: one random draw computed twice. Both were
    kept, so a seed counted twice (n = 3 for two seeds, a narrower interval)."""
    for name, revenue, device in (("cpu", 1.0, "cpu"), ("gpu", 2.0, "cuda:0")):
        folder = tmp_path / name / "vcg-0"
        write_run(folder, "vcg", "", 0, revenue)
        summary = json.loads((folder / "summary.json").read_text())
        summary.update(run_id="vcg-0-ab", device=device)
        (folder / "summary.json").write_text(json.dumps(summary))
    folders = [str(tmp_path / "cpu"), str(tmp_path / "gpu")]
    status, out, err = cli_output(capsys, "summary", *folders, "--format", "json")
    assert status == 0 and "names different results" in err
    assert f"(they differ in device, revenue_mean); counted once, from {tmp_path / 'cpu'}" in err
    revenue = next(r for r in json.loads(out) if r["metric"] == "revenue_mean")
    assert revenue["n"] == 1 and revenue["mean"] == 1.0
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "figures")]) == 0
    err = capsys.readouterr().err
    assert "market-sim: warning: run id vcg-0-ab names different results" in err
    assert "RepeatedRunWarning" not in err  # one line, not a Python warning


def test_one_scenario_under_two_run_ids_counts_once(tmp_path, capsys):
    """``run_scenario`` with torch's default 2 threads names its run ``...-threads2``, the
    command line (1 thread) does not: one seed, one draw, counted as n = 2 with a zero-width
    interval. The resolved scenario's hash identifies the draw."""
    for name, run_id in (("cli", "vcg-0-ab"), ("api", "vcg-0-ab-threads2")):
        folder = tmp_path / name / "vcg-0"
        write_run(folder, "vcg", "", 0, 1.0)
        summary = json.loads((folder / "summary.json").read_text())
        summary.update(run_id=run_id, provenance={"scenario_sha256": "f00d"})
        (folder / "summary.json").write_text(json.dumps(summary))
    folders = [str(tmp_path / "cli"), str(tmp_path / "api")]
    status, out, err = cli_output(capsys, "summary", *folders, "--format", "json")
    assert status == 0
    assert "run ids vcg-0-ab-threads2, vcg-0-ab (one scenario) are in 2 folders" in err
    revenue = next(r for r in json.loads(out) if r["metric"] == "revenue_mean")
    assert revenue["n"] == 1
    # a copy without the hash (an older folder) takes its run id's: still one run
    summary = json.loads((tmp_path / "cli" / "vcg-0" / "summary.json").read_text())
    summary.update(run_id="vcg-0-ab-threads2")
    del summary["provenance"]
    (tmp_path / "cli" / "vcg-0" / "summary.json").write_text(json.dumps(summary))
    status, out, err = cli_output(capsys, "summary", *folders, "--format", "json")
    assert "run id vcg-0-ab-threads2 is in 2 folders" in err
    revenue = next(r for r in json.loads(out) if r["metric"] == "revenue_mean")
    assert revenue["n"] == 1


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("runs.parquet", b"garbage", "runs.parquet: not a readable parquet file ("),
        ("summary.json", b"[]", "summary.json: holds a JSON list, not an object"),
        ("summary.json", b"{bad", "summary.json: not readable JSON (JSONDecodeError: "),
        ("summary.json", b"{}", "summary.json: no 'mechanism' name; not the summary of a run"),
        ("summary.json", b'{"mechanism": null}', "summary.json: no 'mechanism' name"),
    ],
)
def test_summary_and_plot_name_a_damaged_file_in_one_line(file, content, message, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / file).write_bytes(content)
    for command in ("summary", "plot"):
        assert main([command, str(folder)]) == 2, command
        error = capsys.readouterr().err
        assert error.startswith(f"market-sim: error: {folder / file}") and message in error
        assert error.count("\n") == 1, (command, error)
    assert not (folder / "figures").exists()


def test_summary_and_plot_of_edited_results_are_one_line(tmp_path, capsys):
    """Readable files of another layout (a number stored as text) are not a traceback."""
    folder = tmp_path / "results"
    write_run(folder / "vcg-0", "vcg", "", 0, 1.0)
    summary = json.loads((folder / "vcg-0" / "summary.json").read_text())
    (folder / "vcg-0" / "summary.json").write_text(json.dumps({**summary, "revenue_mean": "x"}))
    for command in ("summary", "plot"):
        assert main([command, str(folder)]) == 2, command
        error = capsys.readouterr().err
        assert error.startswith(f"market-sim: error: {folder}: the results cannot be analysed")
        assert "'revenue_mean'" in error and error.count("\n") == 1, (command, error)
    assert not (folder / "figures").exists()


def test_plot_that_fails_halfway_leaves_no_figures(tmp_path, capsys, monkeypatch):
    """Figures are drawn into a staging folder and moved only when all were drawn."""
    import analysis.tokens

    folder = tmp_path / "results"
    write_run(folder / "vcg-0", "vcg", "", 0, 1.0)

    def unreadable_rounds(run_dir, out_dir):
        raise pl.exceptions.ComputeError("parquet: File out of specification")

    monkeypatch.setattr(analysis.tokens, "plot_run_tokens", unreadable_rounds)
    assert main(["plot", str(folder)]) == 2
    assert "its rounds cannot be read (ComputeError" in capsys.readouterr().err
    assert sorted(path.name for path in folder.iterdir()) == ["vcg-0"]  # no figures, no staging
    assert main(["plot", str(folder), "--out", str(tmp_path / "new" / "deep" / "figures")]) == 2
    assert not (tmp_path / "new").exists()  # the folders it made are gone too
    capsys.readouterr()
    monkeypatch.undo()
    assert main(["plot", str(folder)]) == 0
    assert len(list((folder / "figures").glob("*.png"))) >= 3


def test_plot_refuses_an_out_that_is_a_file(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    figures = tmp_path / "figures.png"
    figures.write_text("not a folder")
    assert main(["plot", str(folder), "--out", str(figures)]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{figures}' is a file, not a folder\n"
    )
    assert figures.read_text() == "not a folder"


def test_plot_refuses_an_out_holding_other_results(tmp_path, capsys):
    """Figures and tokens.parquet used to land among an eva folder's results, exit 0."""
    folder = tmp_path / "results"
    write_run(folder / "vcg-0", "vcg", "", 0, 1.0)
    eva = tmp_path / "eva-results"
    eva.mkdir()
    (eva / "eva.parquet").write_bytes(b"eva rows")
    assert main(["plot", str(folder), "--out", str(eva)]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{eva}' holds other results (eva.parquet); draw the figures "
        f"into '{folder}', its figures folder, or a folder without results\n"
    )
    assert sorted(path.name for path in eva.iterdir()) == ["eva.parquet"]
    run = folder / "vcg-0"
    assert main(["plot", str(run), "--out", str(run)]) == 0  # beside its own results: fine
    assert list(run.glob("*.png"))


def test_runs_without_a_run_id_are_never_taken_for_copies_of_each_other():
    """Rows without a run id fell into one window group: a row without a hash took another
    null-id row's and was dropped as its copy."""
    import warnings

    from analysis.load import drop_repeated_runs

    runs = pl.DataFrame(
        {
            "run_id": [None, None, "a", "a"],
            "provenance.scenario_sha256": ["h1", None, "h2", None],
            "run_path": ["p1", "p2", "p3", "p4"],
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = drop_repeated_runs(runs)
    assert kept["run_path"].to_list() == ["p1", "p2", "p3"]  # p4: a copy of run a
    assert [str(w.message) for w in caught] == ["run id a is in 2 folders (p3, p4); counted once"]


def write_sweep(root: Path, seeds: range) -> Path:
    """A sweep folder of VCG runs: ``runs/vcg-<seed>`` and the runs table listing them."""
    rows = []
    for seed in seeds:
        folder = root / "runs" / f"vcg-{seed}"
        write_run(folder, "vcg", "", seed, 1.0 + seed)
        rows.append(
            {"run_dir": f"runs/vcg-{seed}", **json.loads((folder / "summary.json").read_text())}
        )
    pl.DataFrame(rows).write_parquet(root / "runs.parquet")
    return root


def revenue_n(out: str) -> int:
    return next(r for r in json.loads(out) if r["metric"] == "revenue_mean")["n"]


def test_a_listed_run_whose_folder_is_gone_is_dropped_with_a_warning(tmp_path, capsys):
    """Found by an audit: summary still counted it (n = 3) while the curves skipped it."""
    import shutil

    sweep = write_sweep(tmp_path / "sweep", range(3))
    shutil.rmtree(sweep / "runs" / "vcg-2")
    status, out, err = cli_output(capsys, "summary", str(sweep), "--format", "json")
    assert status == 0 and revenue_n(out) == 2
    assert err == (
        f"market-sim: warning: {sweep / 'runs.parquet'} lists 1 run(s) whose folder holds no "
        f"summary.json (e.g. {sweep / 'runs' / 'vcg-2'}); not counted\n"
    )


def test_a_complete_run_the_table_does_not_list_is_named_in_a_warning(tmp_path, capsys):
    """Found by an audit: a run finished after the table was written dropped out silently."""
    sweep = write_sweep(tmp_path / "sweep", range(3))
    table = pl.read_parquet(sweep / "runs.parquet")
    table.head(2).write_parquet(sweep / "runs.parquet")
    status, out, err = cli_output(capsys, "summary", str(sweep), "--format", "json")
    assert status == 0 and revenue_n(out) == 2  # the table says what the sweep counts
    assert err == (
        f"market-sim: warning: {sweep / 'runs'} holds 1 complete run(s) that runs.parquet does "
        f"not list (e.g. {sweep / 'runs' / 'vcg-2'}); not counted (runs of a sweep replaced with "
        "--force, of one still running, or of one killed before it wrote its table: its "
        "command, run again, lists its own)\n"
    )


def test_the_table_note_says_when_no_row_has_an_interval(tmp_path, runs_dir, capsys):
    """Found by an audit: with one run per row the note still spoke of 95% t intervals."""
    write_run(tmp_path / "one" / "vcg-0", "vcg", "", 0, 1.0)
    status, out, _ = cli_output(capsys, "summary", str(tmp_path / "one"))
    assert status == 0
    assert "n = runs (seeds) per row: 1; a single run per row, no interval\n" in out
    status, out, _ = cli_output(capsys, "summary", str(runs_dir))
    assert "n = runs (seeds) per row: 3; 95% t interval over runs, cut at 0 (and 1)" in out

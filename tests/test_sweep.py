"""Sweeps: grid and seed parsing, run folders, resume after interruption, backends agree."""

import hashlib
import json
import os
import re
import shutil
import stat
import tomllib
from pathlib import Path

import polars as pl
import pytest
import torch

from market_sim.cli import main
from market_sim.results import is_complete_run
from market_sim.scenario import ScenarioError
from market_sim.sweep import (
    RUNS_DIR,
    RUNS_FILE,
    SweepError,
    SweepInterrupted,
    grid_scope_lines,
    parse_grid,
    parse_seeds,
    plan_sweep,
    run_sweep,
    run_task,
)

torch.set_num_threads(1)

SCENARIO = """
name = "tiny"
seed = 0
rounds = 3

[model]
path = "{model}"
device = "cpu"

[mechanism]
kind = "token_auction"
max_new_tokens = 3

[queries]
items = ["vacation in Hawaii", "family trip to Maui"]

[[advertisers]]
name = "Alpha Airlines"
context = "Alpha Airlines: nonstop flights to Hawaii."
valuation = {{ dist = "uniform", low = 0.5, high = 1.5 }}

[[advertisers]]
name = "Beta Resort"
context = "Beta Resort: beachfront rooms on Maui."
valuation = {{ dist = "uniform", low = 0.5, high = 1.5 }}
"""

GRID = ["mechanism.payment=second_price,first_price"]
SEEDS = "0-1"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, random_model_dir) -> Path:
    path = tmp_path_factory.mktemp("sweep-scenario") / "tiny.toml"
    path.write_text(SCENARIO.format(model=random_model_dir))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scenario) -> Path:
    """An uninterrupted in-process sweep: 2 grid points x 2 seeds."""
    out = tmp_path_factory.mktemp("reference")
    result = run_sweep(scenario, GRID, SEEDS, out, progress=False)
    assert result.executed == 4 and result.skipped == 0
    return out


def test_parse_grid_types_and_order():
    grid = parse_grid(
        ["mechanism.payment=first_price,none", "mechanism.platform_weight=0,0.5", "x.y=[1,2],[3]"]
    )
    assert list(grid) == ["mechanism.payment", "mechanism.platform_weight", "x.y"]
    assert grid["mechanism.payment"] == ("first_price", "none")
    assert grid["mechanism.platform_weight"] == (0, 0.5)
    assert grid["x.y"] == ([1, 2], [3])


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["rounds"], "--grid: expected dotted.key=v1,v2"),
        (["=1,2"], "--grid: expected dotted.key=v1,v2"),
        (["rounds=1,,2"], "--grid: rounds: empty value"),
        (["rounds=1,1"], "--grid: rounds: repeated value"),
        (["rounds=1", "rounds=2"], "--grid: rounds is given twice"),
        (
            ["advertisers[0].valuation.low=0.4,0.5", "advertisers.0.valuation.low=0.6"],
            "--grid: advertisers[0].valuation.low (as advertisers.0.valuation.low) is given twice",
        ),
        (["mechanism.platform_weight=0,0.0,1"], "mechanism.platform_weight: repeated value"),
        (["mechanism.platform_weight=-0.0,0.0"], "mechanism.platform_weight: repeated value"),
        (["seed=1,2"], "use --seeds"),
    ],
)
def test_parse_grid_errors(specs, message):
    with pytest.raises(SweepError, match=re.escape(message)):
        parse_grid(specs)


@pytest.mark.parametrize(
    "specs",
    [
        ["mechanism.slot_value=12,24", "mechanism.ad_slots.slot_value=24,12"],
        ["mechanism.click_through_rates=[1.0, 0.5],[1, 0.5]"],
    ],
    ids=["a per-kind spelling", "a list written two ways"],
)
def test_grid_points_that_resolve_to_one_scenario_are_refused(specs):
    scenario = Path(__file__).parent.parent / "scenarios" / "hawaii_learning.toml"
    with pytest.raises(SweepError, match="give the same resolved scenario"):
        plan_sweep(scenario, parse_grid(specs), (0,), ["mechanism.kind=gsp"])


def test_a_boolean_and_a_number_are_not_repeats_of_each_other():
    assert parse_grid(["x=true,1"])["x"] == (True, 1)  # the scenario refuses the wrong type


def test_parse_seeds():
    assert parse_seeds("0-3") == (0, 1, 2, 3)
    assert parse_seeds("0,3,5") == (0, 3, 5)
    assert parse_seeds("7") == (7,)
    assert parse_seeds("0-2,9") == (0, 1, 2, 9)
    assert parse_seeds([4, 2]) == (4, 2)
    assert parse_seeds(f"{2**63 - 1}") == (2**63 - 1,)  # the largest seed
    for bad in ("", "a", "-1", "3-1", "1,,2", "1.5"):
        with pytest.raises(SweepError, match="--seeds"):
            parse_seeds(bad)
    with pytest.raises(SweepError, match="seed 1 is given twice"):
        parse_seeds("0-2,1")
    with pytest.raises(SweepError, match="above the largest seed"):
        parse_seeds(f"{2**63}")
    with pytest.raises(SweepError, match="a 4400-digit seed is above the largest seed"):
        parse_seeds("1-" + "9" * 4400)  # int() itself refuses 4,300+ digits
    assert parse_seeds("0007") == (7,)
    assert parse_seeds("0" * 5000 + "1-" + "0" * 4400 + "3") == (1, 2, 3)
    with pytest.raises(SweepError, match="--seeds"):
        parse_seeds("\u0663")  # an Arabic-Indic 3: ASCII digits only
    with pytest.raises(SweepError, match="at most 100,000"):
        parse_seeds("0-1000000000000")  # refused before the range is expanded


def test_run_names_are_deterministic_and_readable(scenario):
    grid = parse_grid(GRID)
    first = plan_sweep(scenario, grid, (0, 1), ["rounds=3"])
    again = plan_sweep(scenario, grid, (0, 1), ["rounds=3"])
    assert [t.name for t in first] == [t.name for t in again]
    assert first[0].name.startswith("payment-second_price-seed0-")
    assert [(dict(t.point)["mechanism.payment"], t.seed) for t in first] == [
        ("second_price", 0),
        ("second_price", 1),
        ("first_price", 0),
        ("first_price", 1),
    ]
    changed = plan_sweep(scenario, grid, (0, 1), ["rounds=2"])
    assert {t.name for t in changed}.isdisjoint(t.name for t in first)


def test_sweep_writes_runs_table(reference):
    runs = pl.read_parquet(reference / RUNS_FILE)
    assert runs.height == 4
    assert runs.columns[:3] == ["mechanism.payment", "seed", "run_dir"]
    assert runs["seed"].to_list() == [0, 1, 0, 1]
    assert runs["mechanism.payment"].to_list() == runs["payment"].to_list()
    for key in ("revenue_mean", "social_welfare_mean", "regret_mean", "versions.torch"):
        assert key in runs.columns
    assert "wall_seconds" not in runs.columns and "rounds_per_second" not in runs.columns
    timings = pl.read_parquet(reference / "timings.parquet")
    assert "wall_seconds" in timings.columns and timings.height == 4
    for run_dir in runs["run_dir"]:
        assert is_complete_run(reference / run_dir)
    first_price = runs.filter(pl.col("payment") == "first_price")["revenue_mean"]
    second_price = runs.filter(pl.col("payment") == "second_price")["revenue_mean"]
    assert (first_price > second_price).all()
    manifest = json.loads((reference / "sweep.json").read_text())
    assert manifest["grid"] == {"mechanism.payment": ["second_price", "first_price"]}


class SimulatedCrashError(RuntimeError):
    pass


def test_resume_after_interruption_matches_uninterrupted(tmp_path, scenario, reference):
    calls = []

    def crash_after_two(task, runs_root):
        if len(calls) == 2:  # the third run dies half-written
            folder = runs_root / task.name
            folder.mkdir(parents=True)
            (folder / "scenario.toml").write_text("partial")
            (folder / "rounds.parquet").write_bytes(b"garbage")
            raise SimulatedCrashError
        calls.append(task.name)
        return run_task(task, runs_root)

    out = tmp_path / "sweep"
    with pytest.raises(SimulatedCrashError):
        run_sweep(scenario, GRID, SEEDS, out, progress=False, run_function=crash_after_two)
    half = [p for p in (out / "runs").iterdir() if not is_complete_run(p)]
    assert len(half) == 1
    partial = pl.read_parquet(out / RUNS_FILE)  # the table of the two complete runs
    assert partial["run_dir"].to_list() == [f"runs/{name}" for name in calls]
    reference_rows = pl.read_parquet(reference / RUNS_FILE).head(2)
    assert partial.select(reference_rows.columns).equals(reference_rows)

    resumed = []

    def counting(task, runs_root):
        resumed.append(task.name)
        return run_task(task, runs_root)

    result = run_sweep(scenario, GRID, SEEDS, out, progress=False, run_function=counting)
    assert result.executed == 2 and result.skipped == 2
    assert half[0].name in resumed and not set(resumed) & set(calls)
    expected = pl.read_parquet(reference / RUNS_FILE)
    assert pl.read_parquet(out / RUNS_FILE).equals(expected)
    assert (out / RUNS_FILE).read_bytes() == (reference / RUNS_FILE).read_bytes()

    def must_not_run(task, runs_root):
        raise AssertionError(f"finished sweep ran {task.name} again")

    again = run_sweep(scenario, GRID, SEEDS, out, progress=False, run_function=must_not_run)
    assert again.executed == 0 and again.skipped == 4
    assert again.runs.equals(expected)
    again = run_sweep(
        scenario, GRID, SEEDS, out, workers=2, progress=False, run_function=must_not_run
    )
    assert again.executed == 0


def test_interrupt_keeps_finished_runs_and_writes_their_table(tmp_path, scenario, reference):
    finished = []

    def interrupted_at_third(task, runs_root):
        if len(finished) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of the third run
        finished.append(task.name)
        return run_task(task, runs_root)

    out = tmp_path / "sweep"
    with pytest.raises(SweepInterrupted) as caught:
        run_sweep(scenario, GRID, SEEDS, out, progress=False, run_function=interrupted_at_third)
    assert str(caught.value) == (
        f"2 of 4 runs complete, listed in {out / RUNS_FILE}; run the same command again to resume"
    )
    assert isinstance(caught.value, KeyboardInterrupt)
    partial = pl.read_parquet(out / RUNS_FILE)
    assert partial["run_dir"].to_list() == [f"runs/{name}" for name in finished]
    assert pl.read_parquet(out / "timings.parquet")["run_dir"].equals(partial["run_dir"])
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["planned_runs"] == 4
    assert manifest["scenario_sha256"] == hashlib.sha256(Path(scenario).read_bytes()).hexdigest()

    result = run_sweep(scenario, GRID, SEEDS, out, progress=False)
    assert result.executed == 2 and result.skipped == 2
    assert (out / RUNS_FILE).read_bytes() == (reference / RUNS_FILE).read_bytes()


def test_interrupt_before_any_run_writes_an_empty_table(tmp_path, scenario, capsys):
    def interrupted(task, runs_root):
        raise KeyboardInterrupt

    out = tmp_path / "sweep"
    with pytest.raises(SweepInterrupted, match="^0 of 4 runs complete"):
        run_sweep(scenario, GRID, SEEDS, out, progress=False, run_function=interrupted)
    empty = pl.read_parquet(out / RUNS_FILE)
    assert empty.columns == ["mechanism.payment", "seed", "run_dir"] and empty.height == 0
    # nothing to analyse: one line and exit 2, not an empty table or "0 figures" (exit 0)
    assert main(["summary", str(out)]) == 2
    assert "no runs: runs.parquet lists none complete" in capsys.readouterr().err
    assert main(["plot", str(out)]) == 2
    assert "no results found" in capsys.readouterr().err and not (out / "figures").exists()


def test_sweep_files_follow_the_umask(reference):
    umask = os.umask(0)
    os.umask(umask)
    files = [path for path in reference.rglob("*") if path.is_file()]
    assert len(files) >= 3 + 4 * 4  # sweep.json, two tables, four runs of at least four files
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o666 & ~umask}


def test_two_local_workers_match_one(tmp_path, scenario, reference):
    out = tmp_path / "pool"
    result = run_sweep(scenario, GRID, SEEDS, out, workers=2, progress=False)
    assert result.executed == 4
    assert (out / RUNS_FILE).read_bytes() == (reference / RUNS_FILE).read_bytes()


def test_a_finished_sweep_reruns_without_its_model(tmp_path, scenario, reference, monkeypatch):
    """Only the runs still to do are checked: complete runs need no device or model."""
    import market_sim.lm.loading

    def unavailable(device="auto"):
        raise ValueError(f"device {device!r} requested but CUDA is not available")

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    monkeypatch.setattr(market_sim.lm.loading, "resolve_device", unavailable)
    result = run_sweep(scenario, GRID, SEEDS, out, progress=False)
    assert (result.executed, result.skipped) == (0, 4)
    assert (out / RUNS_FILE).read_bytes() == (reference / RUNS_FILE).read_bytes()
    shutil.rmtree(next((out / RUNS_DIR).iterdir()))  # one run to do: now the device matters
    with pytest.raises(ScenarioError, match="model.device: device 'cpu' requested"):
        run_sweep(scenario, GRID, SEEDS, out, progress=False)


def test_ray_backend_matches_local(tmp_path, scenario, reference):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    result = run_sweep(scenario, GRID, SEEDS, out, backend="ray", workers=2, progress=False)
    assert result.executed == 4
    assert (out / RUNS_FILE).read_bytes() == (reference / RUNS_FILE).read_bytes()


def test_another_sweep_into_a_sweep_folder_is_refused_unless_forced(tmp_path, scenario, reference):
    """It replaced runs.parquet and sweep.json without --force: the earlier runs dropped out of
    every summary and figure (their folders stayed, unlisted)."""
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    before = {name: (out / name).read_bytes() for name in (RUNS_FILE, "sweep.json")}

    def must_not_run(task, runs_root):
        raise AssertionError(f"a refused sweep ran {task.name}")

    other_grid = ["mechanism.payment=none"]
    for grid, seeds in ((other_grid, SEEDS), (GRID, "0")):  # another grid; fewer seeds
        with pytest.raises(SweepError) as caught:
            run_sweep(scenario, grid, seeds, out, progress=False, run_function=must_not_run)
        message = str(caught.value)
        assert message.startswith(f"--out: '{out}' holds a sweep whose runs.parquet lists")
        assert "pass --force to replace its tables" in message
        assert {name: (out / name).read_bytes() for name in before} == before  # nothing written
    assert main(["sweep", str(scenario), "--seeds", "0", "--out", str(out)]) == 2
    assert {name: (out / name).read_bytes() for name in before} == before
    # more seeds plan a superset: the sweep is extended, its earlier runs kept
    extended = run_sweep(scenario, GRID, "0-2", out, progress=False)
    assert (extended.executed, extended.skipped) == (2, 4)
    forced = run_sweep(scenario, other_grid, "0", out, progress=False, force=True)
    assert forced.runs.height == 1 and len(list((out / RUNS_DIR).iterdir())) == 7


def test_the_grid_in_another_flag_order_renames_the_runs_instead_of_running_them_again(
    tmp_path, scenario, capsys
):
    """The slug follows the --grid order; the seed-and-hash tail finds the runs either way."""
    one_order = ["mechanism.payment=second_price,first_price", "mechanism.platform_weight=0,0.5"]
    out = tmp_path / "sweep"
    done = []

    def second_run_crashes(task, runs_root):
        if len(done) == 1:  # the second run dies half-written: its folder is partial
            (runs_root / task.name).mkdir(parents=True)
            (runs_root / task.name / "scenario.toml").write_text(task.scenario_toml)
            raise SimulatedCrashError
        done.append(task.name)
        return run_task(task, runs_root)

    with pytest.raises(SimulatedCrashError):
        run_sweep(scenario, one_order, "0", out, progress=False, run_function=second_run_crashes)
    before = sorted(path.name for path in (out / RUNS_DIR).iterdir())
    assert len(before) == 2 and before[0].startswith("payment-second_price_platform_weight-0")
    ran = []

    def counting(task, runs_root):
        ran.append(task.name)
        return run_task(task, runs_root)

    other_order = list(reversed(one_order))
    result = run_sweep(scenario, other_order, "0", out, progress=False, run_function=counting)
    assert (result.executed, result.skipped) == (3, 1)  # the complete run was kept
    names = sorted(path.name for path in (out / RUNS_DIR).iterdir())
    assert len(names) == 4 and all(name.startswith("platform_weight-") for name in names)
    tails = {name[name.rfind("-seed") :] for name in before}
    assert {name[name.rfind("-seed") :] for name in names} >= tails
    renamed = [line for line in capsys.readouterr().err.splitlines() if "renamed" in line]
    assert len(renamed) == 2  # the complete run and the partial one
    fresh = run_sweep(scenario, other_order, "0", tmp_path / "fresh", progress=False)
    assert (out / RUNS_FILE).read_bytes() == (fresh.out_dir / RUNS_FILE).read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "spark"], "--backend: unknown value 'spark'; allowed: local, ray"),
        (["--workers", "0"], "--workers: must be an integer from 1 to 999999999"),
        (["--workers", "two"], "--workers: must be an integer from 1 to 999999999"),
        (["--workers", "²"], "--workers: must be an integer from 1 to 999999999"),
        (["--seeds", "x"], "--seeds: expected N, A-B or a comma list"),
        (["--grid", "rounds"], "--grid: expected dotted.key=v1,v2"),
        (["--grid", "mechanism.payment=vickrey"], "mechanism.payment: unknown value 'vickrey'"),
        (["--address", "auto"], "--address: only used with --backend ray"),
        (["--seed", "3"], "--seed: a sweep takes --seeds"),
        # checked before any run: no folder, no sweep.json (no machine has cuda:999)
        (["--device", "cuda:999"], "model.device: device 'cuda:999'"),
    ],
)
def test_cli_sweep_bad_input_exits_2_with_one_line(extra, message, tmp_path, scenario, capsys):
    args = ["sweep", str(scenario), "--seeds", "0", "--out", str(tmp_path / "out"), *extra]
    if "--seeds" in extra[:1]:
        args = ["sweep", str(scenario), "--out", str(tmp_path / "out"), *extra]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_sweep_of_a_model_with_damaged_weights_exits_2_with_one_line(
    workers, tmp_path, scenario, capsys
):
    """A truncated weights file is found before the plan is written (its header no longer
    covers the file). Found by an audit: with 2 workers the load failed in each worker's pool
    initializer, which printed a traceback per worker and "a worker process died"."""
    from market_sim.lm.bundled_models import BUNDLED_ROOT

    model = tmp_path / "damaged"
    shutil.copytree(BUNDLED_ROOT / "tiny-ads", model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5000])
    args = ["sweep", str(scenario), "--seeds", "0-1", "--out", str(tmp_path / "out")]
    assert main([*args, "--workers", workers, "--set", f"model.path={model}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert (
        error.startswith("market-sim: error: model.path: transformers cannot load")
        and "model.safetensors: " in error
    ), error
    assert not (tmp_path / "out").exists()  # nothing written: found before the plan


def test_cli_sweep_whose_weights_load_in_no_worker_exits_2_with_one_line(
    tmp_path, scenario, capsys
):
    """Weights that parse but do not fit the config fail only when loaded: in the workers. The
    error reaches the sweep as the first task's, not as a broken pool."""
    import json

    from market_sim.lm.bundled_models import BUNDLED_ROOT

    model = tmp_path / "reshaped"
    shutil.copytree(BUNDLED_ROOT / "tiny-ads", model)
    config = json.loads((model / "config.json").read_text())
    config["n_embd"] *= 2  # every weight of the file now has the wrong shape
    (model / "config.json").write_text(json.dumps(config))
    args = ["sweep", str(scenario), "--seeds", "0-1", "--out", str(tmp_path / "out")]
    assert main([*args, "--workers", "2", "--set", f"model.path={model}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith("market-sim: error: model.path: transformers cannot load"), error


def test_cli_sweep_and_plot(tmp_path, scenario, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "sweep",
            str(scenario),
            "--grid",
            "mechanism.platform_weight=0,0.5",
            "--seeds",
            "0,1",
            "--set",
            "mechanism.max_new_tokens=2",
            "--rounds",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    assert "4 runs done" in capsys.readouterr().out
    runs = pl.read_parquet(out / RUNS_FILE)
    assert runs["mechanism.platform_weight"].to_list() == [0.0, 0.0, 0.5, 0.5]
    assert set(runs["rounds"]) == {2}
    assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    for name in ("revenue_by_mechanism", "welfare_by_mechanism", "frontier_mechanism_platform"):
        assert name in printed
    assert (tmp_path / "figs" / "frontier_mechanism_platform_weight.png").is_file()
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "no results found" in capsys.readouterr().err


def test_a_per_kind_grid_key_applies_to_its_kind_only(scenario):
    grid = parse_grid(["mechanism.kind=second_price,mosaic", "mechanism.mosaic.tau=0.5,2.0"])
    tasks = plan_sweep(scenario, grid, [0])
    # three runs, not four: the second-price run is the same for every MOSAIC tau
    assert [task.point for task in tasks] == [
        (("mechanism.kind", "second_price"),),
        (("mechanism.kind", "mosaic"), ("mechanism.mosaic.tau", 0.5)),
        (("mechanism.kind", "mosaic"), ("mechanism.mosaic.tau", 2.0)),
    ]
    taus = [tomllib.loads(task.scenario_toml)["mechanism"].get("tau") for task in tasks]
    assert taus == [None, 0.5, 2.0]
    assert grid_scope_lines(grid) == ["--grid mechanism.mosaic.tau applies to kind mosaic only"]


def test_a_plain_grid_key_some_kind_does_not_read_is_refused_with_the_per_kind_spelling(scenario):
    grid = parse_grid(["mechanism.kind=second_price,mosaic", "mechanism.tau=0.5,2.0"])
    with pytest.raises(ScenarioError) as caught:
        plan_sweep(scenario, grid, [0])
    assert caught.value.key == "mechanism.tau"
    assert caught.value.message.startswith("the ad-slot auction (kind 'second_price') does not")
    assert caught.value.message.endswith(
        "write the grid key as mechanism.<plugin>.tau to sweep it for that plugin's kinds only"
    )


def test_list_valued_grid_keys_plan_one_run_per_value(scenario):
    plain = parse_grid(["mechanism.kind=gsp", "mechanism.click_through_rates=[1.0],[1.0,0.5]"])
    assert len(plan_sweep(scenario, plain, [0])) == 2
    scoped = parse_grid(
        ["mechanism.kind=token_auction,gsp", "mechanism.ad_slots.click_through_rates=[1.0],[0.5]"]
    )
    points = [task.point for task in plan_sweep(scenario, scoped, [0])]
    assert points == [
        (("mechanism.kind", "token_auction"),),
        (("mechanism.kind", "gsp"), ("mechanism.ad_slots.click_through_rates", [1.0])),
        (("mechanism.kind", "gsp"), ("mechanism.ad_slots.click_through_rates", [0.5])),
    ]


def test_a_per_kind_key_no_run_reads_is_refused(scenario):
    grid = parse_grid(["mechanism.kind=token_auction,gsp", "mechanism.mosaic.tau=0.5,2.0"])
    with pytest.raises(SweepError) as caught:
        plan_sweep(scenario, grid, [0])
    assert str(caught.value) == (
        "--grid mechanism.mosaic.tau: no run of this sweep is of kind mosaic (its kinds: gsp, "
        "token_auction), so the key would change nothing"
    )


@pytest.mark.parametrize(
    ("flags", "grid"),
    [
        (["--rounds", "1"], "rounds=2,3"),
        (["--set", 'advertisers[0].name="x"'], "advertisers.0.name=a,b"),
    ],
)
def test_a_grid_key_also_set_another_way_is_refused(flags, grid, tmp_path, scenario, capsys):
    """Found by an audit: --rounds 1 --grid rounds=2,3 ran 2 and 3 rounds, the flag silently
    replaced by the grid in every run."""
    args = ["sweep", str(scenario), "--seeds", "0", "--out", str(tmp_path / "out")]
    assert main([*args, *flags, "--grid", grid]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "also set by --set or a flag" in error, error
    assert error.startswith(f"market-sim: error: --grid {grid.split('=')[0]}: ")
    assert not (tmp_path / "out").exists()

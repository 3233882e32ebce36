"""The command line: bad scenario files exit 2 with one line and leave nothing behind."""

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

import market_sim
import market_sim.cli as cli
from market_sim.cli import main
from market_sim.lm.model import LanguageModel

GOOD = """
name = "cli"
seed = 1
rounds = 3

[model]
path = "{model}"
device = "cpu"

[mechanism]
kind = "token_auction"
max_new_tokens = 4

[queries]
items = ["vacation in Hawaii"]

[[advertisers]]
name = "Alpha Airlines"
context = "Alpha Airlines: nonstop flights to Hawaii."
valuation = {{ dist = "fixed", value = 1.0 }}

[[advertisers]]
name = "Beta Resort"
context = "Beta Resort: beachfront rooms on Maui."
valuation = {{ dist = "uniform", low = 0.5, high = 1.5 }}
"""

BAD_CASES = {
    "unknown key": (("rounds = 3", "rounds = 3\ncolour = 'blue'"), "colour: unknown key"),
    "negative valuation": (
        ("value = 1.0", "value = -1.0"),
        "valuation.value: must be between 0 and 1000000",
    ),
    "unknown mechanism": (
        ('kind = "token_auction"', 'kind = "lottery"'),
        "mechanism.kind: unknown value 'lottery'; allowed: token_auction",
    ),
    "missing model folder": (('path = "{model}"', 'path = "./no/such/model"'), "model.path"),
    "negative rounds": (("rounds = 3", "rounds = -3"), "rounds: must be between 1 and 10000000"),
}


def write_scenario(folder: Path, model_dir: Path, replace=None, drop_advertisers=False) -> Path:
    text = GOOD
    if replace:
        text = text.replace(*replace)
    text = text.format(model=model_dir)
    if drop_advertisers:
        text = text[: text.index("[[advertisers]]")]
    path = folder / "scenario.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_scenarios_exit_2_with_one_line(case, tmp_path, random_model_dir, capsys):
    replace, expected = BAD_CASES[case]
    scenario = write_scenario(tmp_path, random_model_dir, replace)
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error, error
    assert not out.exists()


def test_no_advertisers_exit_2(tmp_path, random_model_dir, capsys):
    scenario = write_scenario(tmp_path, random_model_dir, drop_advertisers=True)
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 2
    assert "advertisers: at least one advertiser is required" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_override_and_bad_device_exit_2(tmp_path, random_model_dir, capsys):
    scenario = write_scenario(tmp_path, random_model_dir)
    assert main(["run", str(scenario), "--set", "mechanism.payment=vickrey"]) == 2
    assert "mechanism.payment" in capsys.readouterr().err
    assert main(["run", str(scenario), "--set", "rounds"]) == 2
    assert "--set" in capsys.readouterr().err


def test_run_writes_results_and_prints_summary(tmp_path, random_model_dir, capsys):
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(scenario),
            "--out",
            str(out),
            "--rounds",
            "2",
            "--seed",
            "5",
            "--set",
            "mechanism.payment=first_price",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "revenue_mean" in printed and "Alpha Airlines" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["seed"] == 5 and summary["payment"] == "first_price"
    assert 'payment = "first_price"' in (out / "scenario.toml").read_text()


def test_run_seeds_writes_one_folder_per_seed_and_prints_the_pooled_table(
    tmp_path, random_model_dir, capsys
):
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "replicates"
    code = main(["run", str(scenario), "--seeds", "3,4", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    folders = [out / f"cli-seed{seed}" for seed in (3, 4)]
    for seed, folder in zip((3, 4), folders, strict=True):
        assert f"seed {seed}: {folder}/" in printed
        assert json.loads((folder / "summary.json").read_text())["seed"] == seed
    # The pooled table: n = 2 seeds, the mean of the two runs' revenue_mean.
    revenues = [json.loads((f / "summary.json").read_text())["revenue_mean"] for f in folders]
    row = next(line for line in printed.splitlines() if " revenue_mean " in line)
    n, mean = row.split()[-4:-2]  # ... revenue_mean  n  mean  [low, high]
    assert n == "2"
    # The table prints 4 significant digits: a relative 5e-4 covers its rounding.
    assert float(mean) == pytest.approx(sum(revenues) / 2, rel=5e-4)


def test_run_seeds_checks_a_seed_folder_left_by_an_earlier_call(tmp_path, random_model_dir, capsys):
    """Fresh seed folders are not probed one by one; one that exists is checked as a run's
    folder: the same scenario's is run again, another scenario's or a file is refused."""
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "replicates"
    args = ["run", str(scenario), "--seeds", "3,4", "--out", str(out), "--no-progress"]
    assert main([*args, "--rounds", "1"]) == 0
    assert main([*args, "--rounds", "1"]) == 0  # the same resolved scenario: rewritten
    capsys.readouterr()
    assert main([*args, "--rounds", "2"]) == 2  # seed 3's folder holds the 1-round runs
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"'{out / 'cli-seed3'}'" in error
    shutil.rmtree(out / "cli-seed3")
    (out / "cli-seed3").write_text("not a folder")
    assert main([*args, "--rounds", "1"]) == 2
    assert f"'{out / 'cli-seed3'}' is a file, not a folder" in capsys.readouterr().err


def test_run_seeds_without_the_summary_command_prints_each_run(
    tmp_path, random_model_dir, capsys, monkeypatch
):
    monkeypatch.setattr(cli.extensions, "extension_commands", lambda: {})
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "replicates"
    args = ["run", str(scenario), "--seeds", "3,4", "--out", str(out), "--rounds", "1"]
    assert main([*args, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "the 'summary' command is not registered" in captured.err
    assert captured.out.count("revenue_mean") == 2  # one run summary per seed


def test_run_refuses_the_folder_of_an_eva_output(tmp_path, random_model_dir, capsys):
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "eva-out"
    out.mkdir()
    (out / "eva.parquet").write_bytes(b"eva rows")
    (out / "queries.parquet").write_bytes(b"the evolved pool")
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds another command's results (eva.parquet)" in error
    assert (out / "queries.parquet").read_bytes() == b"the evolved pool"


SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.mark.parametrize(
    ("command", "scenario_file", "extra"),
    [
        ("eva", "eva_queries.toml", ["--generations", "1"]),
        ("audit", "eva_queries.toml", ["--generations", "1"]),
        ("convergence", "mosaic_convergence.toml", []),
        ("lambda-sweep", "hawaii_lambda_sweep.toml", []),
        ("sweep", "classic_auctions.toml", ["--seeds", "0"]),
    ],
)
def test_experiments_refuse_a_run_folder_before_any_work(
    command, scenario_file, extra, tmp_path, capsys
):
    scenario = SHIPPED / scenario_file  # the folder is checked before its model loads
    out = tmp_path / "run-out"
    out.mkdir()
    (out / "rounds.parquet").write_bytes(b"the run's rounds")
    (out / "scenario.toml").write_text("the run's scenario")
    argv = [command, str(scenario), *extra, "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"--out: '{out}' holds another command's results (rounds.parquet)" in error
    assert "--force" in error
    assert (out / "rounds.parquet").read_bytes() == b"the run's rounds"
    assert (out / "scenario.toml").read_text() == "the run's scenario"


def test_audit_refuses_a_fine_tuned_mechanism_without_an_audit_table(tmp_path, capsys):
    """The scenario loads (``run`` may use it), but ``audit`` would score evolved queries."""
    scenario = SHIPPED / "fine_tuning_groups.toml"  # static queries, no [audit] table
    out = tmp_path / "audit-out"
    argv = ["audit", str(scenario), "--generations", "1", "--out", str(out)]
    assert main([*argv, "--set", "mechanism.policy_space=fine_tuned"]) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: mechanism.policy_space: fine_tuned builds its policies before "
        "round 0 for the queries known then, but [audit] scores evolved queries\n"
    )
    assert not out.exists()  # refused before the model loads or the folder is made


def test_eva_refuses_eva_results_of_a_different_scenario(tmp_path, capsys):
    scenario = SHIPPED / "eva_queries.toml"
    out = tmp_path / "eva-out"
    out.mkdir()
    (out / "eva.parquet").write_bytes(b"rows of another eva")
    (out / "scenario.toml").write_text("rounds = 9\n")
    assert main(["eva", str(scenario), "--generations", "1", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{out}' holds eva results of a different resolved scenario "
        "(scenario.toml differs); choose another --out, or pass --force to overwrite them\n"
    )
    assert (out / "eva.parquet").read_bytes() == b"rows of another eva"


def test_result_folder_of_the_same_scenario_or_forced_is_accepted(tmp_path):
    from market_sim.scenario.output_folder import check_result_folder

    out = tmp_path / "audit-out"
    out.mkdir()
    (out / "audit.parquet").write_bytes(b"rows")
    (out / "scenario.toml").write_text("the same\n")
    check_result_folder(out, "audit", "the same\n", force=False)  # resume or rewrite
    check_result_folder(out, "eva", "another\n", force=True)
    check_result_folder(tmp_path / "missing", "eva", "any\n", force=False)


@pytest.mark.parametrize("command", ["lambda-sweep", "convergence", "eva", "audit"])
def test_commands_without_rounds_warn_about_a_set_auctions_per_round(command, capsys):
    args = argparse.Namespace(command=command, overrides=["auctions_per_round = 7", "seed=1"])
    cli.inputs.warn_auctions_per_round_unused(args)
    assert capsys.readouterr().err == (
        f"market-sim: warning: --set auctions_per_round=7 does not apply to {command}; it runs "
        "as with 1\n"
    )
    cli.inputs.warn_auctions_per_round_unused(
        argparse.Namespace(command=command, overrides=["seed=1"])
    )
    assert capsys.readouterr().err == ""


def test_workers_read_leading_zeros_like_seeds():
    assert cli.parse_workers("0" * 5000 + "4") == 4  # int() alone refuses 4,300+ digits
    with pytest.raises(cli.UsageError, match="--workers: must be an integer from 1"):
        cli.parse_workers("0" * 5000)


def test_a_scenario_that_is_a_device_is_one_line(capsys):
    assert main(["run", "/dev/zero"]) == 2  # read to the end, it would never end
    assert capsys.readouterr().err == (
        "market-sim: error: /dev/zero: is a device, not a file; expected a scenario TOML file\n"
    )


def test_a_scenario_from_a_pipe_runs(tmp_path):
    """Process substitution, ``market-sim run <(sed ... base.toml)``, gives a FIFO."""
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "classic_auctions.toml"
    fifo = tmp_path / "scenario.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{scenario}' > '{fifo}'"])
    try:
        loaded = cli.load_checked_scenario(fifo, ["rounds=2"])
    finally:
        writer.wait(timeout=30)
    assert loaded.rounds == 2 and loaded.name == "classic_auctions"


def test_console_script_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "market_sim.cli", "run", str(tmp_path / "x.toml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("market-sim: error:") and result.stderr.count("\n") == 1


def test_demo_refuses_a_folder_of_other_results(tmp_path, capsys):
    out = tmp_path / "eva"
    out.mkdir()
    (out / "eva.parquet").write_bytes(b"")
    args = ["demo", "--out", str(out), "--rounds", "3", "--seeds", "0", "--workers", "1"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{out}' holds another command's results (eva.parquet); "
        "choose another folder for the demo\n"
    )
    assert [path.name for path in out.iterdir()] == ["eva.parquet"]
    inner = tmp_path / "demo" / "token_auction"  # where the demo's first sweep goes
    inner.mkdir(parents=True)
    (inner / "eva.parquet").write_bytes(b"")
    (inner / "sweep.json").write_text("{}")  # its own file: a rerun resumes it
    args[2] = str(tmp_path / "demo")
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{inner}' holds another command's results (eva.parquet); "
        "choose another folder for the demo\n"
    )


def test_demo_runs_every_mechanism_and_draws_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--rounds", "3", "--seeds", "0", "--workers", "1"]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for mechanism in ("token_auction (second_price)", "token_auction (first_price)", "vcg", "gsp"):
        assert mechanism in printed
    assert (out / "token_auction" / "runs.parquet").is_file()
    assert (out / "ad_slots" / "runs.parquet").is_file()
    figures = {path.name for path in (out / "figures").iterdir()}
    assert {"revenue_by_mechanism.png", "welfare_by_mechanism.svg"} <= figures
    table = (out / "ad_slots" / "runs.parquet").read_bytes()
    assert main([*args, "--no-progress"]) == 0  # a rerun finds every run complete
    assert capsys.readouterr().out.split("\n\nruns:")[0] == printed.split("\n\nruns:")[0]
    assert (out / "ad_slots" / "runs.parquet").read_bytes() == table
    other_rounds = [*args[:4], "2", *args[5:], "--no-progress"]  # --rounds 2: other runs
    assert main(other_rounds) == 2  # its tables would drop the earlier runs
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pass --force to replace its tables" in error
    assert (out / "ad_slots" / "runs.parquet").read_bytes() == table
    assert main([*other_rounds, "--force"]) == 0
    assert pl.read_parquet(out / "ad_slots" / "runs.parquet")["rounds"].unique().to_list() == [2]
    # the replaced sweeps' runs stay in their folders, not counted, and the demo says so
    error = capsys.readouterr().err
    assert f"market-sim: warning: {out / 'ad_slots' / 'runs'} holds 4 complete run(s)" in error
    shutil.rmtree(out / "token_auction")  # the first sweep is new: only the second is refused
    assert main([*args, "--no-progress"]) == 2  # --rounds 3 again: ad_slots holds other runs
    assert "pass --force to replace its tables" in capsys.readouterr().err
    assert not (out / "token_auction").exists()  # refused before the first sweep ran


# ----------------------------------------------------------------------------- checked before work


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the command gets as far as loading a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(LanguageModel, "load", refuse)


def test_out_that_is_a_file_or_under_a_file_or_not_writable(
    tmp_path, random_model_dir, capsys, no_model_load
):
    scenario = write_scenario(tmp_path, random_model_dir)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = {
        str(a_file): f"market-sim: error: --out: '{a_file}' is a file, not a folder\n",
        str(a_file / "sub"): (
            f"market-sim: error: --out: '{a_file / 'sub'}' lies under '{a_file}', which is a "
            "file, not a folder\n"
        ),
        "/proc/x": "market-sim: error: --out: cannot write into '/proc' (",
    }
    for out, expected in cases.items():
        assert main(["run", str(scenario), "--out", out]) == 2
        error = capsys.readouterr().err
        assert error.startswith(expected) and error.count("\n") == 1, error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file", "scenario.toml"]


@pytest.mark.parametrize("command", ["run", "sweep", "lambda-sweep", "plot", "lm-train"])
def test_out_through_a_link_to_nothing_is_refused_before_work(
    command, tmp_path, random_model_dir, capsys, no_model_load
):
    """Found by an audit: a broken link (or a loop of links) passed the check, the whole run
    went by, and mkdir then raised FileExistsError with a traceback: the results were lost."""
    scenario = write_scenario(tmp_path, random_model_dir)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    argv = {
        "run": ["run", str(scenario)],
        "sweep": ["sweep", str(scenario), "--seeds", "0"],
        "lambda-sweep": ["lambda-sweep", str(SHIPPED / "hawaii_lambda_sweep.toml")],
        "plot": ["plot", str(tmp_path)],
        "lm-train": ["lm", "train"],
    }[command]
    for out, link in (("dangling", "dangling"), ("dangling/sub", "dangling"), ("loop1", "loop1")):
        assert main([*argv, "--out", str(tmp_path / out)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1, error
        assert f"'{tmp_path / link}' is a link to " in error and "does not resolve" in error
    assert not (tmp_path / "nowhere").exists()


def test_argument_errors_are_one_line(tmp_path, random_model_dir, capsys):
    scenario = write_scenario(tmp_path, random_model_dir)
    assert main(["run", str(scenario), "--rounds", "abc"]) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: argument --rounds: invalid int value: 'abc'\n"
    )
    assert main(["run"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_threads_bounded_by_the_cpus(tmp_path, random_model_dir, capsys, no_model_load):
    scenario = write_scenario(tmp_path, random_model_dir)
    cpus = os.cpu_count()
    assert main(["run", str(scenario), "--threads", str(cpus + 1)]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --threads: must be between 1 and {cpus} (the CPUs here), "
        f"got {cpus + 1}\n"
    )


def test_devices_that_do_not_exist_are_one_line(tmp_path, random_model_dir, capsys):
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--device", "mps", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: model.device: device 'mps' requested but MPS (Apple GPUs) is not "
        "available here; use 'cpu' or 'auto'\n"
    )
    # a slow setting's warning waits until every check has passed: still exactly one line
    slow = ["--set", "regret.every=1", "--rounds", "200"]
    assert main(["run", str(scenario), "--device", "mps", "--out", str(out), *slow]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["run", str(scenario), "--device", "cuda:99", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("market-sim: error: model.device: device 'cuda:99'")
    assert error.count("\n") == 1 and not out.exists()
    # --out passed its writability probe first; the probe left nothing behind
    assert [path.name for path in tmp_path.iterdir()] == ["scenario.toml"]


def test_model_load_errors_name_the_key_they_concern(random_model_dir):
    # all three are refused before any weights are read
    cases = {
        ("bundled:no-such-model", "cpu", "auto"): "model.path: ",
        (str(random_model_dir), "cuda:99", "auto"): "model.device: device 'cuda:99'",
        (str(random_model_dir), "cpu", "float64"): (
            "model.dtype: dtype 'float64' is not one of auto, float32, bfloat16, float16"
        ),
    }
    for (reference, device, dtype), expected in cases.items():
        with pytest.raises(cli.UsageError) as caught:
            cli.load_checked_model(reference, device, dtype)
        assert str(caught.value).startswith(expected), caught.value


def test_prompt_longer_than_the_model_positions(tmp_path, random_model_dir, capsys):
    """The random model has 128 positions: refused after the tokenizer loads, before round 0."""
    long_query = " ".join(["vacation in Hawaii"] * 60)
    scenario = write_scenario(
        tmp_path, random_model_dir, ('items = ["vacation in Hawaii"]', f'items = ["{long_query}"]')
    )
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("market-sim: error: queries.items[0]: the prompt of query ")
    assert "but the model has 128; shorten it or lower max_new_tokens\n" in error
    assert error.count("\n") == 1 and not out.exists()
    long_context = "Beta Resort: " + "beachfront rooms on Maui " * 40
    scenario = write_scenario(
        tmp_path,
        random_model_dir,
        ('"Beta Resort: beachfront rooms on Maui."', f'"{long_context}"'),
    )
    assert main(["run", str(scenario), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("market-sim: error: advertisers[1].context: the prompt of query ")
    assert not out.exists()


def test_run_folder_of_a_different_scenario_needs_force(tmp_path, random_model_dir, capsys):
    scenario = write_scenario(tmp_path, random_model_dir)
    out = tmp_path / "out"
    base = ["run", str(scenario), "--out", str(out), "--no-progress", "--rounds", "1"]
    assert main(base) == 0
    first = (out / "scenario.toml").read_text()
    capsys.readouterr()
    assert main([*base, "--seed", "9"]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{out}' holds run results of a different resolved scenario "
        "(scenario.toml differs); choose another --out, or pass --force to overwrite them\n"
    )
    assert (out / "scenario.toml").read_text() == first
    assert main(base) == 0  # the same resolved scenario: a rerun is fine
    (out / "notes.txt").write_text("mine")
    assert main([*base, "--seed", "9", "--force"]) == 0
    assert "seed = 9" in (out / "scenario.toml").read_text()
    warning = capsys.readouterr().err
    assert warning == (
        f"market-sim: warning: --out: '{out}' also holds files a run does not write "
        "(notes.txt); they are left as they are\n"
    )
    assert (out / "notes.txt").read_text() == "mine"
    # a refused input prints its error line alone, not the warning first (here: no GPU)
    if torch.cuda.is_available():
        return
    assert main([*base, "--seed", "9", "--force", "--device", "cuda"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("market-sim: error: model.device:")


@pytest.mark.parametrize("command", ["eva", "audit", "lambda-sweep", "convergence"])
def test_a_refused_input_prints_no_warning_before_its_error(command, tmp_path, capsys):
    """`--set auctions_per_round=2` warned (it does not apply) before the refusal's line."""
    scenario = {
        "eva": "eva_queries.toml",
        "audit": "eva_queries.toml",
        "lambda-sweep": "hawaii_lambda_sweep.toml",
        "convergence": "mosaic_convergence.toml",
    }[command]
    argv = [command, str(SHIPPED / scenario), "--set", "auctions_per_round=2"]
    argv += ["--out", str(tmp_path / "out"), "--device", "cuda:999"]
    argv += ["--generations", "1"] if command in ("eva", "audit") else []
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("market-sim: error: model.device:"), error


def test_lm_train_never_replaces_the_bundled_model(tmp_path, capsys):
    from market_sim.lm.bundled_models import BUNDLED_ROOT

    before = {path: path.stat().st_mtime_ns for path in BUNDLED_ROOT.rglob("*")}
    assert main(["lm", "train"]) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: --out: required (e.g. --out results/tiny-ads); the bundled model is "
        "never replaced\n"
    )
    inside = BUNDLED_ROOT / "tiny-ads"
    assert main(["lm", "train", "--out", str(inside)]) == 2
    assert "is inside the bundled checkpoints" in capsys.readouterr().err
    assert {path: path.stat().st_mtime_ns for path in BUNDLED_ROOT.rglob("*")} == before


def test_lm_train_refuses_a_folder_of_results(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    assert main(["lm", "train", "--out", str(run), "--steps", "1"]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{run}' holds results (summary.json), not a model; choose "
        "another folder\n"
    )
    assert [path.name for path in run.iterdir()] == ["summary.json"]


def test_lm_generate_names_the_allowed_devices(capsys):
    assert main(["lm", "generate", "--device", "tpu"]) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: --device: device 'tpu' is not supported; allowed: auto, cpu, cuda, "
        "cuda:N (N >= 0), mps\n"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--samples", "0"], "--samples: must be between 1 and 65536, got 0"),
        (["--max-new-tokens", "-3"], "--max-new-tokens: must be between 1 and 512, got -3"),
        (["--temperature", "nan"], "--temperature: must be between 0.001 and 1000, got nan"),
        (["--temperature", "inf"], "--temperature: must be between 0.001 and 1000, got inf"),
        (["--seed", "-1"], "--seed: must be between 0 and 9223372036854775807, got -1"),
        ([""], "prompt: empty; give text to continue, or leave it out for --query's"),
        (["--query", ""], "--query: must be a non-empty string"),
        (["--query", "  "], "--query: must be a non-empty string"),
        (["--sponsor", "A", "--sponsor", " "], "--sponsor: must be a non-empty string, got ' '"),
        (["--device", ""], "--device: empty; allowed: auto, cpu, cuda, cuda:N (N >= 0), mps"),
    ],
)
def test_lm_generate_checks_its_options_before_loading(options, message, capsys, monkeypatch):

    monkeypatch.setattr(LanguageModel, "load", lambda *a, **k: pytest.fail("model loaded"))
    assert main(["lm", "generate", *options]) == 2
    assert capsys.readouterr().err == f"market-sim: error: {message}\n"


def test_lm_generate_refuses_a_reply_longer_than_the_model_holds(capsys):
    # The bundled tiny LM has 128 positions; its default prompt takes some of them.
    assert main(["lm", "generate", "--max-new-tokens", "300", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("market-sim: error: --max-new-tokens: the prompt (")
    assert "must fit the model's 128 positions" in error and error.endswith(", got 300\n")


@pytest.mark.parametrize("steps", ["0", "-1"])
def test_lm_train_refuses_no_steps(steps, tmp_path, capsys):
    assert main(["lm", "train", "--out", str(tmp_path / "tiny"), "--steps", steps]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --steps: must be between 1 and 10000000, got {steps}\n"
    )
    assert not (tmp_path / "tiny").exists()


def test_sweep_refuses_a_seed_override(tmp_path, capsys):
    scenario = SHIPPED / "classic_auctions.toml"
    out = tmp_path / "sweep"
    argv = ["sweep", str(scenario), "--seeds", "0", "--set", "seed=5", "--out", str(out)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: --set seed: a sweep takes --seeds (e.g. --seeds 0-9), not a seed\n"
    )
    assert not out.exists()


def test_a_config_value_of_the_wrong_type_is_one_line(tmp_path, capsys):
    from market_sim.lm.bundled_models import BUNDLED_ROOT

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_ROOT / "tiny-ads", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_positions": "abc"}))
    assert main(["lm", "generate", "--model", str(folder), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"market-sim: error: --model: transformers cannot load '{folder}'")
    assert error.count("\n") == 1


def test_remote_code_is_never_trusted_nor_asked_for(tmp_path, capsys):
    """A folder whose config names unknown code: refused in one line, its code never runs."""
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "code_ran"
    config = {
        "model_type": "my_custom_lm",
        "auto_map": {"AutoConfig": "modeling.Config", "AutoModelForCausalLM": "modeling.Model"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "modeling.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    assert main(["lm", "generate", "--model", str(folder), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"market-sim: error: --model: transformers cannot load '{folder}'")
    assert error.count("\n") == 1
    assert not marker.exists()


def test_every_from_pretrained_call_refuses_remote_code() -> None:
    """Source check: each ``from_pretrained`` call in the package says trust_remote_code=False."""
    package = Path(market_sim.__file__).parent
    calls = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "from_pretrained":
                keywords = {k.arg: k.value for k in node.keywords}
                refuses = isinstance(keywords.get("trust_remote_code"), ast.Constant) and (
                    keywords["trust_remote_code"].value is False
                )
                calls.append((source.name, node.lineno, refuses))
    assert calls and all(refuses for _, _, refuses in calls), calls


def test_hub_model_without_network_is_one_line_at_once(monkeypatch, capsys):
    """Not cached and no network: refused before transformers retries, naming the reason."""
    import market_sim.lm.loading as loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert loading.hub_unreachable_reason(timeout=2.0).startswith("127.0.0.1: ")
    assert main(["lm", "generate", "--model", "hub:someone/not-cached-xyz", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "market-sim: error: --model: hub model 'someone/not-cached-xyz' is not in the local hub "
        "cache and the hub cannot be reached (127.0.0.1: "
    )
    assert error.count("\n") == 1


def test_sweep_checks_every_grid_point_prompt_before_the_first_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", str(SHIPPED / "hawaii.toml"), "--seeds", "0", "--rounds", "1"]
    argv += ["--grid", "mechanism.max_new_tokens=4,512", "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("market-sim: error: queries.items[0]: the prompt of query ")
    assert "positions but the model has 128;" in error
    assert error.endswith("(grid point mechanism.max_new_tokens=512, seed 0)\n")
    assert error.count("\n") == 1
    assert not (out / "runs").exists()  # the 4-token point was not run first


def test_run_and_convergence_share_a_folder_of_the_same_scenario(tmp_path):
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.output_folder import check_result_folder, check_run_folder

    out = tmp_path / "shared"
    out.mkdir()
    (out / "scenario.toml").write_text("the same\n")
    (out / "rounds.parquet").write_bytes(b"a run's rounds")
    check_result_folder(out, "convergence", "the same\n", force=False)
    (out / "convergence.parquet").write_bytes(b"the curves")
    (out / "provenance.json").write_text("{}")
    assert check_run_folder(out, "the same\n", force=False) == []  # no warning for either
    with pytest.raises(ScenarioError, match=r"holds another command's results \(rounds.parquet"):
        check_result_folder(out, "convergence", "another\n", force=False)
    with pytest.raises(ScenarioError, match=r"holds another command's results \(rounds.parquet"):
        check_result_folder(out, "eva", "the same\n", force=False)  # eva does not share


def test_sweep_names_what_its_scenario_path_is(tmp_path, capsys):
    """A folder was reported as 'no such scenario file'; a pipe would be read only once."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    fifo = tmp_path / "scenario.fifo"
    os.mkfifo(fifo)
    expected = {
        folder: f"{folder}: is a folder; expected a scenario TOML file",
        tmp_path / "missing.toml": f"{tmp_path / 'missing.toml'}: no such scenario file",
        fifo: f"{fifo}: is a pipe; a sweep reads its scenario more than once, so write it to a "
        "file",
    }
    for path, message in expected.items():
        assert main(["sweep", str(path), "--seeds", "0", "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == f"market-sim: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_lm_generate_refuses_an_empty_model_before_loading_anything(capsys):
    """'' was read as the working folder: torch loaded, then 'has no config.json'."""
    assert main(["lm", "generate", "--model", " "]) == 2
    assert capsys.readouterr().err == (
        "market-sim: error: --model: empty; allowed: bundled:<name>, cache:<name>, hub:<id> "
        "or a model folder\n"
    )


def test_run_seeds_refuses_a_base_folder_holding_another_commands_results(tmp_path, capsys):
    """The seeds' folders used to be made inside an eva results folder, exit 0."""
    out = tmp_path / "eva-out"
    out.mkdir()
    (out / "eva.parquet").write_bytes(b"eva rows")
    scenario = SHIPPED / "classic_auctions.toml"
    argv = ["run", str(scenario), "--seeds", "0-1", "--out", str(out), "--no-progress"]
    assert main([*argv, "--set", "rounds=2"]) == 2
    assert capsys.readouterr().err == (
        f"market-sim: error: --out: '{out}' holds another command's results (eva.parquet); "
        "with --seeds it is the folder of the seeds' folders: choose another, or pass --force\n"
    )
    assert sorted(path.name for path in out.iterdir()) == ["eva.parquet"]


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        ([], "{run,demo,plot,summary,lambda-sweep,convergence,sweep,eva,audit,lm}"),
        (["lm"], "{train,generate,get}"),
    ],
)
def test_a_missing_command_names_the_commands_not_a_variable(argv, missing, capsys):
    """It said 'required: lm_command', the parser's internal name."""
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"market-sim: error: the following arguments are required: {missing}"
    )


def test_a_cached_hub_model_loads_from_the_cache_when_the_hub_is_unreachable(
    monkeypatch, tmp_path, random_model_dir
):
    """Found by an audit: with the model cached but no network, transformers retried the hub
    for two minutes (four, then failing, when only config.json was cached) before using it."""
    import shutil
    import socket

    from huggingface_hub import constants

    import market_sim.lm.loading as loading
    from market_sim.lm.model import LanguageModel
    from market_sim.lm.references import parse_model_reference

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--cached-model"
    shutil.copytree(random_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    attempts: list[object] = []
    connect = socket.socket.connect

    def counting_connect(self, address):
        if isinstance(address, tuple) and address[1] == 9:
            attempts.append(address)
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    reference = parse_model_reference("hub:org/cached-model")
    assert loading.local_files_only(reference) is True
    lm = LanguageModel.load("hub:org/cached-model", device="cpu")
    assert lm.vocab_size > 0
    assert len(attempts) == 2  # one probe per call above, and no request of transformers'


@pytest.mark.parametrize(
    "bad",
    [
        ["--grid", "mechanism.payment=bogus"],
        ["--workers", "0"],
        ["--backend", "bogus"],
        ["--grid", "no.such.key=1,2"],
    ],
)
def test_sweep_bad_input_is_one_line_without_the_slow_setting_warning(bad, capsys):
    """Found by an audit: the slow-setting warning came first, so bad input got two lines."""
    argv = ["sweep", str(SHIPPED / "hawaii.toml"), "--seeds", "0", "--set", "regret.every=1"]
    assert main([*argv, *bad]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("market-sim: error: "), error


def test_sweep_warns_of_a_slow_setting_once_its_input_is_checked(tmp_path, capsys, monkeypatch):
    import market_sim.sweep as sweep

    monkeypatch.setattr(sweep, "execute_tasks", lambda *args, **kwargs: None)  # no runs
    argv = ["sweep", str(SHIPPED / "hawaii.toml"), "--seeds", "0-3", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    error = capsys.readouterr().err
    # hawaii.toml measures regret every round over its rounds: named once, before the runs
    assert error.count("market-sim: warning: slow setting: regret.every = 1") == 1, error


@pytest.mark.parametrize("command", ["run", "run --seeds", "sweep", "demo", "eva", "audit"])
def test_a_folder_another_process_writes_is_refused_in_one_line(
    command, tmp_path, random_model_dir, capsys
):
    """A second `run` into a folder a first one still writes interleaved their checkpoints and
    tables (an audit started two at once by accident): now the second is refused, exit 2,
    before it writes anything, and the folder is free again once the first ends."""
    import subprocess

    scenario = write_scenario(tmp_path, random_model_dir)
    eva = SHIPPED / "eva_queries.toml"
    base = tmp_path / "out"
    busy = {
        "run": base,
        "run --seeds": base / "cli-seed1",
        "sweep": base,
        "demo": base,
        "eva": base,
        "audit": base,
    }[command]
    argv = {
        "run": ["run", str(scenario), "--out", str(base)],
        "run --seeds": ["run", str(scenario), "--seeds", "0-1", "--out", str(base)],
        "sweep": ["sweep", str(scenario), "--seeds", "0", "--out", str(base)],
        "demo": ["demo", "--out", str(base), "--rounds", "2", "--seeds", "0", "--workers", "1"],
        "eva": ["eva", str(eva), "--generations", "1", "--out", str(base)],
        "audit": ["audit", str(eva), "--generations", "1", "--out", str(base)],
    }[command]
    holder = (  # another process holds the lock until its stdin closes
        "import sys; from pathlib import Path; "
        "from market_sim.results.folder_lock import exclusive_folder; "
        f"cm = exclusive_folder(Path({str(busy)!r})); cm.__enter__(); print('held', flush=True); "
        "sys.stdin.read()"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline() == "held\n"
        before = sorted(path.name for path in busy.iterdir())
        assert main([*argv, "--no-progress"]) == 2
        assert capsys.readouterr().err == (
            f"market-sim: error: --out: '{busy}' is being written by another market-sim process; "
            "wait for it to end, or choose another folder\n"
        )
        assert sorted(path.name for path in busy.iterdir()) == before  # nothing written
    finally:
        other.communicate("")
    if command in ("eva", "audit"):  # long: the lock's release is shown by the others
        return
    assert main([*argv, "--no-progress"]) == 0  # released when the holder exited

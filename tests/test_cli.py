"""The command line: bad scenario files exit 2 with one line and leave nothing behind."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from market_sim.cli import main

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


def test_console_script_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "market_sim.cli", "run", str(tmp_path / "x.toml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("market-sim: error:") and result.stderr.count("\n") == 1


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

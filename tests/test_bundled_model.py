"""The bundled tiny LM through the command line: demo and generate work offline, out of the box."""

import json
from pathlib import Path

from market_sim.cli import main
from market_sim.lm.bundled_models import bundled_model_names


def test_bundled_model_is_shipped():
    assert "tiny-ads" in bundled_model_names()


def test_hawaii_scenario_runs_on_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "hawaii"
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"
    args = ["run", str(scenario), "--out", str(out), "--rounds", "4", "--no-progress"]
    args += ["--set", "regret.distortion_points=1"]  # bid deviations only
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "hawaii" and summary["rounds"] == 4
    assert summary["regret_max"] == 0.0  # linear second price: no bid deviation pays
    assert summary["ir_violation_rate"] == 0.0 and summary["bid_ratio_final"] == 1.0
    printed = capsys.readouterr().out
    assert "Alpha Airlines" in printed and "Beta Resort" in printed and str(out) in printed


def test_generate_prints_samples(capsys):
    context = "Alpha Airlines: nonstop flights to Hawaii."
    code = main(
        [
            "lm",
            "generate",
            "--sponsor",
            context,
            "--samples",
            "2",
            "--max-new-tokens",
            "12",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Sponsor: {context}"
    assert sum(line.startswith("  -> ") for line in lines) == 2

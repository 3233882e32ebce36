"""Progress lines without a terminal, quiet libraries, warnings before slow settings."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from market_sim import progress
from market_sim.progress import LineProgress, progress_bar
from market_sim.scenario import load_scenario
from market_sim.scenario.slow_settings import slow_setting_warnings

HAWAII = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii_learning.toml"


def test_line_every_five_percent_and_at_the_end():
    stream = io.StringIO()
    with LineProgress(40, "sweep", "run", stream=stream) as bar:
        for _ in range(40):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20  # 5% of 40 runs is 2 runs
    assert lines[0].startswith("sweep: 2/40 runs (5%), ") and "left" in lines[0]
    assert lines[-1].startswith("sweep: 40/40 runs (100%), ") and "left" not in lines[-1]


def test_line_every_thirty_seconds_when_progress_is_slow(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    bar = LineProgress(1000, "run", "round", stream=stream)  # starts at t = 0
    for moment in (10.0, 31.0, 45.0, 62.0):  # each update is far below 5% of the rounds
        now[0] = moment
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "run: 2/1000 rounds (0%)",
        "run: 4/1000 rounds (0%)",
    ]
    assert "62 s elapsed, about 15438 s left" in lines[-1]  # 62 s / 4 rounds x 996 left


def test_resumed_work_counts_from_initial_and_disabled_prints_nothing(capsys):
    stream = io.StringIO()
    LineProgress(10, "sweep", "run", initial=9, stream=stream).update(1)
    assert stream.getvalue().startswith("sweep: 10/10 runs (100%)")
    with progress_bar(10, "sweep", "run", enabled=False) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""
    # pytest's captured stderr is not a terminal: lines, not a bar
    assert isinstance(progress_bar(10, "sweep", "run"), LineProgress)


MESSAGE = "`past_key_values` is deprecated and will be removed in version 5.40.0"
WARN = f"import warnings; warnings.warn({MESSAGE!r}, FutureWarning)"


def test_quiet_libraries_reaches_spawned_processes():
    code = (
        "import os, subprocess, sys\n"
        "from market_sim.progress import quiet_libraries\n"
        "quiet_libraries()\n"
        f"{WARN}\n"
        f"subprocess.run([sys.executable, '-c', {WARN!r}], check=True)\n"
        "print(os.environ['TRANSFORMERS_VERBOSITY'], os.environ['HF_HUB_DISABLE_PROGRESS_BARS'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in progress.QUIET_ENVIRONMENT}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.split() == ["error", "1"]
    loud = subprocess.run([sys.executable, "-c", WARN], capture_output=True, text=True, env=env)
    assert "FutureWarning" in loud.stderr  # the same warning is shown without quiet_libraries


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], []),
        (
            ["mechanism.kind=mosaic", "mechanism.payment=mosaic", "mechanism.candidates=128"],
            ["mechanism.candidates = 128"],
        ),
        (
            [
                "mechanism.kind=affine_maximizer",
                "mechanism.payment=affine_maximizer",
                'mechanism.policy_space="fine_tuned"',
            ],
            ["mechanism.policy_space = fine_tuned"],
        ),
        (["rounds=20000"], ["20000 LM auctions: about 23 min"]),
        (["regret.every=1"], ["regret.every = 1 over 150 rounds"]),
    ],
)
def test_slow_settings_are_named(overrides, expected):
    lines = slow_setting_warnings(load_scenario(HAWAII, overrides))
    assert [line[: len(prefix)] for line, prefix in zip(lines, expected, strict=True)] == expected


def test_slow_sweep_counts_every_run():
    scenario = load_scenario(HAWAII)  # 150 rounds: 10.5 s each at 70 ms per round
    assert slow_setting_warnings(scenario, runs=57) == []  # 598 s
    assert slow_setting_warnings(scenario, runs=58)[0].startswith("8700 LM auctions: about 10 min")

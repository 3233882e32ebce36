"""Result files: modes follow the umask, stale temporaries are cleaned, never NaN or Infinity."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import polars as pl
import pytest

from market_sim.cli import main
from market_sim.results import is_complete_run, summarize, write_run
from market_sim.results.files import (
    NonFiniteResultError,
    atomic_write,
    atomic_write_json,
    atomic_write_together,
    finite_json,
    remove_stale_temporaries,
    temporary_name_pattern,
)

ROUNDS = pl.DataFrame(
    {
        "round": [0, 1],
        "revenue": [0.5, 1.5],
        "advertiser_value": [1.0, 2.0],
        "user_value": [0.25, 0.75],
        "social_welfare": [1.25, 2.75],
    }
)
AGENTS = pl.DataFrame(
    {
        "round": [0, 0, 1, 1],
        "valuation": [1.0, 0.0, 2.0, 1.0],
        "bid": [0.5, 0.0, 1.0, 1.0],
        "utility": [0.5, 0.0, 1.0, 0.0],
        "report_scale": [1.0, 1.0, 1.0, 1.0],
        "truthful_utility": [None, None, None, None],
        "regret": [None, None, None, None],
        "best_response_gain": [None, None, None, None],
    },
    schema_overrides={
        name: pl.Float64 for name in ("truthful_utility", "regret", "best_response_gain")
    },
)
RUN_FILES = ("scenario.toml", "rounds.parquet", "agents.parquet", "learners.json", "summary.json")


def write_example_run(folder: Path, summary: dict | None = None, rounds=ROUNDS) -> None:
    """A small run directory through the real writer."""
    summary = {"revenue_mean": 1.0, "regret_mean": None} if summary is None else summary
    write_run(folder, 'name = "x"\n', rounds, AGENTS, summary, learners={"a": {"w": [0.5, 0.5]}})


def finite_json_value(text: str):
    """Parse JSON, failing on the non-standard NaN / Infinity / -Infinity tokens."""

    def refuse(token: str):
        raise AssertionError(f"non-finite JSON token {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def umask():
    """A setter of the process umask; the umask before the test is restored after it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_example_run(tmp_path / "run")
    modes = {name: stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) for name in RUN_FILES}
    assert modes == dict.fromkeys(RUN_FILES, mode)


def test_rewriting_a_file_takes_the_current_umask(tmp_path, umask):
    path = tmp_path / "table.parquet"
    umask(0o077)
    atomic_write(path, ROUNDS.write_parquet)
    umask(0o022)
    atomic_write(path, ROUNDS.write_parquet)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# --------------------------------------------------------------------------- temporaries


def test_stale_temporaries_of_a_run_are_removed_when_it_writes_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = [
        ".rounds.parquet.ab12cd_9.tmp",  # what mkstemp named them before
        ".rounds.parquet.0a1b2c3d.tmp",
        ".summary.json.zzzzzzzz.tmp",
    ]
    unrelated = [
        ".rounds.parquet.keep",  # not a temporary
        "rounds.parquet.ab12cd_9.tmp",  # no leading dot
        ".rounds.parquet.AB12CD_9.tmp",  # outside the random part's alphabet
        ".rounds.parquet.ab12cd.tmp",  # random part too short
        ".notes.txt.ab12cd_9.tmp",  # a temporary of a file the run does not write
        "notes.tmp",
    ]
    for name in stale + unrelated:
        (run / name).write_text("left by a killed writer")
    write_example_run(run)
    assert is_complete_run(run)
    assert sorted(path.name for path in run.iterdir()) == sorted([*RUN_FILES, *unrelated])


def test_a_rewrite_removes_the_optional_files_it_does_not_write(tmp_path):
    # A forced run of another scenario over an eva-stream run with learners: neither its
    # learners.json nor its queries.parquet may survive beside the new tables.
    run = tmp_path / "run"
    queries = pl.DataFrame({"query_id": [0], "text": ["vacation in Hawaii"]})
    summary = {"revenue_mean": 1.0}
    write_run(run, 'name = "x"\n', ROUNDS, AGENTS, summary, {"a": {}}, {"queries.parquet": queries})
    assert (run / "queries.parquet").is_file() and (run / "learners.json").is_file()
    (run / "notes.txt").write_text("the user's")
    write_run(run, 'name = "y"\n', ROUNDS, AGENTS, summary)
    assert sorted(path.name for path in run.iterdir()) == sorted(
        ["scenario.toml", "rounds.parquet", "agents.parquet", "summary.json", "notes.txt"]
    )


def test_only_the_targets_own_temporaries_match():
    pattern = temporary_name_pattern("runs.parquet")
    assert pattern.fullmatch(".runs.parquet.k3_x9a0q.tmp")
    assert not pattern.fullmatch(".runs.parquet.k3_x9a0q.tmp.bak")
    assert not pattern.fullmatch(".runsXparquet.k3_x9a0q.tmp")  # the dot is literal
    assert not pattern.fullmatch(".timings.parquet.k3_x9a0q.tmp")


def test_glob_metacharacters_in_a_name_are_literal(tmp_path):
    target = tmp_path / "a[1]*.json"
    other = tmp_path / ".a1x.json.abcdefgh.tmp"  # would match an unescaped glob of the name
    own = tmp_path / ".a[1]*.json.abcdefgh.tmp"
    other.write_text("")
    own.write_text("")
    assert remove_stale_temporaries(target) == [own]
    assert other.exists()


def test_a_failed_write_leaves_no_temporary(tmp_path):
    def fail(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "x.parquet", fail)
    assert list(tmp_path.iterdir()) == []


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from market_sim.results.files import atomic_write_together

first, second = Path(sys.argv[1]), Path(sys.argv[2])

def write_first(tmp):
    tmp.write_text("round 2")

def killed(tmp):
    tmp.write_text("round 2, half")
    os.kill(os.getpid(), signal.SIGKILL)  # SIGKILL, the OOM killer: no handler, no cleanup

atomic_write_together([first, second], [write_first, killed])
"""


def test_files_written_together_are_all_old_after_a_kill_mid_write(tmp_path):
    """Replicates' checkpoints: the first was renamed before the second was written, so a kill
    in between left them of different rounds, and the run restarted from round 0."""
    import signal
    import subprocess
    import sys

    first, second = tmp_path / "a" / "checkpoint.pickle", tmp_path / "b" / "checkpoint.pickle"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text("round 1")
    script = tmp_path / "killed.py"
    script.write_text(KILLED_MID_WRITE)
    done = subprocess.run([sys.executable, str(script), str(first), str(second)], check=False)
    assert done.returncode == -signal.SIGKILL
    assert (first.read_text(), second.read_text()) == ("round 1", "round 1")
    left = remove_stale_temporaries(first) + remove_stale_temporaries(second)
    assert len(left) == 2  # what the next write (or the finished run) removes

    def fail(path: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # a failure: nothing replaced, nothing left
        atomic_write_together([first, second], [lambda tmp: tmp.write_text("round 3"), fail])
    assert (first.read_text(), second.read_text()) == ("round 1", "round 1")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "checkpoint.pickle",
        "checkpoint.pickle",
        "killed.py",
    ]
    atomic_write_together([first, second], [lambda tmp: tmp.write_text("round 3")] * 2)
    assert (first.read_text(), second.read_text()) == ("round 3", "round 3")


def test_an_interrupt_during_the_cleanup_still_removes_the_temporary(tmp_path, monkeypatch):
    """Found by an audit: Ctrl-C stopped polars' write, and the signal still pending (polars
    re-raises its own) fired again inside unlink, which left the temporary file behind."""
    real_unlink = Path.unlink
    calls: list[Path] = []

    def interrupted_once(self: Path, missing_ok: bool = False) -> None:
        calls.append(self)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the second interrupt, arriving inside the removal
        real_unlink(self, missing_ok=missing_ok)

    def stopped(path: Path) -> None:
        path.write_text("half")
        raise KeyboardInterrupt  # the first: the write itself is interrupted

    monkeypatch.setattr(Path, "unlink", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.parquet", stopped)
    monkeypatch.undo()
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc (Linux)")
def test_the_file_reaches_the_disk_before_its_rename_and_the_folder_after(tmp_path, monkeypatch):
    import market_sim.results.files as files

    target = tmp_path / "summary.json"
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(descriptor: int) -> None:
        opened = Path(os.readlink(f"/proc/self/fd/{descriptor}"))
        content = opened.read_text() if opened.is_file() else "<folder>"
        events.append(("fsync", opened.name if opened.is_file() else str(opened), content))
        real_fsync(descriptor)

    def recording_replace(source, destination) -> None:
        events.append(("replace", Path(destination).name, ""))
        real_replace(source, destination)

    monkeypatch.setattr(files.os, "fsync", recording_fsync)
    monkeypatch.setattr(files.os, "replace", recording_replace)
    atomic_write(target, lambda tmp: tmp.write_text("whole"))
    monkeypatch.undo()
    (file_sync, name, content), rename, folder_sync = events
    # the temporary file, complete, then the rename, then the folder that holds the new name
    assert file_sync == "fsync" and temporary_name_pattern("summary.json").fullmatch(name)
    assert content == "whole" and rename == ("replace", "summary.json", "")
    assert folder_sync == ("fsync", str(tmp_path), "<folder>")
    assert target.read_text() == "whole"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc (Linux)")
def test_a_folder_that_cannot_be_synced_is_skipped(tmp_path, monkeypatch):
    import market_sim.results.files as files

    real_fsync = os.fsync

    def folder_refused(descriptor: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{descriptor}")).is_dir():
            raise OSError(22, "Invalid argument")  # as some network file systems answer
        real_fsync(descriptor)

    monkeypatch.setattr(files.os, "fsync", folder_refused)
    atomic_write(tmp_path / "x.json", lambda tmp: tmp.write_text("{}"))
    assert (tmp_path / "x.json").read_text() == "{}"


# --------------------------------------------------------------------------- NaN and Infinity


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"revenue_mean": math.nan}, "revenue_mean"),
        ({"a": {"b": [1.0, math.inf]}}, "a.b[1]"),
        ({"a": [{"c": -math.inf}]}, "a[0].c"),
    ],
)
def test_non_finite_json_is_refused_naming_the_key(value, key):
    with pytest.raises(NonFiniteResultError) as caught:
        finite_json(value, "summary.json")
    assert str(caught.value) == (
        f"summary.json: {key} is not a finite number; results never hold NaN or Infinity"
    )


def test_more_non_finite_values_are_counted(tmp_path):
    with pytest.raises(NonFiniteResultError, match=r"^x.json: a is not .* \(and 1 more\);"):
        atomic_write_json(tmp_path / "x.json", {"a": math.nan, "b": math.inf, "c": 1.0})
    assert list(tmp_path.iterdir()) == []


def test_finite_json_round_trips():
    value = {"b": [1.0, None, 2], "a": {"x": "y"}, "big": 1e308, "tiny": 5e-324}
    assert json.loads(finite_json(value, "x.json")) == value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"summary": {"revenue_mean": math.inf}}, "summary.json: revenue_mean is not a finite"),
        (
            {"rounds": ROUNDS.with_columns(revenue=pl.Series([0.5, math.nan]))},
            "rounds.parquet: column revenue has 1 value(s) that are not finite numbers",
        ),
    ],
    ids=["summary", "table"],
)
def test_a_non_finite_run_is_not_written(tmp_path, change, message):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteResultError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_example_run(run, **change)
    assert not run.exists()


def test_lists_of_floats_are_checked(tmp_path):
    rounds = ROUNDS.with_columns(shares=pl.Series([[0.5, 0.5], [math.inf, 0.0]]))
    with pytest.raises(NonFiniteResultError, match="column shares has 1 value"):
        write_example_run(tmp_path / "run", rounds=rounds)


def test_undefined_statistics_are_null_not_nan():
    summary = summarize(ROUNDS, AGENTS, {"rounds": 2})
    assert summary["revenue_mean"] == 1.0
    # mean bid / valuation over the final 20% of rounds (round 1) with valuation > 0: 1/2, 1/1
    assert summary["bid_ratio_final"] == pytest.approx(0.75, rel=1e-12)  # exact up to rounding
    for key in ("ir_violation_rate", "regret_mean", "regret_max", "best_response_gain_mean"):
        assert summary[key] is None, key  # nothing measured: JSON null
    finite_json_value(finite_json(summary, "summary.json"))
    no_valuation = AGENTS.with_columns(valuation=pl.lit(0.0))
    assert summarize(ROUNDS, no_valuation, {"rounds": 2})["bid_ratio_final"] is None


SCENARIO = """
name = "finite"
seed = 0
rounds = 4

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


@pytest.fixture
def scenario(tmp_path, random_model_dir) -> Path:
    path = tmp_path / "finite.toml"
    path.write_text(SCENARIO.format(model=random_model_dir))
    return path


def test_a_run_holds_no_nan_or_infinity(tmp_path, scenario):
    out = tmp_path / "run"
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 0
    for path in out.glob("*.json"):
        finite_json_value(path.read_text())
    tables = list(out.glob("*.parquet"))
    assert len(tables) >= 2
    for path in tables:
        table = pl.read_parquet(path)
        for column in table.select(pl.selectors.float()).columns:
            assert table[column].drop_nulls().is_finite().all(), (path.name, column)


def test_the_cli_reports_a_non_finite_result_in_one_line(tmp_path, scenario, monkeypatch, capsys):
    import market_sim.run

    def nan_revenue(rounds, agents, meta):
        return {**summarize(rounds, agents, meta), "revenue_mean": math.nan}

    monkeypatch.setattr(market_sim.run, "summarize", nan_revenue)
    out = tmp_path / "run"
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 1
    error = capsys.readouterr().err.splitlines()
    assert error[-1] == (
        "market-sim: error: summary.json: revenue_mean is not a finite number; "
        "results never hold NaN or Infinity"
    )
    assert not (out / "summary.json").exists()

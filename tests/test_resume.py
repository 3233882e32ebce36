"""An interrupted run resumes from its checkpoint and writes what an uninterrupted run writes.

Each run is interrupted (a KeyboardInterrupt, as Ctrl-C raises) at the start of a round, after a
checkpoint of every earlier round; the rerun in the same folder must step only the remaining
rounds and write the same bytes as a run that was never interrupted (``summary.json``: the same
content but for its timing fields).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from market_sim import run_resume
from market_sim.cli import main
from market_sim.lm.model import LanguageModel
from market_sim.market.array_round import RoundRecords
from market_sim.market.model import MarketModel
from market_sim.plugins.origin import plugin_origin
from market_sim.results.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    write_checkpoint,
    write_checkpoints_together,
)
from market_sim.run import run_replicates, run_scenario
from market_sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
TIMING_KEYS = ("wall_seconds", "rounds_per_second", "auctions_per_second")
COMPARED_FILES = (
    "scenario.toml",
    "rounds.parquet",
    "agents.parquet",
    "learners.json",
    "queries.parquet",
)


class Interrupted(KeyboardInterrupt):
    """Raised by the patched step at the chosen round."""


def interrupt_at(monkeypatch, round_index: int) -> list[int]:
    """Make ``MarketModel.step`` raise at the start of ``round_index``; returns the steps run."""
    original = MarketModel.step
    stepped: list[int] = []

    def step(self, *args, **kwargs):
        if self.current_round == round_index:
            raise Interrupted
        stepped.append(self.current_round)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MarketModel, "step", step)
    return stepped


def interrupted(monkeypatch, round_index: int, run, *args, **kwargs) -> None:
    """Run ``run(*args, **kwargs)``, checkpointing every round, until ``round_index`` starts.

    Every patch of the test is undone afterwards.
    """
    with pytest.raises(Interrupted):
        interrupt_at(monkeypatch, round_index)
        run(*args, checkpoint_seconds=0.0, **kwargs)
    monkeypatch.undo()


def count_steps(monkeypatch) -> list[int]:
    """Record the rounds ``MarketModel.step`` runs."""
    return interrupt_at(monkeypatch, -1)


def assert_same_results(expected: Path, actual: Path) -> None:
    """The same files, byte for byte; the same summary but for its timing fields."""
    for name in COMPARED_FILES:
        assert (expected / name).is_file() == (actual / name).is_file(), name
        if (expected / name).is_file():
            assert (expected / name).read_bytes() == (actual / name).read_bytes(), name
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (expected, actual)]
    for summary in summaries:
        for key in TIMING_KEYS:
            summary.pop(key)
    assert summaries[0] == summaries[1]
    assert not (actual / CHECKPOINT_FILE).exists()


LEARNERS = (
    "regret.every=2",
    "advertisers.0.strategy.contextual=true",  # one Hedge learner per query
    'advertisers.1.strategy={kind="policy_gradient", contextual=true, learning_rate=0.1}',
)


@pytest.mark.parametrize(
    ("scenario", "rounds", "cut", "overrides"),
    [
        ("hawaii.toml", 4, 2, ()),  # token auction, LM sampling
        ("hawaii_learning.toml", 4, 3, ()),  # learners of bids and report scales, regret
        ("hawaii_learning.toml", 4, 1, LEARNERS),  # contextual and policy-gradient learners
        ("classic_auctions.toml", 12, 5, ()),  # ad-slot auctions, K > 1: the array round
        ("mosaic_convergence.toml", 3, 1, ()),  # MOSAIC's sampling auction
        ("fine_tuning_groups.toml", 3, 2, ()),  # the fine-tuned affine maximizer
        ("eva_queries.toml", 4, 2, ()),  # the eva query stream (its pool evolves)
    ],
)
def test_an_interrupted_run_resumes_and_writes_the_same_bytes(
    tmp_path, monkeypatch, capsys, scenario, rounds, cut, overrides
):
    loaded = load_scenario(SCENARIOS / scenario, [f"rounds={rounds}", *overrides])
    run_scenario(loaded, out_dir=tmp_path / "whole", checkpoint_seconds=None)
    assert not (tmp_path / "whole" / CHECKPOINT_FILE).exists()

    folder = tmp_path / "resumed"
    interrupted(monkeypatch, cut, run_scenario, loaded, out_dir=folder)
    assert (folder / CHECKPOINT_FILE).is_file() and not (folder / "summary.json").exists()
    stepped = count_steps(monkeypatch)
    run_scenario(loaded, out_dir=folder, checkpoint_seconds=0.0)
    assert stepped == list(range(cut, rounds))  # resumed, not run again from round 0
    assert f"resuming after round {cut} of {rounds}" in capsys.readouterr().err
    assert_same_results(tmp_path / "whole", folder)


def test_replicates_resume_together(tmp_path, monkeypatch):
    """Three seeds in lockstep, interrupted at round 2 of 4, resume in all three folders."""
    loaded = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=4"])
    seeds = [3, 4, 5]
    whole = [tmp_path / f"whole{seed}" for seed in seeds]
    resumed = [tmp_path / f"resumed{seed}" for seed in seeds]
    run_replicates(loaded, seeds, whole, checkpoint_seconds=None)
    interrupted(monkeypatch, 2, run_replicates, loaded, seeds, resumed)
    assert all((folder / CHECKPOINT_FILE).is_file() for folder in resumed)
    stepped = count_steps(monkeypatch)
    run_replicates(loaded, seeds, resumed, checkpoint_seconds=0.0)
    assert sorted(stepped) == sorted([2, 3] * len(seeds))
    for expected, actual in zip(whole, resumed, strict=True):
        assert_same_results(expected, actual)


def test_replicates_whose_checkpoints_differ_in_round_start_over(tmp_path, monkeypatch, capsys):
    loaded = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=4"])
    seeds = [3, 4]
    folders = [tmp_path / "a", tmp_path / "b"]
    interrupted(monkeypatch, 2, run_replicates, loaded, seeds, folders)
    # one replicate's folder: seed 3 alone, checkpoint at round 1
    interrupted(monkeypatch, 1, run_replicates, loaded, [3], [tmp_path / "c"])
    (tmp_path / "c" / CHECKPOINT_FILE).replace(folders[0] / CHECKPOINT_FILE)
    stepped = count_steps(monkeypatch)
    run_replicates(loaded, seeds, folders, checkpoint_seconds=0.0)
    assert sorted(stepped) == sorted([0, 1, 2, 3] * len(seeds))
    # seed 3's checkpoint was written running alone: another lockstep_seeds, so another run
    assert "lockstep_seeds differ" in capsys.readouterr().err


def test_a_checkpoint_of_another_run_is_not_resumed_from(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    five = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=5"])
    interrupted(monkeypatch, 2, run_scenario, five, out_dir=folder)
    stepped = count_steps(monkeypatch)
    four = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=4"])
    run_scenario(four, out_dir=folder, checkpoint_seconds=0.0)
    assert stepped == [0, 1, 2, 3]
    error = capsys.readouterr().err
    # the scenario's hash is in the run id and in the provenance
    assert "is not resumed from: it is of another run (provenance, run_id differ)" in error
    assert not (folder / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("content", [b"", b"not a pickle", pickle.dumps({"format": 999})])
def test_an_unreadable_checkpoint_is_a_warning_and_the_run_starts_over(
    tmp_path, monkeypatch, capsys, content
):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / CHECKPOINT_FILE).write_bytes(content)
    stepped = count_steps(monkeypatch)
    run_scenario(
        load_scenario(SCENARIOS / "hawaii.toml", ["rounds=2"]),
        out_dir=folder,
        checkpoint_seconds=0.0,
    )
    assert stepped == [0, 1]
    assert "the run starts at round 0" in capsys.readouterr().err
    assert not (folder / CHECKPOINT_FILE).exists()


def test_a_state_pickle_cannot_write_turns_checkpoints_off_with_one_warning(
    tmp_path, monkeypatch, capsys
):
    original = MarketModel.step

    def step(self, *args, **kwargs):
        self.platform.unpicklable = lambda: None  # as a plugin might keep
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MarketModel, "step", step)
    folder = tmp_path / "run"
    result = run_scenario(
        load_scenario(SCENARIOS / "hawaii.toml", ["rounds=3"]),
        out_dir=folder,
        checkpoint_seconds=0.0,
    )
    error = capsys.readouterr().err
    assert error.count("this run writes no more checkpoints: pickle cannot write") == 1
    assert result.summary["rounds"] == 3 and (folder / "summary.json").is_file()
    assert not (folder / CHECKPOINT_FILE).exists()


def test_a_second_model_in_the_state_is_refused_not_copied(tmp_path):
    shared = torch.nn.Linear(2, 2)
    path = tmp_path / CHECKPOINT_FILE
    state = {"model": shared, "other": [torch.nn.Linear(2, 2)]}
    with pytest.raises(CheckpointError, match="holds a Linear other than the loaded model"):
        write_checkpoint(path, Checkpoint({}, 1, 0.5, state), shared, (torch.nn.Module,))
    assert not path.exists()
    kept = Checkpoint({"id": 1}, 1, 0.5, {"model": shared})
    write_checkpoint(path, kept, shared, (LanguageModel,))
    restored = torch.nn.Linear(2, 2)
    checkpoint, why_not = read_checkpoint(path, {"id": 1}, restored)
    assert why_not is None and checkpoint.state["model"] is restored
    assert (checkpoint.completed_rounds, checkpoint.wall_seconds) == (1, 0.5)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon", ""])
@pytest.mark.parametrize("command", [["run"], ["sweep", "--seeds", "0"]])
def test_cli_refuses_a_bad_checkpoint_interval_in_one_line(tmp_path, capsys, value, command):
    scenario = str(SCENARIOS / "hawaii.toml")
    out = ["--out", str(tmp_path / "out")]
    assert main([command[0], scenario, *command[1:], *out, "--checkpoint-every", value]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "--checkpoint-every" in error and "'off'" in error
    assert not (tmp_path / "out").exists()  # refused before any work


def test_cli_run_resumes_its_checkpoint_unless_checkpoints_are_off(tmp_path, monkeypatch, capsys):
    for resume, expected_steps in (("600", [2]), ("off", [0, 1, 2])):
        folder = tmp_path / resume
        arguments = ["run", str(SCENARIOS / "hawaii.toml"), "--rounds", "3", "--out", str(folder)]
        interrupt_at(monkeypatch, 2)
        assert main([*arguments, "--checkpoint-every", "0", "--no-progress"]) == 130
        assert (folder / CHECKPOINT_FILE).is_file()
        monkeypatch.undo()
        stepped = count_steps(monkeypatch)
        assert main([*arguments, "--checkpoint-every", resume, "--no-progress"]) == 0
        monkeypatch.undo()
        assert stepped == expected_steps, resume
        assert (folder / "summary.json").is_file() and not (folder / CHECKPOINT_FILE).exists()


def test_a_signal_while_replicates_write_their_checkpoints_waits_until_all_are_written(
    tmp_path, monkeypatch
):
    """Ctrl-C between two replicates' files would leave them at different rounds."""
    loaded = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=3"])
    folders = [tmp_path / "a", tmp_path / "b"]
    written = []

    def signal_then_write(paths, *args, **kwargs):
        if not written:
            os.kill(os.getpid(), signal.SIGINT)  # as the replicates' files are being written
        write_checkpoints_together(paths, *args, **kwargs)
        written.append(list(paths))

    monkeypatch.setattr(run_resume, "write_checkpoints_together", signal_then_write)
    with pytest.raises(KeyboardInterrupt):
        run_replicates(loaded, [3, 4], folders, checkpoint_seconds=0.0)
    assert written == [[folder / CHECKPOINT_FILE for folder in folders]]
    rounds = {read_checkpoint_rounds(folder / CHECKPOINT_FILE) for folder in folders}
    assert rounds == {1}


def read_checkpoint_rounds(path: Path) -> int:
    """The completed rounds in a checkpoint's header (the first of its two pickles)."""
    with path.open("rb") as handle:
        return pickle.load(handle)["completed_rounds"]


def test_an_interrupted_run_protects_its_folder_from_another_scenario(
    tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "run"
    arguments = ["run", str(SCENARIOS / "hawaii.toml"), "--out", str(folder), "--no-progress"]
    interrupt_at(monkeypatch, 1)
    assert main([*arguments, "--rounds", "3", "--checkpoint-every", "0"]) == 130
    monkeypatch.undo()
    assert (folder / CHECKPOINT_FILE).is_file() and (folder / "scenario.toml").is_file()
    capsys.readouterr()
    assert main([*arguments, "--rounds", "2"]) == 2  # refused before any work
    assert "different resolved scenario" in capsys.readouterr().err
    stepped = count_steps(monkeypatch)
    assert main([*arguments, "--rounds", "3"]) == 0
    assert stepped == [1, 2]
    monkeypatch.undo()
    # Forced over an unfinished run of another scenario, the run's checkpoint brings its own
    # scenario.toml, so the same command resumes without --force.
    for_four = [*arguments, "--rounds", "4", "--checkpoint-every", "0"]
    (folder / "summary.json").unlink()  # an unfinished run of the 3-round scenario
    interrupt_at(monkeypatch, 2)
    assert main([*for_four, "--force"]) == 130
    monkeypatch.undo()
    stepped = count_steps(monkeypatch)
    assert main(for_four) == 0
    assert stepped == [2, 3]


def test_checkpoints_off_say_that_a_checkpoint_in_the_folder_is_not_resumed(
    tmp_path, monkeypatch, capsys
):
    loaded = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=3"])
    folder = tmp_path / "run"
    interrupted(monkeypatch, 1, run_scenario, loaded, out_dir=folder)
    capsys.readouterr()
    run_scenario(loaded, out_dir=folder, checkpoint_seconds=None)
    error = capsys.readouterr().err
    assert "is not resumed from (checkpoints are off)" in error
    assert not (folder / CHECKPOINT_FILE).exists()


def test_a_finished_run_removes_a_checkpoint_write_a_kill_cut_short(tmp_path):
    """Only the next checkpoint write cleaned it: a rerun that wrote none (checkpoints off, or
    a short remainder) left a partial pickle, gigabytes on a long run, in the finished folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    partial = folder / ".checkpoint.pickle.9ec6dd82.tmp"
    partial.write_bytes(b"half a pickle")
    loaded = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=2"])
    run_scenario(loaded, out_dir=folder, checkpoint_seconds=None)
    assert (folder / "summary.json").is_file() and not partial.exists()


def test_a_full_disk_turns_checkpoints_off_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_resume, "write_checkpoints_together", no_space)
    folder = tmp_path / "run"
    loaded = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=3"])
    run_scenario(loaded, out_dir=folder, checkpoint_seconds=0.0)
    error = capsys.readouterr().err
    assert error.count("this run writes no more checkpoints: [Errno 28] No space left") == 1
    assert (folder / "summary.json").is_file()


def test_a_failed_write_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    """The write is atomic: a full disk at round 2 leaves round 1's checkpoint to resume."""
    calls = []

    def full_disk_the_second_time(paths, *args, **kwargs):
        calls.append(paths)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_checkpoints_together(paths, *args, **kwargs)

    monkeypatch.setattr(run_resume, "write_checkpoints_together", full_disk_the_second_time)
    loaded = load_scenario(SCENARIOS / "hawaii.toml", ["rounds=4"])
    folder = tmp_path / "run"
    interrupted(monkeypatch, 3, run_scenario, loaded, out_dir=folder)
    assert "resumes from the last checkpoint written" in capsys.readouterr().err
    stepped = count_steps(monkeypatch)
    run_scenario(loaded, out_dir=folder, checkpoint_seconds=0.0)
    assert stepped == [1, 2, 3]


def test_the_next_checkpoint_waits_twenty_times_the_last_write(tmp_path, monkeypatch):
    """A fake clock: rounds take 0.5 s, a write 1 s, the interval is 2 s."""
    clock = [0.0]
    monkeypatch.setattr(run_resume.time, "perf_counter", lambda: clock[0])
    original_step = MarketModel.step

    def step(self, *args, **kwargs):
        clock[0] += 0.5
        return original_step(self, *args, **kwargs)

    written = []

    def slow_write(paths, checkpoints, *args, **kwargs):
        clock[0] += 1.0
        written.append(checkpoints[0].completed_rounds)

    monkeypatch.setattr(MarketModel, "step", step)
    monkeypatch.setattr(run_resume, "write_checkpoints_together", slow_write)
    loaded = load_scenario(SCENARIOS / "classic_auctions.toml", ["rounds=60"])
    run_scenario(loaded, out_dir=tmp_path / "run", checkpoint_seconds=2.0)
    # 2 s after the start (round 4), then 20 x 1 s after each write ends: 40 rounds later.
    assert written == [4, 44]


def test_array_round_records_pickle_only_their_written_rows():
    records = RoundRecords(rounds=2000, auctions=8, bidders=3)
    records.next_round()
    records.bids[0] = 1.5
    restored = pickle.loads(pickle.dumps(records))
    assert len(pickle.dumps(records)) < 10_000  # one round's rows, not 2,000 rounds' buffers
    assert restored.bids.shape == (2000, 8, 3) and restored.count == 1
    np.testing.assert_array_equal(restored.filled("bids"), records.filled("bids"))


def test_a_run_resumes_in_a_new_process(tmp_path):
    """Interrupted by SIGINT in one process, resumed in another, equal to an uninterrupted run.

    Module-level state or a model's own state that a checkpoint missed would differ between
    processes, which the in-process tests cannot see.
    """
    scenario = SCENARIOS / "classic_auctions.toml"
    run_scenario(
        load_scenario(scenario, ["rounds=2000", "auctions_per_round=1"]),
        out_dir=tmp_path / "whole",
        checkpoint_seconds=None,
    )
    folder = tmp_path / "resumed"
    command = [
        sys.executable, "-m", "market_sim", "run", str(scenario), "--rounds", "2000",
        "--set", "auctions_per_round=1", "--out", str(folder), "--no-progress",
        "--checkpoint-every", "0.1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (folder / CHECKPOINT_FILE).exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, process.stderr.read()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert "market-sim: resuming after round" in again.stderr
    assert_same_results(tmp_path / "whole", folder)


def edited_origin(*args, **kwargs):
    """The plugin's origin as if its code had been edited since the checkpoint."""
    return {**plugin_origin(*args, **kwargs), "code_hash": "0" * 64}


def test_a_plugin_whose_code_changed_is_not_resumed(
    random_lm, random_model_dir, tmp_path, monkeypatch, capsys
):
    """The plugin's source hashes are in the identity: other code, another run."""
    from test_mechanism_plugins import POSTED_PRICE, posted_price_data

    from market_sim.plugins import registered
    from market_sim.scenario import scenario_from_dict

    with registered(POSTED_PRICE):
        scenario = scenario_from_dict({**posted_price_data(random_model_dir), "rounds": 3})
        for edited, expected_steps in ((False, [1, 2]), (True, [0, 1, 2])):
            folder = tmp_path / f"edited-{edited}"
            interrupted(monkeypatch, 1, run_scenario, scenario, folder, random_lm)
            if edited:
                monkeypatch.setattr(run_resume, "plugin_origin", edited_origin)
            stepped = count_steps(monkeypatch)
            run_scenario(scenario, folder, random_lm, checkpoint_seconds=0.0)
            monkeypatch.undo()
            assert stepped == expected_steps
        assert "it is of another run (mechanism_plugin differ)" in capsys.readouterr().err


def test_an_interrupted_sweep_resumes_its_unfinished_run_from_the_checkpoint(tmp_path, monkeypatch):
    """The sweep keeps an unfinished run's checkpoint (and only that) and resumes the run."""
    from market_sim.sweep import RUNS_FILE, run_sweep

    scenario = SCENARIOS / "hawaii.toml"
    grid, overrides = {"mechanism.payment": ["second_price"]}, ["rounds=4"]
    whole, out = tmp_path / "whole", tmp_path / "sweep"
    run_sweep(scenario, grid, "0", whole, overrides=overrides, progress=False)
    with pytest.raises(KeyboardInterrupt):
        interrupt_at(monkeypatch, 2)
        run_sweep(
            scenario, grid, "0", out, overrides=overrides, progress=False, checkpoint_seconds=0.0
        )
    monkeypatch.undo()
    (run_folder,) = (out / "runs").iterdir()
    assert sorted(p.name for p in run_folder.iterdir()) == [CHECKPOINT_FILE, "scenario.toml"]
    (run_folder / "stray.parquet").write_bytes(b"half-written")  # removed, not the checkpoint
    stepped = count_steps(monkeypatch)
    run_sweep(scenario, grid, "0", out, overrides=overrides, progress=False)
    assert stepped == [2, 3]
    assert not (run_folder / "stray.parquet").exists()
    assert_same_results(whole / "runs" / run_folder.name, run_folder)
    runs = [pl.read_parquet(folder / RUNS_FILE) for folder in (whole, out)]
    assert runs[0].equals(runs[1])  # timings are in timings.parquet

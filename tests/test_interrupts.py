"""Interrupted commands: real ``market-sim`` subprocesses killed or signalled mid-sweep or mid-run.

What must hold: after ``kill -9`` of a sweep's parent no process of that sweep survives (pool
workers, multiprocessing's resource tracker) and rerunning the sweep resumes to the table of an
uninterrupted sweep, byte for byte; SIGINT or SIGTERM (to the parent alone, or Ctrl-C to the whole
process group; the parent's code path is the same for SIGINT alone) stops a sweep at once with
exit status 130, exactly one line on stderr, and the finished runs kept and listed; SIGINT or
SIGTERM to ``market-sim run``, while it imports torch or while it steps the market, gives one line
and 130.

Processes of a sweep are found by walking ``/proc`` from the sweep's PID (its descendants) while
it is alive; after the kill they are checked by PID and start time (a reused PID is not them).
Everything polls against deadlines: startup imports torch in every worker, which takes from
seconds to over a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from market_sim.cli import main
from market_sim.results import is_complete_run
from market_sim.sweep import RUNS_FILE, run_sweep

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finds a sweep's processes through /proc (Linux)"
)

SCENARIO = """
name = "interrupted"
seed = 0
rounds = 6

[model]
path = "{model}"
device = "cpu"

[mechanism]
kind = "token_auction"
max_new_tokens = 3

[queries]
items = ["vacation in Hawaii", "family trip to Maui"]

[regret]
every = 10  # measuring every round over the long runs below would be flagged as a slow setting

[[advertisers]]
name = "Alpha Airlines"
context = "Alpha Airlines: nonstop flights to Hawaii."
valuation = {{ dist = "uniform", low = 0.5, high = 1.5 }}

[[advertisers]]
name = "Beta Resort"
context = "Beta Resort: beachfront rooms on Maui."
valuation = {{ dist = "uniform", low = 0.5, high = 1.5 }}
"""
SEEDS = "0-5"
PLANNED_RUNS = 6
STARTUP_DEADLINE_SECONDS = 300.0
"""Until the first run is complete: two workers import torch and load the model (slow on a
loaded machine; a few seconds on an idle one)."""
EXIT_DEADLINE_SECONDS = 30.0
"""From the signal until the process has exited."""
ORPHAN_DEADLINE_SECONDS = 10.0
"""From the parent's death until its workers and resource tracker are gone (on Linux the kernel
kills the workers at once; the portable watchdog polls every half second)."""
POLL_SECONDS = 0.05
QUIET_ENV = {
    # Other modules' output is not the subject here: transformers' deprecation warnings and model
    # loading bars would add stderr lines that these tests count.
    "PYTHONWARNINGS": "ignore::FutureWarning",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
INTERRUPTED_LINE = re.compile(
    r"market-sim: interrupted: (\d+) of 6 runs complete, listed in (.+); "
    r"run the same command again to resume"
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, random_model_dir) -> Path:
    path = tmp_path_factory.mktemp("interrupt-scenario") / "interrupted.toml"
    path.write_text(SCENARIO.format(model=random_model_dir))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scenario) -> Path:
    """The same sweep, uninterrupted, in this process (the table does not depend on workers)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    run_sweep(scenario, [], SEEDS, out, progress=False)
    return out


# --------------------------------------------------------------------------- processes


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, parent PID, start time)`` of a process from ``/proc/<pid>/stat``, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (command) "
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """PID -> start time of every living descendant of ``root``."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := process_stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found, frontier = {}, [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found[child] = starts[child]
            frontier.append(child)
    return found


def still_running(processes: dict[int, int]) -> dict[int, str]:
    """Which of ``processes`` (PID -> start time) still run: PID -> command line."""
    running = {}
    for pid, start in processes.items():
        stat = process_stat(pid)
        if stat is not None and stat[2] == start and stat[0] != "Z":
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            running[pid] = command.decode(errors="replace")
    return running


def wait_until(condition: Callable[[], object], deadline: float, what: str) -> None:
    """Poll ``condition`` every :data:`POLL_SECONDS` until it is true or ``deadline`` passes."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline:.0f} s")
        time.sleep(POLL_SECONDS)


def maps_library(pid: int, name: str) -> bool:
    """Whether process ``pid`` has a file whose path contains ``name`` mapped (False if gone)."""
    try:
        return name in Path(f"/proc/{pid}/maps").read_text(errors="replace")
    except OSError:
        return False


def complete_runs(out: Path) -> list[Path]:
    """The complete run folders of a sweep folder."""
    runs = out / "runs"
    return [path for path in runs.iterdir() if is_complete_run(path)] if runs.is_dir() else []


def start_sweep(scenario: Path, out: Path, stderr: Path) -> subprocess.Popen:
    """``market-sim sweep`` with two workers, in a session of its own (a process group)."""
    command = [sys.executable, "-m", "market_sim.cli", "sweep", str(scenario), "--seeds", SEEDS]
    command += ["--workers", "2", "--out", str(out), "--no-progress"]
    with stderr.open("wb") as sink:
        return subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, **QUIET_ENV},
            start_new_session=True,
        )


def sweep_with_one_finished_run(scenario: Path, out: Path, stderr: Path):
    """Start a sweep, wait until a run is complete; returns it and its processes then."""
    sweep = start_sweep(scenario, out, stderr)
    try:
        wait_until(lambda: complete_runs(out), STARTUP_DEADLINE_SECONDS, "a first complete run")
    except BaseException:
        sweep.kill()
        sweep.wait()
        raise
    assert sweep.poll() is None, "the sweep finished before it could be interrupted"
    processes = descendants(sweep.pid)
    assert len(processes) >= 3, processes  # two workers and the resource tracker
    return sweep, processes


def assert_none_left(processes: dict[int, int]) -> None:
    """Every process in ``processes`` ends within :data:`ORPHAN_DEADLINE_SECONDS`."""
    end = time.monotonic() + ORPHAN_DEADLINE_SECONDS
    while (running := still_running(processes)) and time.monotonic() < end:
        time.sleep(POLL_SECONDS)
    assert not running, f"processes of the sweep outlived it: {running}"


# --------------------------------------------------------------------------- tests


def test_kill_9_leaves_no_process_and_a_rerun_resumes(tmp_path, scenario, reference, capsys):
    out = tmp_path / "sweep-killed-9"
    sweep, processes = sweep_with_one_finished_run(scenario, out, tmp_path / "stderr")
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    assert_none_left(processes)
    finished = len(complete_runs(out))
    assert 1 <= finished < PLANNED_RUNS

    args = ["sweep", str(scenario), "--seeds", SEEDS, "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"already complete; table: {out / RUNS_FILE} ({PLANNED_RUNS} rows)" in printed
    resumed = re.search(r"(\d+) runs done, (\d+) already complete", printed)
    assert resumed is not None and int(resumed[2]) >= finished  # finished runs were kept
    assert (out / RUNS_FILE).read_bytes() == (reference / RUNS_FILE).read_bytes()


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGTERM-parent", "Ctrl-C-group"],
)
def test_interrupted_sweep_keeps_finished_runs(tmp_path, scenario, reference, signum, to_group):
    out = tmp_path / "sweep-interrupted"
    stderr = tmp_path / "stderr"
    sweep, processes = sweep_with_one_finished_run(scenario, out, stderr)
    if to_group:  # what a terminal's Ctrl-C does: every process of the foreground group
        os.killpg(sweep.pid, signum)
    else:
        os.kill(sweep.pid, signum)
    try:
        status = sweep.wait(timeout=EXIT_DEADLINE_SECONDS)
    finally:
        sweep.kill()
    assert status == 130
    assert_none_left(processes)

    lines = stderr.read_text().splitlines()
    assert len(lines) == 1, lines
    message = INTERRUPTED_LINE.fullmatch(lines[0])
    assert message is not None, lines[0]
    assert Path(message[2]) == out / RUNS_FILE
    kept = sorted(f"runs/{path.name}" for path in complete_runs(out))
    assert int(message[1]) == len(kept) and 1 <= len(kept) < PLANNED_RUNS
    table = pl.read_parquet(out / RUNS_FILE)
    assert sorted(table["run_dir"]) == kept
    expected = pl.read_parquet(reference / RUNS_FILE).filter(pl.col("run_dir").is_in(kept))
    # A column null in every kept run is typed Null in the partial table, Float64 in the full one.
    assert_frame_equal(table, expected, check_dtypes=False)


WATCHED_CHILD = """
import os, sys
from market_sim.process_lifetime import watch_parent
print("watching", flush=True)
watch_parent(int(sys.argv[1]), interval=0.05)
"""
ORPHANING_PARENT = """
import os, subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1], str(os.getpid())], stdout=subprocess.PIPE, text=True
)
assert child.stdout.readline() == "watching\\n"
print(child.pid, flush=True)
os._exit(0)  # dies without waiting: the child is orphaned while it watches
"""


def test_watchdog_alone_ends_an_orphaned_worker():
    """The portable fallback, without the Linux parent-death signal: the orphan exits itself."""
    parent = subprocess.run(
        [sys.executable, "-c", ORPHANING_PARENT, WATCHED_CHILD],
        capture_output=True,
        text=True,
        timeout=STARTUP_DEADLINE_SECONDS,
        check=True,
    )
    child = int(parent.stdout)
    stat = process_stat(child)
    assert_none_left({} if stat is None else {child: stat[2]})


PARENT_DEATH_SIGNAL_CHECK = """
import ctypes, signal
from market_sim.process_lifetime import request_parent_death_signal
assert request_parent_death_signal()
current = ctypes.c_int()
assert ctypes.CDLL(None).prctl(2, ctypes.byref(current), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
print(current.value == signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_parent_death_signal_is_set_on_linux():
    check = [sys.executable, "-c", PARENT_DEATH_SIGNAL_CHECK]
    result = subprocess.run(check, capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout == "True\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_prints_one_line(tmp_path, scenario, signum):
    out = tmp_path / "run"
    stderr = tmp_path / "stderr"
    command = [sys.executable, "-m", "market_sim.cli", "run", str(scenario), "--rounds", "2000"]
    with stderr.open("wb") as sink:
        run = subprocess.Popen(
            [*command, "--out", str(out), "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, **QUIET_ENV},
        )
    try:
        # torch is imported by the command itself, inside main's handling, never before it.
        wait_until(
            lambda: run.poll() is not None or maps_library(run.pid, "libtorch"),
            STARTUP_DEADLINE_SECONDS,
            "the run importing torch",
        )
        assert run.poll() is None, stderr.read_text()
        run.send_signal(signum)
        status = run.wait(timeout=EXIT_DEADLINE_SECONDS)
    finally:
        run.kill()
    assert status == 130
    assert stderr.read_text().splitlines() == ["market-sim: interrupted"]
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_the_rounds_of_a_run(tmp_path, scenario, signum, monkeypatch, capsys):
    """In process: the signal arrives from inside the market's third step, so inside ``main``."""
    from market_sim.market.model import MarketModel

    step = MarketModel.step
    steps = []

    def step_then_signal(market):
        steps.append(1)
        if len(steps) == 3:
            os.kill(os.getpid(), signum)  # handled before the next bytecode of this thread
        return step(market)

    monkeypatch.setattr(MarketModel, "step", step_then_signal)
    # A shell starts a background job with SIGINT ignored, and Python then leaves it ignored
    # (a CI runner may start pytest so): give this process Python's usual Ctrl-C handler, as an
    # interactive `market-sim run` has, for the test's duration.
    interrupt_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    terminate_handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    try:
        status = main(
            ["run", str(scenario), "--rounds", "1000", "--out", str(out), "--no-progress"]
        )
    finally:
        signal.signal(signal.SIGINT, interrupt_handler)
    assert status == 130
    error = capsys.readouterr().err  # in process, model loading's bar and warnings come first
    assert error.splitlines()[-1] == "market-sim: interrupted"
    assert error.count("market-sim") == 1 and "Traceback" not in error
    assert len(steps) == 3 and not out.exists()
    assert signal.getsignal(signal.SIGTERM) is terminate_handler  # main restored it


def test_console_entry_ignores_signals_once_the_command_has_returned(monkeypatch):
    """A signal during interpreter shutdown (over a second with torch) used to kill a finished
    command (exit -2 or -15, or a traceback from torch's exit hooks)."""
    import market_sim.cli.entry as cli

    seen = {}

    def finished() -> int:
        seen["during"] = signal.getsignal(signal.SIGINT)
        return 0

    monkeypatch.setattr(cli, "main", finished)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exited:
            cli.console_main()
        after = {sig: signal.getsignal(sig) for sig in before}
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert exited.value.code == 0
    assert seen["during"] is before[signal.SIGINT]  # the command itself stays interruptible
    assert after == {signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}


def test_sigterm_during_argument_parsing_is_one_line_and_exit_130(monkeypatch, capsys):
    import market_sim.cli.entry as cli

    real_parser = cli.build_parser

    def parser_then_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)  # delivered while parsing: before, a plain kill
        return real_parser()

    monkeypatch.setattr(cli, "build_parser", parser_then_sigterm)
    assert cli.main(["--version"]) == 130
    assert capsys.readouterr().err == "market-sim: interrupted\n"


def die_at_seed_3(task, runs_root):
    """A sweep run function whose worker is killed (as the OOM killer would) at seed 3."""
    from market_sim.sweep.backends import run_task

    if task.seed == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task, runs_root)


def test_a_killed_worker_is_one_line_with_the_resume_hint(tmp_path, scenario, reference, capsys):
    """It used to end in a 24-line BrokenProcessPool traceback, exit 1, no hint."""
    from market_sim.sweep import SweepWorkerDiedError

    out = tmp_path / "sweep-worker-killed"
    with pytest.raises(SweepWorkerDiedError) as died:
        run_sweep(scenario, [], SEEDS, out, workers=2, progress=False, run_function=die_at_seed_3)
    message = str(died.value)
    assert "\n" not in message and message.startswith("a sweep worker process died")
    assert re.search(r"; \d of 6 runs complete, listed in .+; run the same command again", message)
    args = ["sweep", str(scenario), "--seeds", SEEDS, "--out", str(out), "--no-progress"]
    assert main(args) == 0  # resumes to the uninterrupted table
    assert (out / RUNS_FILE).read_bytes() == (reference / RUNS_FILE).read_bytes()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_the_command_starts_is_one_line_and_exit_130(signum):
    """Found by an audit: a signal in the first ~80 ms, while the CLI's modules were imported,
    gave a KeyboardInterrupt traceback (SIGINT) or a silent exit 143 (SIGTERM). The entry
    module handles them from its first lines; the signal here arrives right after them."""
    from market_sim.process_lifetime import INTERRUPTED_EXIT_STATUS

    code = (
        "import os, signal, time\n"
        "import market_sim.__main__\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == INTERRUPTED_EXIT_STATUS
    assert done.stderr == "market-sim: interrupted\n"


def test_a_spawned_sweep_worker_importing_the_entry_module_keeps_its_signals():
    """Spawn re-imports the console script in each worker: the start-up handlers would print a
    line per worker on Ctrl-C. A script that imports the entry module at its top, as the
    console script does, and asks a spawned worker which handlers it holds."""
    script = (
        "import multiprocessing, signal\n"
        "import market_sim.__main__\n"
        "def handlers(_):\n"
        "    return (signal.getsignal(signal.SIGINT) is signal.default_int_handler,\n"
        "            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n"
        "if __name__ == '__main__':\n"
        "    with multiprocessing.get_context('spawn').Pool(1) as pool:\n"
        "        print(*pool.map(handlers, [0])[0])\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "entry_like.py"
        path.write_text(script, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=True
        )
    assert done.stdout.split() == ["True", "True"]


def test_the_console_script_runs_the_entry_module():
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["market-sim"] == "market_sim.__main__:main"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupts_deferred_holds_a_signal_until_the_block_ends(signum):
    """Held while other threads run (where a signal mask would not hold it), then raised."""
    import threading

    from market_sim.process_lifetime import interrupts_deferred, terminate_as_interrupt

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # a thread that leaves the signal unblocked
    other.start()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finished = []
    try:
        with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt), interrupts_deferred():
            os.kill(os.getpid(), signum)
            time.sleep(0.2)  # the handler has run by now; it only records the signal
            finished.append("block")
    finally:
        stop.set()
        other.join()
    assert finished == ["block"]
    assert {s: signal.getsignal(s) for s in handlers} == handlers


RUN_THAT_WAITS = """
import pathlib, time

def run_that_waits(task, runs_root):
    pathlib.Path(runs_root, f"started-{task.index}").touch()
    time.sleep(600)
    return task.name
"""
POOL_UNDER_POLARS = """
import sys
from pathlib import Path
import polars  # installs its SIGINT handler with SA_RESTART: a wait without timeout resumes
from market_sim.sweep.backends import SweepTask, run_in_pool
from run_that_waits import run_that_waits

root = Path(sys.argv[1])
key = ("no-such-model", "cpu", "float32")  # the workers' preload fails quietly
tasks = [SweepTask(i, f"run{i}", (), i, "", key) for i in range(2)]
try:
    run_in_pool(tasks, root, 2, 1, run_that_waits, lambda count: None)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_stops_a_pool_at_once_while_its_runs_go_on(tmp_path):
    # Found by an audit: with polars imported, SIGINT reached the sweep only when a run ended.
    (tmp_path / "run_that_waits.py").write_text(RUN_THAT_WAITS)
    environment = {**os.environ, **QUIET_ENV, "PYTHONPATH": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", POOL_UNDER_POLARS, str(tmp_path)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.monotonic()
        wait_until(
            lambda: len(list(tmp_path.glob("started-*"))) == 2,
            started + STARTUP_DEADLINE_SECONDS,
            "both runs started",
        )
        workers = descendants(process.pid)
        process.send_signal(signal.SIGINT)
        # the runs sleep 600 s: exiting within the deadline means the interrupt did not wait
        out, err = process.communicate(timeout=EXIT_DEADLINE_SECONDS)
    finally:
        process.kill()
    assert out.strip() == "interrupted", err
    assert_none_left(workers)

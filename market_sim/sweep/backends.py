"""Where the runs of a sweep execute: in process, in a local process pool, or as Ray tasks.

Every backend calls the same run function, :func:`run_task`, on the same :class:`SweepTask`
values, so the run directories (and the sweep's ``runs.parquet``) do not depend on the backend or
on the number of workers. A task carries its resolved scenario as TOML text (plain data that
pickles anywhere, including to a Ray cluster), and each worker process keeps the language models it
loaded in a cache keyed by (path, device, dtype), so a model is loaded once per worker, not once
per run. Workers use one torch CPU thread each (two threads per worker on a small machine were
measured up to 100x slower, see docs/design.md, section 8).

Interruption (local pool): workers die with the parent process however it ends, and leave SIGINT
and SIGTERM to it (:mod:`market_sim.process_lifetime`). A ``KeyboardInterrupt`` in the parent
(Ctrl-C, or SIGTERM turned into one by the CLI) cancels the queued runs and kills the workers at
once: the runs in flight are lost (a run is all or nothing; its half-written folder is redone on
resume) and the finished ones stay.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from market_sim.config.bounds import DEFAULT_CHECKPOINT_SECONDS
from market_sim.process_lifetime import (
    SweepWorkerDiedError,
    block_interrupts,
    die_with_parent,
    interrupts_blocked,
)
from market_sim.results import is_complete_run
from market_sim.results.checkpoint import CHECKPOINT_FILE

BACKENDS: tuple[str, ...] = ("local", "ray")
"""Backend names accepted by :func:`execute_tasks` (``--backend``)."""

INTERRUPT_POLL_SECONDS = 0.5
"""The sweep's parent wakes this often while runs are in flight, to act on a Ctrl-C."""

RAY_INSTALL_HINT = "install it with: pip install 'market-sim[ray]' (or pip install ray)"

ModelKey = tuple[str, str, str]
RunFunction = Callable[["SweepTask", Path], str]
Tick = Callable[[int], object]


@dataclass(frozen=True)
class SweepTask:
    """One run of a sweep: a grid point and a seed.

    Attributes:
        index: Position in the sweep's deterministic order.
        name: Run directory name, relative to the sweep's ``runs/`` folder.
        point: The grid values, as ``(dotted key, value)`` pairs in grid order.
        seed: The run's seed.
        scenario_toml: The resolved scenario (every override applied), as TOML text.
        model_key: ``(model.path, model.device, model.dtype)`` of the scenario.
        checkpoint_seconds: How often the run writes its checkpoint (None: never).
    """

    index: int
    name: str
    point: tuple[tuple[str, Any], ...]
    seed: int
    scenario_toml: str
    model_key: ModelKey
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS


class SweepError(ValueError):
    """Bad sweep input (grid, seeds, backend, workers); the message names the flag."""


_MODELS: dict[ModelKey, tuple[Any, Any]] = {}
"""(path, device, dtype) -> (the model files' hashes when loaded, the loaded model)."""


def cached_model(key: ModelKey) -> Any:
    """The language model for ``(path, device, dtype)``, loaded once per process.

    Loaded again when the folder's files changed since (their hashes,
    :func:`~market_sim.provenance.current_model_hashes`, cached by size and modification time):
    a sweep run in the same process after a model folder was edited in place must not run,
    and record as the edited files, the model loaded before. A hub model not yet in the local
    cache has no hashes (None) until its first load fetches it; it is not loaded twice for that.
    """
    from market_sim.provenance import current_model_hashes

    path, device, dtype = key
    files = current_model_hashes(path)
    loaded_files = _MODELS[key][0] if key in _MODELS else None
    if key not in _MODELS or None not in (files, loaded_files) and files != loaded_files:
        from market_sim.lm.model import LanguageModel

        _MODELS.pop(key, None)  # release the old weights before loading the new ones
        _MODELS[key] = (files, LanguageModel.load(path, device=device, dtype=dtype))
    elif loaded_files is None:  # a hub model cached by its own first load: compare from now on
        _MODELS[key] = (files, _MODELS[key][1])
    return _MODELS[key][1]


def init_worker(threads: int, model_keys: Sequence[ModelKey], parent_pid: int) -> None:
    """Process-pool initializer of a sweep worker.

    Dies with the parent, leaves interrupts to it, sets torch's thread count, and preloads the
    sweep's models (without transformers' loading bars: the sweep shows its own progress). A
    model that fails to load is left to the first task that uses it, whose error reaches the
    sweep as that task's exception (an initializer's would break the pool). tqdm
    gets a thread lock instead of its default multiprocessing lock: a worker killed by an
    interrupt would leave that semaphore to the resource tracker, which warns about it on stderr.

    Args:
        threads: torch CPU threads.
        model_keys: The models the sweep's runs use.
        parent_pid: The sweep's process.
    """
    die_with_parent(parent_pid)
    block_interrupts()
    import torch
    import transformers
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    for key in model_keys:
        try:
            cached_model(key)
        except Exception:  # a task that needs the model loads it again and says why
            continue  # raised here, it would break the pool: "a worker died", not the reason


def run_task(task: SweepTask, runs_root: Path) -> str:
    """The run function of every backend: run one task into ``runs_root / task.name``.

    A complete run directory is left alone; of a half-written one (no ``summary.json``) only
    the checkpoint is kept, and the run resumes from it (:mod:`market_sim.run_resume`; at the
    default interval), or starts over without one.

    Args:
        task: The run to do.
        runs_root: The sweep's ``runs/`` folder.

    Returns:
        The task's run directory name.
    """
    from market_sim.plugins import mechanism_kinds
    from market_sim.run import run_scenario
    from market_sim.scenario import scenario_from_dict

    folder = Path(runs_root) / task.name
    if is_complete_run(folder):
        return task.name
    data = tomllib.loads(task.scenario_toml)
    kind = data.get("mechanism", {}).get("kind")
    if isinstance(kind, str) and kind not in mechanism_kinds():  # validated by the sweep
        raise SweepError(
            f"mechanism.kind {kind!r} is registered in the sweep's process but not in this "
            "worker process, which imports the script without running its "
            '`if __name__ == "__main__":` block: call register_mechanism at the script\'s top '
            "level, or install the plugin with a market_sim.mechanisms entry point"
        )
    if folder.exists():  # an interrupted run: start clean, but resume from its checkpoint
        for entry in folder.iterdir():
            if entry.name == CHECKPOINT_FILE and entry.is_file():
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    scenario = scenario_from_dict(data)
    lm = cached_model(task.model_key)
    run_scenario(scenario, folder, lm, progress=False, checkpoint_seconds=task.checkpoint_seconds)
    return task.name


def execute_tasks(
    tasks: Sequence[SweepTask],
    runs_root: Path,
    *,
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    threads: int = 1,
    run_function: RunFunction = run_task,
    tick: Tick = lambda count: None,
) -> None:
    """Run ``tasks`` on a backend, calling ``tick(1)`` after each finished run.

    Args:
        tasks: The runs still to do.
        runs_root: The sweep's ``runs/`` folder.
        backend: ``local`` (in process for one worker, else a spawn process pool) or ``ray``.
        workers: Parallel runs (local: pool size, None means 1; Ray: CPUs of a local instance,
            None means all cores; with ``address``: most tasks in flight, None means no cap).
        address: A Ray cluster address (``auto``, ``ray://host:10001``, ...); Ray only.
        threads: torch CPU threads per worker.
        run_function: The run function (module-level, so it pickles; tests substitute it).
        tick: Progress callback.

    Raises:
        SweepError: Unknown backend, bad worker count, or Ray missing.
    """
    check_backend(backend, workers, address)
    if not tasks:
        return
    if backend == "ray":
        run_on_ray(tasks, runs_root, workers, address, threads, run_function, tick)
    elif (workers or 1) == 1:
        run_in_process(tasks, runs_root, threads, run_function, tick)
    else:
        run_in_pool(tasks, runs_root, workers or 1, threads, run_function, tick)


def check_backend(backend: str, workers: int | None, address: str | None) -> None:
    """Validate the backend options (and that Ray imports, for ``ray``).

    Raises:
        SweepError: Unknown backend, a worker count below 1, ``address`` without Ray, or Ray
            not installed.
    """
    if backend not in BACKENDS:
        raise SweepError(f"--backend: unknown value {backend!r}; allowed: {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise SweepError(f"--workers: must be an integer >= 1, got {workers!r}")
    if address is not None and backend != "ray":
        raise SweepError("--address: only used with --backend ray")
    if backend == "ray":
        import_ray()


def run_in_process(
    tasks: Sequence[SweepTask],
    runs_root: Path,
    threads: int,
    run_function: RunFunction,
    tick: Tick,
) -> None:
    """Run the tasks one after another in this process (sets torch's thread count)."""
    import torch

    torch.set_num_threads(threads)
    for task in tasks:
        run_function(task, runs_root)
        tick(1)


def run_in_pool(
    tasks: Sequence[SweepTask],
    runs_root: Path,
    workers: int,
    threads: int,
    run_function: RunFunction,
    tick: Tick,
) -> None:
    """Run the tasks in a spawn process pool.

    The first failure cancels what has not started (runs in flight finish); an interrupt
    (``KeyboardInterrupt``) cancels what has not started and kills the workers at once.
    """
    model_keys = sorted({task.model_key for task in tasks})
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(threads, model_keys, os.getpid()),
    )
    try:
        # The pool starts its workers in submit(), from this thread: they inherit the blocked
        # interrupts, and their parent-death signal is tied to a thread that outlives the pool.
        with interrupts_blocked():
            pending: set[Future[str]] = {pool.submit(run_function, t, runs_root) for t in tasks}
        while pending:
            # With a timeout: polars installs its SIGINT handler with SA_RESTART, so a wait
            # without one resumes after Ctrl-C and the interrupt waited for a run to finish.
            done, pending = wait(pending, INTERRUPT_POLL_SECONDS, FIRST_COMPLETED)
            for future in done:
                future.result()
                tick(1)
    except BrokenProcessPool:
        raise SweepWorkerDiedError(
            "a sweep worker process died (killed by a signal, e.g. the out-of-memory killer: "
            "fewer --workers need less memory; or it failed to start)"
        ) from None
    except KeyboardInterrupt:
        for worker in set(multiprocessing.active_children()) - others:
            worker.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def import_ray() -> Any:
    """Import Ray, or raise a :class:`SweepError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise SweepError(f"--backend ray: ray is not installed; {RAY_INSTALL_HINT}") from None
    return ray


def ray_entry(run_function: RunFunction, task: SweepTask, runs_root: str, threads: int) -> str:
    """Body of the Ray task: one torch thread, the worker's model cache, the run function."""
    import torch

    torch.set_num_threads(threads)
    return run_function(task, Path(runs_root))


def run_on_ray(
    tasks: Sequence[SweepTask],
    runs_root: Path,
    workers: int | None,
    address: str | None,
    threads: int,
    run_function: RunFunction,
    tick: Tick,
) -> None:
    """Run the tasks as Ray tasks (one CPU each) on a local instance or an existing cluster.

    A local instance gets ``num_cpus=workers``; with ``address`` the cluster decides, and
    ``workers`` (if given) caps the tasks in flight. With a cluster, ``runs_root`` must be on
    storage that every node sees. Ray is shut down afterwards only if this call started it.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            ray.init(num_cpus=workers, **options)
        else:
            ray.init(address=address, **options)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(ray_entry)
        cap = workers if (workers is not None or address is None) else len(tasks)
        queue = list(tasks)
        in_flight: list[Any] = []
        while queue or in_flight:
            while queue and len(in_flight) < max(1, cap or len(tasks)):
                in_flight.append(remote.remote(run_function, queue.pop(0), str(runs_root), threads))
            done, in_flight = ray.wait(in_flight, num_returns=1, timeout=INTERRUPT_POLL_SECONDS)
            ray.get(done)
            if done:  # a wait that timed out is no progress
                tick(len(done))
    finally:
        if started:
            ray.shutdown()

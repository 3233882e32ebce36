"""Sweeps: a scenario over a grid of dotted-key values and a list of seeds.

Layout of a sweep folder ``DIR``::

    DIR/sweep.json          what was asked: scenario file (and its bytes' sha256), grid, seeds,
                            --set overrides
    DIR/runs/<name>/        one run directory (the results contract) per (grid point, seed)
    DIR/runs.parquet        one row per run: grid values, seed, run_dir, every summary.json key
    DIR/timings.parquet     the wall-clock keys of each run (kept out of runs.parquet)

Run names are ``<slug>-seed<seed>-<hash>``: a readable slug of the grid values and a 10-digit
hash of the run's resolved scenario (the same digest as its ``run_id``), so any change of the
scenario, the overrides or the model reference gives a new folder. A model folder edited in
place keeps its reference, so a rerun also compares each complete run's recorded model file
hashes (``provenance.model``: weights, config and tokenizer files) with the folder's files now
and runs again those made with other files (:func:`stale_runs`); likewise a run of a
mechanism plugin whose recorded source files (or package version) differ from the code now: a
rerun never reuses a stale run. The slug follows the ``--grid`` order; a sweep given again with
its ``--grid`` flags in another order finds its runs by the ``seed<seed>-<hash>`` tail and
renames their folders (:mod:`market_sim.sweep.moved_runs`), so they are kept, not run again.

``runs.parquet`` is deterministic: rows in grid order (the first ``--grid`` varies slowest, seeds
fastest), columns the grid keys (named by dotted key, in grid order), ``seed``, ``run_dir``
(relative to ``DIR``), then every other ``summary.json`` key sorted by name, nested tables
flattened to dotted names (``versions.torch``). Wall-clock keys (:data:`WALL_CLOCK_KEYS`, e.g.
``wall_seconds``, ``rounds_per_second``, ``timings.*``) change from one execution to the next, so
they go to ``timings.parquet`` instead; ``runs.parquet`` is then byte-for-byte the same whatever
the backend, the number of workers, or how often the sweep was interrupted and resumed.

Whenever a sweep stops, ``runs.parquet`` and ``timings.parquet`` list exactly the runs complete at
that moment, in grid order: all of them when it finishes, only those done so far when it is
interrupted (Ctrl-C, SIGTERM: :class:`SweepInterrupted`) or a run fails. A partial table can be
analysed as it is; its row count against ``sweep.json``'s ``planned_runs`` tells it is partial, and
running the same sweep again resumes it (complete runs are kept, the rest are run) to the table an
uninterrupted sweep writes.

Sweeps across mechanism kinds: a grid key read by one kind only is written
``mechanism.<plugin>.<key>`` (e.g. ``--grid mechanism.kind=token_auction,mosaic --grid
mechanism.mosaic.tau=0.5,1``). It applies to that plugin's kinds only: runs of other kinds are
planned once, without it (their grid column is empty), and ``sweep.json`` lists which kinds each
such key applies to. A plain ``mechanism.<key>`` that some kind of the sweep does not read is an
error naming that kind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import tomli_w

from market_sim.config.bounds import DEFAULT_CHECKPOINT_SECONDS, SEED_MAX
from market_sim.config.fields import significant_digits
from market_sim.plugins import MechanismPlugin, mechanism_plugins
from market_sim.process_lifetime import SweepWorkerDiedError
from market_sim.results import SUMMARY_FILE, atomic_write, atomic_write_json, is_complete_run
from market_sim.scenario import ScenarioError, dump_scenario_toml, load_scenario
from market_sim.scenario.overrides import parse_value, split_key
from market_sim.sweep.backends import (
    BACKENDS,
    RunFunction,
    SweepError,
    SweepTask,
    check_backend,
    execute_tasks,
    run_task,
)
from market_sim.sweep.moved_runs import moved_runs, unplanned_runs

__all__ = [
    "BACKENDS",
    "SweepError",
    "SweepWorkerDiedError",
    "SweepInterrupted",
    "SweepResult",
    "SweepTask",
    "format_value",
    "parse_grid",
    "parse_seeds",
    "plan_sweep",
    "prepare_sweep",
    "PreparedSweep",
    "run_dir_name",
    "run_prepared_sweep",
    "run_sweep",
    "run_task",
    "runs_table",
]

RUNS_DIR = "runs"
RUNS_FILE = "runs.parquet"
TIMINGS_FILE = "timings.parquet"
MANIFEST_FILE = "sweep.json"
WALL_CLOCK_KEYS: tuple[str, ...] = (
    "wall_seconds",
    "rounds_per_second",
    "auctions_per_second",
    "timings",
    "execution",
)
"""Top-level summary keys whose values (and nested values) depend on the clock, or on the machine
and checkout that ran the run (``execution``: model folder, device, threads, git commit)."""
RESERVED_GRID_KEYS: tuple[str, ...] = ("seed", "run_dir")
SLUG_LENGTH = 48
GRID_FORMAT = "expected dotted.key=v1,v2,... e.g. mechanism.payment=first_price,second_price"
SEEDS_FORMAT = "expected N, A-B or a comma list such as 0-9 or 0,3,5 (integers >= 0)"
MAX_SEEDS = 100_000
"""Most seeds one ``--seeds`` may name (runs of a sweep, replicates, eva seeds)."""

Grid = dict[str, tuple[Any, ...]]


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep.

    Attributes:
        runs: The ``runs.parquet`` table.
        out_dir: The sweep folder.
        executed: Runs done by this call.
        skipped: Runs already complete before this call.
    """

    runs: pl.DataFrame
    out_dir: Path
    executed: int
    skipped: int


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by an interrupt after writing the table of its complete runs.

    A ``KeyboardInterrupt``, so callers that stop on Ctrl-C stop on it too; its message (one
    line) says how many runs are complete and how to resume.
    """


# --------------------------------------------------------------------------- parsing


def split_top_level(raw: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes (so ``[1,2],[3]`` is two values)."""
    parts, depth, quote, current = [], 0, "", []
    for char in raw:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_grid(specs: Sequence[str]) -> Grid:
    """Parse ``--grid dotted.key=v1,v2,...`` flags (values TOML-typed, like ``--set``).

    Args:
        specs: One string per ``--grid`` flag.

    Returns:
        Dotted key -> its values, in flag order.

    Raises:
        SweepError: A malformed flag, an empty value, a key given twice, a repeated value, or a
            reserved key (``seed``: use ``--seeds``).
    """
    grid: Grid = {}
    for spec in specs:
        key, separator, raw_values = spec.partition("=")
        key = key.strip()
        if not separator or not key or any(not part.strip() for part in key.split(".")):
            raise SweepError(f"--grid: {GRID_FORMAT}; got {spec!r}")
        if key in RESERVED_GRID_KEYS:
            raise SweepError(f"--grid: {key!r} cannot be a grid key; use --seeds for seeds")
        same = [earlier for earlier in grid if split_key(earlier) == split_key(key)]
        if same:
            twice = key if same[0] == key else f"{same[0]} (as {key})"
            raise SweepError(f"--grid: {twice} is given twice; put all its values in one flag")
        raw = split_top_level(raw_values)
        if any(not value for value in raw):
            raise SweepError(f"--grid: {key}: empty value in {raw_values!r}; {GRID_FORMAT}")
        try:
            values = tuple(parse_value(value) for value in raw)
        except ValueError as error:
            raise SweepError(f"--grid: {key}: {error}") from None
        if any(same_value(values[i], values[j]) for i in range(len(values)) for j in range(i)):
            raise SweepError(f"--grid: {key}: repeated value in {raw_values!r}")
        grid[key] = values
    return grid


def same_value(first: Any, second: Any) -> bool:
    """Whether two grid values are one value: equal as written, or equal numbers.

    ``0``, ``0.0`` and ``-0.0`` resolve to one scenario (its runs were silently merged) or to
    two runs of one experiment (``-0.0``); a boolean is never a number here.
    """
    if format_value(first) == format_value(second):
        return True
    numbers = [
        isinstance(value, int | float) and not isinstance(value, bool) for value in (first, second)
    ]
    return all(numbers) and first == second


def parse_seeds(text: str | Sequence[int]) -> tuple[int, ...]:
    """Parse ``--seeds``: ``7``, ``0-9`` (inclusive), ``0,3,5`` or a mix such as ``0-3,8``.

    Args:
        text: The flag's value, or already a sequence of seeds.

    Returns:
        The seeds in the given order.

    Raises:
        SweepError: Anything else: negative numbers, reversed ranges, empty parts, a seed above
            ``SEED_MAX``, a seed given twice, or more than ``MAX_SEEDS`` seeds (counted before
            any range is expanded).
    """
    if not isinstance(text, str):
        items = [str(seed) for seed in text]
    else:
        items = [part.strip() for part in text.split(",")]
    ranges: list[tuple[int, int]] = []
    for item in items:
        match = re.fullmatch(r"([0-9]+)(?:\s*-\s*([0-9]+))?", item)
        if match is None:
            raise SweepError(f"--seeds: {SEEDS_FORMAT}; got {text!r}")
        digits = [significant_digits(group) for group in match.groups() if group is not None]
        longest = max(len(group) for group in digits)
        if longest > len(str(SEED_MAX)):  # int() would refuse 4,300+ digits
            raise SweepError(
                f"--seeds: a {longest}-digit seed is above the largest seed, {SEED_MAX}"
            )
        first, last = int(digits[0]), int(digits[-1])
        if last < first:
            raise SweepError(f"--seeds: range {item!r} runs backwards; {SEEDS_FORMAT}")
        if last > SEED_MAX:
            raise SweepError(f"--seeds: {last} is above the largest seed, {SEED_MAX}")
        ranges.append((first, last))
    count = sum(last - first + 1 for first, last in ranges)
    if count > MAX_SEEDS:
        raise SweepError(f"--seeds: {count:,} seeds; at most {MAX_SEEDS:,}")
    seeds = [seed for first, last in ranges for seed in range(first, last + 1)]
    if not seeds:
        raise SweepError(f"--seeds: {SEEDS_FORMAT}; got {text!r}")
    repeated = next((seed for seed, n in Counter(seeds).items() if n > 1), None)
    if repeated is not None:
        raise SweepError(f"--seeds: seed {repeated} is given twice in {text!r}; give each once")
    return tuple(seeds)


def format_value(value: Any) -> str:
    """A grid value as TOML text (what ``--set key=<text>`` parses back to ``value``)."""
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


# --------------------------------------------------------------------------- planning


def grid_points(grid: Grid) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the grid's values (first key slowest); one empty point if no grid."""
    keys = list(grid)
    return [tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def slug(point: Sequence[tuple[str, Any]], fallback: str) -> str:
    """A short readable folder-name part for a grid point, e.g. ``payment-first_price``."""
    if not point:
        text = fallback
    else:
        text = "_".join(f"{key.split('.')[-1]}-{format_value(value)}" for key, value in point)
    text = re.sub(r"[^A-Za-z0-9._+-]+", "-", text.replace('"', "")).strip("-._")
    return text[:SLUG_LENGTH].rstrip("-._") or "run"


def run_dir_name(point: Sequence[tuple[str, Any]], seed: int, scenario_toml: str, name: str) -> str:
    """Deterministic run folder name: ``<slug>-seed<seed>-<hash of the resolved scenario>``."""
    digest = hashlib.sha256(scenario_toml.encode("utf-8")).hexdigest()[:10]
    return f"{slug(point, name)}-seed{seed}-{digest}"


def stale_runs(tasks: Sequence[SweepTask], runs_root: Path, threads: int = 1) -> dict[str, str]:
    """Complete runs made with other model files, plugin code or thread count, and why.

    Nothing is changed here: :func:`run_sweep` marks them incomplete (removes their
    ``summary.json``, with a line each) only once every input is checked, so a refused input
    leaves the folder as it was.

    Also a run made with another torch thread count than ``threads`` (its
    ``execution.torch_threads``): CPU reductions split by thread, so its numbers may differ in
    the last bits, and its run id names the count; a sweep resumed with another ``--threads``
    would otherwise table runs of both.

    Each complete run's ``provenance.model`` hashes are compared with its model folder's files
    now (:func:`~market_sim.provenance.changed_model_files`; each folder hashed once, and only
    when a complete run uses it); a run whose record differs, or has none, says so on stderr
    and runs again. Hub models not in the local cache are not compared. A run of a plugin's
    mechanism (``provenance.mechanism_plugin``) runs again when a source file it recorded has
    changed, or its package's version
    (:func:`~market_sim.plugins.origin.changed_plugin_code`): the run id hashes the scenario,
    not the plugin's code. Likewise a run of a strategy plugin whose code changed
    (``provenance.strategy_plugins``:
    :func:`~market_sim.scenario.strategy_plugins.changed_strategy_code`).
    """
    from market_sim.plugins.origin import changed_plugin_code, uncompared_modules
    from market_sim.provenance import changed_model_files, current_model_hashes
    from market_sim.scenario.strategy_plugins import changed_strategy_code

    uncompared: dict[str, list[str]] = {}  # plugin name -> modules without a source file
    current: dict[str, Any] = {}
    stale: dict[str, str] = {}
    for task in tasks:
        folder = runs_root / task.name
        if not is_complete_run(folder):
            continue
        reference = task.model_key[0]
        if reference not in current:
            current[reference] = current_model_hashes(reference)
        try:
            summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
            recorded = summary["provenance"]["model"]
        except (OSError, ValueError, KeyError, TypeError):
            summary, recorded = {}, None
        changed = changed_model_files(recorded, current[reference])
        provenance = summary.get("provenance") if isinstance(summary, dict) else None
        plugin = provenance.get("mechanism_plugin") if isinstance(provenance, dict) else None
        changed_code = changed_plugin_code(plugin)
        strategies = changed_strategy_code(
            provenance.get("strategy_plugins") if isinstance(provenance, dict) else None
        )
        modules = uncompared_modules(plugin)
        if modules:
            uncompared[str(plugin.get("name"))] = modules
        execution = summary.get("execution") if isinstance(summary, dict) else None
        run_threads = execution.get("torch_threads") if isinstance(execution, dict) else None
        other_threads = isinstance(run_threads, int) and run_threads != threads
        if changed or changed_code or strategies or other_threads:
            shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
            if changed:
                what = f"other model files ({shown})"
            elif changed_code:
                what = (
                    f"other code of mechanism plugin {plugin.get('name')!r} "
                    f"({', '.join(changed_code)})"
                )
            elif strategies:
                what = f"other code of strategy plugin(s) {', '.join(map(repr, strategies))}"
            else:
                what = f"{run_threads} torch threads (this sweep: --threads {threads})"
            stale[task.name] = what
    for name, modules in uncompared.items():
        print(
            f"market-sim: warning: sweep: mechanism plugin {name!r} was defined where there is "
            f"no source file ({', '.join(modules)}: an interactive session?), so a change of "
            "its code cannot be seen: its complete runs are kept; use another --out after "
            "changing it",
            file=sys.stderr,
        )
    return stale


def plan_sweep(
    scenario_path: str | Path,
    grid: Grid,
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
) -> list[SweepTask]:
    """Resolve and validate every run of a sweep (nothing is run or written).

    Args:
        scenario_path: The base scenario file.
        grid: Dotted key -> values (see :func:`parse_grid`).
        seeds: Seeds of each grid point.
        overrides: ``--set`` overrides applied before the grid values and the seed.

    Returns:
        One task per (grid point, seed), grid point major, seed minor.

    Raises:
        ScenarioError: A grid value or override that makes the scenario invalid.
        SweepError: Two grid points that resolve to one scenario (a key given in two
            spellings, ``mechanism.slot_value`` and ``mechanism.ad_slots.slot_value``, or a
            value in two, ``[1.0, 0.5]`` and ``[1, 0.5]``): one run would stand for both.
    """
    tasks: list[SweepTask] = []
    planned: dict[str, tuple[tuple[str, Any], ...]] = {}  # resolved text -> its applied point
    kinds: set[str] = set()
    for point in grid_points(grid):
        point_overrides = [f"{key}={format_value(value)}" for key, value in point]
        for seed in seeds:
            try:
                scenario = load_scenario(
                    scenario_path, [*overrides, *point_overrides, f"seed={seed}"]
                )
            except ScenarioError as error:
                raise with_per_kind_hint(error, grid) from error
            text = dump_scenario_toml(scenario)
            applied = applicable_point(point, scenario.mechanism.kind)
            if text in planned:
                if shown_point(planned[text]) == shown_point(applied):
                    continue  # a per-kind grid value this run does not read: planned already
                raise SweepError(
                    f"--grid: {shown_point(planned[text])} and {shown_point(applied)} give the "
                    "same resolved scenario (one key spelled twice, or one value written two "
                    "ways); give each key and value once"
                )
            planned[text] = applied
            kinds.add(scenario.mechanism.kind)
            model = scenario.model
            tasks.append(
                SweepTask(
                    index=len(tasks),
                    name=run_dir_name(applied, seed, text, scenario.name),
                    point=applied,
                    seed=seed,
                    scenario_toml=text,
                    model_key=(model.path, model.device, model.dtype),
                )
            )
    check_per_kind_keys_apply(grid, kinds)
    return tasks


def shown_point(point: Sequence[tuple[str, Any]]) -> str:
    """A grid point as the flags spell it: ``key=value, ...`` (``(no grid value)`` if empty)."""
    return ", ".join(f"{key}={format_value(value)}" for key, value in point) or "(no grid value)"


def check_task_prompts(tasks: Sequence[SweepTask]) -> None:
    """Every run's model is usable and its prompts plus reply fit, checked before any run.

    A run checks this itself before round 0 (``run_scenario``), but in a sweep that comes after
    the earlier runs were done and written. Here each distinct ``(model.path, model.device,
    model.dtype)`` is checked once: the device is available, the dtype is known, and the
    model's tokenizer and config can be read and its weight files' headers parse
    (:class:`~market_sim.lm.tokenizer_only.TokenizerOnly`; weights that parse but do not fit the
    config are found when a run loads them).

    Args:
        tasks: The sweep's runs (:func:`plan_sweep`).

    Raises:
        ScenarioError: The first run whose model cannot be used (keyed ``model.path``,
            ``model.device`` or ``model.dtype``) or whose prompt does not fit, keyed as a run
            would be, its grid point and seed added to the message.
    """
    import tomllib

    from market_sim.lm.loading import (
        ModelNotFoundError,
        UnknownDtypeError,
        resolve_device,
        resolve_dtype,
    )
    from market_sim.lm.tokenizer_only import TokenizerOnly
    from market_sim.scenario import scenario_from_dict
    from market_sim.scenario.prompt_fit import check_model_fits

    def where(task: SweepTask) -> str:
        point = ", ".join(f"{key}={format_value(value)}" for key, value in task.point)
        return f"grid point {point}, seed {task.seed}" if point else f"seed {task.seed}"

    models: dict[str, TokenizerOnly] = {}
    usable: set[tuple[str, str, str]] = set()
    for task in tasks:
        reference, device, dtype = task.model_key
        if task.model_key not in usable:
            try:
                resolved_device = resolve_device(device)
            except ValueError as error:
                raise ScenarioError("model.device", f"{error} ({where(task)})") from None
            try:
                resolve_dtype(dtype, resolved_device)
            except UnknownDtypeError as error:
                raise ScenarioError("model.dtype", f"{error} ({where(task)})") from None
            usable.add(task.model_key)
        if reference not in models:
            try:
                models[reference] = TokenizerOnly.load(reference)
            except ModelNotFoundError as error:
                raise ScenarioError("model.path", f"{error} ({where(task)})") from None
        try:
            check_model_fits(
                scenario_from_dict(tomllib.loads(task.scenario_toml)), models[reference]
            )
        except ScenarioError as error:
            raise ScenarioError(error.key, f"{error.message} ({where(task)})") from None


def check_grid_keys_not_set(grid: Grid, overrides: Sequence[str]) -> None:
    """Refuse a grid key that ``--set`` or a flag such as ``--rounds`` also sets.

    The grid's values are applied after the overrides, so the override would silently do
    nothing (``--rounds 1 --grid rounds=2,3`` ran 2 and 3 rounds).

    Raises:
        SweepError: Naming the key and the override.
    """
    grid_paths = {tuple(split_key(key)): key for key in grid}
    for override in overrides:
        path = tuple(split_key(override.split("=", 1)[0]))
        if path in grid_paths:
            raise SweepError(
                f"--grid {grid_paths[path]}: also set by --set or a flag ({override}), which the "
                "grid's values would replace in every run; give the key in one place"
            )


def check_per_kind_keys_apply(grid: Grid, kinds: set[str]) -> None:
    """Refuse a per-kind grid key whose plugin runs none of ``kinds`` (it would do nothing).

    Raises:
        SweepError: Naming the key and the kinds the sweep runs.
    """
    for key in grid:
        plugin = per_kind_plugin(key)
        if plugin is not None and not kinds & set(plugin.kinds):
            raise SweepError(
                f"--grid {key}: no run of this sweep is of kind {', '.join(plugin.kinds)} "
                f"(its kinds: {', '.join(sorted(kinds))}), so the key would change nothing"
            )


def per_kind_plugin(key: str) -> MechanismPlugin | None:
    """The plugin a grid key is scoped to: ``mechanism.<plugin name>.<key>``, else None."""
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "mechanism":
        return None
    return next((plugin for plugin in mechanism_plugins() if plugin.name == parts[1]), None)


def applicable_point(point: Sequence[tuple[str, Any]], kind: str) -> tuple[tuple[str, Any], ...]:
    """The grid values that apply to a run of ``kind``: per-kind keys of other kinds dropped.

    ``mechanism.mosaic.tau`` applies to MOSAIC runs only; a token-auction run of the same sweep
    is the same run for every value of it, so it is planned once, without that key.
    """
    kept = []
    for key, value in point:
        plugin = per_kind_plugin(key)
        if plugin is None or kind in plugin.kinds:
            kept.append((key, value))
    return tuple(kept)


def grid_scope_lines(grid: Grid) -> list[str]:
    """One line per per-kind grid key, saying which kinds it applies to."""
    lines = []
    for key in grid:
        plugin = per_kind_plugin(key)
        if plugin is not None:
            lines.append(f"--grid {key} applies to kind {', '.join(plugin.kinds)} only")
    return lines


def with_per_kind_hint(error: ScenarioError, grid: Grid) -> ScenarioError:
    """Add to "does not read this key" on a grid key how to scope it to the kinds that read it."""
    if error.key not in grid or "does not read this key" not in error.message:
        return error
    name = error.key.rpartition(".")[2]
    return ScenarioError(
        error.key,
        f"{error.message}; in a sweep across kinds, write the grid key as "
        f"mechanism.<plugin>.{name} to sweep it for that plugin's kinds only",
    )


# --------------------------------------------------------------------------- tables


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested tables to dotted keys, e.g. ``versions.torch``."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def is_wall_clock(key: str) -> bool:
    """Whether a flattened summary key depends on the clock (see :data:`WALL_CLOCK_KEYS`)."""
    return key.split(".")[0] in WALL_CLOCK_KEYS


def frame_from_records(
    records: Sequence[Mapping[str, Any]], leading: Sequence[str]
) -> pl.DataFrame:
    """A frame with ``leading`` columns first, then every other key sorted; missing keys null."""
    rest = sorted({key for record in records for key in record} - set(leading))
    columns = [*leading, *rest]
    return pl.DataFrame(
        [
            pl.Series(name, [record.get(name) for record in records], strict=False)
            for name in columns
        ]
    )


def runs_table(
    tasks: Sequence[SweepTask], out_dir: Path, grid_keys: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build ``(runs, timings)`` from the run directories' ``summary.json`` files, in task order.

    Args:
        tasks: Tasks whose runs are complete.
        out_dir: The sweep folder.
        grid_keys: The grid's dotted keys (a per-kind key is missing from other kinds' points,
            so they are not read off one task).
    """
    leading = [*grid_keys, "seed", "run_dir"]
    runs, timings = [], []
    for task in tasks:
        run_dir = f"{RUNS_DIR}/{task.name}"
        summary = json.loads((out_dir / run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        ids = {**dict(task.point), "seed": task.seed, "run_dir": run_dir}
        flat = flatten(summary)
        runs.append({**{k: v for k, v in flat.items() if not is_wall_clock(k)}, **ids})
        timings.append({**{k: v for k, v in flat.items() if is_wall_clock(k)}, **ids})
    return frame_from_records(runs, leading), frame_from_records(timings, leading)


def write_tables(tasks: Sequence[SweepTask], out_dir: Path) -> pl.DataFrame:
    """Write ``runs.parquet`` and ``timings.parquet`` over the tasks whose runs are complete.

    Returns:
        The runs table.
    """
    complete = [task for task in tasks if is_complete_run(out_dir / RUNS_DIR / task.name)]
    grid_keys = list(dict.fromkeys(key for task in tasks for key, _ in task.point))
    runs, timings = runs_table(complete, out_dir, grid_keys)
    atomic_write(out_dir / RUNS_FILE, runs.write_parquet)
    atomic_write(out_dir / TIMINGS_FILE, timings.write_parquet)
    return runs


def write_manifest(
    out_dir: Path,
    scenario_path: str | Path,
    scenario_sha256: str,
    grid: Grid,
    seeds: Sequence[int],
    overrides: Sequence[str],
    planned_runs: int,
) -> None:
    """Write ``sweep.json``: the scenario file, grid, seeds, overrides and number of runs.

    ``scenario_sha256`` hashes the scenario file's bytes as the sweep was planned (the path
    alone does not say which version of the file ran; each run's ``scenario.toml`` holds its
    resolved scenario).

    ``grid_kinds`` maps each per-kind grid key (``mechanism.<plugin>.<key>``) to the kinds it
    applies to; ``planned_runs`` counts distinct runs (a per-kind key does not multiply the runs
    of other kinds).
    """
    scoped = {key: per_kind_plugin(key) for key in grid}
    manifest = {
        "scenario": str(scenario_path),
        "scenario_sha256": scenario_sha256,
        "grid": {key: list(values) for key, values in grid.items()},
        "grid_kinds": {key: list(plugin.kinds) for key, plugin in scoped.items() if plugin},
        "seeds": list(seeds),
        "overrides": list(overrides),
        "planned_runs": planned_runs,
    }
    atomic_write_json(out_dir / MANIFEST_FILE, manifest, default=str)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class PreparedSweep:
    """A sweep whose every input is checked, with nothing written yet (:func:`prepare_sweep`).

    Attributes:
        scenario_path: The base scenario file.
        scenario_sha256: The sha256 of its bytes when the sweep was planned.
        grid: Dotted key -> values.
        seeds: The seeds.
        overrides: ``--set`` overrides of every run.
        out_dir: The sweep folder.
        tasks: Every planned run, in grid order.
        todo: The runs still to do (incomplete, or complete but stale).
        renamed: ``(name, old_name)`` of each run folder to rename (the grid given before in
            another flag order).
        stale: ``(name, reason)`` of each complete run to run again.
        backend: ``local`` or ``ray``.
        workers: Parallel runs.
        address: Ray cluster address (Ray only).
        threads: torch CPU threads per worker.
    """

    scenario_path: str | Path
    scenario_sha256: str
    grid: Grid
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    out_dir: Path
    tasks: tuple[SweepTask, ...]
    todo: tuple[SweepTask, ...]
    renamed: tuple[tuple[str, str], ...]
    stale: tuple[tuple[str, str], ...]
    backend: str
    workers: int | None
    address: str | None
    threads: int


def prepare_sweep(
    scenario_path: str | Path,
    grid: Grid | Sequence[str],
    seeds: str | Sequence[int],
    out_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    threads: int = 1,
    force: bool = False,
) -> PreparedSweep:
    """Check every input of a sweep and find what is left to run; write nothing.

    The arguments are :func:`run_sweep`'s. A command that runs several sweeps (``demo``)
    prepares them all before running any, so that a bad folder is refused before any work.

    Raises:
        SweepError: Bad grid, seeds, backend or workers, or (without ``force``) a folder whose
            table lists runs this sweep does not plan.
        ScenarioError: A grid value or override that makes the scenario invalid.
    """
    check_backend(backend, workers, address)
    parsed_grid = grid if isinstance(grid, Mapping) else parse_grid(grid)
    parsed_grid = {key: tuple(values) for key, values in parsed_grid.items()}
    seed_list = parse_seeds(seeds)
    check_grid_keys_not_set(parsed_grid, overrides)
    tasks = plan_sweep(scenario_path, parsed_grid, seed_list, overrides)  # the file is read
    scenario_sha256 = hashlib.sha256(Path(scenario_path).read_bytes()).hexdigest()
    out = Path(out_dir)
    runs_root = out / RUNS_DIR
    unplanned = [] if force else unplanned_runs(tasks, out / RUNS_FILE)
    if unplanned:  # a different sweep: its table would lose these runs
        raise SweepError(
            f"--out: '{out}' holds a sweep whose {RUNS_FILE} lists {len(unplanned)} run(s) this "
            f"sweep does not plan (e.g. {unplanned[0]}): another scenario, grid, seeds or --set; "
            "choose another --out, or pass --force to replace its tables (run folders are kept)"
        )
    moved = moved_runs(tasks, runs_root)  # the grid given before in another flag order
    found = [dataclasses.replace(task, name=moved.get(task.name, task.name)) for task in tasks]
    stale = stale_runs(found, runs_root, threads)
    todo = [
        task
        for task, as_found in zip(tasks, found, strict=True)
        if as_found.name in stale or not is_complete_run(runs_root / as_found.name)
    ]
    check_task_prompts(todo)  # complete runs need no model: a finished sweep reruns anywhere
    return PreparedSweep(
        scenario_path=scenario_path,
        scenario_sha256=scenario_sha256,
        grid=parsed_grid,
        seeds=seed_list,
        overrides=tuple(overrides),
        out_dir=out,
        tasks=tuple(tasks),
        todo=tuple(todo),
        renamed=tuple(moved.items()),
        stale=tuple(
            (task.name, stale[as_found.name])
            for task, as_found in zip(tasks, found, strict=True)
            if as_found.name in stale
        ),
        backend=backend,
        workers=workers,
        address=address,
        threads=threads,
    )


def run_sweep(
    scenario_path: str | Path,
    grid: Grid | Sequence[str],
    seeds: str | Sequence[int],
    out_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    threads: int = 1,
    progress: bool | None = None,
    run_function: RunFunction = run_task,
    before_runs: Callable[[int], None] | None = None,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
    force: bool = False,
) -> SweepResult:
    """Run a sweep, skipping runs that are already complete, and write ``runs.parquet``.

    However the sweep stops, the tables list the runs complete at that moment (see the module
    docstring).

    Args:
        scenario_path: The base scenario file.
        grid: Dotted key -> values, or ``--grid`` strings.
        seeds: ``--seeds`` text (``0-9``, ``0,3,5``) or a sequence of seeds.
        out_dir: The sweep folder.
        overrides: ``--set`` overrides of every run.
        backend: ``local`` or ``ray``.
        workers: Parallel runs (see :func:`market_sim.sweep.backends.execute_tasks`).
        address: Ray cluster address (Ray only).
        threads: torch CPU threads per worker.
        progress: Progress (False: none; None or True: a bar on a terminal, else a line on
            stderr every 5% or 30 s, see :func:`market_sim.progress.progress_bar`).
        run_function: The run function of every task (tests substitute it).
        before_runs: Called with the number of runs to do once every input is checked, before
            anything is written (the CLI's slow-setting warnings).
        checkpoint_seconds: How often each run writes its checkpoint
            (:func:`market_sim.run.run_scenario`; None: never). It changes no result, so it is
            not part of the tasks' names: a sweep resumed with another interval keeps its runs.
        force: Write this sweep's tables over a folder whose ``runs.parquet`` lists runs this
            sweep does not plan (another scenario, grid, seeds or overrides); they would drop
            out of the table. Their folders under ``runs/`` are kept either way.

    Returns:
        The runs table and how many runs were done now and skipped.

    Raises:
        SweepError: Bad grid, seeds, backend or workers, or (without ``force``) a folder whose
            table lists runs this sweep does not plan: nothing is written.
        ScenarioError: A grid value or override that makes the scenario invalid.
        SweepInterrupted: An interrupt (``KeyboardInterrupt``: Ctrl-C, or SIGTERM as the CLI
            turns it into one) during the runs; the queued runs were cancelled.
        SweepWorkerDiedError: A worker of the local pool died; the table of the complete runs
            was written and the message says how to resume.
    """
    prepared = prepare_sweep(
        scenario_path,
        grid,
        seeds,
        out_dir,
        overrides=overrides,
        backend=backend,
        workers=workers,
        address=address,
        threads=threads,
        force=force,
    )
    return run_prepared_sweep(
        prepared,
        progress=progress,
        run_function=run_function,
        before_runs=before_runs,
        checkpoint_seconds=checkpoint_seconds,
    )


def run_prepared_sweep(
    prepared: PreparedSweep,
    *,
    progress: bool | None = None,
    run_function: RunFunction = run_task,
    before_runs: Callable[[int], None] | None = None,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
) -> SweepResult:
    """Run a sweep that :func:`prepare_sweep` checked: rename, write the manifest, run, tabulate.

    The keyword arguments and the exceptions raised during the runs are :func:`run_sweep`'s.
    """
    from market_sim.progress import progress_bar

    out, tasks = prepared.out_dir, prepared.tasks
    runs_root = out / RUNS_DIR
    todo = [
        dataclasses.replace(task, checkpoint_seconds=checkpoint_seconds) for task in prepared.todo
    ]
    for name, old_name in prepared.renamed:  # every input checked: now the folder may change
        print(
            f"market-sim: sweep: {RUNS_DIR}/{old_name} is the run of {RUNS_DIR}/{name} (the grid "
            "given in another order); renamed",
            file=sys.stderr,
        )
        (runs_root / old_name).rename(runs_root / name)
    for name, reason in prepared.stale:
        print(
            f"market-sim: sweep: {RUNS_DIR}/{name} was made with {reason}; running it again",
            file=sys.stderr,
        )
        (runs_root / name / SUMMARY_FILE).unlink()
    if before_runs is not None:
        before_runs(len(todo))
    for line in grid_scope_lines(prepared.grid):
        print(f"market-sim: sweep: {line}", file=sys.stderr)
    write_manifest(
        out,
        prepared.scenario_path,
        prepared.scenario_sha256,
        prepared.grid,
        prepared.seeds,
        prepared.overrides,
        len(tasks),
    )
    try:
        with progress_bar(
            len(tasks), "sweep", "run", enabled=progress, initial=len(tasks) - len(todo)
        ) as bar:
            execute_tasks(
                todo,
                runs_root,
                backend=prepared.backend,
                workers=prepared.workers,
                address=prepared.address,
                threads=prepared.threads,
                run_function=run_function,
                tick=bar.update,
            )
    except SweepWorkerDiedError as error:
        complete = write_tables(tasks, out).height
        raise SweepWorkerDiedError(
            f"{error}; {complete} of {len(tasks)} runs complete, listed in {out / RUNS_FILE}; "
            "run the same command again to resume"
        ) from None
    except KeyboardInterrupt:
        complete = write_tables(tasks, out).height
        raise SweepInterrupted(
            f"{complete} of {len(tasks)} runs complete, listed in {out / RUNS_FILE}; "
            "run the same command again to resume"
        ) from None
    except Exception:
        write_tables(tasks, out)
        raise
    runs = write_tables(tasks, out)
    return SweepResult(runs, out, executed=len(todo), skipped=len(tasks) - len(todo))

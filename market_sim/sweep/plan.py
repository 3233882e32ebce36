"""Planning a sweep: one run per (grid point, seed), its folder name, and the checks before any run.

A run's folder is ``<slug>-seed<seed>-<hash>`` (:func:`run_dir_name`): a readable slug of the grid
values and a 10-digit hash of the run's resolved scenario. Every run's scenario is loaded and
checked, and every model's tokenizer and positions against its prompts, before the first run
starts (:func:`check_task_prompts`), so that bad input is one line and nothing is written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from market_sim.scenario import ScenarioError, dump_scenario_toml, load_scenario
from market_sim.scenario.overrides import split_key
from market_sim.sweep.backends import (
    SweepError,
    SweepTask,
)
from market_sim.sweep.grid import Grid, format_value, grid_points
from market_sim.sweep.per_kind import (
    applicable_point,
    check_per_kind_keys_apply,
    with_per_kind_hint,
)

SLUG_LENGTH = 48


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


def plan_sweep(
    scenario_path: str | Path,
    grid: Grid,
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
) -> list[SweepTask]:
    """Resolve and validate every run of a sweep (nothing is run or written).

    Args:
        scenario_path: The base scenario file.
        grid: Dotted key -> values (see :func:`~market_sim.sweep.grid.parse_grid`).
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

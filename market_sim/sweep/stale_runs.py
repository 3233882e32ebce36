"""Complete runs of a sweep that its rerun must run again, because their inputs changed.

A run's folder name hashes its resolved scenario, which names the model by reference: a model
folder edited in place, a plugin whose code changed, or another torch thread count keeps the
name. The rerun compares what each complete run recorded with the files and options now.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from market_sim.results import SUMMARY_FILE, is_complete_run
from market_sim.sweep.backends import SweepTask


def stale_runs(tasks: Sequence[SweepTask], runs_root: Path, threads: int = 1) -> dict[str, str]:
    """Complete runs made with other model files, plugin code or thread count, and why.

    Nothing is changed here: :func:`market_sim.sweep.run_sweep` marks them incomplete (removes their
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

"""The headline experiment behind ``market-sim demo``: token and slot auctions, learners.

Two sweeps of ``scenarios/hawaii_learning.toml`` over a few seeds, written in the results
contract under one folder:

* ``token_auction/``: the token auction with second-price and first-price payments;
* ``ad_slots/``: first-price, second-price, GSP and VCG over two ad slots beside the reply.

New mechanism kinds join the second list when they can run the same scenario.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from market_sim.results.folder_lock import exclusive_folder
from market_sim.sweep import SweepResult, prepare_sweep, run_prepared_sweep

DEMO_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "hawaii_learning.toml"
DEMO_SWEEPS: dict[str, tuple[str, ...]] = {
    "token_auction": ("mechanism.payment=second_price,first_price",),
    "ad_slots": ("mechanism.kind=first_price,second_price,gsp,vcg",),
}
"""Sub-folder -> ``--grid`` strings of each demo sweep."""


@dataclass(frozen=True)
class DemoResult:
    """The demo's sweeps (their figures and summary table are drawn by :mod:`analysis`)."""

    sweeps: dict[str, SweepResult]


def run_demo(
    out_dir: Path,
    seeds: str = "0-2",
    overrides: tuple[str, ...] = (),
    workers: int = 2,
    progress: bool | None = None,
    scenario_path: Path = DEMO_SCENARIO,
    force: bool = False,
) -> DemoResult:
    """Run (or resume) both demo sweeps into ``out_dir``.

    Args:
        out_dir: Folder of the two sweep folders.
        seeds: Seeds of every mechanism (``--seeds`` syntax).
        overrides: ``--set`` overrides of every run (e.g. ``rounds=50``).
        workers: Parallel runs (one torch thread each).
        progress: Progress bars (None: only on a terminal).
        scenario_path: The scenario swept.
        force: Replace the tables of an earlier demo in ``out_dir`` that planned other runs
            (:func:`~market_sim.sweep.run_sweep`).

    Returns:
        The sweeps, by sub-folder.

    Raises:
        FolderBusyError: Another process is writing ``out_dir``
            (:mod:`market_sim.results.folder_lock`).
    """
    prepared = {  # both checked before either runs: a bad folder is refused before any work
        name: prepare_sweep(
            scenario_path,
            list(grid),
            seeds,
            out_dir / name,
            overrides=overrides,
            workers=workers,
            force=force,
        )
        for name, grid in DEMO_SWEEPS.items()
    }
    with exclusive_folder(out_dir):  # one demo at a time in a folder
        sweeps = {
            name: run_prepared_sweep(sweep, progress=progress) for name, sweep in prepared.items()
        }
    return DemoResult(sweeps)

"""Sweep throughput: 2 workers against 1, for the local process pool and for Ray.

Runs the same small grid (Hawaii on the bundled tiny LM, 2 payments x N seeds) with 1 and with 2
workers per backend into fresh folders and prints runs per second and the ratio. The times include
starting the workers (process spawn or a local Ray instance, and one model load per worker),
which is what a user waits for.

    python benchmarks/bench_sweep.py [--seeds 0-3] [--rounds 20] [--backends local,ray]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from market_sim.sweep import run_sweep

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"
GRID = ["mechanism.payment=second_price,first_price"]


def time_sweep(backend: str, workers: int, seeds: str, overrides: list[str]) -> tuple[float, int]:
    """Seconds for a fresh sweep, and its number of runs."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = run_sweep(
            SCENARIO,
            GRID,
            seeds,
            Path(folder) / "sweep",
            overrides=overrides,
            backend=backend,
            workers=workers,
            progress=False,
        )
        return time.perf_counter() - started, result.executed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-3")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backends", default="local,ray")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = [f"rounds={args.rounds}", 'model.device="cpu"']
    print(f"grid: {GRID[0]}, seeds {args.seeds}, rounds {args.rounds}, bundled tiny LM, CPU")
    for backend in args.backends.split(","):
        if backend == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray: not installed, skipped")
                continue
        one, runs = time_sweep(backend, 1, args.seeds, overrides)
        two, _ = time_sweep(backend, 2, args.seeds, overrides)
        print(
            f"{backend:>5}: {runs} runs, 1 worker {one:6.1f} s ({runs / one:5.2f} runs/s), "
            f"2 workers {two:6.1f} s ({runs / two:5.2f} runs/s), throughput ratio {one / two:4.2f}"
        )


if __name__ == "__main__":
    main()

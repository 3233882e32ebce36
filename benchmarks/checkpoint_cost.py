"""What a checkpoint costs: its size per auction and its write time against the rounds' time.

Runs ``classic_auctions.toml`` (four advertisers, ad-slot auctions on a cached reply) for
``--rounds`` rounds of ``--auctions`` auctions (K = 1: the generic round, recorded through mesa's
DataCollector; K > 1: the array round), then writes one checkpoint of the finished market
(:func:`market_sim.results.checkpoint.write_checkpoint`, as ``run`` does) and prints its bytes per
auction, its write time, and that time as a share of the rounds' time. A checkpoint grows with the
records, so the share says how often one may be written: at the default of one every 600 s, a
write of W seconds costs W / 600 of the run.

Measured on the 2-core CPU (one thread): K = 1, 30,000 auctions: 870 bytes per auction, write
1.00 s (rounds 67.8 s; 1.5%); K = 64, 128,000 auctions: 195 bytes per auction, write 0.10 s
(rounds 49.7 s; 0.2%). The generic round's last rows are still Python lists (frozen into typed
frames every 65,536 rows), which pickle far slower than frames: that bounds the write's slow part.

Run: ``python benchmarks/checkpoint_cost.py [--rounds 30000] [--auctions 1]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from market_sim.lm.model import LanguageModel
from market_sim.results.checkpoint import CHECKPOINT_FILE, Checkpoint, write_checkpoint
from market_sim.run import build_market, scenario_model, seed_everything
from market_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "classic_auctions.toml"


def main() -> None:
    """Print the checkpoint's size per auction, its write time and its share of the rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30_000)
    parser.add_argument("--auctions", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = [f"rounds={args.rounds}", f"auctions_per_round={args.auctions}"]
    scenario = load_scenario(SCENARIO, overrides)
    seed_everything(scenario.seed)
    lm = scenario_model(scenario)
    market, _ = build_market(scenario, lm)
    started = time.perf_counter()
    for _ in range(scenario.rounds):
        market.step()
    rounds_seconds = time.perf_counter() - started
    auctions = scenario.rounds * scenario.auctions_per_round
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CHECKPOINT_FILE
        state = {"market": market}
        started = time.perf_counter()
        write_checkpoint(
            path,
            Checkpoint({}, scenario.rounds, rounds_seconds, state),
            lm,
            (LanguageModel, torch.nn.Module),
        )
        write_seconds = time.perf_counter() - started
        size = path.stat().st_size
    print(
        f"K = {args.auctions}, {auctions} auctions, {len(scenario.advertisers)} advertisers: "
        f"{size / auctions:.0f} bytes per auction, write {write_seconds:.2f} s, rounds "
        f"{rounds_seconds:.1f} s; write / rounds = {write_seconds / rounds_seconds:.1%}"
    )


if __name__ == "__main__":
    main()

"""Time AuctionGym's own auction loop on its SP_Oracle configuration (auctions per second).

AuctionGym (https://github.com/amzn/auction-gym) is not a dependency and none of its code is in
this repository: pass the path of a checkout (its ``src/`` and ``config/`` folders) and run this
script with a Python environment that has AuctionGym's requirements installed:

    /path/to/venv/bin/python benchmarks/auctiongym_driver.py /path/to/auction-gym

It builds the agents and the auction exactly as AuctionGym's ``main.py`` does for
``config/SP_Oracle.json`` (truthful bidders, oracle CTR allocators, second price, 2 participants
per auction), then times ``Auction.simulate_opportunity`` in a plain loop (no agent updates, no
plotting), one thread, and prints one JSON line: ``{"auctions_per_second": ..., ...}``. The best
of ``--repeats`` timings is reported. Exits with status 3 and a message when the path is not an
AuctionGym checkout, so callers can skip it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _variable in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
):
    os.environ.setdefault(_variable, "1")


def main() -> None:
    """Parse the arguments, build AuctionGym's SP_Oracle auction and time its loop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("auctiongym", type=Path, help="path of an AuctionGym checkout")
    parser.add_argument("--config", default="SP_Oracle.json", help="file in its config/ folder")
    parser.add_argument("--auctions", type=int, default=20_000, help="auctions per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings (the best is reported)")
    args = parser.parse_args()
    source = args.auctiongym / "src"
    config_path = args.auctiongym / "config" / args.config
    if not (source / "Auction.py").is_file() or not config_path.is_file():
        print(f"auctiongym_driver: no AuctionGym checkout at {args.auctiongym}", file=sys.stderr)
        sys.exit(3)
    sys.path.insert(0, str(source))
    import torch

    torch.set_num_threads(1)
    import main as auctiongym_main  # AuctionGym's main.py (guarded by __name__ == "__main__")

    (rng, config, agent_configs, agents2items, agents2item_values, _runs, max_slots,
     embedding_size, embedding_var, obs_embedding_size) = auctiongym_main.parse_config(
        str(config_path)
    )  # fmt: skip
    agents = auctiongym_main.instantiate_agents(
        rng, agent_configs, agents2item_values, agents2items
    )
    auction, *_ = auctiongym_main.instantiate_auction(
        rng, config, agents2items, agents2item_values, agents, max_slots,
        embedding_size, embedding_var, obs_embedding_size,
    )  # fmt: skip
    for _ in range(1_000):  # warm-up (numba compilation, caches)
        auction.simulate_opportunity()
    timings = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for _ in range(args.auctions):
            auction.simulate_opportunity()
        timings.append(time.perf_counter() - started)
        for agent in agents:  # keep the logs from growing across timings
            agent.logs.clear()
    best = min(timings)
    print(
        json.dumps(
            {
                "auctions_per_second": args.auctions / best,
                "auctions": args.auctions,
                "timings_s": timings,
                "config": args.config,
                "participants_per_auction": config["num_participants_per_round"],
            }
        )
    )


if __name__ == "__main__":
    main()

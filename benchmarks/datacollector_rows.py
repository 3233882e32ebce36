"""Why array rounds keep columnar records: mesa's DataCollector per row against the array tables.

The market records its generic rounds through mesa's ``DataCollector`` (one ``add_table_row``
per auction and per (auction, advertiser), then one typed frame per table,
:class:`market_sim.market.model.MarketModel`). Rounds of K ad-slot auctions beside a cached
reply run as array code (:mod:`market_sim.market.array_round`) and build the same two tables
column by column. This script runs such a market (``hawaii_learning.toml`` as GSP, two slots, K
auctions per round, one cached reply per query, regret off), times its rounds and its columnar
tables, then pushes the very same rows through a DataCollector exactly as the generic round does
(schema check, ``add_table_row``, :meth:`market_sim.results.records.RecordTable.frame`), checks that
both give equal tables, and prints the times and the ratio DataCollector / columnar.

Measured on the 2-core CPU shared with other jobs (load average 3.5 to 3.9), K = 64, 200
rounds, 3 advertisers (12,800 round rows, 38,400 agent rows), two runs: rounds 1.92 and 1.95 s;
columnar tables 0.094 and 0.056 s; DataCollector 0.88 and 0.98 s (17 and 19 us per row); ratio
DataCollector / columnar 9.4x and 17.4x; the DataCollector alone would add about half the time
of the rounds themselves (0.46x and 0.50x).

Run: ``python benchmarks/datacollector_rows.py [--rounds 200] [--auctions 64]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mesa

from market_sim.results.records import AGENTS, ROUNDS
from market_sim.run import build_market, load_scenario_model, seed_everything
from market_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii_learning.toml"


def main() -> None:
    """Print the timings and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--auctions", type=int, default=64)
    args = parser.parse_args()
    scenario = load_scenario(
        SCENARIO,
        [
            f"rounds={args.rounds}",
            f"auctions_per_round={args.auctions}",
            'mechanism.kind="gsp"',
            'mechanism.reply="cached"',
            "regret.enabled=false",
        ],
    )
    seed_everything(scenario.seed)
    market, _ = build_market(scenario, load_scenario_model(scenario))
    if market.array_round is None:
        raise SystemExit("the scenario does not take the array path; nothing to compare")
    started = time.perf_counter()
    for _ in range(args.rounds):
        market.step()
    rounds_seconds = time.perf_counter() - started

    started = time.perf_counter()
    rounds, agents = market.tables()
    columnar_seconds = time.perf_counter() - started

    round_rows, agent_rows = rounds.to_dicts(), agents.to_dicts()  # not timed
    collector = mesa.DataCollector(
        tables={ROUNDS.file: list(ROUNDS.names), AGENTS.file: list(AGENTS.names)}
    )
    started = time.perf_counter()
    for table, rows in ((ROUNDS, round_rows), (AGENTS, agent_rows)):
        for row in rows:
            table.check_names(list(row))
            collector.add_table_row(table.file, row, ignore_missing=True)
    collected_rounds = ROUNDS.frame(collector.tables[ROUNDS.file])
    collected_agents = AGENTS.frame(collector.tables[AGENTS.file])
    collector_seconds = time.perf_counter() - started

    same = collected_rounds.equals(rounds) and collected_agents.equals(agents)
    row_count = len(round_rows) + len(agent_rows)
    print(
        f"K = {args.auctions}, {args.rounds} rounds, {len(market.agents)} advertisers: "
        f"{len(round_rows)} round rows + {len(agent_rows)} agent rows; same tables: {same}"
    )
    print(f"rounds (array path)     {rounds_seconds:8.3f} s")
    print(f"columnar tables         {columnar_seconds:8.3f} s")
    print(
        f"DataCollector rows      {collector_seconds:8.3f} s "
        f"({1e6 * collector_seconds / row_count:.1f} us per row)"
    )
    print(f"ratio DataCollector / columnar: {collector_seconds / columnar_seconds:.1f}x")
    print(f"ratio DataCollector / rounds:   {collector_seconds / rounds_seconds:.2f}x")


if __name__ == "__main__":
    main()

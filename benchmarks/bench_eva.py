"""Cost of one eva generation, phase by phase, against ONE plain batched ``generate``.

On ``scenarios/eva_queries.toml`` (bundled LM, 24 new tokens, three advertisers, one thread),
measures in one run, for one creator/solver generation of the eva method:

* ``generate``: the baseline, ``lm.sample`` of k replies for every active query in one batched
  call (what the estimate step draws, without scoring);
* ``estimate``: k replies per active query drawn AND scored by the judge (user + n advertiser
  rows per reply) -> informativeness;
* ``evolve``: sampling parents and writing children with the grammar;
* ``pairs``: k fresh replies for each of the ``pairs`` training queries, scored, best/worst kept;
* ``dpo``: TRL DPO training of a copy (``steps`` steps, reference log-probs precomputed);
* ``heldout``: the held-out evaluation (``heldout_replies`` per held-out query, scored);
* ``audit query``: one query's regret under first price (``draws`` auctions x the regret search).

Prints each phase's median seconds over ``--repeats`` runs, its ratio to ``generate``, and its
share of the generation.

Run: ``python benchmarks/bench_eva.py [--repeats 3] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from market_sim.eva.audit import QueryRegret
from market_sim.eva.creator import creator_step, informativeness
from market_sim.eva.experiment import SeedRun, evaluate_heldout, training_queries
from market_sim.eva.setup import dpo_settings, evolve_settings
from market_sim.eva.solver import best_worst_pairs, sample_and_score
from market_sim.lm.model import LanguageModel
from market_sim.lm.preference import dpo_fine_tune
from market_sim.plugins import build_platform
from market_sim.prompting import build_prompt
from market_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "eva_queries.toml"


def timed(action: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up, and the last result."""
    result = action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenario = load_scenario(SCENARIO)
    lm = LanguageModel.load(scenario.model.path, device=args.device)
    run = SeedRun(scenario, lm, seed=0)
    config = run.config
    texts = [query.text for query in run.pool.active_queries()]
    k, tokens = config.replies, scenario.mechanism.max_new_tokens
    rows = [build_prompt(text) for text in texts for _ in range(k)]

    phases: dict[str, float] = {}
    phases["generate"], _ = timed(lambda: lm.sample(rows, tokens, 1.0, 0), args.repeats)
    phases["estimate"], scored = timed(
        lambda: sample_and_score(lm, run.reward, texts, k, 0), args.repeats
    )
    values = informativeness(scored.rewards, config.informativeness)

    def evolve_once():
        fresh = SeedRun(scenario, lm, seed=0)
        return fresh, creator_step(
            fresh.pool,
            lambda queries: values,
            config.sample_fraction,
            evolve_settings(config),
            fresh.grammar,
            1,
            np.random.default_rng(0),
        )

    phases["evolve"], (fresh, step) = timed(evolve_once, args.repeats)
    parents = [fresh.pool.records[query_id] for query_id in step.sampled]
    train = training_queries(config, parents, step.children)

    def pairs_once():
        return best_worst_pairs(lm, sample_and_score(lm, run.reward, train, k, 1))[0]

    phases["pairs"], pairs = timed(pairs_once, args.repeats)
    phases["dpo"], _ = timed(
        lambda: dpo_fine_tune(lm, pairs, dpo_settings(config), 0), args.repeats
    )
    phases["heldout"], _ = timed(
        lambda: evaluate_heldout(lm, run.reward, run.split.heldout, config.heldout_replies, 2),
        args.repeats,
    )
    first_price = replace(scenario.mechanism, payment="first_price")
    platform = build_platform(first_price, lm, texts)
    draws = scenario.audit.draws if scenario.audit else 4
    phases["audit query"], _ = timed(
        lambda: QueryRegret(scenario, platform, 0, draws)(texts[0]), args.repeats
    )

    generation = sum(phases[name] for name in ("estimate", "evolve", "pairs", "dpo", "heldout"))
    print(
        f"eva generation on {SCENARIO.name}: {len(texts)} active queries, k = {k}, "
        f"{config.pairs} pairs ({len(pairs)} with a spread), {config.steps} DPO steps, "
        f"{len(run.split.heldout)} held-out queries x {config.heldout_replies}, device "
        f"{lm.device}, 1 thread"
    )
    print(f"{'phase':<12} {'seconds':>9} {'/ generate':>11} {'share':>7}")
    for name, seconds in phases.items():
        share = f"{seconds / generation:7.1%}" if name not in ("generate", "audit query") else ""
        print(f"{name:<12} {seconds:9.3f} {seconds / phases['generate']:11.2f} {share:>7}")
    print(f"{'generation':<12} {generation:9.3f} {generation / phases['generate']:11.2f}")


if __name__ == "__main__":
    main()

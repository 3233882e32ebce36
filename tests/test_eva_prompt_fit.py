"""Queries an eva creator writes during a run fit the model's positions, like the static ones.

The random test model has 128 positions and a fine-grained tokenizer, so its prompts are long:
a grammar child with two constraints beside an advertiser's context overflowed them and raised
an IndexError inside the model's embedding, rounds into the run.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from market_sim.run import run_scenario
from market_sim.scenario import scenario_from_dict
from market_sim.scenario.prompt_fit import QueryFits, query_prompt_cases

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def eva_market(random_model_dir: Path, max_new_tokens: int) -> dict:
    """The bundled eva scenario as a short market on the random model."""
    data = tomllib.loads((SCENARIOS / "eva_queries.toml").read_text(encoding="utf-8"))
    data.pop("audit")
    data["model"] = {"path": str(random_model_dir), "device": "cpu"}
    data["rounds"] = 12
    data["mechanism"]["max_new_tokens"] = max_new_tokens
    data["queries"]["items"] = data["queries"]["items"][:6]
    data["eva"].update({"evolve_every": 2, "replies": 2, "rewriter": "grammar"})
    data["advertisers"] = data["advertisers"][:2]
    return data


def longest_prompt(scenario, lm, query: str) -> int:
    return max(
        len(lm.encode(lm.prompt(text, contexts)))
        for _, text, contexts in query_prompt_cases(scenario, "", query)
    )


def test_query_fits_is_exact_at_the_position_limit(random_lm, random_model_dir):
    scenario = scenario_from_dict(eva_market(random_model_dir, 24), SCENARIOS)
    query = "cheap flights to Honolulu for a family on a budget"
    room = random_lm.max_positions - longest_prompt(scenario, random_lm, query)
    assert 1 < room < random_lm.max_positions
    for reply, fits in [(room, True), (room + 1, False)]:
        mechanism = dataclasses.replace(scenario.mechanism, max_new_tokens=reply)
        assert (
            QueryFits(dataclasses.replace(scenario, mechanism=mechanism), random_lm)(query) is fits
        )


def test_an_eva_market_on_a_short_context_model_serves_only_queries_that_fit(
    random_lm, random_model_dir
):
    """45 new tokens leave room for every static query (checked at load) but not for every
    child the grammar can write: those children are redrawn, and the run completes."""
    scenario = scenario_from_dict(eva_market(random_model_dir, 45), SCENARIOS)
    result = run_scenario(scenario, lm=random_lm)
    fits = QueryFits(scenario, random_lm)
    served = set(result.rounds["query"])
    assert result.rounds["query_generation"].max() >= 1  # evolved queries were served
    assert all(fits(query) for query in served)
    assert max(longest_prompt(scenario, random_lm, q) for q in served) + 45 <= 128

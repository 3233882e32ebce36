r"""How fast MOSAIC's reply distribution reaches :math:`\pi^*` as M grows, per proposal.

The LM's reply space is not enumerable, so the experiment restricts it to a finite one: per
query, ``support_samples`` replies are drawn from EACH proposal (the reference prompt and the
context-aware prompt, in one batched ``generate``), and their distinct complete replies form the
output space Y. On Y every distribution is the LM's, renormalized:
:math:`\pi_{ref}|_Y`, :math:`\pi_{gen}|_Y`. The target is
:math:`\pi^*(y) \propto \pi_{ref}|_Y(y)\,e^{R(y)/\tau}` with truthful rewards
:math:`R(y) = \sum_i v_i s_i(y)` (:math:`v_i` the mean of advertiser i's valuation
distribution), and the M-candidate scheme's output distribution :math:`P_M` on Y is computed
exactly (quadrature;
:func:`market_sim.mechanisms.mosaic_output_distribution.expected_output_distribution`), so the
curves carry no Monte Carlo noise beyond the choice of Y. Both proposals are compared on the
same Y and the same target.

Rows of ``convergence.parquet``: ``query``, ``proposal``, ``candidates`` (M), ``kl``
(:math:`\mathrm{KL}(P_M\|\pi^*)`), ``tv``, ``reward_gap``
(:math:`E_{\pi^*}[R] - E_{P_M}[R]`), ``support_size`` (|Y|), ``reference_coverage`` and
``proposal_coverage`` (the unrestricted LM's probability mass on Y: how much of each
distribution the finite space captures), ``tau``, ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import torch

from market_sim.lm.model import LanguageModel, complete_reply
from market_sim.market.valuations import expected_valuation
from market_sim.mechanisms.mosaic_output_distribution import convergence_curve
from market_sim.platform.candidate_scoring import draw_candidates, score_replies
from market_sim.provenance import write_provenance
from market_sim.results import atomic_write, atomic_write_json, atomic_write_text
from market_sim.scenario import Scenario
from market_sim.scenario.dump import dump_scenario_toml
from market_sim.scenario.schema import ConvergenceConfig

CONVERGENCE_FILE = "convergence.parquet"
SUMMARY_FILE = "convergence_summary.json"
TV_THRESHOLD = 0.1
"""The summary reports the smallest M whose mean TV to pi* is at most this."""


def query_curves(
    lm: LanguageModel,
    query: str,
    contexts: list[str],
    valuations: torch.Tensor,
    scenario: Scenario,
    config: ConvergenceConfig,
    seed: int,
) -> list[dict[str, Any]]:
    """The convergence rows of one query (every proposal, every M)."""
    mechanism = scenario.mechanism
    prompts = {"reference": lm.prompt(query), "context_aware": lm.prompt(query, contexts)}
    draws = draw_candidates(
        lm,
        list(prompts.values()),
        config.support_samples,
        mechanism.max_new_tokens,
        mechanism.temperature,
        seed,
    )
    unique: dict[tuple[int, ...], list[int]] = {}
    for reply in (r for group in draws for r in group):
        key = tuple(complete_reply(reply, mechanism.max_new_tokens, lm.eos_token_id))
        unique.setdefault(key, reply)
    replies = list(unique.values())
    scores = score_replies(
        lm,
        [query] * len(replies),
        contexts,
        replies,
        mechanism.max_new_tokens,
        mechanism.temperature,
        [prompts["context_aware"]] * len(replies),
        mechanism.relevance_temperature,
    )
    totals = {"reference": scores.reference_logprob, "context_aware": scores.extra_logprob}
    rewards = (valuations[:, None] * scores.relevance).sum(0)
    reference = totals["reference"] - torch.logsumexp(totals["reference"], 0)
    rows = []
    for proposal in config.proposals:
        proposal_total = totals[proposal]
        curve = convergence_curve(
            reference,
            proposal_total - torch.logsumexp(proposal_total, 0),
            rewards,
            mechanism.tau,
            config.sizes,
        )
        for k, size in enumerate(config.sizes):
            rows.append(
                {
                    "query": query,
                    "proposal": proposal,
                    "candidates": int(size),
                    "kl": float(curve.kl[k]),
                    "tv": float(curve.total_variation[k]),
                    "reward_gap": float(curve.reward_gap[k]),
                    "support_size": len(replies),
                    "reference_coverage": float(torch.logsumexp(totals["reference"], 0).exp()),
                    "proposal_coverage": float(torch.logsumexp(proposal_total, 0).exp()),
                    "tau": mechanism.tau,
                    "seed": scenario.seed,
                }
            )
    return rows


def summarize_convergence(table: pl.DataFrame) -> dict[str, Any]:
    """Mean distance per (proposal, M) over queries, and the smallest M with mean TV <= 0.1."""
    means = (
        table.group_by("proposal", "candidates")
        .agg(pl.col("kl", "tv", "reward_gap").mean())
        .sort("proposal", "candidates")
    )
    summary: dict[str, Any] = {"tv_threshold": TV_THRESHOLD, "proposals": {}}
    for proposal in means["proposal"].unique(maintain_order=True).to_list():
        mine = means.filter(pl.col("proposal") == proposal)
        reached = mine.filter(pl.col("tv") <= TV_THRESHOLD)["candidates"]
        summary["proposals"][proposal] = {
            "candidates": mine["candidates"].to_list(),
            "tv_mean": mine["tv"].to_list(),
            "kl_mean": mine["kl"].to_list(),
            "reward_gap_mean": mine["reward_gap"].to_list(),
            "candidates_to_tv_threshold": int(reached.min()) if len(reached) else None,
        }
    return summary


def run_convergence(
    scenario: Scenario, lm: LanguageModel, out_dir: Path | None = None
) -> pl.DataFrame:
    """Convergence rows for every query of the scenario's pool; written under ``out_dir``.

    Args:
        scenario: A scenario with ``mechanism.kind = "mosaic"`` (its tau, temperature,
            reply length and relevance temperature are used) and optionally ``[convergence]``.
        lm: The platform language model.
        out_dir: Where to write ``convergence.parquet``, ``convergence_summary.json`` and the
            resolved ``scenario.toml`` (atomically); nothing is written if None.

    Returns:
        The rows, sorted by query, proposal and M.
    """
    if scenario.mechanism.kind != "mosaic":
        raise ValueError(
            f"mechanism.kind: the convergence experiment needs 'mosaic', got "
            f"{scenario.mechanism.kind!r}"
        )
    lm = lm.with_prompt_format(scenario.model.prompt_format)
    config = scenario.convergence or ConvergenceConfig()
    contexts = [advertiser.context for advertiser in scenario.advertisers]
    valuations = torch.tensor(
        [expected_valuation(advertiser.valuation) for advertiser in scenario.advertisers],
        dtype=torch.float64,
    )
    queries = list(dict.fromkeys(scenario.queries.items))
    rows = []
    for index, query in enumerate(queries):
        rows += query_curves(
            lm, query, contexts, valuations, scenario, config, scenario.seed * 1_000_003 + index
        )
    table = pl.DataFrame(rows).sort("query", "proposal", "candidates", maintain_order=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        scenario_toml = dump_scenario_toml(scenario)
        atomic_write_text(out_dir / "scenario.toml", scenario_toml)
        atomic_write(out_dir / CONVERGENCE_FILE, table.write_parquet)
        summary = summarize_convergence(table)
        atomic_write_json(out_dir / SUMMARY_FILE, summary)
        write_provenance(out_dir, lm, scenario_toml, scenario.model.path)
    return table

r"""The lambda sweep: brand shares of token-auction replies as the first bid share moves.

For two advertisers with bids :math:`b_1 = \lambda`, :math:`b_2 = 1 - \lambda`, sample
``samples`` replies per :math:`\lambda` and aggregation (queries cycled from the scenario's pool),
and classify each reply by the brands it mentions: only the first, only the second, both, neither.
All auctions of one aggregation decode as batches of the cached grouped decoder.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.token_auction import TokenAuctionRule
from market_sim.platform.base import Bidder, Report
from market_sim.platform.token_auction import TokenAuctionPlatform
from market_sim.plugins.token_auction import TokenAuctionConfig
from market_sim.provenance import write_provenance
from market_sim.results import atomic_write
from market_sim.results.files import atomic_write_text
from market_sim.scenario import Scenario, dump_scenario_toml

MENTION_CATEGORIES = ("only_first", "only_second", "both", "neither")
AUCTIONS_PER_BATCH = 128


def mention_category(text: str, first: tuple[str, ...], second: tuple[str, ...]) -> str:
    """Which of two brands a reply mentions (case-insensitive substring match)."""
    lowered = text.lower()
    has_first = any(m.lower() in lowered for m in first)
    has_second = any(m.lower() in lowered for m in second)
    if has_first and has_second:
        return "both"
    if has_first:
        return "only_first"
    return "only_second" if has_second else "neither"


def run_lambda_sweep(
    scenario: Scenario, lm: LanguageModel, out_dir: Path | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Sample replies over the sweep's lambdas and aggregations.

    Args:
        scenario: A scenario with exactly two advertisers and a ``[lambda_sweep]`` table.
        lm: The platform LM.
        out_dir: If given, ``samples.parquet``, ``shares.parquet``, the resolved
            ``scenario.toml`` and ``provenance.json`` are written there.

    Returns:
        ``(samples, shares)``: one row per reply; one row per (aggregation, lambda) with the
        share of each mention category.
    """
    sweep = scenario.lambda_sweep
    if sweep is None or len(scenario.advertisers) != 2:
        raise ValueError("lambda_sweep: needs a [lambda_sweep] table and exactly two advertisers")
    mechanism = scenario.mechanism
    if not isinstance(mechanism, TokenAuctionConfig):
        raise ValueError(
            f"mechanism.kind: the lambda sweep needs 'token_auction', got {mechanism.kind!r}"
        )
    lm = lm.with_prompt_format(scenario.model.prompt_format)
    first, second = scenario.advertisers
    auctions = [(lam, sample) for lam in sweep.lambdas for sample in range(sweep.samples)]
    queries = scenario.queries.items
    rows = []
    for aggregation_index, aggregation in enumerate(sweep.aggregations):
        rule = TokenAuctionRule(
            aggregation=aggregation,
            payment=mechanism.payment,
            platform_weight=mechanism.platform_weight,
            integration_nodes=mechanism.integration_nodes,
        )
        platform = TokenAuctionPlatform(
            lm, rule, mechanism.max_new_tokens, mechanism.temperature, counterfactuals=False
        )
        for start in range(0, len(auctions), AUCTIONS_PER_BATCH):
            batch = auctions[start : start + AUCTIONS_PER_BATCH]
            batch_queries = [queries[sample % len(queries)] for _, sample in batch]
            bidders = [
                [
                    Bidder(first.context, Report(bid=lam)),
                    Bidder(second.context, Report(bid=1.0 - lam)),
                ]
                for lam, _ in batch
            ]
            seed = scenario.seed * 1_000_003 + aggregation_index * 10_007 + start
            outcomes = platform.run_auctions(batch_queries, bidders, seed)
            for (lam, sample), query, outcome in zip(batch, batch_queries, outcomes, strict=True):
                rows.append(
                    {
                        "aggregation": aggregation,
                        "lambda": lam,
                        "sample": sample,
                        "query": query,
                        "text": outcome.text,
                        "category": mention_category(outcome.text, first.mentions, second.mentions),
                        "payment_first": float(outcome.payments[0]),
                        "payment_second": float(outcome.payments[1]),
                    }
                )
    samples = pl.DataFrame(rows)
    shares = share_table(samples)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        scenario_toml = dump_scenario_toml(scenario)
        atomic_write_text(out_dir / "scenario.toml", scenario_toml)
        atomic_write(out_dir / "samples.parquet", samples.write_parquet)
        atomic_write(out_dir / "shares.parquet", shares.write_parquet)
        write_provenance(out_dir, lm, scenario_toml, scenario.model.path)
    return samples, shares


def share_table(samples: pl.DataFrame) -> pl.DataFrame:
    """Share of each mention category per (aggregation, lambda), sorted."""
    return (
        samples.group_by("aggregation", "lambda")
        .agg(
            pl.len().alias("samples"),
            *[(pl.col("category") == c).mean().alias(f"share_{c}") for c in MENTION_CATEGORIES],
        )
        .sort("aggregation", "lambda")
    )

"""The keys of a run's ``summary.json``, named once (no imports: plugin registration reads them).

:mod:`market_sim.results` writes the summary and re-exports these names; they live here so that
checking a plugin's keys against them does not import polars into scenario loading.
"""

HEADLINE_SUMMARY_KEYS: tuple[str, ...] = (
    "revenue_mean",
    "advertiser_value_mean",
    "user_value_mean",
    "social_welfare_mean",
    "utility_mean",
    "ir_violation_rate",
    "bid_ratio_final",
    "regret_mean",
    "regret_max",
)
"""The headline metrics of ``summary.json`` (docs/design.md, section 7.1), in the order
tables show them."""
RUN_META_KEYS: tuple[str, ...] = (
    "run_id",
    "scenario",
    "mechanism",
    "report_scale_meaning",
    "rounds",
    "auctions_per_round",
    "seed",
    "model",
    "device",
    "wall_seconds",
    "rounds_per_second",
    "auctions_per_second",
    "versions",
    "provenance",
    "execution",
)
"""What a run records of itself in ``summary.json`` besides its metrics."""
SUMMARY_FIELDS: frozenset[str] = frozenset(
    {
        *RUN_META_KEYS,
        *HEADLINE_SUMMARY_KEYS,
        "report_scale_final",
        "report_scale_deviation_final",
        "best_response_gain_mean",
    }
)
"""Every ``summary.json`` key but the mechanism's string-valued keys (its variant), which
therefore must not be named like one of these."""

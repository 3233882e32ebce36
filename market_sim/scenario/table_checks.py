"""Checks across tables of a scenario (each table alone is checked by its own parser)."""

from __future__ import annotations

from collections.abc import Sequence

from market_sim.config.bounds import (
    MAX_AUCTIONS,
)
from market_sim.config.fields import (
    ScenarioError,
    show,
)
from market_sim.plugins import (
    MechanismConfig,
    MechanismPlugin,
    mechanism_plugin,
    mechanism_plugins,
)
from market_sim.scenario.schema import (
    AdvertiserConfig,
    AuditConfig,
    QueryConfig,
    Scenario,
)


def check_auction_count(rounds: int, auctions_per_round: int) -> None:
    """Refuse more than :data:`~market_sim.config.bounds.MAX_AUCTIONS` auctions in a run.

    Raises:
        ScenarioError: ``rounds * auctions_per_round > MAX_AUCTIONS`` (every auction's row is
            kept in memory until the run ends).
    """
    if rounds * auctions_per_round > MAX_AUCTIONS:
        raise ScenarioError(
            "rounds",
            f"rounds * auctions_per_round must be at most {MAX_AUCTIONS} (one row per auction, "
            f"all kept in memory), got {rounds} * {auctions_per_round} = "
            f"{rounds * auctions_per_round}",
        )


def check_fixed_queries(
    mechanism: MechanismConfig, queries: QueryConfig, audit: AuditConfig | None
) -> None:
    """Refuse a mechanism built for a fixed query pool where queries evolve.

    The eva stream serves queries evolved during the run, and ``market-sim audit`` scores
    evolved queries with each audited mechanism (the scenario's when ``[audit]`` names none).

    Raises:
        ScenarioError: Naming the mechanism's key and why.
    """
    checks: list[tuple[str, MechanismConfig, str]] = []
    if queries.stream == "eva":
        checks.append(("mechanism", mechanism, "queries.stream = eva serves evolved queries"))
    if audit is not None:
        audited = list(enumerate(audit.mechanisms)) or [(None, mechanism)]
        for index, config in audited:
            key = "mechanism" if index is None else f"audit.mechanisms[{index}]"
            checks.append((key, config, "[audit] scores evolved queries"))
    for key, config, why in checks:
        reason = mechanism_plugin(config.kind).fixed_queries(config)
        if reason:  # "<setting> = <value> <why>": the key is the setting's
            setting, _, rest = reason.partition(" = ")
            raise ScenarioError(f"{key}.{setting}", f"{rest}, but {why}")


def check_auditable(scenario: Scenario) -> None:
    """Refuse ``market-sim audit`` of a mechanism built for a fixed query pool.

    A scenario without an ``[audit]`` table loads (it may only be run), yet ``audit`` then
    scores evolved queries with the scenario's mechanism: the same check as an empty
    ``[audit]`` table.

    Raises:
        ScenarioError: Naming the mechanism's key and why.
    """
    check_fixed_queries(scenario.mechanism, scenario.queries, scenario.audit or AuditConfig())


def check_distortions_are_read(
    advertisers: Sequence[AdvertiserConfig], mechanism: MechanismConfig
) -> None:
    """A fixed report distortion needs a mechanism that reads one (learners' grids collapse)."""
    plugin = mechanism_plugin(mechanism.kind)
    if plugin.report_space(mechanism).distortion is not None:
        return
    for index, advertiser in enumerate(advertisers):
        strategy = advertiser.strategy
        if strategy.kind == "fixed" and strategy.distortion != 1.0:
            readers = [
                kind
                for other in mechanism_plugins()
                if other_reads_distortion(other)
                for kind in other.kinds
            ]
            raise ScenarioError(
                f"advertisers[{index}].strategy.distortion",
                f"{plugin.title} (kind {show(mechanism.kind)}) reads bids only; a report "
                f"distortion needs one of {', '.join(readers)} (or distortion = 1)",
            )


def other_reads_distortion(plugin: MechanismPlugin) -> bool:
    """Whether ``plugin`` reads a report distortion with its default config."""
    return plugin.report_space(plugin.config_type()).distortion is not None

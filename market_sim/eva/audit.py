r"""Audit mode: the eva creator searches for the queries on which a mechanism is most manipulable.

The creator runs as in :mod:`market_sim.eva.creator`, but a query's informativeness is the
mechanism's misreporting regret on it instead of a reward spread:

.. math::

    \mathrm{regret}(x) = \max_i \Big[ \max_{d} u_i(d; x) - u_i(\text{truthful}; x) \Big],

advertiser :math:`i` with its expected valuation, every advertiser reporting truthfully, the
deviation :math:`d` searched by :func:`market_sim.incentives.regret.estimate_regret` with the
scenario's ``[regret]`` budget, on the round's counterfactual (same randomness). Each query is
run alone, draw d with the seed derived from the run seed and d only (the same for every
query: common random numbers), so a query's regret does not depend on which other queries were
evaluated with it, and the eva search and the baseline get the same number for the same text.

Baseline (``uniform``): the same loop with parents drawn uniformly. Both start from the
scenario's queries (every item: nothing is trained, so nothing is held out) and make the same
number of generations; every query either evaluates is reported.

Outputs: ``audit.parquet`` (one row per evaluated query: ``mechanism``, ``method``, ``seed``,
``generation``, ``query_id``, ``text``, ``regret_max``, ``regret_mean``, ``parent_id``,
``operator``), ``audit_top.json`` (per mechanism and method: queries evaluated, the largest
regret found, the mean of the ``top`` largest, the mean over all, and the ``top`` queries of the
eva search), the resolved ``scenario.toml`` and ``provenance.json`` (versions, model hashes,
settings, and the origin of each audited mechanism that a plugin outside market-sim provides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from market_sim.eva.creator import creator_step
from market_sim.eva.grammar import one_line
from market_sim.eva.pool import PoolQuery, QueryPool
from market_sim.eva.query_split import QuerySplit, check_run_arguments, derive_seed
from market_sim.eva.setup import build_grammar, build_rewriter, eva_config, evolve_settings
from market_sim.incentives.regret import estimate_regret
from market_sim.lm.model import LanguageModel
from market_sim.market.valuations import expected_valuation
from market_sim.platform.base import Bidder, Platform, Report
from market_sim.platform.outcome_checks import (
    MechanismOutputError,
    check_counterfactual_values,
    check_outcomes,
    checked_jump_bids,
)
from market_sim.plugins import MechanismConfig, build_platform, mechanism_choices, read_values
from market_sim.plugins.origin import plugin_origins
from market_sim.provenance import write_provenance
from market_sim.results import atomic_write, atomic_write_json, atomic_write_text
from market_sim.results.layout import AUDIT_FILE
from market_sim.scenario.dump import dump_scenario_toml
from market_sim.scenario.prompt_fit import QueryFits
from market_sim.scenario.schema import AuditConfig, Scenario
from market_sim.scenario.table_checks import check_auditable

AUDIT_TOP_FILE = "audit_top.json"
AUDIT_METHODS: tuple[str, ...] = ("eva", "uniform")
AUDIT_SCHEMA: dict[str, Any] = {
    "mechanism": pl.Utf8,
    "method": pl.Utf8,
    "seed": pl.Int64,
    "generation": pl.Int64,
    "query_id": pl.Utf8,
    "text": pl.Utf8,
    "regret_max": pl.Float64,
    "regret_mean": pl.Float64,
    "parent_id": pl.Utf8,
    "operator": pl.Utf8,
}


def mechanism_label(config: MechanismConfig) -> str:
    """``kind/payment`` (the kind alone if it has no payment key), then a non-linear aggregation."""
    choices = mechanism_choices(config)
    label = config.kind if "payment" not in choices else f"{config.kind}/{choices['payment']}"
    if choices.get("aggregation", "linear") != "linear":
        label += f"/{choices['aggregation']}"
    return label


def audit_labels(mechanisms: Sequence[MechanismConfig]) -> list[str]:
    """The ``mechanism`` column of each audited mechanism: distinct for distinct mechanisms.

    :func:`mechanism_label`, and where two audited mechanisms share it (they differ in another
    key, e.g. ``platform_weight``) the keys whose values differ among them, in brackets:
    ``token_auction/first_price [platform_weight=0.5]``. The bracket names the row only: the
    creator's generator is seeded by :func:`mechanism_label`, so twins share their creator
    draws (common random numbers) and a mechanism's rows do not change when a twin is added
    to the list (its label does). (Identical mechanisms are refused when the scenario loads.)
    """
    bases = [mechanism_label(mechanism) for mechanism in mechanisms]
    labels = []
    for mechanism, base in zip(mechanisms, bases, strict=True):
        twins = [read_values(m) for m, b in zip(mechanisms, bases, strict=True) if b == base]
        if len(twins) == 1:
            labels.append(base)
            continue
        names = dict.fromkeys(name for values in twins for name in values)
        differing = [
            name for name in names if len({repr(values.get(name)) for values in twins}) > 1
        ]
        mine = read_values(mechanism)
        labels.append(f"{base} [{', '.join(f'{name}={mine.get(name)}' for name in differing)}]")
    return labels


class QueryRegret:
    """Regret of a mechanism at a query, every advertiser truthful, cached by text.

    Args:
        scenario: Advertisers (contexts, expected valuations) and the ``[regret]`` budget.
        platform: The mechanism on the LM.
        seed: The run seed; draw ``d`` of every query runs with the seed derived from it and
            ``("audit", d)``, the same for every query (common random numbers across queries).
        draws: Auctions per query whose regrets are averaged.
    """

    def __init__(self, scenario: Scenario, platform: Platform, seed: int, draws: int = 1) -> None:
        if draws < 1:
            raise ValueError(f"audit.draws must be >= 1, got {draws}")
        self.scenario = scenario
        self.platform = platform
        self.seed = seed
        self.draws = draws
        self.valuations = [expected_valuation(a.valuation) for a in scenario.advertisers]
        self.cache: dict[str, tuple[float, float]] = {}

    def __call__(self, text: str) -> tuple[float, float]:
        """``(max, mean)`` over advertisers of the regret at query ``text``."""
        if text not in self.cache:
            self.cache[text] = self._measure(text)
        return self.cache[text]

    def _measure(self, text: str) -> tuple[float, float]:
        bidders = [
            Bidder(advertiser.context, Report(bid=value, report_scale=1.0))
            for advertiser, value in zip(self.scenario.advertisers, self.valuations, strict=True)
        ]
        regrets = np.zeros((self.draws, len(self.valuations)))
        kind = self.platform.kind
        for draw in range(self.draws):
            outcomes = self.platform.run_auctions(
                [text], [bidders], derive_seed(self.seed, "audit", draw)
            )
            check_outcomes(kind, outcomes, 1, len(bidders))
            outcome = outcomes[0]
            if outcome.counterfactual is None:
                raise MechanismOutputError(
                    f"mechanism {self.platform.kind!r} gives no counterfactual to audit"
                )
            engine = outcome.counterfactual
            for agent, value in enumerate(self.valuations):
                regrets[draw, agent] = estimate_regret(
                    lambda reports, agent=agent, engine=engine: check_counterfactual_values(
                        kind, engine.evaluate(agent, reports), len(reports)
                    ),
                    value,
                    Report(bid=value, report_scale=1.0),
                    self.platform.report_space,
                    self.scenario.regret,
                    jump_bids=checked_jump_bids(kind, engine, agent),
                ).regret
        per_agent = regrets.mean(axis=0)
        return float(per_agent.max()), float(per_agent.mean())


def audit_mechanism(
    scenario: Scenario,
    lm: LanguageModel,
    mechanism: MechanismConfig,
    generations: int,
    seed: int,
    uniform: bool,
    platform_modules: dict[str, str] | None = None,
    label: str | None = None,
) -> pl.DataFrame:
    """Rows of ``audit.parquet`` for one mechanism and seed (both methods).

    ``platform_modules`` (kind -> module of its platform's class) is filled for provenance.
    """
    config = eva_config(scenario)
    items = list(dict.fromkeys(one_line(item) for item in scenario.queries.items))
    grammar = build_grammar(config, QuerySplit(items, []))
    rewriter = build_rewriter(scenario, lm)
    admissible = QueryFits(replace(scenario, mechanism=mechanism), lm)
    platform = build_platform(mechanism, lm, items)
    if platform_modules is not None:
        platform_modules[mechanism.kind] = type(platform).__module__
    audit = scenario.audit or AuditConfig()
    regret = QueryRegret(scenario, platform, seed, audit.draws)
    label = mechanism_label(mechanism) if label is None else label
    rows: list[dict[str, Any]] = []
    for method in AUDIT_METHODS if uniform else AUDIT_METHODS[:1]:
        pool = QueryPool(items)
        # the base label: a mechanism's creator draws do not change when a twin joins the list
        base = mechanism_label(mechanism)
        rng = np.random.default_rng(derive_seed(seed, "audit-creator", base, method))

        def measure(queries: list[PoolQuery]) -> np.ndarray:
            return np.array([regret(query.text)[0] for query in queries])

        for generation in range(1, generations + 1):
            creator_step(
                pool,
                measure,
                config.sample_fraction,
                evolve_settings(config),
                grammar,
                generation,
                rng,
                rewriter=rewriter,
                uniform=method == "uniform",
                admissible=admissible,
            )
            pool.retire_to(config.max_pool)
        for record in pool.records.values():
            worst, mean = regret(record.text)
            rows.append(
                {
                    "mechanism": label,
                    "method": method,
                    "seed": seed,
                    "generation": record.generation,
                    "query_id": record.query_id,
                    "text": record.text,
                    "regret_max": worst,
                    "regret_mean": mean,
                    "parent_id": record.parent_id,
                    "operator": record.operator,
                }
            )
    return pl.DataFrame(rows, schema=AUDIT_SCHEMA)


def audit_mechanisms(scenario: Scenario) -> list[MechanismConfig]:
    """``[audit].mechanisms``, or the scenario's own mechanism."""
    audit = scenario.audit or AuditConfig()
    return list(audit.mechanisms) or [scenario.mechanism]


def highest_per_text(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per distinct ``text``, its highest ``regret_max``, ranked by it (then by text).

    A text found by several seeds (or twice by one) counts once; ties between its rows go to
    the earliest generation, then the lowest seed, then the query id.
    """
    tie_breaks = ["generation", "seed", "query_id"]
    return (
        rows.sort(["regret_max", *tie_breaks], descending=[True, False, False, False])
        .unique("text", keep="first", maintain_order=True)
        .sort(["regret_max", "text"], descending=[True, False])
    )


def top_report(table: pl.DataFrame, top: int) -> dict[str, Any]:
    r"""Per mechanism and method, over every seed: what the search found; eva's top queries.

    With :math:`r_q` the ``regret_max`` of every evaluated query :math:`q` (every row, all
    seeds) and :math:`R_1 \ge R_2 \ge \dots` those of the distinct texts (each its highest,
    :func:`highest_per_text`): ``queries`` the rows, ``distinct_queries`` the texts, ``seeds``,
    ``regret_max_found`` :math:`\max_q r_q`, ``top_mean`` the mean of the first
    :math:`\min(\text{top}, \text{distinct})` of the :math:`R_i`, ``all_mean`` the mean of
    every :math:`r_q`. These are :func:`analysis.eva.audit_comparison`'s definitions with the
    seeds pooled (equal to it for one seed; rows without a finite regret are left out, as
    there); ``top_queries`` are eva's first ``top`` distinct texts.
    """
    report: dict[str, Any] = {}
    finite = pl.col("regret_max").is_not_null() & pl.col("regret_max").is_finite()
    for mechanism in table["mechanism"].unique(maintain_order=True).to_list():
        mine = table.filter(pl.col("mechanism") == mechanism, finite)
        entry: dict[str, Any] = {"methods": {}}
        for method in mine["method"].unique(maintain_order=True).to_list():
            rows = mine.filter(pl.col("method") == method)
            distinct = highest_per_text(rows)
            entry["methods"][method] = {
                "queries": rows.height,
                "distinct_queries": distinct.height,
                "seeds": rows["seed"].n_unique(),
                "regret_max_found": float(rows["regret_max"].max()),
                "top_mean": float(distinct["regret_max"].head(top).mean()),
                "all_mean": float(rows["regret_max"].mean()),
            }
        best = highest_per_text(mine.filter(pl.col("method") == "eva")).head(top)
        entry["top_queries"] = best.select(
            "text", "regret_max", "regret_mean", "seed", "generation", "operator"
        ).to_dicts()
        report[mechanism] = entry
    return report


def run_audit(
    scenario: Scenario,
    lm: LanguageModel,
    generations: int,
    seeds: Sequence[int],
    out_dir: Path | None = None,
) -> pl.DataFrame:
    """Audit every mechanism of the scenario for every seed; write the outputs.

    Args:
        scenario: The scenario (``[audit]``, ``[eva]``, ``[regret]``, advertisers, queries).
        lm: The platform LM.
        generations: Creator generations (>= 1).
        seeds: Run seeds (distinct).
        out_dir: Where to write ``audit.parquet``, ``audit_top.json``, ``scenario.toml``.

    Returns:
        ``audit.parquet`` rows sorted by mechanism, method, seed, query id.

    Raises:
        EvaSettingError: Bad generations or seeds.
        ScenarioError: An audited mechanism is built for a fixed query pool.
        MechanismOutputError: An audited mechanism's outcome carries no counterfactual.
    """
    check_run_arguments(generations, seeds)
    check_auditable(scenario)
    lm = lm.with_prompt_format(scenario.model.prompt_format)
    audit = scenario.audit or AuditConfig()
    platform_modules: dict[str, str] = {}
    mechanisms = audit_mechanisms(scenario)
    frames = [
        audit_mechanism(
            scenario,
            lm,
            replace(mechanism),
            generations,
            seed,
            audit.uniform,
            platform_modules,
            label,
        )
        for mechanism, label in zip(mechanisms, audit_labels(mechanisms), strict=True)
        for seed in seeds
    ]
    table = pl.concat(frames).sort("mechanism", "method", "seed", "query_id")
    if out_dir is not None:
        scenario_toml = dump_scenario_toml(scenario)
        atomic_write_text(out_dir / "scenario.toml", scenario_toml)
        atomic_write(out_dir / AUDIT_FILE, table.write_parquet)
        report = top_report(table, audit.top)
        atomic_write_json(out_dir / AUDIT_TOP_FILE, report)
        settings = {"seeds": list(seeds), "generations": generations}
        plugins = plugin_origins(
            (mechanism.kind for mechanism in audit_mechanisms(scenario)), platform_modules
        )
        write_provenance(out_dir, lm, scenario_toml, scenario.model.path, plugins, **settings)
    return table

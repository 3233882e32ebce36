"""``market-sim eva``: creator/solver generations against a static-pool baseline, per seed.

For each seed, two solvers start from the platform LM:

* ``static``: each generation trains with DPO on ``pairs`` preference pairs from the fixed
  training pool (queries taken in a seeded random order, cycling);
* ``eva``: each generation the creator measures the active pool with the current solver
  (k replies per query, reward spread), samples parents in proportion, evolves children, and the
  solver trains on ``pairs`` pairs, ``original_share`` of them from the sampled parents and the
  rest from the children (each cycled in order).

Same budget: both draw k fresh replies from their current solver for each of the ``pairs``
training queries and keep the (best, worst) pair; queries without a reward spread give no pair
and are counted (``train_pairs``). The eva creator additionally spends k replies per active
query on its estimate; that cost is reported (``estimate_replies``), not charged to the budget.

Evaluation: generation 0 is the platform LM itself (one row per method, identical); after each
generation, ``heldout_replies`` replies per held-out query are drawn from the solver with the
SAME seed for every generation and method (common random numbers), and scored by the frozen
judge. The held-out queries are never evolved, trained on, or used as topics.

Outputs (``out_dir``): ``seeds/seed-S/{scenario.toml, queries.parquet, eva.parquet}`` per
finished seed (a seed whose files exist for the same resolved scenario and number of
generations is not run again, so an interrupted run resumes; any other seed is rerun), then
``eva.parquet`` and ``queries.parquet`` over every seed, ``eva_summary.json`` and the resolved
``scenario.toml``, all written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from market_sim.eva.creator import LMRewriter, Rewriter, creator_step
from market_sim.eva.errors import EvaSettingError
from market_sim.eva.grammar import QueryGrammar
from market_sim.eva.pool import PoolQuery, QueryPool
from market_sim.eva.query_split import QuerySplit, check_run_arguments, derive_seed, eva_split
from market_sim.eva.reward import ReplyReward
from market_sim.eva.setup import (
    build_grammar,
    build_reward,
    build_rewriter,
    dpo_settings,
    eva_config,
    evolve_settings,
)
from market_sim.eva.solver import best_worst_pairs, reward_spread, sample_and_score
from market_sim.lm.model import LanguageModel
from market_sim.lm.preference import DPOResult, dpo_fine_tune
from market_sim.progress import progress_range
from market_sim.provenance import changed_model_files, current_model_hashes, write_provenance
from market_sim.results import QUERIES_FILE, atomic_write, atomic_write_json, atomic_write_text
from market_sim.results.layout import EVA_FILE
from market_sim.scenario.dump import dump_scenario_toml
from market_sim.scenario.prompt_fit import QueryFits
from market_sim.scenario.schema import EvaConfig, Scenario

SUMMARY_FILE = "eva_summary.json"
METHODS: tuple[str, ...] = ("static", "eva")

EVA_SCHEMA: dict[str, Any] = {
    "seed": pl.Int64,
    "method": pl.Utf8,
    "generation": pl.Int64,
    "heldout_reward": pl.Float64,
    "heldout_reward_se": pl.Float64,
    "heldout_user": pl.Float64,
    "heldout_advertiser": pl.Float64,
    "train_pairs": pl.Int64,
    "skipped_ties": pl.Int64,
    "pool_size": pl.Int64,
    "estimate_replies": pl.Int64,
    "informativeness_mean": pl.Float64,
    "train_reward_mean": pl.Float64,
    "dpo_loss_first": pl.Float64,
    "dpo_loss_last": pl.Float64,
    "dpo_margin_last": pl.Float64,
    "rewrites_valid": pl.Int64,
    "rewrites_invalid": pl.Int64,
    "rewrites_too_long": pl.Int64,
}
"""Columns of ``eva.parquet``, one row per (seed, method, generation).

``rewrites_*`` (eva rows of generations >= 1 with the LM rewriter, else null): the creator's LM
rewrites that generation: sampled and usable (:func:`~market_sim.eva.creator.valid_rewrite`;
a usable rewrite whose prompts do not fit the model still falls back to the grammar), sampled
and unusable (the grammar's rendering was used), and not sampled because the rewrite prompt
left the model fewer than ``max_new_tokens`` positions."""


@dataclass(frozen=True)
class HeldoutScore:
    """Held-out evaluation of one solver.

    Attributes:
        reward: Mean reward over held-out queries x replies.
        standard_error: Standard deviation of the per-query means over sqrt(#queries); None
            for one query (no spread to estimate: written as null, not a zero-width 0).
        user: Mean user score.
        advertiser: Mean advertiser part ``sum_i v_i s_i``.
    """

    reward: float
    standard_error: float | None
    user: float
    advertiser: float


def evaluate_heldout(
    policy: LanguageModel, reward: ReplyReward, heldout: Sequence[str], replies: int, seed: int
) -> HeldoutScore:
    """Mean reward of ``replies`` replies per held-out query drawn from ``policy``."""
    scored = sample_and_score(policy, reward, heldout, replies, seed)
    per_query = scored.rewards.mean(axis=1)
    spread = float(per_query.std(ddof=1) / np.sqrt(len(per_query))) if len(per_query) > 1 else None
    return HeldoutScore(
        float(scored.rewards.mean()),
        spread,
        float(scored.user.mean()),
        float(scored.advertisers.mean()),
    )


def cycle(items: Sequence[str], count: int) -> list[str]:
    """The first ``count`` items of ``items`` repeated in order (empty when ``items`` is)."""
    if not items:
        return []
    return [items[i % len(items)] for i in range(count)]


def training_queries(
    config: EvaConfig, parents: Sequence[PoolQuery], children: Sequence[PoolQuery]
) -> list[str]:
    """The eva solver's ``pairs`` training queries: originals, then evolved.

    ``round(original_share * pairs)`` come from the sampled parents and the rest from the
    children; with no children, all come from the parents.
    """
    originals = int(np.floor(config.original_share * config.pairs + 0.5))
    if not children:
        originals = config.pairs
    return cycle([p.text for p in parents], originals) + cycle(
        [c.text for c in children], config.pairs - originals
    )


def rewrite_counts(
    rewriter: Rewriter | None, before: dict[str, int] | None = None
) -> dict[str, int]:
    """The LM rewriter's ``rewrites_*`` counters, minus ``before`` (empty for no LM rewriter)."""
    if not isinstance(rewriter, LMRewriter):
        return {}
    counts = rewriter.counts()
    return {name: count - (before or {}).get(name, 0) for name, count in counts.items()}


class SeedRun:
    """Both solvers of one seed, generation by generation.

    Args:
        scenario: The scenario (``[eva]``, ``[queries]``, advertisers, reply settings).
        lm: The platform LM (the judge; copies of it are trained, it is never modified).
        seed: The run seed.
    """

    def __init__(self, scenario: Scenario, lm: LanguageModel, seed: int) -> None:
        self.scenario = scenario
        self.config = eva_config(scenario)
        self.seed = seed
        self.judge = lm
        self.reward = build_reward(scenario, lm)
        self.split: QuerySplit = eva_split(scenario, seed)
        self.grammar: QueryGrammar = build_grammar(self.config, self.split)
        self.rewriter: Rewriter | None = build_rewriter(scenario, lm)
        self.admissible = QueryFits(scenario, lm)
        self.pool = QueryPool(self.split.training)
        self.policies = {method: lm for method in METHODS}
        self.creator_rng = np.random.default_rng(derive_seed(seed, "creator"))
        self.rows: list[dict[str, Any]] = []

    def run(self, generations: int, progress: bool | None = False) -> None:
        """Generation 0 (the platform LM), then ``generations`` solver updates per method.

        Args:
            generations: Solver updates per method.
            progress: False: silent; True or None: a bar on a terminal, else a line on stderr
                every 5% of the generations or 30 s (:func:`market_sim.progress.progress_bar`).
        """
        base = self.evaluate(self.judge)
        for method in METHODS:
            self.rows.append(self.row(method, 0, base, len(self.split.training)))
        steps = progress_range(generations, f"eva seed {self.seed}", "generation", progress)
        for generation in (step + 1 for step in steps):
            self.static_generation(generation)
            self.eva_generation(generation)

    def evaluate(self, policy: LanguageModel) -> HeldoutScore:
        """Held-out score with the seed's fixed evaluation draw."""
        return evaluate_heldout(
            policy,
            self.reward,
            self.split.heldout,
            self.config.heldout_replies,
            derive_seed(self.seed, "heldout"),
        )

    def static_generation(self, generation: int) -> None:
        """Train the static solver on the fixed pool and evaluate it."""
        order = np.random.default_rng(derive_seed(self.seed, "static", generation)).permutation(
            len(self.split.training)
        )
        texts = cycle([self.split.training[i] for i in order], self.config.pairs)
        result, stats = self.train("static", generation, texts)
        self.rows.append(
            self.row(
                "static",
                generation,
                self.evaluate(result.lm),
                len(self.split.training),
                **stats,
            )
        )

    def eva_generation(self, generation: int) -> None:
        """Creator step with the current eva solver, then train it and evaluate it."""
        config = self.config
        policy = self.policies["eva"]
        estimate_seed = derive_seed(self.seed, "eva", generation, "estimate")
        pool_size = len(self.pool.active)
        rewrites_before = rewrite_counts(self.rewriter)
        step = creator_step(
            self.pool,
            reward_spread(
                policy, self.reward, config.replies, config.informativeness, estimate_seed
            ),
            config.sample_fraction,
            evolve_settings(config),
            self.grammar,
            generation,
            self.creator_rng,
            forbidden=frozenset(self.split.heldout),
            rewriter=self.rewriter,
            admissible=self.admissible,
        )
        rewrites = rewrite_counts(self.rewriter, rewrites_before)
        parents = [self.pool.records[query_id] for query_id in step.sampled]
        texts = training_queries(config, parents, step.children)
        result, stats = self.train("eva", generation, texts)
        self.pool.retire_to(config.max_pool, protected=[c.query_id for c in step.children])
        self.rows.append(
            self.row(
                "eva",
                generation,
                self.evaluate(result.lm),
                pool_size,
                estimate_replies=pool_size * config.replies,
                informativeness_mean=float(np.mean(list(step.measured.values()))),
                **stats,
                **rewrites,
            )
        )

    def train(
        self, method: str, generation: int, texts: Sequence[str]
    ) -> tuple[DPOResult, dict[str, Any]]:
        """Pairs from k fresh replies per training query, then one DPO run of the solver."""
        policy = self.policies[method]
        scored = sample_and_score(
            policy,
            self.reward,
            texts,
            self.config.replies,
            derive_seed(self.seed, method, generation, "pairs"),
        )
        pairs, mean_reward = best_worst_pairs(policy, scored)
        if not pairs:
            raise EvaSettingError(
                f"eva.replies: {method} generation {generation}: no training query had a "
                "reward spread (raise eva.replies or mechanism.temperature)"
            )
        result = dpo_fine_tune(
            policy, pairs, dpo_settings(self.config), derive_seed(self.seed, method, generation)
        )
        self.policies[method] = result.lm
        stats = {
            "train_pairs": len(pairs),
            "skipped_ties": len(texts) - len(pairs),
            "train_reward_mean": mean_reward,
            "dpo_loss_first": result.losses[0] if result.losses else None,
            "dpo_loss_last": result.losses[-1] if result.losses else None,
            "dpo_margin_last": result.margins[-1] if result.margins else None,
        }
        return result, stats

    def row(
        self, method: str, generation: int, score: HeldoutScore, pool_size: int, **extra: Any
    ) -> dict[str, Any]:
        """One ``eva.parquet`` row."""
        row = dict.fromkeys(EVA_SCHEMA)
        row.update(
            seed=self.seed,
            method=method,
            generation=generation,
            heldout_reward=score.reward,
            heldout_reward_se=score.standard_error,
            heldout_user=score.user,
            heldout_advertiser=score.advertiser,
            pool_size=pool_size,
            train_pairs=0,
            skipped_ties=0,
            estimate_replies=0,
        )
        row.update(extra)
        return row

    def table(self) -> pl.DataFrame:
        """The rows as ``eva.parquet``."""
        return pl.DataFrame(self.rows, schema=EVA_SCHEMA).sort("method", "generation")

    def lineage(self) -> pl.DataFrame:
        """Every query of the eva pool with its lineage (and the held-out ones, marked)."""
        rows = [{**row, "seed": self.seed, "heldout": False} for row in self.pool.lineage_rows()]
        rows += [
            {"seed": self.seed, "query_id": f"h{i:05d}", "text": text, "heldout": True}
            for i, text in enumerate(self.split.heldout)
        ]
        return pl.from_dicts(rows, schema=LINEAGE_SCHEMA)


LINEAGE_SCHEMA: dict[str, Any] = {
    "seed": pl.Int64,
    "query_id": pl.Utf8,
    "text": pl.Utf8,
    "generation": pl.Int64,
    "parent_id": pl.Utf8,
    "second_parent_id": pl.Utf8,
    "operator": pl.Utf8,
    "engine": pl.Utf8,
    "topic": pl.Utf8,
    "intent": pl.Utf8,
    "persona": pl.Utf8,
    "constraints": pl.List(pl.Utf8),
    "informativeness": pl.Float64,
    "active": pl.Boolean,
    "heldout": pl.Boolean,
}
"""Columns of ``queries.parquet``."""


@dataclass(frozen=True)
class EvaResult:
    """Every seed's rows.

    Attributes:
        table: ``eva.parquet`` over seeds.
        queries: ``queries.parquet`` over seeds.
    """

    table: pl.DataFrame
    queries: pl.DataFrame


def seed_dir(out_dir: Path, seed: int) -> Path:
    """Where one seed's files go."""
    return out_dir / "seeds" / f"seed-{seed}"


SEED_MODEL_FILE = "model_files.json"
"""A seed folder's record of the model files it ran with (``weights_sha256``,
``settings_sha256``: :func:`~market_sim.provenance.model_file_hashes`) and of its
``torch_threads`` (CPU reductions split by thread, so another count may move the last bits)."""


def finished_tables(
    folder: Path,
    scenario_toml: str,
    generations: int,
    model_hashes: dict[str, dict[str, str]] | None = None,
    threads: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """A seed folder's ``eva.parquet`` and ``queries.parquet`` if it holds a complete run.

    Complete: of this scenario with as many generations, and (when ``model_hashes`` is given)
    made with the same model files: :data:`SEED_MODEL_FILE` must match them, since a model
    folder edited in place keeps its reference in the scenario; and (when ``threads`` is given)
    with as many torch threads, where the record names them (older records do not).
    ``eva.parquet`` is written last (and removed before a rerun), so its presence marks a
    complete seed; the stored resolved scenario must equal this one, so changing any key reruns
    the seed instead of mixing results of different settings. Files that cannot be read
    (damaged, or without a ``generation`` column) and an ``eva.parquet`` with other columns than
    :data:`EVA_SCHEMA` (written by another version) also mean the seed runs again: it is
    deterministic, so the rerun writes what the damaged files held.

    Returns:
        ``(eva, queries)``, or None when the seed must run.
    """
    files = [folder / name for name in (EVA_FILE, QUERIES_FILE, "scenario.toml")]
    if not all(path.exists() for path in files):
        return None
    try:
        if (folder / "scenario.toml").read_text(encoding="utf-8") != scenario_toml:
            return None
        record = folder / SEED_MODEL_FILE
        recorded = json.loads(record.read_text(encoding="utf-8")) if record.exists() else {}
        if model_hashes is not None and changed_model_files(recorded, model_hashes):
            return None
        if threads is not None and recorded.get("torch_threads", threads) != threads:
            return None
        table = pl.read_parquet(folder / EVA_FILE)
        lineage = pl.read_parquet(folder / QUERIES_FILE)
        complete = table.schema == pl.Schema(EVA_SCHEMA) and (
            table["generation"].max() == generations
        )
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, ValueError):
        return None
    return (table, lineage) if complete else None


def run_eva(
    scenario: Scenario,
    lm: LanguageModel,
    generations: int,
    seeds: Sequence[int],
    out_dir: Path | None = None,
    progress: bool | None = False,
) -> EvaResult:
    """Run (or resume) every seed and write the combined results.

    Args:
        scenario: The scenario.
        lm: The platform LM.
        generations: Solver updates per method (>= 1).
        seeds: Run seeds (distinct).
        out_dir: Where to write (see the module docstring), or None.
        progress: False: silent; True or None: per-seed progress (see :meth:`SeedRun.run`).

    Returns:
        The combined tables, sorted by seed, method, generation.

    Raises:
        EvaSettingError: Bad generations or seeds, no held-out query, or a generation whose
            training queries all gave replies of one reward (no preference pair to train on).
    """
    check_run_arguments(generations, seeds)
    lm = lm.with_prompt_format(scenario.model.prompt_format)
    scenario_toml = dump_scenario_toml(scenario)
    tables, lineages = [], []
    model_hashes = None if out_dir is None else current_model_hashes(scenario.model.path)
    threads = torch.get_num_threads()
    for seed in seeds:
        folder = None if out_dir is None else seed_dir(out_dir, seed)
        done = (
            None
            if folder is None
            else finished_tables(folder, scenario_toml, generations, model_hashes, threads)
        )
        if done is not None:
            tables.append(done[0])
            lineages.append(done[1])
            continue
        run = SeedRun(scenario, lm, seed)
        run.run(generations, progress)
        tables.append(run.table())
        lineages.append(run.lineage())
        if folder is not None:
            (folder / EVA_FILE).unlink(missing_ok=True)
            atomic_write_text(folder / "scenario.toml", scenario_toml)
            record = {**(model_hashes or {}), "torch_threads": threads}
            atomic_write_json(folder / SEED_MODEL_FILE, record)
            atomic_write(folder / QUERIES_FILE, lineages[-1].write_parquet)
            atomic_write(folder / EVA_FILE, tables[-1].write_parquet)
    table = pl.concat(tables).sort("seed", "method", "generation")
    queries = pl.concat(lineages).sort("seed", "query_id")
    if out_dir is not None:
        atomic_write_text(out_dir / "scenario.toml", scenario_toml)
        atomic_write(out_dir / QUERIES_FILE, queries.write_parquet)
        atomic_write(out_dir / EVA_FILE, table.write_parquet)
        summary = summarize_eva(table, scenario, generations)
        atomic_write_json(out_dir / SUMMARY_FILE, summary)
        settings = {"seeds": list(seeds), "generations": generations}
        write_provenance(out_dir, lm, scenario_toml, scenario.model.path, **settings)
    return EvaResult(table, queries)


def summarize_eva(table: pl.DataFrame, scenario: Scenario, generations: int) -> dict[str, Any]:
    """Mean held-out reward per method and generation over seeds (intervals: ``analysis.eva``)."""
    means = (
        table.group_by("method", "generation")
        .agg(pl.col("heldout_reward").mean(), pl.len().alias("seeds"))
        .sort("method", "generation")
    )
    return {
        "scenario": scenario.name,
        "model": scenario.model.path,
        "generations": generations,
        "seeds": sorted(set(table["seed"].to_list())),
        "heldout_reward_mean": {
            method: means.filter(pl.col("method") == method)["heldout_reward"].to_list()
            for method in METHODS
        },
    }

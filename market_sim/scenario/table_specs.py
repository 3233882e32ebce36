"""The field specs of every scenario table: key, type, range and default, one place.

Each ``*_SPECS`` maps a key to its :mod:`market_sim.config.fields` spec (which checks a value
and names the key and the allowed values in its error); each ``*_TABLES`` names the sub-tables a
table may hold. The loader (:mod:`market_sim.scenario.load`) validates with them and the key
reference (:mod:`market_sim.scenario.key_reference`) documents them, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from market_sim.config.bounds import (
    MAX_LOG_SIGMA,
    MAX_LOG_VALUATION,
    MAX_MULTIPLIER,
    MAX_ROUNDS,
    MAX_SAMPLES,
    MIN_LOG_VALUATION,
    SEED_MAX,
)
from market_sim.config.fields import (
    REQUIRED,
    Choice,
    ChoiceList,
    FieldSpec,
    Flag,
    FloatList,
    FloatRange,
    IntList,
    IntRange,
    ScenarioError,
    Slug,
    Text,
    TextList,
    check_min_items,
    item_key,
    require_list,
    require_str,
    show,
)
from market_sim.config.settings import amount, learning_rate, temperature
from market_sim.mechanisms.options import PROPOSALS
from market_sim.prompting import PROMPT_FORMATS
from market_sim.scenario.eva_vocabulary import (
    DEFAULT_CONSTRAINTS,
    DEFAULT_DETAILS,
    DEFAULT_INTENTS,
    DEFAULT_PERSONAS,
    EVOLVE_OPERATORS,
)
from market_sim.scenario.schema import (
    AGGREGATIONS,
    AUDIT_TOP,
    DEFAULT_CONVERGENCE_SIZES,
    DEFAULT_SWEEP_LAMBDAS,
    DTYPES,
    INFORMATIVENESS_MEASURES,
    MAX_AUCTIONS_PER_ROUND,
    QUERY_HELDOUT_FRACTION,
    QUERY_ORDERS,
    QUERY_STREAMS,
    REWRITERS,
    VALUATION_DISTS,
    VALUATION_REDRAWS,
    QueryConfig,
)

SCENARIO_SPECS: dict[str, FieldSpec] = {
    "name": Slug(default="scenario"),
    "description": Text(default=""),
    "seed": IntRange(min=0, max=SEED_MAX, default=0),
    "rounds": IntRange(min=1, max=MAX_ROUNDS, default=100),
    "auctions_per_round": IntRange(min=1, max=MAX_AUCTIONS_PER_ROUND, default=1),
}


SCENARIO_TABLES: tuple[str, ...] = (
    "model",
    "mechanism",
    "queries",
    "advertisers",
    "regret",
    "lambda_sweep",
    "convergence",
    "eva",
    "audit",
)


MODEL_SPECS: dict[str, FieldSpec] = {
    "path": Text(non_empty=True, default="bundled:tiny-ads"),
    "device": Text(non_empty=True, default="auto"),
    "dtype": Choice(DTYPES, default="auto"),
    "prompt_format": Choice(PROMPT_FORMATS, default="auto"),
    "weights_sha256": Text(non_empty=True, default=None),
}


REGRET_SPECS: dict[str, FieldSpec] = {
    "enabled": Flag(default=True),
    "every": IntRange(min=1, max=MAX_ROUNDS, default=1),
    "multiplier_max": FloatRange(min=0.0, max=MAX_MULTIPLIER, exclusive_min=True, default=2.0),
    "multiplier_points": IntRange(min=2, max=10_000, default=11),
    "distortion_points": IntRange(min=1, max=1_000, default=5),
    "refinements": IntRange(min=0, max=50, default=3),
    "refine_points": IntRange(min=3, max=101, default=5),
    "peaks": IntRange(min=1, max=100, default=1),
}


QUERY_STREAM_SPEC = Choice(QUERY_STREAMS, default="static")


STATIC_QUERY_SPECS: dict[str, FieldSpec] = {
    "stream": QUERY_STREAM_SPEC,
    "items": TextList(default=()),
    "file": Text(non_empty=True, default=None),
    "file_sha256": Text(non_empty=True, default=None),
    "order": Choice(QUERY_ORDERS, default="cycle"),
    "file_merged": Flag(default=False),
    "heldout": TextList(default=()),
    "heldout_fraction": FloatRange(  # < 1: the training pool cannot be empty
        min=0.0, max=1.0, exclusive_max=True, default=QUERY_HELDOUT_FRACTION
    ),
}


QUERY_DEFAULTS = QueryConfig()


ADVERTISER_SPECS: dict[str, FieldSpec] = {
    "name": Text(non_empty=True),
    "context": Text(non_empty=True),
    "mentions": TextList(min_items=1, default=None),
}


ADVERTISER_TABLES: tuple[str, ...] = ("valuation", "strategy")


VALUATION_DIST_SPEC = Choice(VALUATION_DISTS)


REDRAW_SPEC = Choice(VALUATION_REDRAWS, default="round")


VALUATION_SPECS: dict[str, dict[str, FieldSpec]] = {
    "fixed": {"dist": VALUATION_DIST_SPEC, "value": amount(default=REQUIRED)},
    "uniform": {
        "dist": VALUATION_DIST_SPEC,
        "low": amount(default=REQUIRED),
        "high": amount(default=REQUIRED),
        "redraw": REDRAW_SPEC,
    },
    "lognormal": {
        "dist": VALUATION_DIST_SPEC,
        "mean": FloatRange(min=MIN_LOG_VALUATION, max=MAX_LOG_VALUATION),
        "sigma": FloatRange(min=0.0, max=MAX_LOG_SIGMA),
        "redraw": REDRAW_SPEC,
    },
}


LAMBDA_SWEEP_SPECS: dict[str, FieldSpec] = {
    "lambdas": FloatList(
        FloatRange(min=0.0, max=1.0), min_items=1, default=DEFAULT_SWEEP_LAMBDAS, distinct=True
    ),
    "samples": IntRange(min=1, max=MAX_SAMPLES, default=32),
    "aggregations": ChoiceList(AGGREGATIONS, min_items=1, default=AGGREGATIONS),
}


LAMBDA_SWEEP_ADVERTISERS = 2


CONVERGENCE_SPECS: dict[str, FieldSpec] = {
    "sizes": IntList(
        IntRange(min=1, max=65_536), min_items=1, default=DEFAULT_CONVERGENCE_SIZES, distinct=True
    ),
    "support_samples": IntRange(min=1, max=65_536, default=256),
    "proposals": ChoiceList(PROPOSALS, min_items=1, default=PROPOSALS),
}


@dataclass(frozen=True)
class PhraseList(TextList):
    """A list of distinct strings, returned as a tuple; ``allow_empty`` also accepts ``""``.

    The empty string is how the query grammar says "no intent" or "no persona".
    """

    allow_empty: bool = False

    def parse(self, value: object, key: str) -> tuple[str, ...]:
        """Check every element and that none repeats; return them as a tuple."""
        items = require_list(value, key, "strings")
        check_min_items(items, self.min_items, key)
        element = Text(non_empty=True)
        phrases: list[str] = []
        for index, item in enumerate(items):
            item_name = item_key(key, index)
            text = require_str(item, item_name)
            if not (self.allow_empty and text == ""):
                text = element.parse(text, item_name)
            if text in phrases:
                raise ScenarioError(item_name, f"duplicate value {show(text)}")
            phrases.append(text)
        return tuple(phrases)


EVA_SPECS: dict[str, FieldSpec] = {
    "replies": IntRange(min=2, max=256, default=6),
    "informativeness": Choice(INFORMATIVENESS_MEASURES, default="gap"),
    "sample_fraction": FloatRange(min=0.0, max=1.0, exclusive_min=True, default=0.25),
    "variants": IntRange(min=1, max=64, default=4),
    "operators": ChoiceList(EVOLVE_OPERATORS, min_items=1, default=EVOLVE_OPERATORS),
    "rewriter": Choice(REWRITERS, default="auto"),
    "max_pool": IntRange(min=1, max=100_000, default=256),
    "max_constraints": IntRange(min=1, max=16, default=3),
    "user_weight": amount(default=1.0),
    "pairs": IntRange(min=1, max=100_000, default=32),
    "original_share": FloatRange(min=0.0, max=1.0, default=0.2),
    "beta": temperature(default=0.1),
    "steps": IntRange(min=0, max=100_000, default=16),
    "learning_rate": learning_rate(default=5e-5),
    "batch_size": IntRange(min=1, max=4096, default=8),
    "heldout_replies": IntRange(min=1, max=4096, default=8),
    "evolve_every": IntRange(min=1, max=MAX_ROUNDS, default=50),
}


EVA_TABLES: tuple[str, ...] = ("grammar",)


GRAMMAR_SPECS: dict[str, FieldSpec] = {
    "topics": PhraseList(default=()),
    "intents": PhraseList(min_items=1, allow_empty=True, default=DEFAULT_INTENTS),
    "constraints": PhraseList(min_items=1, default=DEFAULT_CONSTRAINTS),
    "details": PhraseList(min_items=1, default=DEFAULT_DETAILS),
    "personas": PhraseList(min_items=1, allow_empty=True, default=DEFAULT_PERSONAS),
}


AUDIT_SPECS: dict[str, FieldSpec] = {
    "top": IntRange(min=1, max=10_000, default=AUDIT_TOP),
    "uniform": Flag(default=True),
    "draws": IntRange(min=1, max=1_000, default=4),
}


AUDIT_TABLES: tuple[str, ...] = ("mechanisms",)

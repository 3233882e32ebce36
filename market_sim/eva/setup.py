"""Build eva's parts from a scenario: grammar, reward, rewriter, DPO settings.

The held-out split and the run seeds are in the torch-free :mod:`market_sim.eva.query_split`.
"""

from __future__ import annotations

from market_sim.eva.creator import EvolveSettings, LMRewriter, Rewriter
from market_sim.eva.grammar import QueryGrammar, one_line
from market_sim.eva.query_split import QuerySplit
from market_sim.eva.reward import ReplyReward
from market_sim.lm.bundled_models import BUNDLED_PREFIX
from market_sim.lm.model import LanguageModel
from market_sim.lm.preference import DPOSettings
from market_sim.market.valuations import expected_valuation
from market_sim.platform.candidate_scoring import ReplySampling
from market_sim.scenario.schema import EvaConfig, Scenario


def eva_config(scenario: Scenario) -> EvaConfig:
    """The scenario's ``[eva]`` table (defaults when absent)."""
    return scenario.eva or EvaConfig()


def build_grammar(config: EvaConfig, split: QuerySplit) -> QueryGrammar:
    """The grammar over the training topics and ``[eva.grammar].topics``, held-out ones removed.

    Held-out queries are removed as topics too, so evolution never writes a query about a
    held-out topic.
    """
    heldout = set(split.heldout)
    topics = [
        topic
        for topic in dict.fromkeys([*split.training, *map(one_line, config.grammar.topics)])
        if topic not in heldout
    ]
    return QueryGrammar(
        topics=tuple(topics),
        intents=config.grammar.intents,
        constraints=config.grammar.constraints,
        details=config.grammar.details,
        personas=config.grammar.personas,
        max_constraints=config.max_constraints,
    )


def evolve_settings(config: EvaConfig) -> EvolveSettings:
    """Variants per parent and enabled operators."""
    return EvolveSettings(variants=config.variants, operators=tuple(config.operators))


DEFAULT_RELEVANCE_TEMPERATURE = 1.0
"""The judge's relevance temperature under a mechanism that has none (token and ad-slot
auctions): the relevance score is ``sigmoid(mean log-likelihood ratio)``."""


def reply_sampling(scenario: Scenario) -> ReplySampling:
    """Reply length and temperature from ``[mechanism]``; its relevance temperature if it has one.

    MOSAIC and the affine maximizer score relevance with ``mechanism.relevance_temperature``, and
    the judge then scores replies the way the mechanism does; other kinds do not read that key,
    and the judge uses :data:`DEFAULT_RELEVANCE_TEMPERATURE`.
    """
    mechanism = scenario.mechanism
    return ReplySampling(
        max_new_tokens=mechanism.max_new_tokens,
        temperature=mechanism.temperature,
        relevance_temperature=getattr(
            mechanism, "relevance_temperature", DEFAULT_RELEVANCE_TEMPERATURE
        ),
    )


def build_reward(scenario: Scenario, judge: LanguageModel) -> ReplyReward:
    """The reward of :mod:`market_sim.eva.reward` for the scenario's advertisers."""
    return ReplyReward(
        judge,
        [advertiser.context for advertiser in scenario.advertisers],
        [expected_valuation(advertiser.valuation) for advertiser in scenario.advertisers],
        eva_config(scenario).user_weight,
        reply_sampling(scenario),
    )


def dpo_settings(config: EvaConfig) -> DPOSettings:
    """The solver's DPO settings."""
    return DPOSettings(
        beta=config.beta,
        steps=config.steps,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
    )


def build_rewriter(scenario: Scenario, lm: LanguageModel) -> Rewriter | None:
    """The LM rewriter, or None for the structured grammar alone.

    ``rewriter = "auto"`` uses the LM unless the model is a bundled one: the bundled tiny LM is
    trained on ad replies only and cannot follow a rewrite instruction (its rewrites would all
    be rejected by :func:`~market_sim.eva.creator.valid_rewrite` anyway). ``lm`` forces it,
    ``grammar`` turns it off.
    """
    mode = eva_config(scenario).rewriter
    if mode == "grammar":
        return None
    if mode == "auto" and scenario.model.path.startswith(BUNDLED_PREFIX):
        return None
    return LMRewriter(lm)

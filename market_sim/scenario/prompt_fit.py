"""Do the scenario's prompts plus the reply fit in the model's positions? Checked before round 0.

A causal LM attends over at most ``max_positions`` tokens (``n_positions`` of GPT-2). A round
feeds the platform prompts of the query alone (the user's distribution), of the query with each
advertiser's context, and -- for MOSAIC's context-aware proposal -- of the query with every
context; the reply then adds up to ``mechanism.max_new_tokens`` tokens. A prompt that does not
leave room raises an index error deep inside the model, rounds into the run. This check runs
right after the tokenizer loads and names the offending query or context instead.

Queries that an eva creator writes during the run are not known in advance: it admits a child
only when :class:`QueryFits` says every prompt of it fits too (else it draws another child).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from market_sim.config.fields import ScenarioError, item_key, show
from market_sim.scenario.schema import Scenario

PromptBuilder = Callable[[str, Sequence[str]], str]


class TokenizedModel(Protocol):
    """What the check needs of a :class:`~market_sim.lm.model.LanguageModel` (torch-free)."""

    tokenizer: Any

    @property
    def max_positions(self) -> int | None:
        """The model's position limit, or None."""

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt text."""


def prompt_cases(scenario: Scenario) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """Every ``(key, query, contexts)`` a round may prompt with; ``key`` names what to shorten.

    The key is the query's (``queries.items[j]``, ``queries.heldout[j]``) for the prompt of
    the query alone or with every context, the advertiser's context otherwise.
    """
    queries = [
        *((item_key("queries.items", j), q) for j, q in enumerate(scenario.queries.items)),
        *((item_key("queries.heldout", j), q) for j, q in enumerate(scenario.queries.heldout)),
    ]
    for query_key, query in queries:
        yield from query_prompt_cases(scenario, query_key, query)


def query_prompt_cases(
    scenario: Scenario, query_key: str, query: str
) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """The ``(key, query, contexts)`` of :func:`prompt_cases` for one query, keyed ``query_key``."""
    contexts = tuple(advertiser.context for advertiser in scenario.advertisers)
    mechanism = scenario.mechanism
    every_context = mechanism.kind == "mosaic" and mechanism.proposal == "context_aware"
    if scenario.convergence is not None and "context_aware" in scenario.convergence.proposals:
        every_context = True
    yield query_key, query, ()
    for index, context in enumerate(contexts):
        yield f"advertisers[{index}].context", query, (context,)
    if every_context and len(contexts) > 1:
        yield query_key, query, contexts


def check_prompts_fit(
    scenario: Scenario,
    count_tokens: Callable[[str], int],
    build: PromptBuilder,
    max_positions: int | None,
) -> None:
    """Raise unless every prompt plus ``mechanism.max_new_tokens`` fits in ``max_positions``.

    Args:
        scenario: The validated scenario.
        count_tokens: Number of tokens of a prompt text (the model's tokenizer).
        build: The platform's prompt builder, ``build(query, contexts) -> text``.
        max_positions: The model's position limit; ``None`` means no limit (nothing checked).

    Raises:
        ScenarioError: Keyed by the query or context to shorten, naming the token counts.
    """
    if max_positions is None:
        return
    reply = scenario.mechanism.max_new_tokens
    for key, query, contexts in prompt_cases(scenario):
        length = count_tokens(build(query, contexts))
        if length + reply > max_positions:
            what = f"query {show(query)}" + (
                f" with {len(contexts)} context(s)" if contexts else " alone"
            )
            raise ScenarioError(
                key,
                f"the prompt of {what} is {length} tokens; with mechanism.max_new_tokens = "
                f"{reply} it needs {length + reply} positions but the model has "
                f"{max_positions}; shorten it or lower max_new_tokens",
            )


def check_model_fits(scenario: Scenario, lm: TokenizedModel) -> None:
    """:func:`check_prompts_fit` with a loaded model's tokenizer, prompt format and positions.

    Args:
        scenario: The validated scenario.
        lm: A loaded :class:`~market_sim.lm.model.LanguageModel`.

    Raises:
        ScenarioError: ``model.prompt_format`` the tokenizer cannot serve, or a prompt that
            does not fit (see :func:`check_prompts_fit`).
    """
    from market_sim.prompting import prompt_bos_id, prompt_builder, with_bos

    try:
        build = prompt_builder(scenario.model.prompt_format, lm.tokenizer)
        # A chat template that does not render fails here, not mid-run: one prompt, one task.
        first = next(prompt_cases(scenario), None)
        if first is not None:
            build(first[1], first[2])
        build.task("Rewrite the query.", "Rewritten query:")
    except ValueError as error:
        raise ScenarioError("model.prompt_format", str(error)) from None
    bos = prompt_bos_id(lm.tokenizer, build.format)
    check_prompts_fit(
        scenario, lambda text: len(with_bos(lm.encode(text), bos)), build, lm.max_positions
    )


@dataclass(frozen=True)
class QueryFits:
    """Whether every prompt of a new query plus ``mechanism.max_new_tokens`` fits the model.

    The predicate an eva creator admits children with: a query the model cannot serve would
    otherwise raise an index error inside the model generations later. A class rather than a
    closure, so that a market holding it can be checkpointed (pickled).

    Attributes:
        scenario: The validated scenario (contexts, mechanism, reply length).
        lm: The loaded :class:`~market_sim.lm.model.LanguageModel` in the run's prompt format
            (its ``prompt`` builder, ``encode_prompt`` and ``max_positions`` are used).
    """

    scenario: Scenario
    lm: Any

    def __call__(self, query: str) -> bool:
        """True when every prompt of ``query`` fits; always for a model without a limit."""
        limit = self.lm.max_positions
        if limit is None:
            return True
        reply = self.scenario.mechanism.max_new_tokens
        return all(
            len(self.lm.encode_prompt(self.lm.prompt(text, contexts))) + reply <= limit
            for _, text, contexts in query_prompt_cases(self.scenario, "", query)
        )

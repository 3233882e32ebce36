r"""The eva creator: estimate, sample and evolve queries (docs/design.md, section 6).

Per generation, on the active pool of Q queries:

1. **Estimate.** Each query gets a score matrix row (k rewards of k replies, or in audit mode a
   regret) and an informativeness :math:`I_q` (:func:`informativeness`):
   ``gap`` :math:`\max_j r_{qj} - \min_j r_{qj}`, ``variance``
   :math:`\frac1k \sum_j (r_{qj} - \bar r_q)^2` (population variance) or ``max_mean``
   :math:`\max_j r_{qj} - \bar r_q`.
2. **Sample.** Min-max normalize, :math:`w_q = (I_q - \min I) / (\max I - \min I)` (all ones
   when every :math:`I_q` is equal), and draw :math:`m = \max(1, \lfloor f Q + 1/2 \rceil)`
   queries without replacement, each draw with probability proportional to the remaining
   weights (:func:`sample_proportional`). The least informative query has weight 0, so it is
   drawn only when every remaining weight is 0 (then the draw is uniform over the remaining
   queries): a choice the papers leave open.
3. **Evolve.** For each sampled query, ``variants`` children by an operator drawn uniformly
   from the enabled ones (:meth:`QueryGrammar.mutate`; ``mix`` pairs it with another active
   query drawn uniformly). The grammar fixes the child's structure; a rewriter may then write
   its text with the LM (:class:`LMRewriter`), else the structure is rendered. A child whose
   text is already known (in the pool, among its siblings, or held out), or that the caller
   does not admit (``admissible``: the run's prompts with it would not fit the model's
   positions, :class:`market_sim.scenario.prompt_fit.QueryFits`), is redrawn, up to
   ``MAX_ATTEMPTS`` times per variant; failing that, the variant is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from market_sim.config.bounds import SEED_MAX_31_BIT
from market_sim.eva.grammar import QueryGrammar, StructuredQuery, one_line
from market_sim.eva.pool import PoolQuery, QueryPool
from market_sim.scenario.eva_vocabulary import EVOLVE_OPERATORS
from market_sim.scenario.schema import INFORMATIVENESS_MEASURES

MAX_ATTEMPTS = 8
"""Redraws of one variant whose text collides with a known query."""

Rewriter = Callable[[PoolQuery, str, StructuredQuery, int], str | None]
"""``rewrite(parent, operator, child_structure, seed) -> text or None`` (None: render)."""
Admissible = Callable[[str], bool]
"""``admissible(text)``: whether a child's text may join the pool (e.g. its prompts fit)."""


def informativeness(scores: np.ndarray, measure: str = "gap") -> np.ndarray:
    """Informativeness of each query from its k scores (see the module docstring).

    Args:
        scores: ``[Q, k]`` rewards of k replies per query.
        measure: ``gap``, ``variance`` or ``max_mean``.

    Returns:
        ``[Q]`` float64, >= 0.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] < 1:
        raise ValueError(f"scores must be [Q, k] with k >= 1, got shape {values.shape}")
    gap = values.max(axis=1) - values.min(axis=1)
    # A row of equal rewards has spread 0 exactly under every measure (float rounding of a
    # mean of equal values gave +-1e-16 for max - mean and 1e-32 for the variance, so tied
    # rows were ranked by noise and the uniform fallback of min_max_normalize never applied).
    tied = gap == 0
    if measure == "gap":
        return gap
    if measure == "variance":
        return np.where(tied, 0.0, values.var(axis=1))
    if measure == "max_mean":
        return np.where(tied, 0.0, np.maximum(values.max(axis=1) - values.mean(axis=1), 0.0))
    allowed = ", ".join(INFORMATIVENESS_MEASURES)
    raise ValueError(f"informativeness {measure!r} unknown; allowed: {allowed}")


def min_max_normalize(values: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)``; all ones when every value is equal. ``[Q] -> [Q]``."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return array
    spread = array.max() - array.min()
    if not spread > 0:
        return np.ones_like(array)
    return (array - array.min()) / spread


def sample_count(pool_size: int, fraction: float) -> int:
    """``max(1, floor(fraction * pool_size + 1/2))``, at most ``pool_size``."""
    return min(max(int(np.floor(fraction * pool_size + 0.5)), 1), pool_size)


def sample_proportional(weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``count`` distinct indices, each draw proportional to the remaining weights.

    When the remaining weights are all zero, the draw is uniform over the remaining indices.
    One uniform number per draw (``rng.random()``), inverted on the cumulative weights.

    Args:
        weights: ``[Q]`` non-negative weights.
        count: Draws, ``0 <= count <= Q``.
        rng: The generator.

    Returns:
        ``[count]`` int64 indices in order of drawing.
    """
    remaining = np.asarray(weights, dtype=np.float64).copy()
    if np.any(remaining < 0) or not np.all(np.isfinite(remaining)):
        raise ValueError("weights must be finite and non-negative")
    if not 0 <= count <= len(remaining):
        raise ValueError(f"count must be in [0, {len(remaining)}], got {count}")
    available = np.ones(len(remaining), dtype=bool)
    drawn: list[int] = []
    for _ in range(count):
        mass = np.where(available, remaining, 0.0)
        if not mass.sum() > 0:
            mass = available.astype(np.float64)
        cumulative = np.cumsum(mass)
        index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        index = min(index, len(remaining) - 1)
        while not available[index] or mass[index] == 0:  # guard the right edge
            index -= 1
        drawn.append(index)
        available[index] = False
    return np.asarray(drawn, dtype=np.int64)


@dataclass(frozen=True)
class EvolveSettings:
    """How children are made.

    Attributes:
        variants: Children per sampled query.
        operators: Enabled operators (drawn uniformly).
    """

    variants: int = 4
    operators: tuple[str, ...] = EVOLVE_OPERATORS

    def __post_init__(self) -> None:
        """Reject no operators, unknown operators or fewer than one variant."""
        if self.variants < 1:
            raise ValueError(f"variants must be >= 1, got {self.variants}")
        unknown = [op for op in self.operators if op not in EVOLVE_OPERATORS]
        if not self.operators or unknown:
            allowed = ", ".join(EVOLVE_OPERATORS)
            raise ValueError(f"operators {list(self.operators)!r} invalid; allowed: {allowed}")


def evolve(
    pool: QueryPool,
    parents: Sequence[str],
    grammar: QueryGrammar,
    settings: EvolveSettings,
    generation: int,
    rng: np.random.Generator,
    forbidden: set[str] | frozenset[str] = frozenset(),
    rewriter: Rewriter | None = None,
    admissible: Admissible | None = None,
) -> list[PoolQuery]:
    """Make and admit the children of ``parents`` (see the module docstring).

    Args:
        pool: The pool (children are admitted into it, so lineage is recorded).
        parents: Ids of the sampled queries.
        grammar: Operators and vocabulary.
        settings: Variants per parent and enabled operators.
        generation: Generation number written into the children.
        rng: Draws operators, options, partners and rewrite seeds.
        forbidden: Texts never to produce (the held-out queries).
        rewriter: Writes a child's text with the LM, or None to render the structure.
        admissible: Whether a text may be admitted (None: every text).

    Returns:
        The admitted children, in order.
    """
    children: list[PoolQuery] = []
    active = list(pool.active)
    for parent_id in parents:
        parent = pool.records[parent_id]
        for _ in range(settings.variants):
            child = _one_child(
                pool,
                parent,
                active,
                grammar,
                settings,
                generation,
                rng,
                forbidden,
                rewriter,
                admissible,
            )
            if child is not None:
                children.append(child)
    return children


def _one_child(
    pool: QueryPool,
    parent: PoolQuery,
    active: Sequence[str],
    grammar: QueryGrammar,
    settings: EvolveSettings,
    generation: int,
    rng: np.random.Generator,
    forbidden: set[str] | frozenset[str],
    rewriter: Rewriter | None,
    admissible: Admissible | None,
) -> PoolQuery | None:
    for _ in range(MAX_ATTEMPTS):
        operator = settings.operators[int(rng.integers(len(settings.operators)))]
        partner: PoolQuery | None = None
        if operator == "mix":
            others = [query_id for query_id in active if query_id != parent.query_id]
            if not others:
                continue
            partner = pool.records[others[int(rng.integers(len(others)))]]
        structure = grammar.mutate(parent.query, operator, rng, partner.query if partner else None)
        if structure is None:
            continue
        rewrite_seed = int(rng.integers(SEED_MAX_31_BIT))
        text, engine = structure.render(), "grammar"
        if rewriter is not None:
            rewritten = rewriter(parent, operator, structure, rewrite_seed)
            if rewritten is not None and (admissible is None or admissible(rewritten)):
                text, engine = rewritten, "lm"
        if text in forbidden or pool.known(text):
            continue
        if admissible is not None and not admissible(text):
            continue
        return pool.admit(
            structure,
            text,
            generation,
            parent.query_id,
            partner.query_id if partner else None,
            operator,
            engine,
        )
    return None


OPERATOR_INSTRUCTIONS: dict[str, str] = {
    "add_constraint": "Add the constraint '{new}'.",
    "concretize": "Make it concrete: add '{new}'.",
    "deepen": "Ask for more depth: start with '{new}'.",
    "shift_topic": "Change the topic to '{new}', keep the rest.",
    "shift_persona": "Ask it {new}.",
    "mix": "Combine it with a query about '{new}'.",
}
"""One instruction per operator; ``{new}`` is the part the grammar's child added."""

MAX_REWRITE_CHARS = 200
PROMPT_MARKERS = ("Sponsor:", "Query:", "Reply:", "Rewritten query:")


def added_part(parent: StructuredQuery, child: StructuredQuery, operator: str) -> str:
    """The phrase an operator added, which an LM rewrite must keep (empty: nothing to check)."""
    if operator in ("add_constraint", "concretize"):
        new = [c for c in child.constraints if c not in parent.constraints]
        return new[-1] if new else ""
    if operator == "deepen":
        return child.intent
    if operator == "shift_persona":
        return child.persona
    return child.topic  # shift_topic, mix


REWRITE_ANSWER_CUE = "Rewritten query:"
"""Last line of a plain-format rewrite prompt; chat prompts ask for the answer alone instead."""


def rewrite_request(parent_text: str, instruction: str) -> str:
    """What a rewrite asks of the LM: the task, the operator's instruction and the parent."""
    return f"Rewrite the search query as a new search query. {instruction}\nQuery: {parent_text}"


def rewrite_prompt(parent_text: str, instruction: str, lm=None) -> str:
    """The LM prompt of a rewrite, in the model's prompt format (plain when ``lm`` is None).

    Plain: :func:`rewrite_request` then ``Rewritten query:``; chat:
    :meth:`market_sim.prompting.PromptBuilder.task` (the request as the user message).
    """
    request = rewrite_request(parent_text, instruction)
    if lm is None:
        return f"{request}\n{REWRITE_ANSWER_CUE}"
    return lm.prompt.task(request, REWRITE_ANSWER_CUE)


def valid_rewrite(text: str, parent_text: str, must_contain: str) -> bool:
    """Whether an LM rewrite is usable as a query.

    One non-empty line of at most :data:`MAX_REWRITE_CHARS` characters, no prompt markers,
    different from the parent, and containing the phrase the operator added
    (case-insensitive), so that the rewrite carries the mutation it was asked for.
    """
    if not text or len(text) > MAX_REWRITE_CHARS or text == parent_text:
        return False
    if any(marker.lower() in text.lower() for marker in PROMPT_MARKERS):
        return False
    return must_contain.lower() in text.lower()


class LMRewriter:
    """Writes a child's text with the LM; falls back to the grammar when the rewrite is unusable.

    The prompt (:func:`rewrite_prompt`) gives the parent's text and an instruction naming the
    part the grammar added; the first line of one sampled completion (``max_new_tokens``
    tokens at ``temperature``, seeded) is the candidate text, accepted when
    :func:`valid_rewrite` says so. A prompt that leaves the model fewer than
    ``max_new_tokens`` positions is not sampled (a short-context model would fail inside its
    forward): the structure is rendered instead. Counters record how often each happened
    (``accepted`` counts what :func:`valid_rewrite` accepted; the creator may still not admit
    it, see :func:`evolve`).

    Args:
        lm: A :class:`~market_sim.lm.model.LanguageModel` (``prompt``, ``sample`` and
            ``decode`` are used).
        max_new_tokens: Length cap of a rewrite.
        temperature: Sampling temperature.
    """

    def __init__(self, lm, max_new_tokens: int = 32, temperature: float = 0.7) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.accepted = 0
        self.rejected = 0
        self.too_long = 0

    def counts(self) -> dict[str, int]:
        """The counters so far, by their ``eva.parquet`` column names (``rewrites_*``)."""
        return {
            "rewrites_valid": self.accepted,
            "rewrites_invalid": self.rejected,
            "rewrites_too_long": self.too_long,
        }

    def __call__(
        self, parent: PoolQuery, operator: str, child: StructuredQuery, seed: int
    ) -> str | None:
        """The rewritten text, or None (the caller renders the structure)."""
        new = added_part(parent.query, child, operator)
        instruction = OPERATOR_INSTRUCTIONS[operator].format(new=new)
        prompt = rewrite_prompt(parent.text, instruction, self.lm)
        limit = self.lm.max_positions
        if limit is not None and len(self.lm.encode_prompt(prompt)) + self.max_new_tokens > limit:
            self.too_long += 1
            return None
        tokens = self.lm.sample([prompt], self.max_new_tokens, self.temperature, seed)[0]
        lines = self.lm.decode(tokens).strip().splitlines()
        text = one_line(lines[0]) if lines else ""
        if valid_rewrite(text, parent.text, new):
            self.accepted += 1
            return text
        self.rejected += 1
        return None


@dataclass(frozen=True)
class CreatorStep:
    """One creator generation.

    Attributes:
        generation: Its number (>= 1).
        measured: Informativeness of every active query at the start, by id.
        sampled: Ids of the sampled parents, in order of drawing.
        children: The evolved queries admitted.
    """

    generation: int
    measured: dict[str, float]
    sampled: list[str]
    children: list[PoolQuery]


Measure = Callable[[list[PoolQuery]], np.ndarray]
"""``measure(active_queries) -> [Q]`` informativeness (reward spread, or regret in audit mode)."""


def creator_step(
    pool: QueryPool,
    measure: Measure,
    sample_fraction: float,
    settings: EvolveSettings,
    grammar: QueryGrammar,
    generation: int,
    rng: np.random.Generator,
    forbidden: set[str] | frozenset[str] = frozenset(),
    rewriter: Rewriter | None = None,
    uniform: bool = False,
    admissible: Admissible | None = None,
) -> CreatorStep:
    """Estimate, sample and evolve once (see the module docstring).

    Args:
        pool: The pool; its informativeness record is updated and children are admitted.
        measure: Informativeness of the active queries.
        sample_fraction: Share f of the active pool sampled as parents.
        settings: Variants and operators.
        grammar: The mutation grammar.
        generation: Number written into the children.
        rng: Draws parents, operators, options and partners.
        forbidden: Texts never to produce (held-out queries).
        rewriter: Optional LM rewriter.
        uniform: Sample parents uniformly instead of by informativeness (the baseline that
            isolates the creator's weighting).
        admissible: Whether a child's text may be admitted (None: every text).

    Returns:
        What was measured, sampled and made.
    """
    active = pool.active_queries()
    values = np.asarray(measure(active), dtype=np.float64)
    if values.shape != (len(active),):
        raise ValueError(f"measure must return shape ({len(active)},), got {values.shape}")
    measured = {query.query_id: float(value) for query, value in zip(active, values, strict=True)}
    pool.informativeness.update(measured)
    weights = np.ones(len(active)) if uniform else min_max_normalize(values)
    drawn = sample_proportional(weights, sample_count(len(active), sample_fraction), rng)
    sampled = [active[int(index)].query_id for index in drawn]
    children = evolve(
        pool, sampled, grammar, settings, generation, rng, forbidden, rewriter, admissible
    )
    return CreatorStep(generation, measured, sampled, children)

"""The eva creator: informativeness, proportional sampling, the grammar, the pool and evolve.

Every expected value is computed by hand in the test (no LM: the rewriter runs on a fake one).
"""

import itertools
import math
import re
from fractions import Fraction

import numpy as np
import pytest

from market_sim.eva.creator import (
    INFORMATIVENESS_MEASURES,
    MAX_ATTEMPTS,
    EvolveSettings,
    LMRewriter,
    added_part,
    creator_step,
    evolve,
    informativeness,
    min_max_normalize,
    rewrite_prompt,
    sample_count,
    sample_proportional,
    valid_rewrite,
)
from market_sim.eva.grammar import QueryGrammar, StructuredQuery, one_line
from market_sim.eva.pool import QueryPool, split_heldout
from market_sim.eva.query_split import split_queries
from market_sim.eva.setup import build_grammar, eva_config
from market_sim.prompting import PromptBuilder
from market_sim.scenario import scenario_from_dict
from market_sim.scenario.eva_vocabulary import (
    DEFAULT_CONSTRAINTS,
    DEFAULT_DETAILS,
    DEFAULT_INTENTS,
    DEFAULT_PERSONAS,
    EVOLVE_OPERATORS,
)

SEEDS = (
    "vacation in Hawaii",
    "family trip to Maui",
    "cheap flights to Honolulu",
    "best laptop for college",
    "best food for my dog",
    "quick dinner tonight",
    "investing for beginners",
    "home workout plan",
)


def seed_grammar(**changes) -> QueryGrammar:
    return QueryGrammar(topics=SEEDS, **changes)


def fixed_measure(values):
    """A measure returning ``values[query_id]`` (0 for queries not listed)."""

    def measure(active):
        return np.array([values.get(query.query_id, 0.0) for query in active])

    return measure


# --------------------------------------------------------------------------- informativeness

REWARDS = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0], [5.0, 1.0, 3.0]])


def test_informativeness_gap_variance_max_mean_by_hand():
    # row means 2, 0, 3; deviations (-1, 1, 0), (0, 0, 0), (2, -2, 0)
    np.testing.assert_allclose(informativeness(REWARDS, "gap"), [2.0, 0.0, 4.0])
    np.testing.assert_allclose(informativeness(REWARDS, "variance"), [2 / 3, 0.0, 8 / 3])
    np.testing.assert_allclose(informativeness(REWARDS, "max_mean"), [1.0, 0.0, 2.0])
    np.testing.assert_allclose(informativeness(REWARDS), [2.0, 0.0, 4.0])  # default: gap
    assert informativeness(REWARDS).dtype == np.float64
    # one reply per query: no spread under any measure
    for measure in INFORMATIVENESS_MEASURES:
        np.testing.assert_array_equal(informativeness([[4.0], [-1.0]], measure), [0.0, 0.0])


def test_tied_rows_have_exactly_zero_spread_so_parents_are_drawn_uniformly():
    """Rows of equal rewards: max - mean was +-1e-16 and the variance 1e-32, so min-max
    normalization ranked tied queries by rounding noise (one got weight 0, never drawn)."""
    tied = [[0.1] * 6, [0.7] * 6, [0.3] * 6, [1.1] * 6]
    for measure in INFORMATIVENESS_MEASURES:
        spread = informativeness(tied, measure)
        assert spread.tolist() == [0.0] * 4, measure
        assert min_max_normalize(spread).tolist() == [1.0] * 4, measure
    rng = np.random.default_rng(0)
    for measure in INFORMATIVENESS_MEASURES:  # max - mean >= 0 as documented, any rows
        assert (informativeness(rng.normal(size=(50, 7)), measure) >= 0).all(), measure


def test_informativeness_rejects_bad_measure_and_shape():
    with pytest.raises(ValueError, match="gap, variance, max_mean") as caught:
        informativeness(REWARDS, "range")
    assert "'range'" in str(caught.value)
    for bad in (np.array([1.0, 2.0]), np.zeros((2, 0)), np.zeros((2, 2, 2))):
        with pytest.raises(ValueError, match="shape"):
            informativeness(bad)


def test_min_max_normalize():
    np.testing.assert_allclose(min_max_normalize(np.array([2.0, 0.0, 4.0])), [0.5, 0.0, 1.0])
    np.testing.assert_allclose(min_max_normalize(np.array([-3.0, 1.0])), [0.0, 1.0])
    np.testing.assert_array_equal(min_max_normalize(np.array([7.0, 7.0, 7.0])), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(min_max_normalize(np.array([5.0])), [1.0])
    assert min_max_normalize(np.array([])).shape == (0,)


def test_sample_count_rounds_half_up_with_floor_one_and_cap():
    assert sample_count(16, 0.25) == 4
    assert sample_count(5, 0.25) == 1  # 1.25 -> 1
    assert sample_count(6, 0.25) == 2  # 1.5 -> 2 (half up)
    assert sample_count(10, 0.25) == 3  # 2.5 -> 3
    assert sample_count(7, 0.25) == 2  # 1.75 -> 2
    assert sample_count(100, 0.001) == 1  # 0.1 -> at least one
    assert sample_count(3, 1.0) == 3
    assert sample_count(3, 5.0) == 3  # never more than the pool
    for size in range(1, 30):
        for fraction in (0.01, 0.1, 0.25, 0.5, 0.9, 1.0):
            count = sample_count(size, fraction)
            assert 1 <= count <= size
            assert count == min(max(math.floor(fraction * size + 0.5), 1), size)


# --------------------------------------------------------------------------- sample_proportional


def exact_draw_probabilities(weights, count):
    """P(ordered draw) by enumerating the sequential draws (uniform when no mass remains)."""
    probabilities = {}
    for order in itertools.permutations(range(len(weights)), count):
        probability = Fraction(1)
        remaining = list(range(len(weights)))
        for index in order:
            mass = sum(weights[i] for i in remaining)
            if mass > 0:
                probability *= Fraction(weights[index], mass)
            else:
                probability *= Fraction(1, len(remaining))
            remaining.remove(index)
        if probability:
            probabilities[order] = probability
    return probabilities


def test_sample_proportional_matches_exact_sequential_probabilities():
    weights = [0, 1, 2, 3]
    exact = exact_draw_probabilities(weights, 2)
    # by hand: P(j then l) = w_j / 6 * w_l / (6 - w_j)
    by_hand = {
        (1, 2): Fraction(1, 6) * Fraction(2, 5),
        (1, 3): Fraction(1, 6) * Fraction(3, 5),
        (2, 1): Fraction(2, 6) * Fraction(1, 4),
        (2, 3): Fraction(2, 6) * Fraction(3, 4),
        (3, 1): Fraction(3, 6) * Fraction(1, 3),
        (3, 2): Fraction(3, 6) * Fraction(2, 3),
    }
    assert exact == by_hand
    assert sum(by_hand.values()) == 1
    inclusion = {0: Fraction(0), 1: Fraction(5, 12), 2: Fraction(11, 15), 3: Fraction(17, 20)}
    for item, probability in inclusion.items():
        assert sum(p for order, p in by_hand.items() if item in order) == probability

    rng = np.random.default_rng(12345)
    draws = 20_000
    pair_counts: dict[tuple[int, int], int] = {}
    item_counts = np.zeros(4)
    for _ in range(draws):
        drawn = sample_proportional(np.array(weights, dtype=float), 2, rng)
        assert drawn.dtype == np.int64 and len(set(drawn.tolist())) == 2
        pair = (int(drawn[0]), int(drawn[1]))
        pair_counts[pair] = pair_counts.get(pair, 0) + 1
        item_counts[list(pair)] += 1
    assert item_counts[0] == 0  # zero weight, positive mass always remains
    assert set(pair_counts) <= set(by_hand)

    def within_4_sigma(frequency, probability):
        p = float(probability)
        sigma = math.sqrt(p * (1 - p) / draws)
        return abs(frequency - p) <= 4 * sigma + 1e-12

    for item in (1, 2, 3):
        assert within_4_sigma(item_counts[item] / draws, inclusion[item]), item
    for pair, probability in by_hand.items():
        assert within_4_sigma(pair_counts.get(pair, 0) / draws, probability), pair


def test_sample_proportional_uniform_once_no_mass_remains():
    assert exact_draw_probabilities([1, 0, 0], 3) == {
        (0, 1, 2): Fraction(1, 2),
        (0, 2, 1): Fraction(1, 2),
    }
    rng = np.random.default_rng(7)
    draws = 4000
    second_is_1 = 0
    for _ in range(draws):
        drawn = sample_proportional(np.array([1.0, 0.0, 0.0]), 3, rng).tolist()
        assert drawn[0] == 0 and sorted(drawn) == [0, 1, 2]
        second_is_1 += drawn[1] == 1
    sigma = math.sqrt(0.25 / draws)
    assert abs(second_is_1 / draws - 0.5) <= 4 * sigma
    # all weights zero from the start: every index is reachable first, uniformly
    firsts = np.zeros(4)
    for _ in range(draws):
        firsts[sample_proportional(np.zeros(4), 1, rng)[0]] += 1
    sigma = math.sqrt(0.25 * 0.75 / draws)
    assert np.all(np.abs(firsts / draws - 0.25) <= 4 * sigma)


def test_sample_proportional_zero_weights_last_distinct_and_edge_cases():
    rng = np.random.default_rng(0)
    weights = np.array([0.0, 2.0, 0.0, 5.0, 1.0, 0.0])
    for _ in range(300):
        drawn = sample_proportional(weights, 6, rng).tolist()
        assert sorted(drawn) == list(range(6))
        # the three positive-weight items come before any zero-weight one
        assert set(drawn[:3]) == {1, 3, 4}
    assert sample_proportional(weights, 0, rng).tolist() == []
    assert sample_proportional(np.array([]), 0, rng).tolist() == []
    with pytest.raises(ValueError, match="non-negative"):
        sample_proportional(np.array([1.0, -0.5]), 1, rng)
    with pytest.raises(ValueError, match="finite"):
        sample_proportional(np.array([1.0, np.nan]), 1, rng)
    with pytest.raises(ValueError, match="count"):
        sample_proportional(np.array([1.0, 2.0]), 3, rng)
    with pytest.raises(ValueError, match="count"):
        sample_proportional(np.array([1.0, 2.0]), -1, rng)
    first = sample_proportional(weights, 4, np.random.default_rng(99)).tolist()
    again = sample_proportional(weights, 4, np.random.default_rng(99)).tolist()
    assert first == again


# --------------------------------------------------------------------------- grammar


def test_render_and_from_text():
    query = StructuredQuery("vacation in Hawaii", "how to plan", "for a family", ("on a budget",))
    assert query.render() == "how to plan vacation in Hawaii for a family on a budget"
    assert StructuredQuery("vacation in Hawaii").render() == "vacation in Hawaii"
    two = StructuredQuery("laptop", "", "for a student", ("under $500", "near me"))
    assert two.render() == "laptop for a student under $500 near me"
    read = StructuredQuery.from_text("  vacation \n in\tHawaii  ")
    assert read == StructuredQuery("vacation in Hawaii")
    assert read.render() == "vacation in Hawaii" == one_line("  vacation \n in\tHawaii  ")


def random_chain(grammar, rng, length):
    """A query reached from a seed topic by ``length`` random mutations (mix with seeds)."""
    query = StructuredQuery.from_text(SEEDS[int(rng.integers(len(SEEDS)))])
    for _ in range(length):
        operator = EVOLVE_OPERATORS[int(rng.integers(len(EVOLVE_OPERATORS)))]
        partner = StructuredQuery.from_text(SEEDS[int(rng.integers(len(SEEDS)))])
        child = grammar.mutate(query, operator, rng, partner)
        if child is not None:
            query = child
    return query


def test_every_operator_returns_a_valid_different_query_on_random_chains():
    grammar = seed_grammar()
    rng = np.random.default_rng(2024)
    applied = dict.fromkeys(EVOLVE_OPERATORS, 0)
    for _ in range(300):
        parent = random_chain(grammar, rng, int(rng.integers(0, 8)))
        assert grammar.problems(parent) == []
        partner = random_chain(grammar, rng, int(rng.integers(0, 4)))
        for operator in EVOLVE_OPERATORS:
            child = grammar.mutate(parent, operator, rng, partner)
            if child is None:
                continue
            applied[operator] += 1
            assert grammar.problems(child) == [], (operator, parent, child)
            assert child != parent and child.render() != parent.render()
            if operator in ("add_constraint", "concretize"):
                vocabulary = (
                    grammar.constraints if operator == "add_constraint" else grammar.details
                )
                assert child.constraints[:-1] == parent.constraints
                assert child.constraints[-1] in vocabulary
                assert (child.topic, child.intent, child.persona) == (
                    parent.topic,
                    parent.intent,
                    parent.persona,
                )
            elif operator == "deepen":
                assert grammar.intents.index(child.intent) > grammar.intents.index(parent.intent)
            elif operator == "shift_topic":
                assert child.topic in grammar.topics and child.topic != parent.topic
            elif operator == "shift_persona":
                assert child.persona in grammar.personas and child.persona != parent.persona
            else:  # mix
                assert child.topic == partner.topic and child.intent == parent.intent
                assert child.persona == (parent.persona or partner.persona)
                merged = list(dict.fromkeys(parent.constraints + partner.constraints))
                assert list(child.constraints) == merged[: grammar.max_constraints]
    assert all(count > 50 for count in applied.values()), applied


def test_operator_edge_cases():
    grammar = seed_grammar()
    rng = np.random.default_rng(0)
    deepest = StructuredQuery("vacation in Hawaii", intent=DEFAULT_INTENTS[-1])
    assert grammar.mutate(deepest, "deepen", rng) is None
    full = StructuredQuery("vacation in Hawaii", constraints=DEFAULT_CONSTRAINTS[:3])
    assert grammar.max_constraints == 3
    assert grammar.mutate(full, "add_constraint", rng) is None
    assert grammar.mutate(full, "concretize", rng) is None
    plain = StructuredQuery("vacation in Hawaii")
    assert grammar.mutate(plain, "mix", rng) is None
    assert grammar.mutate(plain, "mix", rng, partner=plain) is None
    mixed = grammar.mutate(plain, "mix", rng, partner=StructuredQuery("home workout plan"))
    assert mixed == StructuredQuery("home workout plan")
    # every constraint used: nothing left to add
    small = QueryGrammar(topics=("a",), constraints=("x",), details=("y",))
    assert small.mutate(StructuredQuery("a", constraints=("x",)), "add_constraint", rng) is None
    assert small.mutate(StructuredQuery("a", constraints=("y",)), "concretize", rng) is None
    # a single topic: nowhere to shift
    assert small.mutate(StructuredQuery("a"), "shift_topic", rng) is None
    # deepen from the shallowest intent reaches every deeper intent
    reached = {grammar.mutate(plain, "deepen", rng).intent for _ in range(400)}
    assert reached == set(DEFAULT_INTENTS[1:])
    with pytest.raises(ValueError, match="unknown") as caught:
        grammar.mutate(plain, "paraphrase", rng)
    assert ", ".join(EVOLVE_OPERATORS) in str(caught.value)
    with pytest.raises(ValueError, match="topics"):
        QueryGrammar(topics=())
    with pytest.raises(ValueError, match="max_constraints"):
        QueryGrammar(topics=("a",), max_constraints=0)


def test_problems_reports_each_violation():
    grammar = seed_grammar(max_constraints=2)
    assert grammar.problems(StructuredQuery("anything at all")) == []
    assert grammar.is_valid(
        StructuredQuery("x", DEFAULT_INTENTS[2], DEFAULT_PERSONAS[1], (DEFAULT_DETAILS[0],))
    )
    bad = grammar.problems(StructuredQuery("x", intent="make me rich"))
    assert len(bad) == 1 and "intent" in bad[0]
    bad = grammar.problems(StructuredQuery("x", persona="for a robot"))
    assert len(bad) == 1 and "persona" in bad[0]
    bad = grammar.problems(StructuredQuery("x", constraints=("on the moon",)))
    assert len(bad) == 1 and "on the moon" in bad[0]
    bad = grammar.problems(StructuredQuery("x", constraints=("near me", "near me")))
    assert bad == ["constraints repeat"]
    three = ("near me", "with kids", "under $100")
    bad = grammar.problems(StructuredQuery("x", constraints=three))
    assert len(bad) == 1 and "max_constraints=2" in bad[0]
    assert grammar.problems(StructuredQuery(""))[0].startswith("topic")
    assert grammar.problems(StructuredQuery("two\nlines"))[0].startswith("topic")
    assert not grammar.is_valid(StructuredQuery("x", intent="bogus", persona="bogus"))
    assert len(grammar.problems(StructuredQuery("x", intent="bogus", persona="bogus"))) == 2


# --------------------------------------------------------------------------- pool and lineage


def test_pool_ids_duplicates_and_unknown_parents():
    pool = QueryPool(SEEDS[:3])
    assert list(pool.records) == ["q00000", "q00001", "q00002"]
    assert pool.active == ["q00000", "q00001", "q00002"]
    first = pool.records["q00000"]
    assert first.text == SEEDS[0] and first.query == StructuredQuery(SEEDS[0])
    assert (first.generation, first.parent_id, first.operator, first.engine) == (
        0,
        None,
        None,
        "seed",
    )
    child = pool.admit(
        StructuredQuery(SEEDS[0], constraints=("near me",)),
        "vacation in Hawaii near me",
        1,
        "q00000",
        None,
        "add_constraint",
        "grammar",
    )
    assert child.query_id == "q00003"
    with pytest.raises(ValueError, match="already in the pool"):
        pool.admit(StructuredQuery("x"), "vacation in Hawaii near me")
    with pytest.raises(ValueError, match="already in the pool"):
        QueryPool(["a query", "  a   query "])  # one-lined seeds collide
    with pytest.raises(ValueError, match="q00099"):
        pool.admit(StructuredQuery("y"), "y", 1, parent_id="q00099")
    with pytest.raises(ValueError, match="q00042"):
        pool.admit(StructuredQuery("z"), "z", 1, "q00000", "q00042", "mix")
    assert len(pool.records) == 4  # failed admissions leave no record


def test_retire_to_drops_least_informative_measured_first():
    pool = QueryPool([f"query {i}" for i in range(6)])
    # q00000..q00003 measured; q00004, q00005 never measured
    pool.informativeness.update({"q00000": 0.5, "q00001": 0.1, "q00002": 0.9, "q00003": 0.1})
    retired = pool.retire_to(4)
    assert retired == ["q00001", "q00003"]  # lowest first; tie: older first
    assert pool.active == ["q00000", "q00002", "q00004", "q00005"]
    # protected and unmeasured kept even past capacity
    retired = pool.retire_to(1, protected=["q00000"])
    assert retired == ["q00002"]
    assert pool.active == ["q00000", "q00004", "q00005"]
    assert pool.retire_to(10) == []
    # retired queries stay recorded, and their text stays known
    assert "query 1" in pool.texts() and len(pool.records) == 6
    rows = {row["query_id"]: row for row in pool.lineage_rows()}
    assert rows["q00001"]["active"] is False and rows["q00000"]["active"] is True
    assert rows["q00001"]["informativeness"] == 0.1 and rows["q00004"]["informativeness"] is None


def test_ancestry_and_lineage_rows():
    pool = QueryPool(SEEDS[:2])
    a = pool.admit(
        StructuredQuery(SEEDS[0], "best"),
        "best " + SEEDS[0],
        1,
        "q00000",
        None,
        "deepen",
        "grammar",
    )
    b = pool.admit(
        StructuredQuery(SEEDS[1], "best"),
        "best " + SEEDS[1],
        2,
        a.query_id,
        "q00001",
        "mix",
        "grammar",
    )
    c = pool.admit(
        StructuredQuery(SEEDS[1], "best", "for a student"),
        "lm text",
        3,
        b.query_id,
        None,
        "shift_persona",
        "lm",
    )
    assert pool.ancestry(c.query_id) == [c.query_id, b.query_id, a.query_id, "q00000"]
    assert pool.ancestry("q00001") == ["q00001"]
    rows = pool.lineage_rows()
    assert [row["query_id"] for row in rows] == list(pool.records)
    row = rows[-1]
    assert row == {
        "query_id": c.query_id,
        "text": "lm text",
        "generation": 3,
        "parent_id": b.query_id,
        "second_parent_id": None,
        "operator": "shift_persona",
        "engine": "lm",
        "topic": SEEDS[1],
        "intent": "best",
        "persona": "for a student",
        "constraints": [],
        "informativeness": None,
        "active": True,
    }
    assert rows[3]["second_parent_id"] == "q00001"


# --------------------------------------------------------------------------- evolve / creator_step


def assert_lineage(pool, children, generation, operators, grammar):
    texts = [record.text for record in pool.records.values()]
    assert len(texts) == len(set(texts))
    for child in children:
        assert pool.records[child.query_id] is child
        assert child.parent_id in pool.records
        assert child.generation == generation
        assert child.operator in operators
        assert child.engine == "grammar"
        assert child.text == child.query.render()
        assert grammar.problems(child.query) == []
        if child.operator == "mix":
            assert child.second_parent_id in pool.records
            assert child.second_parent_id != child.parent_id
            assert child.query.topic == pool.records[child.second_parent_id].query.topic
        else:
            assert child.second_parent_id is None
        assert pool.ancestry(child.query_id)[-1] in {f"q{i:05d}" for i in range(len(SEEDS))}


def test_creator_step_lineage_validity_and_sample_count():
    grammar = seed_grammar()
    settings = EvolveSettings(variants=3)
    pool = QueryPool(SEEDS)
    rng = np.random.default_rng(5)
    values = {f"q{i:05d}": float(i) for i in range(len(SEEDS))}
    for generation in (1, 2, 3):
        size = len(pool.active)
        step = creator_step(pool, fixed_measure(values), 0.25, settings, grammar, generation, rng)
        assert step.generation == generation
        assert list(step.measured) == pool.active[:size]
        assert len(step.sampled) == sample_count(size, 0.25) == len(set(step.sampled))
        assert len(step.children) <= len(step.sampled) * settings.variants
        assert len(step.children) > 0
        assert_lineage(pool, step.children, generation, EVOLVE_OPERATORS, grammar)
        for child in step.children:
            assert child.parent_id in step.sampled
    assert len(pool.lineage_rows()) == len(pool.records)
    with pytest.raises(ValueError, match="shape"):
        creator_step(pool, lambda active: np.zeros(2), 0.25, settings, grammar, 4, rng)


def test_creator_step_restricted_operators():
    grammar = seed_grammar()
    operators = ("deepen", "mix")
    settings = EvolveSettings(variants=4, operators=operators)
    pool = QueryPool(SEEDS)
    rng = np.random.default_rng(3)
    made = []
    for generation in (1, 2, 3):
        step = creator_step(pool, fixed_measure({}), 0.5, settings, grammar, generation, rng)
        assert step.children
        assert_lineage(pool, step.children, generation, operators, grammar)
        made += step.children
    # mixing two plain seeds only rewrites the partner (a known text, redrawn), so mixes
    # appear once deepened queries are in the pool
    assert {child.operator for child in made} == set(operators)


def test_least_informative_query_is_never_sampled_by_weight():
    grammar = seed_grammar()
    settings = EvolveSettings(variants=1, operators=("add_constraint",))
    # q00003 has the minimum; the other 7 have positive normalized weight, and 2 < 7 are drawn
    values = {f"q{i:05d}": float(v) for i, v in enumerate([3, 1, 4, 0, 5, 9, 2, 6])}
    weighted_counts: dict[str, int] = {}
    uniform_counts: dict[str, int] = {}
    for seed in range(150):
        for uniform, counts in ((False, weighted_counts), (True, uniform_counts)):
            pool = QueryPool(SEEDS)
            step = creator_step(
                pool,
                fixed_measure(values),
                0.25,
                settings,
                grammar,
                1,
                np.random.default_rng(seed),
                uniform=uniform,
            )
            assert len(step.sampled) == 2
            for query_id in step.sampled:
                counts[query_id] = counts.get(query_id, 0) + 1
    assert "q00003" not in weighted_counts
    assert weighted_counts["q00005"] > weighted_counts["q00001"]  # weight 1 vs 1/9
    assert uniform_counts.get("q00003", 0) > 0  # the uniform baseline does sample it


def test_forbidden_texts_are_never_admitted():
    parent_text = "vacation in Hawaii"
    grammar = seed_grammar()
    one_constraint = {f"{parent_text} {c}" for c in DEFAULT_CONSTRAINTS}
    one_detail = {f"{parent_text} {d}" for d in DEFAULT_DETAILS}
    # only add_constraint enabled, every variant forbidden: nothing can be admitted
    pool = QueryPool(SEEDS)
    children = evolve(
        pool,
        ["q00000"],
        grammar,
        EvolveSettings(variants=5, operators=("add_constraint",)),
        1,
        np.random.default_rng(0),
        forbidden=frozenset(one_constraint),
    )
    assert children == [] and len(pool.records) == len(SEEDS)
    # with concretize too, only detail variants come out (no forbidden one)
    for seed in range(20):
        pool = QueryPool(SEEDS)
        children = evolve(
            pool,
            ["q00000"],
            grammar,
            EvolveSettings(variants=4, operators=("add_constraint", "concretize")),
            1,
            np.random.default_rng(seed),
            forbidden=frozenset(one_constraint),
        )
        texts = {record.text for record in pool.records.values()}
        assert not texts & one_constraint
        assert {child.text for child in children} <= one_detail
        assert all(child.operator == "concretize" for child in children)
    # a forbidden topic text never appears via shift_topic / mix either
    heldout = {"home workout plan"}
    for seed in range(20):
        pool = QueryPool(SEEDS[:-1])
        small = QueryGrammar(topics=SEEDS)  # the grammar could write it
        evolve(
            pool,
            list(pool.active),
            small,
            EvolveSettings(variants=4, operators=("shift_topic",)),
            1,
            np.random.default_rng(seed),
            forbidden=frozenset(heldout),
        )
        assert not pool.texts() & heldout


def test_evolve_skips_a_variant_after_max_attempts():
    # one option per variant: the second variant collides with the first and is skipped
    grammar = QueryGrammar(topics=("a",), constraints=("x",), details=("y",))
    pool = QueryPool(["a"])
    children = evolve(
        pool,
        ["q00000"],
        grammar,
        EvolveSettings(variants=3, operators=("add_constraint",)),
        1,
        np.random.default_rng(0),
    )
    assert [child.text for child in children] == ["a x"]
    assert MAX_ATTEMPTS >= 1


def test_creator_is_deterministic_per_seed():
    def run(seed):
        pool = QueryPool(SEEDS)
        rng = np.random.default_rng(seed)
        values = {f"q{i:05d}": float((i * 5) % 8) for i in range(len(SEEDS))}
        for generation in (1, 2):
            creator_step(
                pool, fixed_measure(values), 0.5, EvolveSettings(), seed_grammar(), generation, rng
            )
        return pool.lineage_rows()

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_evolve_settings_validation():
    assert EvolveSettings().operators == EVOLVE_OPERATORS
    with pytest.raises(ValueError, match="variants"):
        EvolveSettings(variants=0)
    with pytest.raises(ValueError, match="allowed") as caught:
        EvolveSettings(operators=("deepen", "paraphrase"))
    assert ", ".join(EVOLVE_OPERATORS) in str(caught.value)
    with pytest.raises(ValueError, match="allowed"):
        EvolveSettings(operators=())


# --------------------------------------------------------------------------- held-out split


def test_split_heldout():
    items = [f"q{i}" for i in range(8)]
    training, held = split_heldout(items, ["q3", "q6"], 0.5, np.random.default_rng(0))
    assert training == ["q0", "q1", "q2", "q4", "q5", "q7"] and held == ["q3", "q6"]
    for seed in range(10):
        training, held = split_heldout(items, [], 0.25, np.random.default_rng(seed))
        assert len(held) == 2 and len(training) == 6
        assert set(training).isdisjoint(held) and set(training) | set(held) == set(items)
        assert training == [item for item in items if item in training]  # order kept
        assert held == [item for item in items if item in held]
        assert (training, held) == split_heldout(items, [], 0.25, np.random.default_rng(seed))
    # a tiny fraction holds out one, a large one leaves one for training
    assert len(split_heldout(items, [], 0.01, np.random.default_rng(0))[1]) == 1
    assert len(split_heldout(items, [], 0.99, np.random.default_rng(0))[0]) == 1
    assert split_heldout(items, [], 0.0, np.random.default_rng(0)) == (items, [])
    assert split_heldout(["only"], [], 0.0, np.random.default_rng(0)) == (["only"], [])
    with pytest.raises(ValueError, match="at least 2"):
        split_heldout(["only"], [], 0.25, np.random.default_rng(0))


def scenario_data(**queries):
    return {
        "name": "eva-creator",
        "seed": 0,
        "rounds": 5,
        "mechanism": {"kind": "token_auction", "aggregation": "linear", "max_new_tokens": 8},
        "queries": {"stream": "eva", "items": list(SEEDS), **queries},
        "eva": {"grammar": {"topics": ["ski trip to Colorado", "pizza delivery near me"]}},
        "advertisers": [
            {
                "name": "Alpha",
                "context": "Alpha Airlines: nonstop flights to Hawaii.",
                "valuation": {"dist": "fixed", "value": 1.0},
            }
        ],
    }


def test_split_queries_and_build_grammar_exclude_heldout():
    scenario = scenario_from_dict(scenario_data(heldout_fraction=0.25))
    split = split_queries(scenario, seed=4)
    assert len(split.heldout) == 2 and len(split.training) == 6
    assert split == split_queries(scenario, seed=4)
    grammar = build_grammar(eva_config(scenario), split)
    assert not set(grammar.topics) & set(split.heldout)
    assert set(grammar.topics) == set(split.training) | {
        "ski trip to Colorado",
        "pizza delivery near me",
    }
    # explicit held-out texts win (the loader keeps them outside the items) and are removed
    # from the extra grammar topics
    explicit = ["honeymoon in Hawaii", "pizza delivery near me"]
    scenario = scenario_from_dict(scenario_data(heldout=explicit))
    split = split_queries(scenario, seed=4)
    assert split.heldout == explicit
    assert split.training == list(SEEDS)
    grammar = build_grammar(eva_config(scenario), split)
    assert grammar.topics == (*SEEDS, "ski trip to Colorado")


# --------------------------------------------------------------------------- LM rewriter


class FakeLM:
    """Encodes text as code points; ``reply(prompt)`` writes the completion."""

    def __init__(self, reply, max_positions=None):
        self.reply = reply
        self.calls = []
        self.prompt = PromptBuilder("plain")  # the bundled LM's format
        self.max_positions = max_positions

    def encode(self, text):
        return [ord(ch) for ch in text]

    def encode_prompt(self, text):  # a tokenizer that puts no BOS before text
        return self.encode(text)

    def sample(self, prompts, max_new_tokens, temperature, seed):
        self.calls.append((prompts, max_new_tokens, temperature, seed))
        return [[ord(ch) for ch in self.reply(prompt)] for prompt in prompts]

    def decode(self, tokens):
        return "".join(chr(token) for token in tokens)


def instruction_and_parent(prompt):
    match = re.fullmatch(
        r"Rewrite the search query as a new search query\. (.*)\nQuery: (.*)\nRewritten query:",
        prompt,
    )
    assert match, prompt
    return match.group(1), match.group(2)


def keeps_phrase(prompt):
    instruction, parent = instruction_and_parent(prompt)
    return f" {parent}, rewritten: {instruction}\nQuery: ignored second line"


def test_valid_rewrite():
    assert valid_rewrite(
        "cheap vacation in Hawaii ON A BUDGET", "vacation in Hawaii", "on a budget"
    )
    assert not valid_rewrite("cheap vacation in Hawaii", "vacation in Hawaii", "on a budget")
    assert not valid_rewrite("Query: x on a budget", "vacation in Hawaii", "on a budget")
    assert not valid_rewrite("reply: on a budget", "vacation in Hawaii", "on a budget")
    assert not valid_rewrite("", "vacation in Hawaii", "")
    assert not valid_rewrite("same", "same", "")
    assert not valid_rewrite("on a budget " + "x" * 200, "vacation in Hawaii", "on a budget")


def test_lm_rewriter_accepts_and_rejects_with_counters():
    pool = QueryPool(SEEDS)
    parent = pool.records["q00000"]
    child = StructuredQuery(parent.query.topic, constraints=("on a budget",))
    assert added_part(parent.query, child, "add_constraint") == "on a budget"
    lm = FakeLM(keeps_phrase)
    rewriter = LMRewriter(lm, max_new_tokens=17, temperature=0.3)
    text = rewriter(parent, "add_constraint", child, 1234)
    assert text == "vacation in Hawaii, rewritten: Add the constraint 'on a budget'."
    (prompts, max_new_tokens, temperature, seed) = lm.calls[0]
    assert (max_new_tokens, temperature, seed) == (17, 0.3, 1234)
    assert "Query: vacation in Hawaii\n" in prompts[0]
    assert (rewriter.accepted, rewriter.rejected) == (1, 0)
    for reply in ("a rewrite without the phrase", "Query: vacation on a budget", "\n\n"):
        rejecting = LMRewriter(FakeLM(lambda prompt, reply=reply: reply))
        assert rejecting(parent, "add_constraint", child, 0) is None
        assert (rejecting.accepted, rejecting.rejected) == (0, 1)
    # the phrase only on the second line: rejected
    second_line = LMRewriter(FakeLM(lambda prompt: "plain rewrite\non a budget"))
    assert second_line(parent, "add_constraint", child, 0) is None
    assert second_line.rejected == 1


def test_evolve_with_rewriter_engine_and_fallback():
    grammar = seed_grammar()
    settings = EvolveSettings(variants=4)
    good = LMRewriter(FakeLM(keeps_phrase))
    pool = QueryPool(SEEDS)
    children = evolve(
        pool, ["q00000", "q00004"], grammar, settings, 1, np.random.default_rng(8), rewriter=good
    )
    assert children and all(child.engine == "lm" for child in children)
    for child in children:
        assert child.text != child.query.render()
        parent = pool.records[child.parent_id]
        assert added_part(parent.query, child.query, child.operator).lower() in child.text.lower()
        assert grammar.problems(child.query) == []
    assert good.accepted >= len(children) and good.rejected == 0

    for reply in ("unrelated words", "Query: vacation in Hawaii on a budget"):
        bad = LMRewriter(FakeLM(lambda prompt, reply=reply: reply))
        pool = QueryPool(SEEDS)
        children = evolve(
            pool, ["q00000", "q00004"], grammar, settings, 1, np.random.default_rng(8), rewriter=bad
        )
        assert children and all(child.engine == "grammar" for child in children)
        assert all(child.text == child.query.render() for child in children)
        assert bad.accepted == 0 and bad.rejected >= len(children)
        # same rng, no rewrite: exactly the grammar-only children
        plain_pool = QueryPool(SEEDS)
        plain = evolve(
            plain_pool, ["q00000", "q00004"], grammar, settings, 1, np.random.default_rng(8)
        )
        assert [c.text for c in plain] == [c.text for c in children]


def test_a_rewrite_prompt_the_model_cannot_hold_is_not_sampled():
    """A 128-position model raised an IndexError inside its forward (``market-sim audit`` with
    a short-context model and ``rewriter = "lm"``): the structure is rendered instead."""
    pool = QueryPool(SEEDS)
    parent = pool.records["q00000"]
    child = StructuredQuery(parent.query.topic, constraints=("on a budget",))
    prompt = rewrite_prompt(parent.text, "Add the constraint 'on a budget'.", FakeLM(str))
    for spare, sampled in [(0, True), (-1, False)]:  # positions left beyond the 17 new tokens
        lm = FakeLM(keeps_phrase, max_positions=len(prompt) + 17 + spare)
        rewriter = LMRewriter(lm, max_new_tokens=17)
        text = rewriter(parent, "add_constraint", child, 0)
        assert (text is not None, len(lm.calls), rewriter.too_long) == (
            (True, 1, 0) if sampled else (False, 0, 1)
        )


def test_evolve_admits_only_what_the_caller_admits_and_redraws_otherwise():
    """A child whose prompts would not fit the model is redrawn like a known text; a rewrite
    that does not fit falls back to the rendered structure."""
    grammar = seed_grammar()
    settings = EvolveSettings(variants=4)
    parents = list(QueryPool(SEEDS).active)
    unlimited = evolve(QueryPool(SEEDS), parents, grammar, settings, 1, np.random.default_rng(3))
    for limit in (30, 35, 40):
        assert any(len(child.text) > limit for child in unlimited)  # the limit binds
        children = evolve(
            QueryPool(SEEDS),
            parents,
            grammar,
            settings,
            1,
            np.random.default_rng(3),
            admissible=lambda text, limit=limit: len(text) <= limit,
        )
        assert children and all(len(child.text) <= limit for child in children)
    long_rewrite = LMRewriter(
        FakeLM(lambda prompt: keeps_phrase(prompt).replace("\n", " " + "x" * 40 + "\n", 1))
    )
    pool = QueryPool(SEEDS)
    children = evolve(
        pool,
        ["q00000"],
        grammar,
        settings,
        1,
        np.random.default_rng(8),
        rewriter=long_rewrite,
        admissible=lambda text: "x" * 40 not in text,
    )
    assert children and all(child.engine == "grammar" for child in children)
    assert long_rewrite.accepted >= len(children)

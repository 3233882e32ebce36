"""eva end to end on the bundled LM: experiment, resume, lineage, CLI, audit and market stream."""

import copy
import dataclasses
import json
import math
import shutil
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from market_sim.cli import main
from market_sim.config.fields import ScenarioError
from market_sim.eva.audit import (
    AUDIT_FILE,
    AUDIT_SCHEMA,
    AUDIT_TOP_FILE,
    QueryRegret,
    audit_labels,
    audit_mechanism,
    mechanism_label,
    run_audit,
    top_report,
)
from market_sim.eva.creator import LMRewriter
from market_sim.eva.experiment import (
    EVA_FILE,
    EVA_SCHEMA,
    LINEAGE_SCHEMA,
    QUERIES_FILE,
    SUMMARY_FILE,
    SeedRun,
    run_eva,
    seed_dir,
)
from market_sim.eva.stream import EvaQueryStream
from market_sim.lm.model import LanguageModel
from market_sim.plugins import build_platform
from market_sim.provenance import scenario_sha256
from market_sim.run import run_scenario
from market_sim.scenario import load_scenario, scenario_from_dict

torch.set_num_threads(1)

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "eva_queries.toml"
ITEMS = [
    "vacation in Hawaii",
    "family trip to Maui",
    "cheap flights to Honolulu",
    "best laptop for college",
    "best food for my dog",
    "quick dinner tonight",
]
HELDOUT = ["honeymoon in Hawaii", "healthy treats for cats"]
GENERATIONS = 2
PAIRS = 4
REPLIES = 3
TINY_EVA = {
    "replies": REPLIES,
    "pairs": PAIRS,
    "steps": 2,
    "batch_size": 4,
    "heldout_replies": 2,
    "variants": 2,
    "learning_rate": 1e-2,  # large enough that a trained solver's held-out replies change
}
TINY_SETS = [
    'model.device="cpu"',
    "mechanism.max_new_tokens=8",
    f"queries.items={json.dumps(ITEMS)}",
    f"queries.heldout={json.dumps(HELDOUT)}",
    *(f"eva.{key}={value}" for key, value in TINY_EVA.items()),
]


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, table by table (a deep copy)."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def eva_scenario(changes: dict | None = None, advertisers: int = 3):
    """The bundled eva scenario shrunk to test size, with ``changes`` merged over it."""
    data = tomllib.loads(SCENARIO.read_text(encoding="utf-8"))
    tiny = {
        "model": {"device": "cpu"},
        "mechanism": {"max_new_tokens": 8},
        "queries": {"items": ITEMS, "heldout": HELDOUT},
        "eva": TINY_EVA,
    }
    data = merge(merge(data, tiny), changes or {})
    data["advertisers"] = data["advertisers"][:advertisers]
    return scenario_from_dict(data, SCENARIO.parent)


def parameters(lm: LanguageModel) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in lm.model.state_dict().items()}


@pytest.fixture(scope="module")
def bundled_lm() -> LanguageModel:
    return LanguageModel.load("bundled:tiny-ads", device="cpu")


@pytest.fixture(scope="module")
def eva_run(bundled_lm, tmp_path_factory):
    """One seed, two generations, tiny settings, written to a folder."""
    scenario = eva_scenario()
    out = tmp_path_factory.mktemp("eva")
    before = parameters(bundled_lm)
    result = run_eva(scenario, bundled_lm, GENERATIONS, [0], out)
    after = parameters(bundled_lm)
    judge_unchanged = all(torch.equal(before[name], after[name]) for name in before)
    return scenario, result, out, judge_unchanged


def check_lineage(queries: pl.DataFrame, items: set[str], heldout: set[str], generations: int):
    """Lineage invariants of one seed's ``queries.parquet``."""
    assert queries.schema == pl.Schema(LINEAGE_SCHEMA)
    assert queries["seed"].n_unique() == 1
    held = queries.filter(pl.col("heldout"))
    pool = queries.filter(~pl.col("heldout"))
    assert set(held["text"]) == heldout and held["query_id"].str.starts_with("h").all()
    assert pool["text"].n_unique() == pool.height  # every admitted text is new
    assert not heldout & set(pool["text"])
    ids = dict(zip(pool["query_id"], pool["generation"], strict=True))
    seeds = pool.filter(pl.col("generation") == 0)
    assert set(seeds["text"]) == items
    assert (seeds["engine"] == "seed").all() and seeds["operator"].is_null().all()
    assert seeds["parent_id"].is_null().all() and seeds["second_parent_id"].is_null().all()
    evolved = pool.filter(pl.col("generation") >= 1)
    assert set(evolved["generation"]) == set(range(1, generations + 1))
    assert evolved["operator"].is_not_null().all() and (evolved["engine"] == "grammar").all()
    assert evolved["parent_id"].is_not_null().all()
    assert not heldout & set(evolved["topic"])
    for row in evolved.iter_rows(named=True):
        assert row["parent_id"] in ids and ids[row["parent_id"]] < row["generation"], row
        assert (row["second_parent_id"] is not None) == (row["operator"] == "mix"), row
        if row["second_parent_id"] is not None:
            assert row["second_parent_id"] in ids, row
            assert ids[row["second_parent_id"]] < row["generation"], row


# ----------------------------------------------------------------------------- eva experiment


def test_eva_run_writes_both_methods_per_generation(eva_run):
    scenario, result, out, judge_unchanged = eva_run
    table = pl.read_parquet(out / EVA_FILE)
    assert table.schema == pl.Schema(EVA_SCHEMA)
    assert table.equals(result.table)
    assert pl.read_parquet(seed_dir(out, 0) / EVA_FILE).equals(table)
    assert sorted(zip(table["method"], table["generation"], strict=True)) == sorted(
        (method, g) for method in ("static", "eva") for g in range(GENERATIONS + 1)
    )
    assert (table["seed"] == 0).all()

    # generation 0 is the platform LM itself, the same row for both methods
    base = table.filter(pl.col("generation") == 0).sort("method").drop("method")
    assert base.height == 2 and base[0].equals(base[1])
    assert base["train_pairs"].to_list() == [0, 0] and base["dpo_loss_first"].is_null().all()

    trained = table.filter(pl.col("generation") >= 1)
    assert (trained["train_pairs"] + trained["skipped_ties"] == PAIRS).all()
    assert (trained["train_pairs"] >= 1).all()
    for loss in trained["dpo_loss_first"]:
        assert loss == pytest.approx(math.log(2.0), abs=1e-5)  # policy == reference at start
    # held-out evaluation reads the trained solver, not the platform LM
    assert (trained["heldout_reward"] != base["heldout_reward"][0]).any()
    assert judge_unchanged

    static = table.filter(pl.col("method") == "static")
    assert (static["pool_size"] == len(ITEMS)).all() and (static["estimate_replies"] == 0).all()
    eva = table.filter(pl.col("method") == "eva").sort("generation")
    born_first = result.queries.filter(pl.col("generation") == 1).height
    assert eva["pool_size"].to_list() == [len(ITEMS), len(ITEMS), len(ITEMS) + born_first]
    assert eva["estimate_replies"].to_list() == [0, *(eva["pool_size"][1:] * REPLIES)]
    assert eva["informativeness_mean"][1:].is_not_null().all()

    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["seeds"] == [0] and summary["generations"] == GENERATIONS
    assert summary["heldout_reward_mean"]["eva"] == pytest.approx(eva["heldout_reward"].to_list())
    assert load_scenario(out / "scenario.toml") == scenario
    assert pl.read_parquet(out / QUERIES_FILE).equals(result.queries)


def test_eva_counts_the_lm_rewrites_of_each_generation(bundled_lm, monkeypatch):
    """rewrites_* count every rewriter call of an eva generation, by outcome, and are null
    where no LM rewrite can happen (static rows, generation 0, the grammar rewriter)."""
    outcomes: list[str] = []
    original = LMRewriter.__call__

    def spy(self, parent, operator, child, seed):
        before = (self.accepted, self.rejected, self.too_long)
        text = original(self, parent, operator, child, seed)
        after = (self.accepted, self.rejected, self.too_long)
        changed = [a - b for a, b in zip(after, before, strict=True)]
        outcomes.append(("valid", "invalid", "too_long")[changed.index(1)])
        return text

    monkeypatch.setattr(LMRewriter, "__call__", spy)
    scenario = eva_scenario({"eva": {"rewriter": "lm"}})
    run = SeedRun(scenario, bundled_lm, 0)
    per_generation = []
    for generation in (1, 2):
        outcomes.clear()
        run.eva_generation(generation)
        per_generation.append([outcomes.count(kind) for kind in ("valid", "invalid", "too_long")])
    table = pl.DataFrame(run.rows, schema=EVA_SCHEMA)
    counted = table.select("rewrites_valid", "rewrites_invalid", "rewrites_too_long").rows()
    assert [list(row) for row in counted] == per_generation
    assert sum(map(sum, per_generation)) > 0  # the spy saw rewrites, so the check has content
    lineage = pl.from_dicts(run.pool.lineage_rows())
    for generation, (valid, _, _) in enumerate(per_generation, start=1):
        written = lineage.filter(pl.col("generation") == generation, pl.col("engine") == "lm")
        assert written.height <= valid  # an admitted LM text was a valid rewrite


def test_eva_rewrite_counts_are_null_without_the_lm_rewriter(eva_run):
    _, result, _, _ = eva_run  # the bundled LM: rewriter "auto" renders the grammar
    columns = ["rewrites_valid", "rewrites_invalid", "rewrites_too_long"]
    assert result.table.select(columns).null_count().row(0) == (result.table.height,) * 3


def test_eva_records_how_it_was_made(eva_run):
    _, _, out, _ = eva_run
    record = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert record["settings"] == {"seeds": [0], "generations": GENERATIONS}
    scenario_toml = (out / "scenario.toml").read_text(encoding="utf-8")
    assert record["provenance"]["scenario_sha256"] == scenario_sha256(scenario_toml)
    assert record["provenance"]["model"]["weights_sha256"]


def test_eva_lineage_keeps_heldout_queries_out(eva_run):
    _, result, out, _ = eva_run
    queries = pl.read_parquet(seed_dir(out, 0) / QUERIES_FILE)
    assert queries.sort("query_id").equals(result.queries)
    check_lineage(queries, set(ITEMS), set(HELDOUT), GENERATIONS)


def test_eva_never_shifts_a_query_onto_a_heldout_topic(bundled_lm):
    # a seed query shifted to another topic is just another seed query (rejected as known),
    # so topics move in generation 2, on children that carry a constraint
    operators = ["add_constraint", "shift_topic"]
    changes = {"eva": {"operators": operators, "variants": 4, "sample_fraction": 0.5}}
    run = SeedRun(eva_scenario(changes), bundled_lm, 0)
    run.eva_generation(1)
    run.eva_generation(2)
    queries = run.lineage()
    check_lineage(queries, set(ITEMS), set(HELDOUT), 2)
    shifted = queries.filter(pl.col("operator") == "shift_topic")
    parents = queries.select(pl.col("query_id").alias("parent_id"), pl.col("topic").alias("was"))
    moved = shifted.join(parents, on="parent_id").filter(pl.col("topic") != pl.col("was"))
    assert moved.height >= 5
    assert set(moved["topic"]) <= set(ITEMS)


def test_eva_is_deterministic_per_seed(bundled_lm, tmp_path):
    # held-out queries drawn from the items by a seeded split this time
    items = [*ITEMS, *HELDOUT]
    scenario = eva_scenario({"queries": {"items": items, "heldout": [], "heldout_fraction": 0.25}})
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    result = run_eva(scenario, bundled_lm, 1, [5], first)
    run_eva(scenario, bundled_lm, 1, [5], second)
    for name in (EVA_FILE, QUERIES_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    held = set(result.queries.filter(pl.col("heldout"))["text"])
    assert len(held) == 2 and held < set(items)
    check_lineage(result.queries, set(items) - held, held, 1)
    changed = run_eva(scenario, bundled_lm, 1, [6], other)
    assert not changed.table.drop("seed").equals(result.table.drop("seed"))


def spy_on_seed_runs(monkeypatch) -> list[int]:
    """The seeds :meth:`SeedRun.run` is called for, from now on, in order."""
    ran: list[int] = []
    real_run = SeedRun.run

    def spy(self, generations, progress=False):
        ran.append(self.seed)
        return real_run(self, generations, progress)

    monkeypatch.setattr(SeedRun, "run", spy)
    return ran


def test_eva_resumes_finished_seeds(eva_run, bundled_lm, tmp_path, monkeypatch):
    scenario, result, out, _ = eva_run
    folder = tmp_path / "resume"
    shutil.copytree(out, folder)

    def refuse(self, generations, progress=False):
        raise AssertionError(f"seed {self.seed} was recomputed")

    monkeypatch.setattr(SeedRun, "run", refuse)
    again = run_eva(scenario, bundled_lm, GENERATIONS, [0], folder)
    assert again.table.equals(result.table) and again.queries.equals(result.queries)

    monkeypatch.undo()
    ran = spy_on_seed_runs(monkeypatch)
    both = run_eva(scenario, bundled_lm, GENERATIONS, [0, 1], folder)
    assert ran == [1]
    assert both.table.filter(pl.col("seed") == 0).equals(result.table)
    assert set(both.table["seed"]) == {0, 1} and both.table.height == 2 * result.table.height
    assert pl.read_parquet(folder / EVA_FILE).equals(both.table)
    assert json.loads((folder / SUMMARY_FILE).read_text())["seeds"] == [0, 1]
    assert (seed_dir(folder, 1) / QUERIES_FILE).exists()

    # a seed folder missing a file, or with another number of generations, is run again
    ran.clear()
    (seed_dir(folder, 1) / QUERIES_FILE).unlink()
    shorter = run_eva(scenario, bundled_lm, 1, [0, 1], folder)
    assert ran == [0, 1]
    assert shorter.table["generation"].max() == 1


@pytest.mark.parametrize(
    ("name", "content"),
    # None: no columns; "old": a table written before the rewrites_* columns existed
    [(EVA_FILE, b"garbage"), (QUERIES_FILE, b"garbage"), (EVA_FILE, None), (EVA_FILE, "old")],
)
def test_eva_reruns_a_seed_whose_files_are_damaged(
    name, content, eva_run, bundled_lm, tmp_path, monkeypatch
):
    """Found by an audit: resuming over a damaged seed file raised a polars traceback."""
    scenario, result, out, _ = eva_run
    folder = tmp_path / "damaged"
    shutil.copytree(out, folder)
    damaged = seed_dir(folder, 0) / name
    if content is None:
        pl.DataFrame({"x": [1]}).write_parquet(damaged)
    elif content == "old":
        pl.read_parquet(damaged).drop("rewrites_valid").write_parquet(damaged)
    else:
        damaged.write_bytes(content)
    ran = spy_on_seed_runs(monkeypatch)
    again = run_eva(scenario, bundled_lm, GENERATIONS, [0], folder)
    assert ran == [0]  # run again, and deterministic: the same tables as the first time
    assert again.table.equals(result.table) and again.queries.equals(result.queries)


# ----------------------------------------------------------------------------- command line


@pytest.mark.parametrize("command", ["eva", "audit"])
@pytest.mark.parametrize("generations", ["0", "99999999999999999999999"])
def test_cli_rejects_zero_generations(command, generations, tmp_path, capsys):
    out = tmp_path / "out"
    args = [command, str(SCENARIO), "--generations", generations, "--out", str(out)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--generations" in error, error
    assert not out.exists()


def test_cli_rejects_seed_with_seeds(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eva", str(SCENARIO), "--generations", "1", "--seed", "1", "--seeds", "0-1"]
    assert main([*args, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--seed" in error and "--seeds" in error, error
    assert not out.exists()


def test_cli_eva_needs_heldout_queries(tmp_path, capsys):
    out = tmp_path / "out"
    sets = [
        *TINY_SETS,
        'queries.stream="static"',
        "queries.heldout=[]",
        "queries.heldout_fraction=0.0",
    ]
    args = ["eva", str(SCENARIO), "--generations", "1", "--out", str(out), "--no-progress"]
    assert main([*args, *(part for s in sets for part in ("--set", s))]) == 2
    # the model is loaded before the split is checked: transformers may print a loading bar
    error = capsys.readouterr().err
    assert error.count("market-sim: error:") == 1, error
    assert error.endswith("\n") and "queries.heldout" in error.splitlines()[-1], error
    assert not out.exists()


@pytest.mark.parametrize("command", ["eva", "audit"])
def test_cli_reports_a_setting_in_one_line_and_a_fault_with_its_traceback(
    command, tmp_path, capsys, monkeypatch
):
    """Only EvaSettingError is bad input (exit 2); another ValueError is a bug to show whole."""
    import market_sim.eva.audit
    import market_sim.eva.experiment
    from market_sim.eva.errors import EvaSettingError

    module = market_sim.eva.experiment if command == "eva" else market_sim.eva.audit
    function = "run_eva" if command == "eva" else "run_audit"

    def setting(*args, **kwargs):
        raise EvaSettingError("eva.replies: no training query had a reward spread")

    def fault(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    args = [command, str(SCENARIO), "--generations", "1", "--no-progress"]
    args += [part for s in TINY_SETS for part in ("--set", s)]
    monkeypatch.setattr(module, function, setting)
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err
    assert error.endswith("market-sim: error: eva.replies: no training query had a reward spread\n")
    monkeypatch.setattr(module, function, fault)
    with pytest.raises(ValueError, match="could not be broadcast"):
        main([*args, "--out", str(tmp_path / "b")])


def test_cli_eva_writes_its_results(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eva", str(SCENARIO), "--generations", "1", "--out", str(out)]
    assert main([*args, *(part for s in TINY_SETS for part in ("--set", s))]) == 0
    captured = capsys.readouterr()
    assert "held-out reward" in captured.out
    # stderr is not a terminal here: progress comes as plain lines, the last one at 100%
    seed = load_scenario(SCENARIO).seed
    assert f"eva seed {seed}: 1/1 generations (100%)" in captured.err, captured.err
    for name in (EVA_FILE, QUERIES_FILE, SUMMARY_FILE, "scenario.toml"):
        assert (out / name).is_file(), name
    table = pl.read_parquet(out / EVA_FILE)
    assert table.height == 4 and set(table["generation"]) == {0, 1}
    assert "eva - static (paired)" in captured.out  # the table with intervals


def test_cli_eva_without_the_summary_command_prints_the_means(tmp_path, capsys, monkeypatch):
    import market_sim.cli as cli

    monkeypatch.setattr(cli.extensions, "extension_commands", lambda: {})
    out = tmp_path / "out"
    args = ["eva", str(SCENARIO), "--generations", "1", "--seeds", "0-1", "--out", str(out)]
    sets = [part for s in TINY_SETS for part in ("--set", s)]
    assert main([*args, "--no-progress", *sets]) == 0
    captured = capsys.readouterr()
    assert "the 'summary' command is not registered" in captured.err
    means = (
        pl.read_parquet(out / EVA_FILE)
        .group_by("method", "generation")
        .agg(pl.col("heldout_reward").mean())  # over the two seeds
        .sort("generation")
        .group_by("method", maintain_order=True)
        .agg(pl.col("heldout_reward"))
    )
    for method, rewards in means.iter_rows():
        line = next(row for row in captured.out.splitlines() if row.split()[:1] == [method])
        # printed with 4 decimals: half a unit of the last place
        shown = [float(value) for value in line.split()[1:]]
        assert shown == pytest.approx(rewards, abs=5e-5)


# ----------------------------------------------------------------------------- audit

AUDIT_TOP = 3
AUDIT_CHANGES = {
    "eva": {"variants": 2},
    "audit": {"draws": 1, "top": AUDIT_TOP},
    "regret": {"multiplier_points": 5, "refinements": 1, "distortion_points": 1},
}


@pytest.fixture(scope="module")
def audit_run(bundled_lm, tmp_path_factory):
    scenario = eva_scenario(AUDIT_CHANGES, advertisers=2)
    assert [m.payment for m in scenario.audit.mechanisms] == ["first_price", "second_price"]
    out = tmp_path_factory.mktemp("audit")
    table = run_audit(scenario, bundled_lm, GENERATIONS, [0], out)
    return scenario, table, out


def test_audit_finds_high_regret_queries_for_first_price_only(audit_run):
    scenario, table, out = audit_run
    first, second = (mechanism_label(m) for m in scenario.audit.mechanisms)
    assert set(table["mechanism"]) == {first, second}
    report = top_report(table, AUDIT_TOP)

    explored = table.filter(pl.col("mechanism") == first)
    top = [row["regret_max"] for row in report[first]["top_queries"]]
    assert len(top) == AUDIT_TOP and top == sorted(top, reverse=True)
    eva_regrets = explored.filter(pl.col("method") == "eva").unique("text")["regret_max"]
    assert top == sorted(eva_regrets, reverse=True)[:AUDIT_TOP]
    draw = np.random.default_rng(0).choice(explored.height, size=AUDIT_TOP, replace=False)
    uniform_mean = float(explored["regret_max"].to_numpy()[draw].mean())
    assert np.mean(top) > uniform_mean
    assert np.mean(top) > float(explored["regret_max"].mean())
    assert (explored["regret_max"] > 0).all()
    assert (explored["regret_max"] >= explored["regret_mean"] - 1e-12).all()

    truthful = table.filter(pl.col("mechanism") == second)
    assert truthful.height > 0 and (truthful["regret_max"] <= 1e-9).all()
    assert report[second]["methods"]["eva"]["regret_max_found"] <= 1e-9

    for mechanism in (first, second):
        for method in ("eva", "uniform"):
            rows = table.filter((pl.col("mechanism") == mechanism) & (pl.col("method") == method))
            assert set(rows.filter(pl.col("generation") == 0)["text"]) == set(ITEMS)
            assert set(rows["generation"]) == set(range(GENERATIONS + 1))
            numbers = report[mechanism]["methods"][method]
            assert numbers["queries"] == rows.height and numbers["seeds"] == 1
            assert numbers["distinct_queries"] == rows["text"].n_unique()
            assert numbers["regret_max_found"] == pytest.approx(rows["regret_max"].max())
            assert numbers["all_mean"] == pytest.approx(rows["regret_max"].mean())
            assert numbers["top_mean"] >= numbers["all_mean"]


def test_audit_files_and_common_random_numbers(audit_run, bundled_lm, monkeypatch):
    scenario, table, out = audit_run
    written = pl.read_parquet(out / AUDIT_FILE)
    assert written.schema == pl.Schema(AUDIT_SCHEMA) and written.equals(table)
    assert json.loads((out / AUDIT_TOP_FILE).read_text()) == json.loads(
        json.dumps(top_report(table, AUDIT_TOP))
    )
    assert (out / "scenario.toml").is_file()

    # the same text gets the same regret in both searches
    mechanism = scenario.audit.mechanisms[0]
    label = mechanism_label(mechanism)
    mine = table.filter(pl.col("mechanism") == label)
    per_text = mine.group_by("text").agg(pl.col("regret_max").n_unique().alias("values"))
    assert (per_text["values"] == 1).all()
    shared = set(mine.filter(pl.col("method") == "eva")["text"]) & set(
        mine.filter(pl.col("method") == "uniform")["text"]
    )
    assert len(shared) >= len(ITEMS)

    # ... and the same value however the queries are ordered, cached by text
    platform = build_platform(mechanism, bundled_lm, list(scenario.queries.items))
    texts = mine.sort("query_id")["text"].unique(maintain_order=True).to_list()[-3:]
    forward = QueryRegret(scenario, platform, 0, draws=1)
    backward = QueryRegret(scenario, platform, 0, draws=1)
    ahead = {text: forward(text) for text in texts}
    behind = {text: backward(text) for text in reversed(texts)}
    assert ahead == behind
    expected = dict(zip(mine["text"], mine["regret_max"], strict=True))
    for text in texts:
        assert ahead[text][0] == expected[text]

    calls: list[str] = []
    measure = forward._measure
    monkeypatch.setattr(forward, "_measure", lambda text: calls.append(text) or measure(text))
    assert forward(texts[0]) == ahead[texts[0]] and calls == []
    fresh = "vacation in Hawaii for a student"
    assert forward(fresh) == forward(fresh) and calls == [fresh]
    with pytest.raises(ValueError, match="audit.draws"):
        QueryRegret(scenario, platform, 0, draws=0)


# ----------------------------------------------------------------------------- market stream

EVOLVE_EVERY = 5
ROUNDS = 12


def test_market_stream_serves_evolved_queries_reproducibly(bundled_lm, tmp_path):
    changes = {
        "rounds": ROUNDS,
        "eva": {"evolve_every": EVOLVE_EVERY, "variants": 2},
        "regret": {"enabled": False},
    }
    scenario = eva_scenario(changes, advertisers=2)
    assert scenario.queries.stream == "eva"
    assert {a.strategy.kind for a in scenario.advertisers} == {"truthful"}
    first = run_scenario(scenario, tmp_path / "a", lm=bundled_lm)
    second = run_scenario(scenario, tmp_path / "b", lm=bundled_lm)

    rounds = first.rounds
    assert {"query_id", "query_generation"} <= set(rounds.columns)
    assert rounds.height == ROUNDS
    lineage = pl.read_parquet(tmp_path / "a" / "queries.parquet")
    assert set(lineage.filter(pl.col("generation") == 0)["text"]) == set(ITEMS)
    assert lineage["generation"].max() == (ROUNDS - 1) // EVOLVE_EVERY
    evolved = lineage.filter(pl.col("generation") >= 1)
    assert evolved.height > 0 and evolved["parent_id"].is_not_null().all()
    assert set(evolved["parent_id"]) <= set(lineage["query_id"])

    known = {
        row["query_id"]: (row["text"], row["generation"]) for row in lineage.iter_rows(named=True)
    }
    for row in rounds.iter_rows(named=True):
        assert row["query_id"] in known, row
        assert known[row["query_id"]] == (row["query"], row["query_generation"]), row
        # a query evolved in generation g exists only from round g * evolve_every on
        assert row["query_generation"] <= row["round"] // EVOLVE_EVERY, row
    assert (rounds.filter(pl.col("round") < EVOLVE_EVERY)["query_generation"] == 0).all()

    assert first.rounds.equals(second.rounds) and first.agents.equals(second.agents)
    for name in ("rounds.parquet", "queries.parquet"):
        assert pl.read_parquet(tmp_path / "a" / name).equals(
            pl.read_parquet(tmp_path / "b" / name)
        ), name


@pytest.mark.parametrize("auctions_per_round", [1, 3])
def test_market_stream_evolves_between_rounds_only(bundled_lm, monkeypatch, auctions_per_round):
    # evolve_every counts rounds of K queries: generations fall before rounds 2 and 4 of 5,
    # i.e. before query 2K and 4K, never inside a round (K = 1: every 2 queries, as before)
    changes = {"auctions_per_round": auctions_per_round, "eva": {"evolve_every": 2}}
    stream = EvaQueryStream(eva_scenario(changes), bundled_lm, np.random.default_rng(0))
    served_at_generation: list[int] = []
    monkeypatch.setattr(stream, "evolve", lambda: served_at_generation.append(stream._served))
    for _ in range(5 * auctions_per_round):
        stream.next_query()
    assert served_at_generation == [2 * auctions_per_round, 4 * auctions_per_round]


def test_heldout_standard_error_is_null_for_one_query_and_the_se_of_query_means_otherwise(
    monkeypatch,
):
    """One held-out query has no spread to estimate: None (null), not a zero-width 0."""
    import market_sim.eva.experiment as experiment
    from market_sim.eva.solver import RepliesAndRewards

    def scored(policy, reward, texts, replies, seed):
        rewards = np.array([[1.0, 3.0], [2.0, 6.0], [0.0, 0.0]])[: len(texts)]
        return RepliesAndRewards(list(texts), [], rewards, rewards / 2, rewards / 2)

    monkeypatch.setattr(experiment, "sample_and_score", scored)
    assert experiment.evaluate_heldout(None, None, ["a"], 2, 0).standard_error is None
    three = experiment.evaluate_heldout(None, None, ["a", "b", "c"], 2, 0)
    # query means 2, 4, 0: sample std 2 over sqrt(3)
    assert three.standard_error == pytest.approx(2 / np.sqrt(3), rel=1e-12)
    assert three.reward == pytest.approx(2.0, rel=1e-12)


def test_a_finished_seed_made_with_other_model_files_runs_again(tmp_path):
    """The scenario names the model folder, not its contents: model_files.json must match."""
    from market_sim.eva.experiment import SEED_MODEL_FILE, finished_tables

    table = pl.DataFrame({"generation": [0, 1, 2]}).with_columns(
        pl.lit(None, dtype).alias(name)
        for name, dtype in EVA_SCHEMA.items()
        if name != "generation"
    )
    table.select(list(EVA_SCHEMA)).write_parquet(tmp_path / EVA_FILE)
    pl.DataFrame({"query_id": ["q0"]}).write_parquet(tmp_path / QUERIES_FILE)
    (tmp_path / "scenario.toml").write_text("name = 'x'\n")
    hashes = {
        "weights_sha256": {"model.safetensors": "aa"},
        "settings_sha256": {"config.json": "bb"},
    }
    (tmp_path / SEED_MODEL_FILE).write_text(json.dumps(hashes))
    assert finished_tables(tmp_path, "name = 'x'\n", 2, hashes) is not None
    edited = {**hashes, "settings_sha256": {"config.json": "cc"}}
    assert finished_tables(tmp_path, "name = 'x'\n", 2, edited) is None
    # a record without a thread count (an older version): kept whatever the count now
    assert finished_tables(tmp_path, "name = 'x'\n", 2, hashes, threads=2) is not None
    (tmp_path / SEED_MODEL_FILE).write_text(json.dumps({**hashes, "torch_threads": 1}))
    assert finished_tables(tmp_path, "name = 'x'\n", 2, hashes, threads=1) is not None
    # another --threads: CPU reductions may round otherwise, so the seed runs again
    assert finished_tables(tmp_path, "name = 'x'\n", 2, hashes, threads=2) is None
    (tmp_path / SEED_MODEL_FILE).unlink()  # no record: cannot tell, so it runs again
    assert finished_tables(tmp_path, "name = 'x'\n", 2, hashes) is None


def test_training_queries_take_the_documented_share_from_parents():
    """round(0.2 x pairs) originals from the sampled parents, the rest from their children."""
    from types import SimpleNamespace

    from market_sim.eva.experiment import training_queries
    from market_sim.scenario.schema import EvaConfig

    parents = [SimpleNamespace(text=f"parent {i}") for i in range(2)]
    children = [SimpleNamespace(text=f"child {i}") for i in range(3)]
    config = dataclasses.replace(EvaConfig(), pairs=32, original_share=0.2)
    queries = training_queries(config, parents, children)
    assert len(queries) == 32
    assert sum(q.startswith("parent") for q in queries) == 6  # round(6.4)
    assert queries[:6] == ["parent 0", "parent 1"] * 3 and queries[6:9] == [
        c.text for c in children
    ]
    assert training_queries(config, parents, []) == ["parent 0", "parent 1"] * 16  # no children


def test_preference_pairs_prefer_the_best_reply_and_skip_ties():
    from market_sim.eva.solver import RepliesAndRewards, best_worst_pairs

    class Words:
        def prompt(self, text):
            return f"Q: {text}"

        def decode(self, tokens):
            return " ".join(map(str, tokens))

    scored = RepliesAndRewards(
        ["a", "b"],
        [[[1], [2], [3]], [[4], [5], [6]]],
        np.array([[0.5, 2.0, -1.0], [1.0, 1.0, 1.0]]),
        np.zeros((2, 3)),
        np.zeros((2, 3)),
    )
    pairs, mean = best_worst_pairs(Words(), scored)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("Q: a", "2", "3")]
    assert mean == pytest.approx(4.5 / 6, rel=1e-12)  # every reply scored, ties included


def test_run_audit_refuses_a_fine_tuned_mechanism_before_using_the_model(tmp_path):
    """The library path checks what ``market-sim audit`` checks; ``lm`` is never touched."""
    from market_sim.config.fields import ScenarioError

    fixed_pool = SCENARIO.parent / "fine_tuning_groups.toml"  # static queries, no [audit]
    scenario = load_scenario(fixed_pool, ["mechanism.policy_space=fine_tuned"])
    with pytest.raises(ScenarioError, match=r"\[audit\] scores evolved queries") as caught:
        run_audit(scenario, None, 1, [0], tmp_path / "out")  # type: ignore[arg-type]
    assert caught.value.key == "mechanism.policy_space"
    assert not (tmp_path / "out").exists()


def audit_row(seed: int, text: str, regret: float, generation: int = 0) -> dict:
    return {
        "mechanism": "m",
        "method": "eva",
        "seed": seed,
        "generation": generation,
        "query_id": f"q{seed}{text}",
        "text": text,
        "regret_max": regret,
        "regret_mean": regret / 2,
        "parent_id": None,
        "operator": "seed",
    }


def test_the_audit_report_pools_seeds_without_dropping_a_seeds_regret():
    # Found by an audit: unique("text") kept an arbitrary seed's row of a text that two seeds
    # evaluated, so the largest regret found (42, seed 1) could be reported as 2.
    rows = [audit_row(0, "a", 2.0), audit_row(0, "b", 1.0), audit_row(1, "a", 42.0)]
    rows += [audit_row(1, "c", 3.0, generation=1)]
    table = pl.DataFrame(rows, schema=AUDIT_SCHEMA)
    numbers = top_report(table, 2)["m"]["methods"]["eva"]
    assert numbers == {
        "queries": 4,
        "distinct_queries": 3,
        "seeds": 2,
        "regret_max_found": 42.0,
        "top_mean": (42.0 + 3.0) / 2,  # texts a (its highest, 42) and c
        "all_mean": (2.0 + 1.0 + 42.0 + 3.0) / 4,
    }
    top = top_report(table, 2)["m"]["top_queries"]
    assert [(row["text"], row["regret_max"], row["seed"]) for row in top] == [
        ("a", 42.0, 1),
        ("c", 3.0, 1),
    ]


def test_audited_mechanisms_differing_in_another_key_keep_their_own_labels():
    scenario = eva_scenario(AUDIT_CHANGES, advertisers=2)
    first = scenario.audit.mechanisms[0]
    weighted = dataclasses.replace(first, platform_weight=0.5)
    assert mechanism_label(first) == mechanism_label(weighted)  # the clash the audit found
    labels = audit_labels([first, weighted, scenario.audit.mechanisms[1]])
    assert labels[0] != labels[1] and labels[1].endswith("[platform_weight=0.5]")
    assert labels[2] == mechanism_label(scenario.audit.mechanisms[1])  # unique: unchanged


def test_auditing_one_mechanism_twice_is_refused_when_the_scenario_loads():
    changes = copy.deepcopy(AUDIT_CHANGES)
    changes["audit"]["mechanisms"] = [{"payment": "first_price"}, {"payment": "first_price"}]
    with pytest.raises(
        ScenarioError,
        match=r"audit.mechanisms\[1\]: the same mechanism as "
        r"audit.mechanisms\[0\]",
    ):
        eva_scenario(changes, advertisers=2)


def test_an_audit_label_names_the_rows_without_moving_the_creators_draws(audit_run, bundled_lm):
    # the bracket a twin adds to a label must not change the mechanism's rows (its seed)
    scenario, table, _ = audit_run
    first = scenario.audit.mechanisms[0]
    base = mechanism_label(first)
    renamed = audit_mechanism(
        scenario, bundled_lm, first, GENERATIONS, 0, scenario.audit.uniform, label="x [y=1]"
    )
    assert set(renamed["mechanism"]) == {"x [y=1]"}
    order = ["method", "seed", "query_id"]
    assert (
        renamed.with_columns(pl.lit(base).alias("mechanism"))
        .sort(order)
        .equals(table.filter(pl.col("mechanism") == base).sort(order))
    )

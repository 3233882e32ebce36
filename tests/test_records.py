"""The record schema (market_sim.results.records) against what real runs write, and its guards."""

import dataclasses

import polars as pl
import pytest

from market_sim.platform.outcome_checks import MechanismOutputError
from market_sim.plugins import mechanism_kinds
from market_sim.results.records import (
    AGENTS,
    CONVERGENCE,
    MECHANISMS,
    ROUNDS,
    STRATEGY_PREFIX,
    RecordTable,
    UndeclaredColumnError,
)
from market_sim.run import build_market, load_scenario_model, run_scenario
from market_sim.scenario import scenario_from_dict

HEDGE = {"kind": "hedge", "multiplier_max": 1.5, "multiplier_count": 4}
FIXED = {"kind": "fixed", "bid_multiplier": 0.7}


def bundled_scenario(mechanism: dict, auctions_per_round: int = 1) -> object:
    """Two rounds on the bundled tiny LM: a Hedge learner and a fixed bidder, regret each round."""
    return scenario_from_dict(
        {
            "name": "records",
            "seed": 5,
            "rounds": 2,
            "auctions_per_round": auctions_per_round,
            "model": {"path": "bundled:tiny-ads", "device": "cpu"},
            "mechanism": {"max_new_tokens": 4, **mechanism},
            "queries": {"items": ["vacation in Hawaii", "family trip to Maui"]},
            "regret": {"every": 1},
            "advertisers": [
                {
                    "name": "Alpha Airlines",
                    "context": "Alpha Airlines: nonstop flights to Hawaii.",
                    "valuation": {"dist": "uniform", "low": 0.5, "high": 1.5},
                    "strategy": HEDGE,
                },
                {
                    "name": "Beta Resort",
                    "context": "Beta Resort: beachfront rooms on Maui.",
                    "valuation": {"dist": "fixed", "value": 0.8},
                    "strategy": FIXED,
                },
            ],
        }
    )


RUNS = {
    "token auction": ({"kind": "token_auction"}, 1),
    "gsp, generic round": ({"kind": "gsp", "reply": "cached"}, 1),
    "gsp, array round": ({"kind": "gsp", "reply": "cached"}, 3),
}


@pytest.fixture(scope="module")
def bundled_lm():
    return load_scenario_model(bundled_scenario({"kind": "token_auction"}))


def assert_declared(table: RecordTable, frame: pl.DataFrame) -> None:
    """Every column of ``frame`` is declared in ``table`` with the dtype it has there."""
    for name, dtype in frame.schema.items():
        assert name in table.schema, f"{table.file}: {name} written but not declared"
        assert dtype == table.schema[name], f"{table.file}: {name} is {dtype}"


@pytest.mark.parametrize("run", list(RUNS))
def test_every_written_column_is_declared_and_every_claimed_column_written(
    bundled_lm, tmp_path, run
):
    mechanism, auctions = RUNS[run]
    scenario = bundled_scenario(mechanism, auctions)
    array_path = build_market(scenario, bundled_lm)[0].array_round is not None
    assert array_path == ("array" in run)
    result = run_scenario(scenario, tmp_path / "run", lm=bundled_lm)
    on_disk = {
        table.file: pl.read_parquet(tmp_path / "run" / table.file) for table in (ROUNDS, AGENTS)
    }
    for table, frame in ((ROUNDS, result.rounds), (AGENTS, result.agents)):
        assert_declared(table, frame)
        assert_declared(table, on_disk[table.file])
        assert on_disk[table.file].equals(frame)
    kind = mechanism["kind"]
    assert result.rounds["mechanism"].unique().to_list() == [kind] and kind in MECHANISMS
    claimed = [column.name for column in ROUNDS.filled_by(kind)]
    assert set(claimed) <= set(result.rounds.columns), run
    for strategy in ("hedge", "fixed"):
        claimed = [column.name for column in AGENTS.filled_by(strategy)]
        assert set(claimed) <= set(result.agents.columns), (run, strategy)
    # strategy columns of the other advertiser's strategy are null on its rows, never dropped
    fixed_rows = result.agents.filter(pl.col("agent") == "Beta Resort")
    assert fixed_rows["strategy_top_probability"].is_null().all()
    assert (fixed_rows["strategy_bid_multiplier"] == 0.7).all()
    # regret is measured every round here, so the nullable regret columns hold numbers
    assert result.agents["regret"].null_count() == 0
    assert result.rounds.height == 2 * auctions and result.agents.height == 2 * 2 * auctions


def test_a_mechanism_extra_the_schema_does_not_declare_is_refused(bundled_lm):
    market, _ = build_market(bundled_scenario({"kind": "token_auction"}), bundled_lm)
    run_auctions = market.platform.run_auctions

    def with_bogus_extra(queries, bidders, seed):
        outcomes = run_auctions(queries, bidders, seed)
        return [dataclasses.replace(o, extras={**o.extras, "bogus": 1.0}) for o in outcomes]

    market.platform.run_auctions = with_bogus_extra
    with pytest.raises(MechanismOutputError) as error:  # in its round, naming the mechanism
        market.step()
    assert str(error.value) == (
        "mechanism 'token_auction': AuctionOutcome.extras name 'bogus' is not a rounds.parquet "
        "column; name it extra_<name>"
    )
    with pytest.raises(UndeclaredColumnError) as error:  # and the writer refuses it too
        ROUNDS.check_names(["bogus"])
    assert str(error.value) == (
        "rounds.parquet: column 'bogus' is not declared in market_sim.results.records; "
        "or name it extra_<name>"
    )


def test_a_prefixed_extra_is_written_as_float64_from_the_round_it_appears(bundled_lm):
    """A plugin's own extra needs no schema edit: ``extra_<name>``, null before it appears."""
    scenario = dataclasses.replace(bundled_scenario({"kind": "token_auction"}), rounds=3)
    market, _ = build_market(scenario, bundled_lm)
    run_auctions = market.platform.run_auctions

    def with_late_extra(queries, bidders, seed):
        outcomes = run_auctions(queries, bidders, seed)
        if market.current_round == 0:
            return outcomes
        return [dataclasses.replace(o, extras={**o.extras, "extra_load": 2}) for o in outcomes]

    market.platform.run_auctions = with_late_extra
    market.run_model()
    rounds, _ = market.tables()
    assert rounds.columns[-1] == "extra_load" and rounds.schema["extra_load"] == pl.Float64
    assert rounds["extra_load"].to_list() == [None, 2.0, 2.0]
    assert ROUNDS.column("extra_load") is ROUNDS.families[0]


def test_frame_types_columns_drops_unfilled_optional_ones_and_keeps_unmeasured_regret():
    rows = {name: [None, None] for name in AGENTS.names}
    rows.update(run_id=["r", "r"], round=[0, 0], auction=[0, 0], agent=["a", "b"])
    rows.update({name: [1.0, 2.0] for name in ("valuation", "bid", "report_scale", "allocation")})
    rows.update({name: [0.5, 1.0] for name in ("reported_allocation", "value", "payment")})
    rows.update(utility=[0.5, 1.0], mentioned=[True, False])
    rows[STRATEGY_PREFIX + "distortion"] = [1.0, None]
    frame = AGENTS.frame(rows)
    strategy_columns = [name for name in frame.columns if name.startswith(STRATEGY_PREFIX)]
    assert strategy_columns == ["strategy_distortion"]  # the others were filled by nobody
    assert frame["regret"].dtype == pl.Float64 and frame["regret"].null_count() == 2
    assert list(frame.columns) == [name for name in AGENTS.names if name in frame.columns]
    assert frame["strategy_distortion"].to_list() == [1.0, None]


def test_frame_refuses_a_value_its_declared_dtype_cannot_hold():
    rows = {"run_id": ["r"], "round": ["zero"]}
    with pytest.raises(TypeError):
        ROUNDS.frame(rows)


def test_conform_orders_casts_and_refuses_undeclared_columns():
    frame = pl.DataFrame({"revenue": [1, 2], "round": [0, 1]})
    conformed = ROUNDS.conform(frame)
    assert conformed.columns == ["round", "revenue"]
    assert conformed.schema["revenue"] == pl.Float64
    with pytest.raises(UndeclaredColumnError, match="'shares' is not declared"):
        ROUNDS.conform(frame.with_columns(shares=pl.lit(0.5)))
    with pytest.raises(UndeclaredColumnError, match="'shares' is not declared"):
        AGENTS.conform(frame.select("round").with_columns(shares=pl.lit(0.5)))
    extra = ROUNDS.conform(frame.with_columns(extra_share=pl.lit(1), run_id=pl.lit("r")))
    assert extra.columns == ["run_id", "round", "revenue", "extra_share"]
    assert extra.schema["extra_share"] == pl.Float64


def test_names_are_unique_and_lookups_name_the_file():
    for table in (ROUNDS, AGENTS, CONVERGENCE):
        assert len(set(table.names)) == len(table.names), table.file
    with pytest.raises(KeyError, match="agents.parquet declares no column 'candidates'"):
        AGENTS["candidates"]
    assert all(c.name.startswith(STRATEGY_PREFIX) for c in AGENTS.columns if c.group == "strategy")


def test_the_schema_names_exactly_the_registered_mechanisms():
    assert set(MECHANISMS) == set(mechanism_kinds()), (
        "a built-in mechanism's kinds are listed in MECHANISMS (market_sim/results/records.py)"
    )
    for column in ROUNDS.columns:
        if column.group == "extra":
            assert set(column.filled_by) <= set(MECHANISMS), column.name


def test_a_runs_title_names_its_variant_unless_it_repeats_the_kind():
    from market_sim.results.report import format_run_summary

    columns = ["valuation", "bid", "report_scale", "allocation", "value", "payment", "utility"]
    agents = pl.DataFrame({"agent": ["a"], **{c: [1.0] for c in columns}, "mentioned": [True]})
    summary = {"scenario": "s", "rounds": 2, "seed": 0, "device": "cpu", "rounds_per_second": 1.0}
    token = {**summary, "mechanism": "token_auction", "aggregation": "linear", "payment": "none"}
    mosaic = {**summary, "mechanism": "mosaic", "payment": "mosaic"}
    assert format_run_summary(token, agents).startswith("s: token_auction (linear, none), 2 ")
    assert format_run_summary(mosaic, agents).startswith("s: mosaic, 2 rounds, seed 0")

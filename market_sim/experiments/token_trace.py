"""Per-token records of a token-auction run, by replaying its first rounds exactly.

A run's ``rounds.parquet`` keeps each round's query, reply and platform seed (``round_seed``),
and ``agents.parquet`` each advertiser's bid and report; replaying a round runs the platform
again on those inputs and that seed, so it draws the same reply (checked: ``replay_matches``).
During the replay every call of the token-auction step is observed (:func:`observe_steps`), and
each generated token gets its carrier (defined in :mod:`analysis.tokens`), the carrier's share
and the advertisers' payments for it. Nothing of the run is changed and nothing is stored
during normal runs.

Only rounds of one auction (``auctions_per_round = 1``) replay exactly: with K auctions per round
the platform draws the K replies from one generator, so a single auction would not see the same
random numbers; those runs are refused. CPU reductions split their work by torch thread, so the
replay runs with the thread count the run recorded (``execution.torch_threads`` of its
``summary.json``, :func:`recorded_threads`); a replay that still differs is reported in one line
on stderr and draws nothing.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import torch

import market_sim.platform.token_auction as token_auction_platform
from market_sim.lm.loading import ModelNotFoundError
from market_sim.lm.model import LanguageModel
from market_sim.platform.base import Bidder, Platform, Report
from market_sim.plugins import build_platform
from market_sim.results import SUMMARY_FILE
from market_sim.scenario import Scenario, ScenarioError, scenario_from_dict

USER = "user"


@contextlib.contextmanager
def observe_steps() -> Iterator[list[dict[str, torch.Tensor]]]:
    """Record the inputs and outcome of every token-auction step run inside the block.

    Yields:
        A list that fills with one dict per step: ``reported`` ``[A, n + 1, V]`` log-probs,
        ``bids`` ``[A, n]``, and the step's ``tokens`` ``[A]``, ``payments`` ``[A, n]`` and
        ``owners`` ``[A]``.
    """
    original = token_auction_platform.token_auction_step
    steps: list[dict[str, torch.Tensor]] = []

    def recording(reported, true_logprobs, bids, rule, sampling):
        outcome = original(reported, true_logprobs, bids, rule, sampling)
        steps.append(
            {
                "reported": reported.detach().float().cpu(),
                "bids": bids.detach().double().cpu(),
                "tokens": outcome.tokens.detach().cpu(),
                "payments": outcome.payments.detach().double().cpu(),
                "owners": outcome.owners.detach().cpu(),
            }
        )
        return outcome

    token_auction_platform.token_auction_step = recording
    try:
        yield steps
    finally:
        token_auction_platform.token_auction_step = original


def recorded_thread_count(run_dir: Path) -> int | None:
    """``execution.torch_threads`` of the run's ``summary.json``; None when it records none."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    execution = summary.get("execution") if isinstance(summary, dict) else None
    threads = execution.get("torch_threads") if isinstance(execution, dict) else None
    is_count = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    return threads if is_count else None


@contextlib.contextmanager
def recorded_threads(run_dir: Path) -> Iterator[int]:
    """Run the block with the torch CPU thread count the run recorded; restore the previous one.

    Without a recorded count (:func:`recorded_thread_count`) the current count is kept.

    Yields:
        The thread count in effect inside the block.
    """
    previous = torch.get_num_threads()
    recorded = recorded_thread_count(run_dir)
    if recorded is not None:
        torch.set_num_threads(recorded)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def carriers(
    step: dict[str, torch.Tensor], platform_weight: float
) -> tuple[list[int], list[float]]:
    r"""Carrier index (0 = user) and its weighted share for each auction of one step.

    The ex-post owner when stable sampling chose one (``owners >= 0``); else
    :math:`\arg\max_i \lambda_i p_i(y)`, :math:`\lambda = (b_0, b_1..b_n) / \sum b`, with share
    :math:`\lambda_i p_i(y) / \sum_j \lambda_j p_j(y)` (see :mod:`analysis.tokens`).
    """
    bids = step["bids"]
    weights = torch.cat(
        [torch.full((bids.shape[0], 1), platform_weight, dtype=bids.dtype), bids], 1
    )
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-300)
    token_logprobs = step["reported"].gather(
        2, step["tokens"].view(-1, 1, 1).expand(-1, weights.shape[1], 1)
    )[..., 0]
    mass = weights * token_logprobs.double().exp()
    shares = mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-300)
    best = shares.argmax(dim=1)
    owners = step["owners"]
    chosen = torch.where(owners >= 0, owners, best)
    return chosen.tolist(), shares.gather(1, chosen.view(-1, 1))[:, 0].tolist()


def trace_run(run_dir: Path, lm: LanguageModel, rounds: int = 3) -> pl.DataFrame:
    """Replay the first ``rounds`` rounds of a token-auction run; one row per generated token.

    The replay runs with the run's recorded torch thread count (:func:`recorded_threads`).

    Returns:
        Columns ``round, query, position, token_id, token, carrier, carrier_share, payment,
        replay_matches`` (the replayed reply equals the recorded one).

    Raises:
        ValueError: Not a token-auction run, or more than one auction per round.
        RuntimeError: The replay ran no observable token-auction step.
    """
    run_dir = Path(run_dir)
    scenario = scenario_from_dict(tomllib.loads((run_dir / "scenario.toml").read_text("utf-8")))
    if scenario.mechanism.kind != "token_auction":
        raise ValueError(
            f"{run_dir}: token ownership needs a token auction, not a {scenario.mechanism.kind}"
        )
    if scenario.auctions_per_round != 1:
        raise ValueError(f"{run_dir}: only runs of one auction per round replay exactly")
    lm = lm.with_prompt_format(scenario.model.prompt_format)  # the prompts the run used
    recorded = pl.read_parquet(run_dir / "rounds.parquet").sort("round").head(rounds)
    agents = pl.read_parquet(run_dir / "agents.parquet")
    platform = build_platform(scenario.mechanism, lm, scenario.queries.items)
    with recorded_threads(run_dir):
        return replay_rounds(scenario, recorded, agents, platform, lm)


def replay_rounds(
    scenario: Scenario,
    recorded: pl.DataFrame,
    agents: pl.DataFrame,
    platform: Platform,
    lm: LanguageModel,
) -> pl.DataFrame:
    """The rows of :func:`trace_run` for the ``recorded`` rounds (``rounds.parquet`` rows)."""
    names = [advertiser.name for advertiser in scenario.advertisers]
    rows = []
    for record in recorded.iter_rows(named=True):
        mine = agents.filter(pl.col("round") == record["round"])
        reports = {row["agent"]: row for row in mine.iter_rows(named=True)}
        bidders = [
            Bidder(
                advertiser.context,
                Report(
                    bid=float(reports[advertiser.name]["bid"]),
                    report_scale=float(reports[advertiser.name]["report_scale"]),
                ),
            )
            for advertiser in scenario.advertisers
        ]
        with observe_steps() as steps:
            outcome = platform.run_auctions(
                [record["query"]], [bidders], int(record["round_seed"])
            )[0]
        if not steps:  # the platform no longer calls the step through this module's name
            raise RuntimeError("token trace: no token-auction step was observed during the replay")
        matches = outcome.text == record["text"]
        for position, step in enumerate(steps):
            index, share = carriers(step, scenario.mechanism.platform_weight)
            token = int(step["tokens"][0])
            rows.append(
                {
                    "round": int(record["round"]),
                    "query": str(record["query"]),
                    "position": position,
                    "token_id": token,
                    "token": lm.decode([token]),
                    "carrier": USER if index[0] == 0 else names[index[0] - 1],
                    "carrier_share": float(share[0]),
                    "payment": float(step["payments"][0].sum()),
                    "replay_matches": matches,
                }
            )
    return pl.DataFrame(rows)


def replay_run_tokens(run_dir: Path, rounds: int = 3) -> tuple[pl.DataFrame, list[str]] | None:
    """The :func:`trace_run` rows of a run's first rounds, with its model, and its advertisers.

    Loads the run's model (``scenario.toml``) and replays; the run folder is not touched.
    :func:`analysis.tokens.plot_run_tokens` draws the result.

    Returns:
        ``(tokens, advertiser names)``; None when ``run_dir`` is not a finished token-auction run
        of one auction per round, when the replay produced no token, or when it does not
        reproduce the recorded replies (nothing is drawn from a replay that differs; one line on
        stderr names the run and the first round that differs).
    """
    scenario_path = Path(run_dir) / "scenario.toml"
    if not (Path(run_dir) / SUMMARY_FILE).is_file() or not scenario_path.is_file():
        return None
    try:
        scenario = scenario_from_dict(tomllib.loads(scenario_path.read_text("utf-8")))
    except ScenarioError as error:  # e.g. its model is gone from the cache, or re-fetched
        print(f"market-sim: warning: {run_dir}: no token figure: {error}", file=sys.stderr)
        return None
    if scenario.mechanism.kind != "token_auction":
        return None
    if scenario.auctions_per_round != 1:
        print(
            f"market-sim: warning: {run_dir}: no token figure: the replay covers runs of one "
            f"auction per round, this one has auctions_per_round = {scenario.auctions_per_round}",
            file=sys.stderr,
        )
        return None
    model = scenario.model
    try:
        lm = LanguageModel.load(model.path, model.device, model.dtype, model.prompt_format)
    except (ModelNotFoundError, ValueError) as error:  # gone, damaged, or its device absent
        print(f"market-sim: warning: {run_dir}: no token figure: {error}", file=sys.stderr)
        return None
    tokens = trace_run(run_dir, lm, rounds)
    if tokens.height == 0:
        return None
    if not tokens["replay_matches"].all():
        first = int(tokens.filter(~pl.col("replay_matches"))["round"].min())
        print(
            f"market-sim: warning: {run_dir}: the replay of round {first} does not reproduce the "
            "recorded reply (another torch version, device or thread count?); no token figure",
            file=sys.stderr,
        )
        return None
    return tokens, [advertiser.name for advertiser in scenario.advertisers]

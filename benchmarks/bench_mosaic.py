"""Cost of the MOSAIC-style sampling auction per query vs ONE plain batched ``generate``.

For M candidates (default 8, 32, 128), n advertisers (default 1, 3, 6; made-up brand contexts
in the style of ``"Alpha Airlines: nonstop flights to Hawaii."``), both proposals
(``reference``: the LM on the query alone; ``context_aware``: the LM on the query with every
advertiser's context), the fixed query ``"vacation in Hawaii"`` and 24 new tokens, measures in
one run:

* ``generate``: the baseline, ``lm.sample([prompt] * M, 24, 1.0, seed)`` with the proposal
  prompt (:func:`market_sim.prompting.build_prompt` of the query, or of the query and the
  contexts) -- one plain batched ``generate`` of the same M candidates;
* ``full``: :meth:`MosaicPlatform.run_auctions` for one query (or ``--auctions A`` queries in
  one call; every time is then divided by A: cost per query);
* the breakdown, each stage called directly with the arguments the platform uses:
  ``draw`` (:func:`~market_sim.platform.candidate_scoring.draw_candidates`), ``score``
  (:func:`~market_sim.platform.candidate_scoring.score_candidates`: ``M x (1 + extra + n)``
  teacher-forced rows) and ``mech`` (importance weights, reported rewards,
  :func:`~market_sim.mechanisms.mosaic.run_mosaic`, allocations and user values);
  ``other = full - draw - score - mech`` is what is left (decoding the pick, building outcomes);
* ratios ``full / generate`` and ``score / draw``, and the shares of ``full``.

Every time is the median of ``--repeats`` interleaved runs after a warm-up. The last lines summarize
scaling: ``t(M_max) / t(M_min)`` at the middle n and ``t(n_max) / t(n_min)`` at the middle M,
with log-log slopes fitted over the whole grid.

Run: ``python benchmarks/bench_mosaic.py [--device cuda] [--quick] [--repeats 3] [--auctions 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from market_sim.config.bounds import SEED_MAX
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.mosaic import importance_log_weights, run_mosaic
from market_sim.platform.base import Bidder, Report
from market_sim.platform.candidate_scoring import (
    CandidateScores,
    draw_candidates,
    score_candidates,
)
from market_sim.platform.mosaic import PROPOSALS, MosaicPlatform, reported_rewards
from market_sim.prompting import build_prompt

QUERY = "vacation in Hawaii"
EXTRA_QUERIES = ["family trip to Maui", "cheap flights to Honolulu", "honeymoon on Kauai"]
CONTEXTS = [
    "Alpha Airlines: nonstop flights to Hawaii.",
    "Beta Resort: beachfront rooms on Maui.",
    "Coral Air: budget fares to Honolulu.",
    "Delta Tours: guided island tours.",
    "Reef Tours: snorkel trips on Maui.",
    "Zeta Surf: surf lessons on Maui.",
]
"""Short in the tiny LM's tokens: six sponsor lines + 24 tokens fit its 128 positions."""
MAX_NEW_TOKENS = 24
TEMPERATURE = 1.0
TAU = 1.0
SEED = 0


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings are honest.

    Args:
        device: The device the model runs on.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    actions: dict[str, Callable[[], object]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Median wall time of each action over ``repeats`` interleaved rounds.

    Round r runs every action once, in order, so that a slow spell on a shared machine hits
    all of them rather than one. The caller does the warm-up.

    Args:
        actions: The work to time, by name.
        device: Synchronized around every run.
        repeats: Timed rounds.

    Returns:
        The median seconds of each action.
    """
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            synchronize(device)
            started = time.perf_counter()
            action()
            synchronize(device)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def make_bidders(agents: int) -> list[Bidder]:
    """n advertisers with distinct contexts, bids 0.5..1.5, truthful relevance exponents.

    Args:
        agents: n.

    Returns:
        The bidders.
    """
    if agents > len(CONTEXTS):
        raise ValueError(f"at most {len(CONTEXTS)} advertisers, got {agents}")
    bids = np.linspace(0.5, 1.5, agents) if agents > 1 else np.ones(1)
    return [Bidder(CONTEXTS[i], Report(float(bids[i]), 1.0)) for i in range(agents)]


def mechanism_math(
    scores: CandidateScores, bidders: Sequence[Sequence[Bidder]], tau: float, candidates: int
) -> torch.Tensor:
    """The platform's arithmetic after scoring, as :meth:`MosaicPlatform.run_auctions` does it.

    Args:
        scores: The candidates' scores.
        bidders: A lists of n bidders.
        tau: Temperature.
        candidates: M.

    Returns:
        ``[A]`` user values (returned so that nothing is optimized away).
    """
    log_weights = importance_log_weights(scores.reference_logprob, scores.proposal_logprob)
    bids = torch.tensor([[b.report.bid for b in g] for g in bidders], dtype=torch.float64)
    exponents = torch.tensor(
        [[b.report.report_scale for b in g] for g in bidders], dtype=torch.float64
    )
    reported = reported_rewards(scores.relevance, bids, exponents)
    outcome = run_mosaic(reported, log_weights, tau, payment="mosaic")
    probabilities = outcome.probabilities
    (probabilities.unsqueeze(1) * scores.relevance).sum(-1)
    reported_shape = scores.relevance ** exponents.unsqueeze(-1)
    (probabilities.unsqueeze(1) * reported_shape).sum(-1)
    reference_mass = log_weights - np.log(candidates)
    regularizer = (probabilities * (torch.log(probabilities) - reference_mass)).nan_to_num()
    return -tau * regularizer.sum(-1)


@dataclass(frozen=True)
class Row:
    """Per-query seconds of one configuration.

    Attributes:
        proposal: ``reference`` or ``context_aware``.
        candidates: M.
        agents: n.
        generate: The baseline.
        full: ``run_auctions``.
        draw: ``draw_candidates``.
        score: ``score_candidates``.
        mech: The mechanism math.
        score_rows: Teacher-forced rows scored per query.
    """

    proposal: str
    candidates: int
    agents: int
    generate: float
    full: float
    draw: float
    score: float
    mech: float
    score_rows: int


def measure(
    lm: LanguageModel, proposal: str, candidates: int, agents: int, auctions: int, repeats: int
) -> Row:
    """Time the baseline, the full auction and its stages for one configuration.

    Args:
        lm: The platform LM.
        proposal: ``reference`` or ``context_aware``.
        candidates: M.
        agents: n.
        auctions: A queries per ``run_auctions`` call (the first is :data:`QUERY`).
        repeats: Timed runs per measurement.

    Returns:
        Per-query seconds.
    """
    device = lm.device
    platform = MosaicPlatform(
        lm,
        candidates=candidates,
        tau=TAU,
        proposal=proposal,
        payment="mosaic",
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=TEMPERATURE,
    )
    group = make_bidders(agents)
    queries = [QUERY, *[EXTRA_QUERIES[a % len(EXTRA_QUERIES)] for a in range(auctions - 1)]]
    bidders = [group] * auctions
    contexts = [[b.context for b in g] for g in bidders]
    prompts = [
        build_prompt(q) if proposal == "reference" else build_prompt(q, c)
        for q, c in zip(queries, contexts, strict=True)
    ]
    if (
        platform.proposal_prompts(queries, contexts) or [build_prompt(q) for q in queries]
    ) != prompts:
        raise RuntimeError("the baseline prompt is not the platform's proposal prompt")
    positions = getattr(lm.model.config, "n_positions", None)
    longest = max(len(lm.encode_prompt(prompt)) for prompt in prompts) + MAX_NEW_TOKENS
    if positions is not None and longest > positions:
        raise ValueError(f"prompt + reply is {longest} tokens, the LM has {positions} positions")
    # The platform seeds the draw with the first integer of default_rng(seed).
    draw_seed = int(np.random.default_rng(SEED).integers(SEED_MAX))
    baseline_rows = [prompt for prompt in prompts for _ in range(candidates)]
    extra = None if proposal == "reference" else prompts

    def run_generate() -> object:
        return lm.sample(baseline_rows, MAX_NEW_TOKENS, TEMPERATURE, draw_seed)

    def run_full() -> object:
        return platform.run_auctions(queries, bidders, SEED)

    def run_draw() -> list[list[list[int]]]:
        return draw_candidates(lm, prompts, candidates, MAX_NEW_TOKENS, TEMPERATURE, draw_seed)

    drawn = run_draw()

    def run_score() -> CandidateScores:
        return score_candidates(
            lm,
            queries,
            contexts,
            drawn,
            MAX_NEW_TOKENS,
            TEMPERATURE,
            extra,
            platform.sampling.relevance_temperature,
            platform.sampling.max_rows,
        )

    scores = run_score()

    def run_mech() -> torch.Tensor:
        return mechanism_math(scores, bidders, TAU, candidates)

    # Warm-up: the draw and the scoring above (the baseline is the same ``lm.sample`` call as
    # the draw, and the full auction is the three stages) and one mechanism run.
    run_mech()
    actions = {
        "generate": run_generate,
        "full": run_full,
        "draw": run_draw,
        "score": run_score,
        "mech": run_mech,
    }
    times = {
        name: seconds / auctions
        for name, seconds in median_seconds(actions, device, repeats).items()
    }
    return Row(
        proposal,
        candidates,
        agents,
        score_rows=candidates * (1 + (extra is not None) + agents),
        **times,
    )


HEADER = (
    f"{'proposal':<13} {'M':>4} {'n':>2} {'rows':>5} {'generate':>9} {'full':>9} "
    f"{'draw':>9} {'score':>9} {'mech':>7} {'other':>7} {'full/gen':>8} {'score/draw':>10} "
    f"{'draw%':>5} {'score%':>6} {'mech%':>5}"
)


def format_row(row: Row) -> str:
    """One table line: per-query milliseconds, ratios and shares of ``full``.

    Args:
        row: The measurement.

    Returns:
        The line.
    """
    other = row.full - row.draw - row.score - row.mech
    return (
        f"{row.proposal:<13} {row.candidates:>4} {row.agents:>2} {row.score_rows:>5} "
        f"{row.generate * 1e3:>9.1f} {row.full * 1e3:>9.1f} {row.draw * 1e3:>9.1f} "
        f"{row.score * 1e3:>9.1f} {row.mech * 1e3:>7.2f} {other * 1e3:>7.2f} "
        f"{row.full / row.generate:>8.2f} {row.score / row.draw:>10.2f} "
        f"{100 * row.draw / row.full:>5.0f} {100 * row.score / row.full:>6.0f} "
        f"{100 * row.mech / row.full:>5.1f}"
    )


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the exponent k of ``y ~ x^k``).

    Args:
        xs: Sizes (at least two distinct).
        ys: Times.

    Returns:
        The slope.
    """
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def summarize(rows: Sequence[Row], ms: Sequence[int], ns: Sequence[int]) -> None:
    """Print the scaling of ``full`` (and ``generate``) in M and in n, per proposal.

    Args:
        rows: Every measurement.
        ms: The M grid (sorted).
        ns: The n grid (sorted).
    """
    table = {(r.proposal, r.candidates, r.agents): r for r in rows}
    mid_n, mid_m = ns[len(ns) // 2], ms[len(ms) // 2]
    for proposal in PROPOSALS:
        if not any(r.proposal == proposal for r in rows):
            continue
        parts = []
        if len(ms) > 1:
            lo, hi = table[proposal, ms[0], mid_n], table[proposal, ms[-1], mid_n]
            slope = statistics.mean(
                loglog_slope(ms, [table[proposal, m, n].full for m in ms]) for n in ns
            )
            parts.append(
                f"full t(M={ms[-1]})/t(M={ms[0]}) at n={mid_n} = {hi.full / lo.full:.2f} "
                f"(M x{ms[-1] / ms[0]:.0f}; generate {hi.generate / lo.generate:.2f}), "
                f"slope d log t / d log M = {slope:.2f}"
            )
        if len(ns) > 1:
            lo, hi = table[proposal, mid_m, ns[0]], table[proposal, mid_m, ns[-1]]
            slope = statistics.mean(
                loglog_slope(ns, [table[proposal, m, n].full for n in ns]) for m in ms
            )
            parts.append(
                f"full t(n={ns[-1]})/t(n={ns[0]}) at M={mid_m} = {hi.full / lo.full:.2f} "
                f"(n x{ns[-1] / ns[0]:.0f}; generate {hi.generate / lo.generate:.2f}), "
                f"slope d log t / d log n = {slope:.2f}"
            )
        ratios = [r.full / r.generate for r in rows if r.proposal == proposal]
        parts.append(f"full/generate {min(ratios):.2f}..{max(ratios):.2f}")
        print(f"scaling [{proposal}]: " + "; ".join(parts))


def main() -> None:
    """Run the grid and print the table and the scaling summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="M in 8, 32 and n in 1, 3 only")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--auctions", type=int, default=1, help="queries per run_auctions call")
    parser.add_argument("--candidates", type=int, nargs="+", help="M grid (default 8 32 128)")
    parser.add_argument("--advertisers", type=int, nargs="+", help="n grid (default 1 3 6)")
    parser.add_argument("--proposals", nargs="+", choices=PROPOSALS, default=list(PROPOSALS))
    args = parser.parse_args()
    if args.auctions < 1 or args.repeats < 1:
        parser.error("--auctions and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    ms = sorted(args.candidates or ([8, 32] if args.quick else [8, 32, 128]))
    ns = sorted(args.advertisers or ([1, 3] if args.quick else [1, 3, 6]))
    lm = LanguageModel.load("bundled:tiny-ads", device=args.device)
    started = time.perf_counter()
    print(
        f"device={lm.device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"query={QUERY!r} T={MAX_NEW_TOKENS} tau={TAU} A={args.auctions} "
        f"repeats={args.repeats} (median, interleaved, after a warm-up)"
    )
    print("per-query ms; rows = teacher-forced scoring rows per query; other = full - stages")
    print(HEADER)
    rows = []
    for proposal in args.proposals:
        for m in ms:
            for n in ns:
                row = measure(lm, proposal, m, n, args.auctions, args.repeats)
                rows.append(row)
                print(format_row(row), flush=True)
    summarize(rows, ms, ns)
    print(f"total benchmark time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

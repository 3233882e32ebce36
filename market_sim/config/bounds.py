"""Numeric bounds of scenario keys: what the simulation's arithmetic handles, stated once.

Every number a scenario gives is checked against these bounds when the scenario loads, so a value
the math cannot handle is refused (exit 2, one line naming the key and the bound) instead of
producing NaN or an overflow rounds later. The reasons, per bound:

* Temperatures ``T`` (``mechanism.temperature``, ``relevance_temperature``, ``tau``,
  ``fine_tune_beta``, ``regularization``, ``eva.beta``) divide log-probabilities or rewards:
  ``softmax(x / T)``. With ``T`` in ``[1e-3, 1e3]`` and ``|x| <= 1e6 * n`` the quotient stays far
  inside float32's range (3.4e38), so ``exp`` after max-subtraction never sees ``inf - inf``.
* Valuations (and hence truthful bids) lie in ``[0, 1e6]``; a lognormal valuation's ``mean``
  (of the log) lies in ``[-20, ln 1e6 = 13.8]`` with ``sigma <= 5``. Payments multiply bids by
  competing bids, so ``1e6 * 100 (bid multiplier) = 1e8`` squared stays exact in float64.
* Bid multipliers and report distortions (``distortion``, ``distortion_*``) lie in ``(0, 100]``: a
  distortion is an exponent ``p ** s`` taken as ``s * log p`` with ``log p >= -1e4``.
* Learning and exploration rates lie in ``[0, 100]`` (they scale bounded losses inside ``exp``).
* ``seed`` fits the 63-bit seed bound of the market (``2**63 - 1``, numpy's and torch's
  generators take it); ``rounds`` is at most ``1e7``, and so is the number of auctions
  ``rounds * auctions_per_round`` (a run writes one row per auction and keeps every row in
  memory until it ends).
"""

from __future__ import annotations

SEED_MAX = 2**63 - 1
"""Largest ``seed``: the market draws round seeds below the same 63-bit bound."""

SEED_MAX_31_BIT = 2**31 - 1
"""The 31-bit bound below which a few components draw their seeds (an eva generation's reward
seed, a rewrite's seed, the fine-tuned affine grid's seed), as the market draws round seeds below
:data:`SEED_MAX`. Kept at 31 bits: widening it would change every recorded result of those
components."""

MAX_ROUNDS = 10**7
"""Largest ``rounds`` (and ``regret.every``, ``eva.evolve_every``)."""

MAX_AUCTIONS = 10**7
"""Largest ``rounds * auctions_per_round``: the auctions of a run, one row each, all in memory.

Replicates in lockstep (``run --seeds``) share one process and its memory, so the bound holds for
their auctions together (:func:`check_replicate_auctions`)."""


def check_replicate_auctions(replicates: int, rounds: int, auctions_per_round: int) -> None:
    """Refuse replicates whose auctions together exceed :data:`MAX_AUCTIONS`.

    Raises:
        ValueError: ``replicates * rounds * auctions_per_round > MAX_AUCTIONS``; the message
            names the counts and the way out (fewer seeds, or a sweep, one run at a time).
    """
    per_run = rounds * auctions_per_round
    total = replicates * per_run
    if total > MAX_AUCTIONS:
        raise ValueError(
            f"{replicates:,} replicates x {per_run:,} auctions = {total:,} auctions, every row "
            f"kept in memory in one process; at most {MAX_AUCTIONS:,} in all (fewer seeds, "
            "or `market-sim sweep`, which runs one seed at a time)"
        )


MIN_TEMPERATURE = 1e-3
"""Smallest temperature-like divisor (see the module docstring)."""

MAX_TEMPERATURE = 1e3
"""Largest temperature-like divisor."""

MAX_VALUATION = 1e6
"""Largest valuation (``value``, ``low``, ``high``), platform weight, slot value, user weight."""

MIN_LOG_VALUATION = -20.0
"""Smallest lognormal ``mean`` (of the log of the valuation)."""

MAX_LOG_VALUATION = 13.8
"""Largest lognormal ``mean``: ``exp(13.8) < 1e6 = MAX_VALUATION``."""

MAX_LOG_SIGMA = 5.0
"""Largest lognormal ``sigma``."""

LOGNORMAL_SIGMAS_BELOW_MAX = 6.0
r"""A lognormal valuation needs ``mean + 6 sigma <= ln(MAX_VALUATION)``: a draw above the bound
then has probability below 1e-9 (the normal's upper tail at 6), and such a draw is cut to
``MAX_VALUATION`` (:func:`market_sim.market.valuations.bounded`), so every valuation lies in
``[0, MAX_VALUATION]``. The cut moves the mean more than the probability (the tail is heavy:
at the edge, 4.5e-8 relative for sigma = 1, 6.3e-4 for sigma = 3), so
:func:`market_sim.market.valuations.expected_valuation` gives the mean of the cut
distribution."""

MAX_MULTIPLIER = 100.0
"""Largest bid multiplier, report distortion (``distortion``) or initial policy value."""

MAX_RATE = 100.0
"""Largest learning or exploration rate of a learner."""

MAX_LEARNING_RATE = 1.0
"""Largest optimizer learning rate (fine-tuning, DPO)."""

MAX_SAMPLES = 65_536
"""Largest sample count of a sweep or experiment table."""


DEFAULT_CHECKPOINT_SECONDS = 600.0
"""Seconds of rounds between two checkpoints of a run (``run --checkpoint-every``, a sweep's
runs): long enough that writing the state, which grows with the records, stays a small part of a
run; short enough that an interrupted run loses at most ten minutes."""

r"""Ad-slot baselines on the LM: the unsponsored reply to the query, with ads in k slots beside it.

The reply is sampled from the user's distribution alone (the query prompt, no brand context), so
ads never steer the text: each of its decoding steps is the user's own distribution and the
user's value is the number of steps (the same unit as the token auction's
:math:`\sum_t 1 - TV(q_t, p_0)`, EOS step included). Advertisers are allocated click-through
rates by :func:`market_sim.mechanisms.slot_auctions.slot_auction`.

``reply`` chooses how replies are produced: ``sampled`` draws a fresh reply every round (seeded
by the round); ``cached`` samples one reply per distinct query the first time it is asked and
reuses it, which makes long runs (10^5 rounds) cost nothing on the LM; the auction itself does
not depend on the reply either way.

``slot_value`` is the exchange rate between the two allocation units: an advertiser in a slot
with click-through rate c gets allocation ``c * slot_value`` and pays its per-click price times
the same. With ``slot_value = 1`` a valuation is a value per click; with ``slot_value =
max_new_tokens`` an ad seen with certainty is worth as much as steering every token of the reply
in the token auction, which puts revenue and welfare of both kinds of mechanism on one scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from market_sim.config.bounds import SEED_MAX
from market_sim.lm.model import LanguageModel
from market_sim.mechanisms.options import REPLY_MODES
from market_sim.mechanisms.slot_auctions import (
    SlotAuctionKind,
    check_click_through_rates,
    ranked_slot_auction,
    slot_auction,
)
from market_sim.platform.base import (
    AuctionOutcome,
    Bidder,
    CounterfactualValues,
    Report,
    ReportBatch,
    check_batch,
)
from market_sim.platform.report_spaces import BIDS_ONLY


class SlotAuctionCounterfactual:
    """One slot auction re-run for one bidder: others' bids and the tie-break order held fixed."""

    def __init__(
        self,
        bids: np.ndarray,
        priority: np.ndarray,
        click_through_rates: np.ndarray,
        kind: SlotAuctionKind,
        slot_value: float = 1.0,
    ) -> None:
        self.bids = bids
        self.priority = priority
        self.click_through_rates = click_through_rates
        self.kind = kind
        self.slot_value = slot_value

    def evaluate(self, agent: int, reports: ReportBatch | Sequence[Report]) -> CounterfactualValues:
        """Allocation (click-through rate) and payment of ``agent`` under each report's bid."""
        batch = ReportBatch.of(reports)
        candidates = np.repeat(self.bids[None], len(batch), axis=0)
        candidates[:, agent] = batch.bid
        outcome = ranked_slot_auction(
            candidates, self.click_through_rates, self.kind, self.priority
        )
        return CounterfactualValues(
            allocations=outcome.allocations[:, agent] * self.slot_value,
            payments=outcome.payments[:, agent] * self.slot_value,
        )

    def jump_bids(self, agent: int) -> np.ndarray:
        """``[n]`` where ``agent``'s outcome can jump: :func:`slot_jump_bids`."""
        return slot_jump_bids(self.bids, agent)


def slot_jump_bids(bids: np.ndarray, agent: int) -> np.ndarray:
    """``[..., n]``: the other bids and 0, where ``agent``'s slot and price can change.

    A bid of 0 is never shown and any positive bid may be; above that, ``agent``'s rank
    changes only at another bid. Between two neighbouring such bids it takes the same slot,
    and its payment there is constant (second price, GSP, VCG: set by the others' bids) or its
    own bid times the click-through rate (first price): the utility is constant or falls with
    the bid (:class:`~market_sim.platform.base.JumpBids`).

    Args:
        bids: ``[..., n]`` the auction's bids (``[n]``, or ``[K, n]`` for K auctions).
        agent: The advertiser's column.

    Returns:
        ``[..., n]``: the ``n - 1`` other bids in column order, then 0.
    """
    others = np.delete(bids, agent, axis=-1)
    return np.concatenate([others, np.zeros((*others.shape[:-1], 1))], axis=-1)


class SlotAuctionPlatform:
    """First-price, second-price, GSP or VCG ad slots beside the unsponsored LM reply.

    Args:
        lm: The platform language model (writes the unsponsored reply).
        kind: The slot auction.
        click_through_rates: ``[k]`` non-increasing click-through rates of the slots.
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature of the reply.
        reply: ``sampled`` (fresh reply each round) or ``cached`` (one reply per query).
        slot_value: Allocation units of a click-through rate of 1 (see the module docstring).
    """

    report_space = BIDS_ONLY

    def __init__(
        self,
        lm: LanguageModel,
        kind: SlotAuctionKind,
        click_through_rates: Sequence[float],
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        reply: str = "sampled",
        slot_value: float = 1.0,
    ) -> None:
        if reply not in REPLY_MODES:
            raise ValueError(f"reply must be one of {', '.join(REPLY_MODES)}, got {reply!r}")
        self.lm = lm
        self.kind = kind
        self.click_through_rates = check_click_through_rates(np.asarray(click_through_rates))
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.reply = reply
        self.slot_value = slot_value
        self._reply_cache: dict[str, list[int]] = {}

    @property
    def needs_lm_per_auction(self) -> bool:
        """Whether an auction costs an LM call: only with ``sampled`` replies.

        With ``cached`` replies the LM writes one reply per distinct query, ever, so the market
        may run these auctions as array operations (:mod:`market_sim.market.array_round`).
        """
        return self.reply != "cached"

    def replies(self, queries: Sequence[str], seed: int) -> list[list[int]]:
        """Unsponsored replies to the queries (one batched ``generate`` for those not cached)."""
        if self.reply == "sampled":
            return self._sample(queries, seed)
        missing = list(dict.fromkeys(q for q in queries if q not in self._reply_cache))
        if missing:
            self._reply_cache.update(zip(missing, self._sample(missing, seed), strict=True))
        return [self._reply_cache[q] for q in queries]

    def _sample(self, queries: Sequence[str], seed: int) -> list[list[int]]:
        prompts = [self.lm.encode_prompt(self.lm.prompt(q)) for q in queries]
        return self.lm.sample(prompts, self.max_new_tokens, self.temperature, seed)

    def run_auctions(
        self, queries: Sequence[str], bidders: Sequence[Sequence[Bidder]], seed: int
    ) -> list[AuctionOutcome]:
        """Run A slot auctions beside A unsponsored replies (see :class:`Platform`)."""
        check_batch(queries, bidders)
        if not queries:
            return []
        rng = np.random.default_rng(seed)
        bids = np.array([[b.report.bid for b in group] for group in bidders], dtype=np.float64)
        priority = np.stack([rng.permutation(bids.shape[1]) for _ in queries]).astype(np.float64)
        outcome = slot_auction(bids, self.click_through_rates, self.kind, priority)
        allocations = outcome.allocations * self.slot_value
        payments = outcome.payments * self.slot_value
        replies = self.replies(queries, int(rng.integers(SEED_MAX)))
        results = []
        for a, tokens in enumerate(replies):
            stopped = len(tokens) < self.max_new_tokens
            results.append(
                AuctionOutcome(
                    text=self.lm.decode(tokens).strip(),
                    token_ids=tokens,
                    allocations=allocations[a],
                    reported_allocations=allocations[a],
                    payments=payments[a],
                    user_value=float(len(tokens) + stopped),
                    extras={
                        "n_tokens": float(len(tokens)),
                        "stopped_at_eos": float(stopped),
                        "slots_filled": float((outcome.slots[a] >= 0).sum()),
                    },
                    counterfactual=SlotAuctionCounterfactual(
                        bids[a], priority[a], self.click_through_rates, self.kind, self.slot_value
                    ),
                )
            )
        return results

r"""Counterfactual token auctions: one advertiser's outcome under other reports, same round.

A generated reply fixes, step by step, the participants' next-token distributions along the
realized prefix. Holding that prefix and every other report fixed, advertiser :math:`i`'s
per-token allocation and payment depend only on its own bid :math:`z` and sharpening
exponent :math:`s` (reported :math:`\tilde p_i \propto p_i^{s}`). Summing over the reply's steps
gives its counterfactual sequence allocation and payment without any new LM call:

.. math::

    x_i(z, s) = \sum_t 1 - \mathrm{TV}\big(q_t(z, s), p_{i,t}\big), \qquad
    \mathrm{pay}_i(z, s) = \sum_t \mathrm{pay}_{i,t}(z, s).

This is the game in which the token auction's incentive claims are made (per token, for the
distributions at hand); a deviation that would have changed the sampled tokens and hence later
distributions is not followed. Under ``settlement = "ex_post"`` the counterfactual charges the
expected critical-bid payment (the expectation of the ex-post payment over the stable-sampling
draw), since the draw that would have been made under another bid is not defined by the record.

Agent-versus-rest reduction: both aggregations are linear in the weights (of :math:`p_j` for
``linear``, of the floored :math:`\log p_j` for ``log_linear``), so for advertiser :math:`i` every
other participant (the user with :math:`b_0` included) collapses into one "rest" participant
with weight :math:`B_i = b_0 + \sum_{j \ne i} b_j` and distribution
:math:`\sum_{j \ne i} b_j \tilde p_j / B_i` (linear) or log-distribution
:math:`\sum_{j \ne i} b_j \log \max(\tilde p_j, \text{floor}) / B_i` (log-linear). The two-party
problem (rest first, in the user's column) gives exactly the same aggregate, allocation and
payment for :math:`i` as the full auction, at a cost that does not grow with n. When
:math:`B_i = 0` the rest is the user's :math:`p_0`, the fallback of the full auction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from market_sim.mechanisms.ladder_quadrature import (
    GAUSS_NODES_PER_PANEL,
    LadderRemainder,
    ladder_panel_rule,
    ladder_panels_per_unit,
    ladder_remainder_rule,
)
from market_sim.mechanisms.log_linear_shares import log_linear_share_allocations
from market_sim.mechanisms.token_auction import (
    LOG_PROB_FLOOR,
    TokenAuctionRule,
    aggregate,
    allocations,
    check_bids,
    linear_second_price_payments,
    myerson_ownership_payment,
    normalized_weights,
    numerical_second_price_payments,
    sharpen,
    total_variation,
)

ELEMENT_BUDGET = 2**22
"""Float64 elements per batch of counterfactual rows (bounds memory at about 32 MB)."""

QUADRATURE_CHUNK = 16


@dataclass(frozen=True)
class AgentCounterfactual:
    r"""Summed outcomes of one advertiser under K candidate reports.

    Attributes:
        true_allocations: ``[K]`` :math:`\sum_t 1 - TV(q_t, p_{i,t})` (true preferences).
        reported_allocations: ``[K]`` the same against the reported distribution.
        payments: ``[K]`` summed payments.
    """

    true_allocations: torch.Tensor
    reported_allocations: torch.Tensor
    payments: torch.Tensor


class TokenAuctionCounterfactual:
    """The recorded distributions of one token auction, re-priced for one advertiser at a time.

    Args:
        step_logprobs: ``[S, n + 1, V]`` the TRUE (tempered) log-probabilities at each of the S
            generated steps, user first, as the mechanism saw them before sharpening.
        bids: ``[n]`` the bids of the round.
        exponents: ``[n]`` the sharpening exponents of the round.
        rule: The auction's rule.

    Domain: bids (the round's and the candidates') finite and >= 0 whose sums stay below the
    float64 maximum (1.8e308); exponents finite and > 0. Outside it, ValueError.
    """

    def __init__(
        self,
        step_logprobs: torch.Tensor,
        bids: torch.Tensor,
        exponents: torch.Tensor,
        rule: TokenAuctionRule,
    ) -> None:
        check_bids(bids)
        self.step_logprobs = step_logprobs.float()
        self.bids = bids.double()
        self.exponents = exponents.float()
        self.rule = rule
        self._rest_cache: dict[int, tuple[torch.Tensor, float]] = {}
        self._memo: dict[int, dict[tuple[float, float], tuple[float, float, float]]] = {}
        self._ladders: dict[tuple[int, float], torch.Tensor] = {}  # [S, P, G] per key

    @property
    def agent_count(self) -> int:
        """Number of advertisers n."""
        return int(self.bids.shape[0])

    def rest(self, agent: int) -> tuple[torch.Tensor, float]:
        """The other participants collapsed into one (see the module docstring).

        Returns:
            ``(rest_logprobs, rest_weight)``: ``[S, V]`` float64 log-distribution of the rest
            (unnormalized for log-linear) and its weight :math:`B_i`.
        """
        if agent in self._rest_cache:
            return self._rest_cache[agent]
        reported = torch.cat(
            [
                self.step_logprobs[:, :1],
                sharpen(self.step_logprobs[:, 1:], self.exponents),
            ],
            dim=1,
        ).double()
        weights = torch.cat([self.bids.new_tensor([self.rule.platform_weight]), self.bids]).to(
            reported.device
        )
        weights[agent + 1] = 0.0
        rest_weight = float(weights.sum())
        if rest_weight == float("inf"):
            raise ValueError(
                f"the other participants' weights sum past 1.8e308: {weights.tolist()}"
            )
        if rest_weight <= 0:
            rest = reported[:, 0]
        elif self.rule.aggregation == "linear":
            rest = (torch.einsum("m,smv->sv", weights, reported.exp()) / rest_weight).log()
        else:
            floored = reported.clamp_min(LOG_PROB_FLOOR)
            rest = torch.einsum("m,smv->sv", weights, floored) / rest_weight
        self._rest_cache[agent] = (rest, rest_weight)
        return rest, rest_weight

    def evaluate(
        self, agent: int, bids: torch.Tensor, exponents: torch.Tensor
    ) -> AgentCounterfactual:
        """Advertiser ``agent``'s summed allocation and payment under K candidate reports.

        Under log-linear aggregation (quadrature: the costly case) each distinct
        (bid, exponent) is computed once per engine and remembered, since a candidate's outcome
        does not depend on the other candidates: a regret search's zoom grids repeat the
        corners of the previous bracket, and the truthful report is usually on the coarse grid
        too. Linear aggregation is cheap and evaluates the batch as given (the sums over steps
        of a different batch could round differently in the last bit).

        Args:
            agent: Advertiser index in ``0..n-1``.
            bids: ``[K]`` candidate bids z >= 0.
            exponents: ``[K]`` candidate sharpening exponents s > 0.

        Returns:
            ``[K]`` true allocations, reported allocations and payments, summed over steps.
        """
        check_bids(bids)
        if self.rule.aggregation == "linear":
            return self._evaluate_distinct(agent, bids, exponents)
        bids = bids.double().cpu()
        exponents = exponents.float().cpu()
        keys = list(zip(bids.tolist(), exponents.tolist(), strict=True))
        memo = self._memo.setdefault(agent, {})
        missing = list(dict.fromkeys(key for key in keys if key not in memo))
        if missing:
            fresh = self._evaluate_distinct(
                agent,
                torch.tensor([bid for bid, _ in missing], dtype=torch.float64),
                torch.tensor([exponent for _, exponent in missing], dtype=torch.float32),
            )
            columns = zip(
                fresh.true_allocations.tolist(),
                fresh.reported_allocations.tolist(),
                fresh.payments.tolist(),
                strict=True,
            )
            memo.update(zip(missing, columns, strict=True))
        true, reported, payments = zip(*(memo[key] for key in keys), strict=True)
        return AgentCounterfactual(
            true_allocations=torch.tensor(true, dtype=torch.float64),
            reported_allocations=torch.tensor(reported, dtype=torch.float64),
            payments=torch.tensor(payments, dtype=torch.float64),
        )

    def _evaluate_distinct(
        self, agent: int, bids: torch.Tensor, exponents: torch.Tensor
    ) -> AgentCounterfactual:
        """:meth:`evaluate` without the memo (the candidates' outcomes, computed)."""
        rest, rest_weight = self.rest(agent)
        steps, vocab = rest.shape
        device = rest.device
        bids = bids.to(device=device, dtype=torch.float64)
        exponents = exponents.to(device=device, dtype=torch.float32)
        true_logprobs = self.step_logprobs[:, agent + 1]
        # Sharpen once per distinct exponent: [S, U, V], candidates index into it.
        distinct, which = torch.unique(exponents, return_inverse=True)
        sharpened = sharpen(true_logprobs.unsqueeze(1), distinct.unsqueeze(0)).double()
        if self.rule.aggregation == "linear":
            return self._evaluate_linear(
                rest, rest_weight, true_logprobs, sharpened, distinct, which, bids
            )
        if rest_weight > 0:
            return self._evaluate_log_linear(
                agent, rest, rest_weight, true_logprobs, sharpened, distinct, which, bids
            )
        numerical = self.rule.payment == "second_price" and self.rule.aggregation != "linear"
        per_row = vocab * (QUADRATURE_CHUNK + 4 if numerical else 8)
        chunk = max(1, ELEMENT_BUDGET // (per_row * steps))
        parts = [
            self._evaluate_chunk(
                rest, rest_weight, true_logprobs, sharpened[:, which[s:e]], bids[s:e]
            )
            for s, e in ((s, min(s + chunk, len(bids))) for s in range(0, len(bids), chunk))
        ]
        return AgentCounterfactual(
            true_allocations=torch.cat([p[0] for p in parts]),
            reported_allocations=torch.cat([p[1] for p in parts]),
            payments=torch.cat([p[2] for p in parts]),
        )

    def _evaluate_linear(
        self,
        rest: torch.Tensor,
        rest_weight: float,
        true_logprobs: torch.Tensor,
        sharpened: torch.Tensor,
        distinct: torch.Tensor,
        which: torch.Tensor,
        bids: torch.Tensor,
    ) -> AgentCounterfactual:
        r"""Linear aggregation in closed form over the two-party problem.

        With :math:`\lambda = B / (B + z)` (1 when :math:`B + z = 0`, the user fallback),
        :math:`q = \lambda r + (1 - \lambda) \tilde p`, so :math:`q - \tilde p = \lambda (r -
        \tilde p)` and the reported allocation is :math:`1 - \lambda\,TV(r, \tilde p)`; the
        second-price payment is :math:`TV(r, \tilde p)` times the ownership payment of
        :func:`~market_sim.mechanisms.token_auction.myerson_ownership_payment`. Only the true
        allocation of a sharpened report needs a pass over the vocabulary per candidate:
        :math:`q - p = (\tilde p - p) + \lambda (r - \tilde p)`, one fused multiply-add and
        one absolute sum per (step, candidate) over two ``[S, V]`` vectors fixed per exponent
        (4.5x faster than forming q first in a standalone CPU measurement of a
        ``[17, 21, 1562]`` block; the sums differ by float64 rounding, about 1e-15 relative).

        Args:
            rest: ``[S, V]`` log of the rest's distribution.
            rest_weight: Its weight B.
            true_logprobs: ``[S, V]`` the advertiser's true log-probabilities.
            sharpened: ``[S, U, V]`` float64 reported log-probabilities per distinct exponent.
            distinct: ``[U]`` the distinct exponents (s = 1 reports need no true-allocation pass).
            which: ``[K]`` index of each candidate's exponent in ``sharpened``.
            bids: ``[K]`` candidate bids.
        """
        rest_probs = rest.exp()
        true_probs = true_logprobs.double().exp()
        reported_probs = sharpened.exp()
        total = rest_weight + bids
        share = torch.where(
            total > 0, rest_weight / total.clamp_min(1e-300), torch.ones_like(total)
        )
        rest_distance = total_variation(rest_probs.unsqueeze(1), reported_probs)  # [S, U]
        reported_alloc = (1.0 - share * rest_distance[:, which]).sum(0)
        true_alloc = reported_alloc.clone()  # exact where the report is truthful (s = 1)
        chunk = max(1, ELEMENT_BUDGET // (2 * rest.numel()))
        for index in range(reported_probs.shape[1]):
            if distinct[index] == 1.0:
                continue
            members = (which == index).nonzero().squeeze(-1)
            gap = (reported_probs[:, index] - true_probs).unsqueeze(1)  # [S, 1, V]: p~ - p
            slope = (rest_probs - reported_probs[:, index]).unsqueeze(1)  # [S, 1, V]: r - p~
            for part in members.split(chunk):
                difference = torch.addcmul(gap, share[part].view(1, -1, 1), slope)  # q - p
                distance = 0.5 * difference.abs_().sum(-1)  # [S, k]: TV(q, p)
                true_alloc[part] = (1.0 - distance).sum(0)
        if self.rule.payment == "none":
            payments = torch.zeros_like(bids)
        elif self.rule.payment == "first_price":
            payments = bids * reported_alloc
        else:
            ownership = myerson_ownership_payment(bids, bids.new_tensor(rest_weight))
            payments = rest_distance[:, which].sum(0) * ownership
        return AgentCounterfactual(true_alloc, reported_alloc, payments)

    def _evaluate_log_linear(
        self,
        agent: int,
        rest: torch.Tensor,
        rest_weight: float,
        true_logprobs: torch.Tensor,
        sharpened: torch.Tensor,
        distinct: torch.Tensor,
        which: torch.Tensor,
        bids: torch.Tensor,
    ) -> AgentCounterfactual:
        r"""Log-linear aggregation against a rest of positive weight, by the agent's share.

        With :math:`t = z / (B + z)` the agent's share of the weight, :math:`r` the rest's
        floored log-distribution and :math:`f` the floored report, the aggregate logits are
        :math:`r + t (f - r)`, so one softmax over the vocabulary per (step, share) gives
        :math:`x(z) = 1 - TV(q(t), \tilde p)` (:meth:`_share_allocations`). Per distinct
        exponent (one report :math:`\tilde p`, shared by every candidate bid with that
        exponent) and step, the second-price payment

        .. math:: \mathrm{pay}(b) = b\,x(b) - \sum_{j \le J(b)} \sum_k v_{jk}(b)\, x(B u_{jk})
                  - \sum_e \omega_e(b)\, x(\zeta_e(b))

        is the rule of :func:`~market_sim.mechanisms.token_auction.numerical_second_price_payments`
        (:func:`~market_sim.mechanisms.ladder_quadrature.ladder_remainder_rule`) split by what
        depends on b: the allocations at the ladder's nodes :math:`B u_{jk}` (``[S, P, G]``,
        computed once per (agent, exponent) up to the panel of the largest bid asked so far and
        kept, so a regret search's zoom rounds extend them instead of recomputing them) are
        shared by all bids; each bid weighs them by its own :math:`v_{jk}` (:math:`B w_{jk}`
        below its panel, the interpolation weights :math:`\pi_k` on it; the whole panels'
        sums enter through a cumulative sum, ``[S, P + 1]``) and adds :math:`x(b)`. Only bids in
        the ladder's first panel or above its top have nodes :math:`\zeta_e` of their own
        (``GAUSS_NODES_PER_PANEL``, or the tail's). Cost per step: about :math:`8 P + K`
        softmaxes for K bids inside the ladder, against :math:`65 K` for a rule scaled to each
        bid. Payments are clamped per step to :math:`[0, b x(b)]` as there; the numbers equal
        that function's within float64 rounding of the logits and of the summation order
        (measured up to 1e-13 relative, on small first-panel payments).

        Args:
            agent: Advertiser index (keys the kept ladder allocations).
            rest: ``[S, V]`` the rest's floored, weighted mean log-probabilities.
            rest_weight: Its weight :math:`B > 0`.
            true_logprobs: ``[S, V]`` the advertiser's true log-probabilities.
            sharpened: ``[S, U, V]`` float64 reported log-probabilities per distinct exponent.
            distinct: ``[U]`` the distinct exponents.
            which: ``[K]`` index of each candidate's exponent in ``sharpened``.
            bids: ``[K]`` candidate bids.
        """
        rule = self.rule
        steps = rest.shape[0]
        quadrature = rule.payment == "second_price"
        per_unit = ladder_panels_per_unit(rule.integration_nodes)
        true_probs = true_logprobs.double().exp()
        reported_alloc = torch.zeros(steps, len(bids), dtype=torch.float64, device=bids.device)
        true_alloc = torch.zeros_like(reported_alloc)
        payments = torch.zeros_like(reported_alloc)
        if quadrature:
            every_remainder = ladder_remainder_rule(bids, bids.new_tensor(rest_weight), per_unit)
        for index in range(sharpened.shape[1]):
            members = (which == index).nonzero().squeeze(-1)
            if members.numel() == 0:
                continue
            count = len(members)
            member_bids = bids[members]
            report = sharpened[:, index]
            key = (agent, float(distinct[index]))
            kept = self._ladders.get(key, rest.new_zeros(steps, 0, GAUSS_NODES_PER_PANEL))
            new_ladder = rest.new_zeros(0)
            own_nodes = rest.new_zeros(0, 0)
            if quadrature:
                remainder = every_remainder.select(members)
                needed = remainder.ladder_panels()
                if needed > kept.shape[1]:
                    ladder_nodes, _ = ladder_panel_rule(per_unit, needed)
                    new_ladder = rest_weight * rest.new_tensor(ladder_nodes[kept.shape[1] :])
                # Only the bids that have nodes of their own, and only the columns they use (a
                # first-panel bid in a call with a bid above the top would carry the tail's 64).
                # (No selection, hence no host synchronisation, when no bid of the call has any.)
                own_weights = remainder.weights
                if own_weights.shape[-1]:
                    with_own = (own_weights != 0).any(-1).nonzero().squeeze(-1)
                    used_columns = (own_weights[with_own] != 0).any(0).nonzero().squeeze(-1)
                    own_nodes = remainder.nodes[with_own][:, used_columns]  # [K', E']
                    own_weights = own_weights[with_own][:, used_columns]
            # Shares: new ladder nodes, some members' own nodes, each member's bid.
            grid = torch.cat([new_ladder.flatten(), own_nodes.flatten(), member_bids])
            shares = grid / (rest_weight + grid)
            reported_x, true_x = self._share_allocations(rest, report, true_probs, shares, count)
            at_bid = reported_x[:, -count:]
            reported_alloc[:, members] = at_bid
            true_alloc[:, members] = true_x
            if rule.payment == "first_price":
                payments[:, members] = member_bids * at_bid
            elif quadrature:
                ladder_count = new_ladder.numel()
                if ladder_count:
                    fresh = reported_x[:, :ladder_count].view(steps, -1, GAUSS_NODES_PER_PANEL)
                    kept = torch.cat([kept, fresh], dim=1)
                    self._ladders[key] = kept
                integral = self._ladder_integral(kept, remainder, rest_weight, per_unit)
                if own_nodes.numel():
                    own_x = reported_x[:, ladder_count:-count].view(steps, *own_nodes.shape)
                    own_integral = (own_x * own_weights).sum(-1)
                    integral[:, with_own] += own_integral
                full_charge = member_bids * at_bid
                charged = (full_charge - integral).clamp_min(0)
                payments[:, members] = charged.minimum(full_charge)
        return AgentCounterfactual(true_alloc.sum(0), reported_alloc.sum(0), payments.sum(0))

    @staticmethod
    def _ladder_integral(
        kept: torch.Tensor, remainder: LadderRemainder, rest_weight: float, per_unit: int
    ) -> torch.Tensor:
        r"""The ladder's part of :math:`\int_0^b x`, per step and bid.

        :math:`B \sum_{j < J} L_j + \sum_k \pi_k x(B u_{Jk})` with the panel sums
        :math:`L_j = \sum_k w_{jk} x(B u_{jk})` summed by a cumulative sum over the kept panels
        (so a bid's whole panels sum the same way however far the ladder has been extended).

        Args:
            kept: ``[S, P, G]`` allocations at the ladder's nodes, P >= every bid's panels.
            remainder: ``[K]`` the bids' rule.
            rest_weight: The competing weight B.
            per_unit: Ladder panels per unit of y.

        Returns:
            ``[S, K]`` float64.
        """
        steps, panels, _ = kept.shape
        _, ladder_weights = ladder_panel_rule(per_unit, panels)
        panel_sums = (kept * kept.new_tensor(ladder_weights)).sum(-1)  # [S, P]
        prefix = torch.cat([kept.new_zeros(steps, 1), panel_sums.cumsum(-1)], dim=1)
        whole = remainder.whole
        # Panel J's nodes, for bids whose panel is interpolated (others have weights 0 there).
        on_panel = kept[:, whole.clamp_max(max(panels - 1, 0))] if panels else None
        integral = rest_weight * prefix[:, whole]
        if on_panel is not None:
            integral = integral + (on_panel * remainder.panel_weights).sum(-1)
        return integral

    @staticmethod
    def _share_allocations(
        rest: torch.Tensor,
        report: torch.Tensor,
        true_probs: torch.Tensor,
        shares: torch.Tensor,
        true_count: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Allocations :math:`1 - TV(q(t), \cdot)` at the agent's shares t, per step.

        Args:
            rest: ``[S, V]`` the rest's floored log-probabilities.
            report: ``[S, V]`` the agent's reported log-probabilities.
            true_probs: ``[S, V]`` its true probabilities.
            shares: ``[N]`` shares t in [0, 1), the same at every step.
            true_count: The last ``true_count`` shares also need the true allocation.

        Returns:
            ``([S, N], [S, true_count])``: reported and true allocations, in [0, 1]
            (:func:`~market_sim.mechanisms.log_linear_shares.log_linear_share_allocations`).
        """
        return log_linear_share_allocations(
            rest,
            report,
            shares.unsqueeze(0).expand(rest.shape[0], -1),
            LOG_PROB_FLOOR,
            true_probs,
            true_count,
        )

    def _evaluate_chunk(
        self,
        rest: torch.Tensor,
        rest_weight: float,
        true_logprobs: torch.Tensor,
        reported: torch.Tensor,
        bids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outcomes for k candidates, summed over the S steps (rows are S*k two-party auctions).

        Args:
            rest: ``[S, V]`` the rest's log-distribution.
            rest_weight: Its weight.
            true_logprobs: ``[S, V]`` the advertiser's true log-probabilities.
            reported: ``[S, k, V]`` float64 reported log-probabilities of the k candidates.
            bids: ``[k]`` candidate bids.
        """
        steps, vocab = rest.shape
        k = bids.shape[0]
        logprobs = torch.stack([rest.unsqueeze(1).expand(steps, k, vocab), reported], dim=2)
        logprobs = logprobs.reshape(steps * k, 2, vocab)
        raw = torch.stack([torch.full_like(bids, rest_weight), bids], dim=-1).repeat(steps, 1)
        probs = logprobs.exp()
        q = aggregate(logprobs, normalized_weights(raw), self.rule.aggregation, probs)
        reported_alloc = allocations(q, probs[:, 1:]).squeeze(-1)
        true_probs = true_logprobs.double().exp().repeat_interleave(k, dim=0)
        true_alloc = allocations(q, true_probs.unsqueeze(1)).squeeze(-1)
        rule = self.rule
        if rule.payment == "none":
            payments = torch.zeros_like(reported_alloc)
        elif rule.payment == "first_price":
            payments = raw[:, 1] * reported_alloc
        elif rule.aggregation == "linear":
            payments = linear_second_price_payments(probs, raw).squeeze(-1)
        else:
            payments = numerical_second_price_payments(
                logprobs, raw, rule.aggregation, rule.integration_nodes, QUADRATURE_CHUNK
            ).squeeze(-1)

        def total(per_row: torch.Tensor) -> torch.Tensor:
            return per_row.reshape(steps, k).sum(0)

        return total(true_alloc), total(reported_alloc), total(payments)

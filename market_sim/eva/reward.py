r"""The reward eva's creator and solver optimize: the user's plus the advertisers' value of a reply.

For a query :math:`x` and a reply :math:`y` (scored as the complete reply, EOS included where it
stopped),

.. math::

    R(x, y) = w_0 \, s_0(x, y) + \sum_i v_i \, s_i(x, y),

* :math:`s_i(x, y) = \sigma(\bar\ell_i / T)` the relevance of the reply for advertiser
  :math:`i` (its brand context + the query against the query alone, the score MOSAIC and the
  affine maximizer use, :func:`market_sim.mechanisms.relevance.relevance_scores`), weighted by its
  expected valuation :math:`v_i`;
* :math:`s_0(x, y) = \sigma(\bar\ell_0 / T)` the user's score: the mean per-token
  log-likelihood ratio of the reply given the query against the reply given an empty query,
  :math:`\bar\ell_0 = \frac1{|y|} \sum_t [\log p(y_t \mid x, y_{<t}) - \log p(y_t \mid
  \varnothing, y_{<t})]`: how specifically the reply answers this query (our choice; the
  published system uses a trained reward model, which the bundled setting does not have),
  weighted by ``user_weight`` :math:`w_0`.

All log-likelihoods come from the *judge*: the platform LM as loaded, frozen, never the solver
being trained, so the reward does not move while the solver learns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from market_sim.lm.model import LanguageModel, complete_reply
from market_sim.platform.candidate_scoring import ReplySampling, score_replies

"""The prompt of the user score's baseline: a reply with no query."""


@dataclass(frozen=True)
class RewardBreakdown:
    """Rewards of R replies and their parts.

    Attributes:
        total: ``[R]`` :math:`R(x, y)`.
        user: ``[R]`` :math:`s_0(x, y)`.
        advertisers: ``[n, R]`` :math:`s_i(x, y)`.
    """

    total: np.ndarray
    user: np.ndarray
    advertisers: np.ndarray


class ReplyReward:
    r"""Scores replies with the frozen judge (see the module docstring).

    Args:
        judge: The frozen platform LM.
        contexts: The n advertisers' brand contexts.
        valuations: Their n expected valuations :math:`v_i`.
        user_weight: :math:`w_0 \ge 0`.
        sampling: Reply length cap (decides which replies stopped), temperature of every
            distribution scored, relevance temperature T, rows per forward.
    """

    def __init__(
        self,
        judge: LanguageModel,
        contexts: Sequence[str],
        valuations: Sequence[float],
        user_weight: float,
        sampling: ReplySampling,
    ) -> None:
        if len(contexts) != len(valuations):
            raise ValueError("one valuation per advertiser context is required")
        if user_weight < 0:
            raise ValueError(f"user_weight must be >= 0, got {user_weight}")
        self.judge = judge
        self.contexts = list(contexts)
        self.valuations = np.asarray(valuations, dtype=np.float64)
        self.user_weight = float(user_weight)
        self.sampling = sampling

    def score(self, queries: Sequence[str], replies: Sequence[Sequence[int]]) -> RewardBreakdown:
        """Rewards of R replies, reply r answering ``queries[r]``.

        Args:
            queries: R query texts.
            replies: R replies (token ids, EOS cut, as ``LanguageModel.sample`` returns them).

        Returns:
            The breakdown, float64.
        """
        if len(queries) != len(replies):
            raise ValueError("one query per reply is required")
        if not replies:
            empty = np.zeros(0)
            return RewardBreakdown(empty, empty, np.zeros((len(self.contexts), 0)))
        sampling = self.sampling
        scores = score_replies(
            self.judge,
            queries,
            self.contexts,
            replies,
            sampling.max_new_tokens,
            sampling.temperature,
            extra_prompts=[self.judge.prompt("")] * len(replies),
            relevance_temperature=sampling.relevance_temperature,
            max_rows=sampling.max_rows,
        )
        lengths = torch.as_tensor(
            [
                len(complete_reply(r, sampling.max_new_tokens, self.judge.eos_token_id))
                for r in replies
            ],
            dtype=torch.float64,
        ).clamp_min(1.0)
        assert scores.extra_logprob is not None
        mean_ratio = (scores.reference_logprob - scores.extra_logprob) / lengths
        user = torch.sigmoid(mean_ratio / sampling.relevance_temperature).numpy()
        advertisers = scores.relevance.numpy()
        total = self.user_weight * user + self.valuations @ advertisers
        return RewardBreakdown(total, user, advertisers)

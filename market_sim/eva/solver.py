"""The solver's data: k replies per query from the current policy, and best/worst preference pairs.

For a query :math:`x` and k replies :math:`y_1..y_k` drawn from the policy, chosen is the reply
of highest reward and rejected the reply of lowest reward (first index on ties). A query whose
k rewards are all equal gives no pair (there is no preference to learn); it is counted as
skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from market_sim.eva.creator import informativeness
from market_sim.eva.pool import PoolQuery
from market_sim.eva.reward import ReplyReward
from market_sim.lm.model import LanguageModel
from market_sim.lm.preference import PreferencePair


@dataclass(frozen=True)
class RepliesAndRewards:
    """k replies per query and their rewards.

    Attributes:
        texts: The Q query texts.
        replies: Q lists of k replies (token ids, EOS cut).
        rewards: ``[Q, k]`` float64 total rewards.
        user: ``[Q, k]`` the user's part of the reward (unweighted score).
        advertisers: ``[Q, k]`` the advertisers' part, ``sum_i v_i s_i``.
    """

    texts: list[str]
    replies: list[list[list[int]]]
    rewards: np.ndarray
    user: np.ndarray
    advertisers: np.ndarray


def sample_and_score(
    policy: LanguageModel,
    reward: ReplyReward,
    texts: Sequence[str],
    replies_per_query: int,
    seed: int,
) -> RepliesAndRewards:
    """Draw k replies per query from ``policy`` in one batched call and score them.

    Args:
        policy: The model replies are drawn from (the solver).
        reward: The frozen judge's reward.
        texts: Q query texts.
        replies_per_query: k.
        seed: Seeds the draw.

    Returns:
        Replies and ``[Q, k]`` rewards.
    """
    sampling = reward.sampling
    k = replies_per_query
    rows = [policy.prompt(text) for text in texts for _ in range(k)]
    flat = policy.sample(rows, sampling.max_new_tokens, sampling.temperature, seed) if rows else []
    breakdown = reward.score([text for text in texts for _ in range(k)], flat)
    shape = (len(texts), k)
    return RepliesAndRewards(
        list(texts),
        [flat[q * k : (q + 1) * k] for q in range(len(texts))],
        breakdown.total.reshape(shape),
        breakdown.user.reshape(shape),
        (breakdown.total - reward.user_weight * breakdown.user).reshape(shape),
    )


def best_worst_pairs(
    policy: LanguageModel, scored: RepliesAndRewards
) -> tuple[list[PreferencePair], float]:
    """One (best, worst) pair per query with a reward spread.

    Returns:
        The pairs (prompt = the query's unsponsored prompt, replies as decoded text) and the
        mean reward of every reply scored.
    """
    pairs = []
    for q, text in enumerate(scored.texts):
        rewards = scored.rewards[q]
        best, worst = int(np.argmax(rewards)), int(np.argmin(rewards))
        if not rewards[best] > rewards[worst]:
            continue
        pairs.append(
            PreferencePair(
                prompt=policy.prompt(text),
                chosen=policy.decode(scored.replies[q][best]),
                rejected=policy.decode(scored.replies[q][worst]),
            )
        )
    mean = float(scored.rewards.mean()) if scored.rewards.size else float("nan")
    return pairs, mean


def reward_spread(
    policy: LanguageModel,
    reward: ReplyReward,
    replies_per_query: int,
    measure: str,
    seed: int,
) -> Callable[[list[PoolQuery]], np.ndarray]:
    """The creator's measure: informativeness of k replies per query drawn from ``policy``.

    Returns:
        ``measure(queries) -> [Q]`` (see :func:`~market_sim.eva.creator.informativeness`).
    """

    def spread(queries: list[PoolQuery]) -> np.ndarray:
        texts = [query.text for query in queries]
        scored = sample_and_score(policy, reward, texts, replies_per_query, seed)
        return informativeness(scored.rewards, measure)

    return spread

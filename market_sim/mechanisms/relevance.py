r"""Relevance of a reply to an advertiser: the reward model of the sequence-level mechanisms.

One definition, shared by MOSAIC (docs/design.md, section 3.2.2), the affine maximizer over
sampled replies and over fine-tuned copies (sections 3.3.4 and 3.4) and the evolving queries'
reward (section 6). Pure tensor math, float64; the log-probabilities come from the platform
(:mod:`market_sim.platform.candidate_scoring`).

.. math::

    s_i(y) = \sigma\big((\bar\ell_i(y) - c)/T\big) \in (0, 1), \qquad
    \bar\ell_i(y) = \frac{1}{|y|} \sum_{t=1}^{|y|}
        \big(\log p_i(y_t \mid \cdot) - \log \pi_{ref}(y_t \mid \cdot)\big),

with :math:`p_i` the platform LM conditioned on advertiser i's brand context, :math:`\pi_{ref}`
the LM on the query alone, :math:`\sigma` the logistic function, temperature T and offset c
(defaults 1 and 0). The mean (not the sum) over tokens keeps long and short replies comparable
and the score in (0, 1); a reply exactly as likely under i's LM as under :math:`\pi_{ref}` (and an
empty reply) scores :math:`\sigma(-c/T)`, 1/2 by default. Adding a constant to every reward of an
advertiser changes neither MOSAIC's selection nor anyone's incentive, so the neutral level is a
modelling choice for reported values only, not for the rules.
"""

from __future__ import annotations

import torch


def relevance_scores(
    advertiser_token_logprobs: torch.Tensor,
    reference_token_logprobs: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    offset: float = 0.0,
) -> torch.Tensor:
    r"""Relevance :math:`s_i(y) = \sigma\big((\bar\ell_i(y) - c)/T\big) \in (0, 1)`.

    :math:`\bar\ell_i(y)` is the mean over the reply's tokens of
    :math:`\log p_i(y_t \mid \cdot) - \log \pi_{ref}(y_t \mid \cdot)`.

    Args:
        advertiser_token_logprobs: ``[A, n, M, T]`` per-token log-probs of each candidate under
            each advertiser's LM (left-aligned, as ``LanguageModel.continuation_logprobs``).
        reference_token_logprobs: ``[A, M, T]`` the same under :math:`\pi_{ref}`.
        mask: ``[A, M, T]`` bool, real tokens.
        temperature: T > 0.
        offset: c, the mean log-ratio that maps to 1/2.

    Returns:
        ``[A, n, M]`` float64 scores; an empty reply gets :math:`\sigma(-c/T)`.

    Raises:
        ValueError: If ``temperature`` is not positive.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    weights = mask.to(torch.float64).unsqueeze(-3)
    advertiser = torch.as_tensor(advertiser_token_logprobs, dtype=torch.float64)
    reference = torch.as_tensor(reference_token_logprobs, dtype=torch.float64)
    ratio = advertiser - reference.unsqueeze(-3)
    ratio = torch.where(weights > 0, ratio, torch.zeros_like(ratio))
    mean = (ratio * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)
    return torch.sigmoid((mean - offset) / temperature)

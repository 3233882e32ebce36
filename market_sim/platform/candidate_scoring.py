r"""Whole candidate replies: drawn in one batched ``generate``, scored in batched forwards.

The sequence-level mechanisms (MOSAIC, the affine maximizer over sampled replies) decide among
M complete replies per query. This module draws them and scores every (candidate, prompt) pair
the mechanisms need:

* :math:`\log \pi_{ref}(y_j)`: the reference model, the platform LM on the query alone;
* :math:`\log \pi_{gen}(y_j)`: the proposal the candidates were drawn from (the reference
  itself, or the LM on the query with every advertiser's brand context);
* per-token log-likelihoods of :math:`y_j` under each advertiser's LM (its context + the query),
  turned into relevance scores :math:`s_i(y_j) \in (0, 1)` by
  :func:`market_sim.mechanisms.relevance.relevance_scores` (mean per-token log-likelihood ratio
  against :math:`\pi_{ref}`, squashed by a logistic function).

Every score is of the COMPLETE reply (:func:`market_sim.lm.model.complete_reply`: EOS included
where the reply stopped), so likelihood ratios of sampled replies are exact, and every
distribution is taken at the sampling temperature. All ``A x M x P`` rows (P prompts per
candidate) go through :meth:`LanguageModel.continuation_logprobs` in chunks of at most
``max_rows`` rows: one forward per chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from market_sim.lm.model import LanguageModel, complete_reply
from market_sim.mechanisms.relevance import relevance_scores

DEFAULT_MAX_ROWS = 512
"""Scoring rows per forward (bounds activation memory: rows x length x vocabulary floats)."""


@dataclass(frozen=True)
class ReplySampling:
    """How a sequence-level platform draws and scores whole replies.

    Attributes:
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature; every distribution scored is taken at it.
        relevance_temperature: T of the relevance score.
        max_rows: Scoring rows per forward.
    """

    max_new_tokens: int = 24
    temperature: float = 1.0
    relevance_temperature: float = 1.0
    max_rows: int = DEFAULT_MAX_ROWS

    def __post_init__(self) -> None:
        """Reject settings no platform could run with, naming the argument."""
        for name in ("max_new_tokens", "max_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("temperature", "relevance_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class CandidateScores:
    r"""Scores of A auctions' M candidates.

    Attributes:
        reference_logprob: ``[A, M]`` float64 :math:`\log \pi_{ref}(y_j)` of the complete
            replies.
        proposal_logprob: ``[A, M]`` float64 :math:`\log \pi_{gen}(y_j)` (the same tensor
            values as ``reference_logprob`` when the proposal is the reference).
        relevance: ``[A, n, M]`` float64 relevance :math:`s_i(y_j)` of each candidate for each
            advertiser.
    """

    reference_logprob: torch.Tensor
    proposal_logprob: torch.Tensor
    relevance: torch.Tensor


def draw_candidates(
    lm: LanguageModel,
    prompts: Sequence[str],
    count: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> list[list[list[int]]]:
    """``count`` replies to each prompt, all A x M rows in one batched ``generate`` if they fit.

    Where one call would pass :data:`SAMPLING_BYTE_BUDGET`, rows are drawn in order,
    :func:`rows_per_generate` at a time; the first batch is seeded with ``seed``, batch
    ``b > 0`` with :func:`batch_seed` (a hash of both: ``seed + b`` would repeat the draws of
    callers whose seeds are consecutive, as the convergence experiment's queries are). A draw
    that fits one batch, every shipped scenario's, is the one ``generate`` call it always was.

    Args:
        lm: The language model.
        prompts: A proposal prompts.
        count: M, replies per prompt.
        max_new_tokens: Reply length cap.
        temperature: Sampling temperature.
        seed: Seeds the draw.

    Returns:
        A lists of M token lists (EOS cut, as :meth:`LanguageModel.sample` returns them).
    """
    rows = [prompt for prompt in prompts for _ in range(count)]
    longest_prompt = max((len(lm.encode_prompt(prompt)) for prompt in prompts), default=0)
    per_batch = rows_per_generate(lm, longest_prompt + max_new_tokens)
    replies: list[list[int]] = []
    for batch, start in enumerate(range(0, len(rows), per_batch)):
        batch_rows = rows[start : start + per_batch]
        replies += lm.sample(batch_rows, max_new_tokens, temperature, batch_seed(seed, batch))
    return [replies[a * count : (a + 1) * count] for a in range(len(prompts))]


def batch_seed(seed: int, batch: int) -> int:
    """Seed of sampling batch ``batch``: ``seed`` itself for the first, else a 63-bit hash."""
    if batch == 0:
        return seed
    digest = hashlib.sha256(f"{seed}/sampling-batch/{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


SAMPLING_BYTE_BUDGET = 2**32
"""Most bytes one sampling ``generate`` may hold in key-value cache and logits (4 GiB):
131,072 rows of the bundled LM at 64 positions need about 29 GB in one call."""


def rows_per_generate(lm: LanguageModel, positions: int) -> int:
    r"""Rows one ``generate`` call samples within :data:`SAMPLING_BYTE_BUDGET`.

    One row holds its key-value cache and a step's logits and probabilities:

    .. math:: \text{bytes} = 2 \cdot L \cdot H_{kv} \cdot d \cdot P \cdot e + 4 \cdot 4 V,

    with L layers, :math:`H_{kv}` key-value heads of width d, P positions (prompt plus reply), e
    bytes per element of the model's dtype and V the vocabulary (four float32 copies of a step's
    logits: logits, processed scores, probabilities, their cumulative sum). It errs low: the
    cache grows by concatenation (a transient second copy) and activations are left out.
    """
    config = lm.model.config
    layers = int(getattr(config, "num_hidden_layers", 1) or 1)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    width = int(getattr(config, "hidden_size", heads) or heads)
    head_dim = int(getattr(config, "head_dim", None) or max(1, width // heads))
    element = torch.finfo(lm.model.dtype).bits // 8 if lm.model.dtype.is_floating_point else 4
    per_row = 2 * layers * kv_heads * head_dim * positions * element + 16 * lm.vocab_size
    return max(1, SAMPLING_BYTE_BUDGET // per_row)


SCORING_LOGIT_BUDGET = 2**26
"""Most float32 logits one scoring forward holds (256 MiB; its log-softmax doubles that)."""


def rows_per_forward(max_rows: int, width: int, vocab_size: int) -> int:
    """Rows per scoring forward: ``max_rows``, fewer when the logits would pass the budget.

    One row holds ``(width + 1) x vocab_size`` logits (:meth:`LanguageModel.continuation_logprobs`
    keeps only the continuation's positions): the bundled LM (1,562 tokens) keeps
    :data:`DEFAULT_MAX_ROWS` for 24-token replies, SmolLM2 (49,152 tokens) scores 33 rows of 40
    tokens per forward. Smaller forwards change a score only as any other batch composition
    does (float32 rounding).
    """
    return max(1, min(max_rows, SCORING_LOGIT_BUDGET // ((width + 1) * vocab_size)))


def chunked_continuation_logprobs(
    lm: LanguageModel,
    contexts: Sequence[str | Sequence[int]],
    continuations: Sequence[Sequence[int]],
    temperature: float = 1.0,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`LanguageModel.continuation_logprobs` over many rows, at most ``max_rows`` per forward.

    Fewer rows per forward where the logits would pass :data:`SCORING_LOGIT_BUDGET`
    (:func:`rows_per_forward`).

    Returns:
        ``(token_logprobs, mask)``, both ``[R, T]`` (T the longest continuation), on the CPU.
    """
    width = max((len(c) for c in continuations), default=0)
    token_logprobs = torch.zeros((len(contexts), width), dtype=torch.float32)
    mask = torch.zeros((len(contexts), width), dtype=torch.bool)
    rows = rows_per_forward(max_rows, width, lm.vocab_size)
    for start in range(0, len(contexts), rows):
        stop = min(start + rows, len(contexts))
        chunk_lp, chunk_mask = lm.continuation_logprobs(
            contexts[start:stop], [list(c) for c in continuations[start:stop]], temperature
        )
        token_logprobs[start:stop, : chunk_lp.shape[1]] = chunk_lp.cpu()
        mask[start:stop, : chunk_mask.shape[1]] = chunk_mask.cpu()
    return token_logprobs, mask


@dataclass(frozen=True)
class ReplyScores:
    r"""Scores of R replies, each to its own query.

    Attributes:
        reference_logprob: ``[R]`` float64 :math:`\log \pi_{ref}(y)` of the complete replies.
        extra_logprob: ``[R]`` float64 log-likelihood under each row's extra prompt, or None.
        relevance: ``[n, R]`` float64 relevance of each reply for each advertiser.
    """

    reference_logprob: torch.Tensor
    extra_logprob: torch.Tensor | None
    relevance: torch.Tensor


def score_replies(
    lm: LanguageModel,
    queries: Sequence[str],
    contexts: Sequence[str],
    replies: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    extra_prompts: Sequence[str] | None = None,
    relevance_temperature: float = 1.0,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ReplyScores:
    r"""Reference log-likelihood, optional extra log-likelihood and relevance of R replies.

    Reply r is scored after the prompts of its query ``queries[r]``: the reference prompt, the
    optional ``extra_prompts[r]`` and each of the n advertisers' prompts (its context + the
    query), ``R x (1 + extra + n)`` rows in chunked forwards.

    Args:
        lm: The platform language model.
        queries: R queries, one per reply.
        contexts: The n advertisers' brand contexts (the same for every reply).
        replies: R replies (EOS cut).
        max_new_tokens: The cap the replies were drawn with (decides which ones stopped).
        temperature: Temperature of every distribution scored.
        extra_prompts: R extra prompts (e.g. the proposal), or None.
        relevance_temperature: T of the relevance score.
        max_rows: Rows per forward.

    Returns:
        The scores, float64 on the CPU.
    """
    if len(queries) != len(replies):
        raise ValueError("one query per reply is required")
    per_reply = 1 + (extra_prompts is not None) + len(contexts)
    row_contexts: list[str] = []
    row_continuations: list[list[int]] = []
    for r, (query, reply) in enumerate(zip(queries, replies, strict=True)):
        row_contexts.append(lm.prompt(query))
        if extra_prompts is not None:
            row_contexts.append(extra_prompts[r])
        row_contexts.extend(lm.prompt(query, [context]) for context in contexts)
        row_continuations.extend(
            [complete_reply(reply, max_new_tokens, lm.eos_token_id)] * per_reply
        )
    token_logprobs, mask = chunked_continuation_logprobs(
        lm, row_contexts, row_continuations, temperature, max_rows
    )
    shape = (len(replies), per_reply, token_logprobs.shape[-1])
    token_logprobs = token_logprobs.view(shape).double()
    mask = mask.view(shape)[:, 0]  # [R, T]: the same reply in every row of a reply
    totals = (token_logprobs * mask.unsqueeze(1)).sum(-1)  # [R, P]
    first_advertiser = per_reply - len(contexts)
    relevance = relevance_scores(
        token_logprobs[:, first_advertiser:].transpose(0, 1),  # [n, R, T]
        token_logprobs[:, 0],
        mask,
        temperature=relevance_temperature,
    )
    return ReplyScores(
        reference_logprob=totals[:, 0],
        extra_logprob=totals[:, 1] if extra_prompts is not None else None,
        relevance=relevance,
    )


def score_candidates(
    lm: LanguageModel,
    queries: Sequence[str],
    contexts: Sequence[Sequence[str]],
    candidates: Sequence[Sequence[Sequence[int]]],
    max_new_tokens: int,
    temperature: float = 1.0,
    proposal_prompts: Sequence[str] | None = None,
    relevance_temperature: float = 1.0,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> CandidateScores:
    r"""Reference, proposal and relevance scores of every candidate of A auctions.

    Args:
        lm: The platform language model.
        queries: A queries.
        contexts: A lists of the same n advertisers' brand contexts.
        candidates: A lists of M replies (EOS cut).
        max_new_tokens: The cap the replies were drawn with (decides which ones stopped).
        temperature: Temperature of every distribution scored.
        proposal_prompts: A prompts the candidates were drawn from, or None when they were
            drawn from the reference (then no extra rows are scored).
        relevance_temperature: T of the relevance score.
        max_rows: Rows per forward.

    Returns:
        The scores, float64 on the CPU.
    """
    count = len(candidates[0]) if candidates else 0
    if any(len(c) != count for c in candidates):
        raise ValueError("every auction needs the same number of candidates")
    if any(list(c) != list(contexts[0]) for c in contexts):
        raise ValueError("every auction of a batch needs the same advertisers")
    auctions = len(queries)
    scores = score_replies(
        lm,
        [query for query in queries for _ in range(count)],
        list(contexts[0]) if contexts else [],
        [reply for group in candidates for reply in group],
        max_new_tokens,
        temperature,
        None
        if proposal_prompts is None
        else [prompt for prompt in proposal_prompts for _ in range(count)],
        relevance_temperature,
        max_rows,
    )
    reference = scores.reference_logprob.view(auctions, count)
    proposal = (
        reference.clone()
        if scores.extra_logprob is None
        else scores.extra_logprob.view(auctions, count)
    )
    relevance = scores.relevance.view(-1, auctions, count).transpose(0, 1)
    return CandidateScores(reference, proposal, relevance.contiguous())


def draw_and_score(
    lm: LanguageModel,
    queries: Sequence[str],
    contexts: Sequence[Sequence[str]],
    count: int,
    sampling: ReplySampling,
    seed: int,
    proposal_prompts: Sequence[str] | None = None,
) -> tuple[list[list[list[int]]], CandidateScores]:
    """M candidates per auction from the proposal (or the reference), and their scores.

    Args:
        lm: The platform language model.
        queries: A queries.
        contexts: A lists of the same n advertisers' brand contexts.
        count: M, candidates per auction.
        sampling: Reply length, temperatures and scoring chunk size.
        seed: Seeds the draw.
        proposal_prompts: A prompts to draw from, or None to draw from the reference prompt
            (the query alone; no extra rows are scored then).

    Returns:
        ``(candidates, scores)``: A lists of M replies (EOS cut) and :class:`CandidateScores`.
    """
    prompts = proposal_prompts or [lm.prompt(q) for q in queries]
    candidates = draw_candidates(
        lm, prompts, count, sampling.max_new_tokens, sampling.temperature, seed
    )
    scores = score_candidates(
        lm,
        queries,
        contexts,
        candidates,
        sampling.max_new_tokens,
        sampling.temperature,
        proposal_prompts,
        sampling.relevance_temperature,
        sampling.max_rows,
    )
    return candidates, scores

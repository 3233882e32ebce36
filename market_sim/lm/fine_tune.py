"""KL-regularized fine-tuning, weight interpolation and divergence estimates for a causal LM.

This module is LM-level: it knows nothing about auctions or advertisers. A fine-tuning target
is given by a reward *callable* on sampled replies; everything else is about distributions over
replies of a :class:`~market_sim.lm.model.LanguageModel`.

Replies as events. :meth:`LanguageModel.sample` returns each reply with its end-of-sequence
token (and anything after it) cut off. A reply shorter than ``max_new_tokens`` therefore ended
with EOS, and its probability *as a complete reply* includes that token; a reply of exactly
``max_new_tokens`` tokens was truncated, and the event is "the first ``max_new_tokens`` tokens
are these". :func:`~market_sim.lm.model.complete_reply` restores the token sequence of that
event; it is used everywhere a reply is scored or trained on, so that the scored events
partition the sample space and their probabilities sum to one under every model.

Contents:

* :func:`reward_weighted_fine_tune`: KL-regularized reward-weighted regression towards
  ``pi*(y|x) ∝ pi_base(y|x) exp(r(x, y) / beta)``.
* :func:`simplex_grid`, :func:`interpolate_state_dicts`, :class:`InterpolatedPolicies`: policies
  whose weights are convex combinations of a base model and fine-tuned copies of it.
* :func:`sample_policy`, :func:`divergence_estimates`: Monte Carlo estimates of
  f-divergences ``D_f(pi_g || pi_init)`` from samples of ``pi_g``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from market_sim.lm.model import LanguageModel, Prompt, complete_reply, left_pad
from market_sim.lm.tiny import reproducible_torch

SCORING_CHUNK_ROWS = 256
"""Most rows scored in one forward pass by :func:`sample_policy` (bounds activation memory)."""

RewardFn = Callable[[Sequence[int], Sequence[list[int]]], np.ndarray]
"""``reward(prompt_indices, replies) -> [R]`` rewards, one per sampled reply."""


# --------------------------------------------------------------------------------------------
# Reward-weighted fine-tuning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuneConfig:
    """Settings of :func:`reward_weighted_fine_tune`.

    Attributes:
        samples_per_prompt: Replies drawn from the base model per prompt (>= 1); the
            self-normalized importance weights are computed over these.
        beta: KL-regularization temperature (> 0): the target is
            ``pi_base(y|x) exp(r(x, y) / beta)``. Small beta trusts the reward, large beta
            stays close to the base model.
        steps: AdamW steps (>= 0; 0 returns an unchanged copy).
        learning_rate: Constant AdamW learning rate (> 0).
        batch_size: Sampled replies per optimisation step (>= 1).
        max_new_tokens: Generation budget of a sampled reply (>= 1).
        temperature: Sampling temperature of the base model (> 0). 1.0 samples the base model
            itself; another value makes the tempered base the reference distribution.
        num_threads: Torch CPU threads while sampling and fitting (>= 1), fixed for
            reproducibility as in :mod:`market_sim.lm.tiny`.
    """

    samples_per_prompt: int = 16
    beta: float = 0.1
    steps: int = 30
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_new_tokens: int = 24
    temperature: float = 1.0
    num_threads: int = 1

    def __post_init__(self) -> None:
        check_int("samples_per_prompt", self.samples_per_prompt, minimum=1)
        check_positive("beta", self.beta)
        check_int("steps", self.steps, minimum=0)
        check_positive("learning_rate", self.learning_rate)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        check_positive("temperature", self.temperature)
        check_int("num_threads", self.num_threads, minimum=1)


@dataclass(frozen=True)
class FineTuneResult:
    """Outcome of :func:`reward_weighted_fine_tune`.

    Attributes:
        lm: The fine-tuned copy, in eval mode with ``requires_grad`` off, named
            ``f"{base.name}+rwr"``.
        losses: Minibatch estimate of the weighted NLL at each step (``steps`` values).
        mean_reward_base: Mean reward of the replies sampled from the base model.
        effective_sample_size: Mean over prompts of ``1 / sum_k w_k^2`` (between 1 and
            ``samples_per_prompt``; small values mean a few samples carry all the weight).
    """

    lm: LanguageModel
    losses: list[float]
    mean_reward_base: float
    effective_sample_size: float


def reward_weighted_fine_tune(
    lm: LanguageModel,
    prompts: Sequence[str],
    reward: RewardFn,
    config: FineTuneConfig,
    seed: int,
) -> FineTuneResult:
    r"""Fit a copy of ``lm`` to the KL-regularized optimum by reward-weighted regression.

    The policy maximizing ``E_pi[r(x, y)] - beta * KL(pi(.|x) || pi_base(.|x))`` is

        ``pi*(y|x) = pi_base(y|x) exp(r(x, y) / beta) / Z(x)``.

    It is approximated in three stages:

    1. **Proposal.** For each of the P prompts, S = ``samples_per_prompt`` replies
       ``y_1..y_S ~ pi_base(.|x)`` are drawn in one batched :meth:`LanguageModel.sample` call
       (R = P * S rows, prompt-major: row k belongs to prompt ``k // S``).
    2. **Importance weights.** ``reward(prompt_indices, replies)`` is called once with all R
       rows (``prompt_indices``: ``[R]`` int64 array of indices into ``prompts``; ``replies``:
       EOS cut, as ``sample`` returns them) and returns ``[R]`` rewards ``r_k``. Per prompt,
       ``w_k = softmax_k(r_k / beta)`` over that prompt's S samples: the self-normalized
       importance weights of ``pi*`` with proposal ``pi_base`` (the unknown ``Z(x)`` cancels).
       The weighted empirical distribution ``sum_k w_k delta_{y_k}`` converges to ``pi*(.|x)``
       as S -> inf.
    3. **Projection.** A deep copy ``pi_theta`` of ``lm.model`` is fit by minimizing the
       weighted negative log-likelihood (a cross-entropy to the weighted empirical ``pi*``)

           ``L(theta) = -(1 / P) sum_k w_k log pi_theta(y_k | x_k)``,

       with ``y_k`` the complete reply (:func:`complete_reply`: EOS included when the reply
       ended) and no loss on prompt tokens. Each step uses a minibatch B of rows (epochs of a
       seeded random permutation) and the unbiased estimate
       ``-(R / |B|) sum_{k in B} w_k log pi_theta(y_k | x_k) / P``.

    As S -> inf and with a perfect fit (infinitely many steps, a model family containing
    ``pi*``), the copy equals ``pi*``; the result is the finite-sample, finite-step
    approximation, which also starts from (and so stays close to) ``pi_base``.

    Choices: AdamW with a constant learning rate, no weight decay (decay pulls weights to
    zero, not towards the base model, which the reweighting already anchors to), gradient norm
    clipped at 1; dropout off during the fit (the copy is trained in eval mode, so the fit is
    deterministic and targets the distribution the model samples from); the proposal is the
    base model at ``config.temperature`` and the copy is fit to be sampled at temperature 1.
    With a fixed seed and thread count the result is reproducible: the base samples use
    ``seed``, the batch order a ``torch.Generator`` seeded with ``seed``, and deterministic
    algorithms are requested. ``lm.model`` is never modified.

    Args:
        lm: The base model ``pi_base`` (left untouched).
        prompts: P prompt texts.
        reward: ``reward(prompt_indices, replies) -> [R]`` finite rewards.
        config: Sampling and optimisation settings.
        seed: Seeds the samples, the batch order and torch's global RNG.

    Returns:
        The fine-tuned copy (``LanguageModel(copy, lm.tokenizer, name=f"{lm.name}+rwr")``, in
        eval mode) and diagnostics, see :class:`FineTuneResult`.
    """
    if len(prompts) == 0:
        raise ValueError("prompts must not be empty")
    eos = _require_eos(lm)
    n_prompts, per_prompt = len(prompts), config.samples_per_prompt
    prompt_index = np.repeat(np.arange(n_prompts, dtype=np.int64), per_prompt)
    prompt_ids = [lm.encode_prompt(prompt) for prompt in prompts]
    with reproducible_torch(seed, config.num_threads):
        replies = lm.sample(
            [prompts[i] for i in prompt_index],
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            seed=seed,
        )
        rewards = _check_rewards(reward(prompt_index, replies), len(replies))
        weights = _self_normalized_weights(rewards.reshape(n_prompts, per_prompt), config.beta)
        targets = [complete_reply(r, config.max_new_tokens, eos) for r in replies]
        model = copy.deepcopy(lm.model)
        losses = _fit_weighted_nll(
            model,
            [prompt_ids[i] for i in prompt_index],
            targets,
            weights.reshape(-1),
            n_prompts,
            lm.pad_token_id,
            config,
            seed,
        )
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    ess = float(np.mean(1.0 / np.sum(weights**2, axis=1)))
    return FineTuneResult(
        lm=LanguageModel(model, lm.tokenizer, f"{lm.name}+rwr", lm.prompt_format),
        losses=losses,
        mean_reward_base=float(np.mean(rewards)),
        effective_sample_size=ess,
    )


def _self_normalized_weights(rewards: np.ndarray, beta: float) -> np.ndarray:
    """Row-wise ``softmax(rewards / beta)`` in float64: ``[P, S] -> [P, S]``, rows sum to 1."""
    scaled = rewards.astype(np.float64) / beta
    scaled -= scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled)
    return weights / weights.sum(axis=1, keepdims=True)


def _check_rewards(rewards: np.ndarray, n_rows: int) -> np.ndarray:
    """Rewards as a finite float64 ``[R]`` array, or a ValueError."""
    array = np.asarray(rewards, dtype=np.float64)
    if array.shape != (n_rows,):
        raise ValueError(f"reward must return shape ({n_rows},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("reward returned non-finite values")
    return array


def _fit_weighted_nll(
    model: torch.nn.Module,
    prompt_ids: Sequence[list[int]],
    replies: Sequence[list[int]],
    weights: np.ndarray,
    n_prompts: int,
    pad_id: int,
    config: FineTuneConfig,
    seed: int,
) -> list[float]:
    """Minimize ``-(1/P) sum_k w_k log p(y_k|x_k)`` with AdamW on minibatches; return losses."""
    model.eval()  # dropout off: see reward_weighted_fine_tune
    parameters = [p for p in model.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    device = next(model.parameters()).device
    weight_tensor = torch.as_tensor(weights, dtype=torch.float32, device=device)
    n_rows = len(replies)
    losses: list[float] = []
    batches = _row_batches(n_rows, min(config.batch_size, n_rows), seed)
    for _ in range(config.steps):
        rows = next(batches)
        logprob = sequence_logprob_tensor(
            model,
            [prompt_ids[i] for i in rows],
            [replies[i] for i in rows],
            pad_id,
            device,
        )
        scale = n_rows / (len(rows) * n_prompts)
        loss = -(weight_tensor[rows] * logprob).sum() * scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        losses.append(float(loss.item()))
    optimizer.zero_grad(set_to_none=True)
    return losses


def _row_batches(n_rows: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Yield row-index minibatches forever: epochs of a seeded permutation, last one partial."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n_rows, generator=generator).tolist()
        for start in range(0, n_rows, batch_size):
            yield order[start : start + batch_size]


def sequence_logprob_tensor(
    model: torch.nn.Module,
    prompt_ids: Sequence[list[int]],
    replies: Sequence[list[int]],
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``[B]`` ``log p(reply | prompt)``, differentiable unless called under inference mode.

    Left-padded with position ids as in :mod:`market_sim.lm.model`; the log-softmax is taken
    in ``dtype``.
    """
    batch = left_pad(
        [p + r for p, r in zip(prompt_ids, replies, strict=True)], pad_id, device=device
    )
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    ).logits
    logprobs = torch.log_softmax(logits[:, :-1].to(dtype), dim=-1)
    token_logprobs = logprobs.gather(-1, batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    width = token_logprobs.shape[1]  # column c predicts token c + 1
    lengths = torch.as_tensor([len(r) for r in replies], device=device)
    columns = torch.arange(width, device=device)
    mask = columns.unsqueeze(0) >= (width - lengths).unsqueeze(1)
    return (token_logprobs * mask).sum(-1)


# --------------------------------------------------------------------------------------------
# Weight interpolation
# --------------------------------------------------------------------------------------------


def simplex_grid(vertices: int, resolution: int) -> np.ndarray:
    """All points of the simplex whose coordinates are multiples of ``1 / resolution``.

    Rows come in descending lexicographic order of their integer numerators, so the first row
    is the first vertex ``(1, 0, ..., 0)`` and the last row is the last vertex
    ``(0, ..., 0, 1)``.

    Args:
        vertices: Number of coordinates n (>= 1).
        resolution: Denominator m (>= 1).

    Returns:
        ``[G, n]`` float64, ``G = C(m + n - 1, n - 1)``; every row is ``counts / m`` with
        non-negative integer counts summing to m.
    """
    check_int("vertices", vertices, minimum=1)
    check_int("resolution", resolution, minimum=1)
    rows = list(_compositions(resolution, vertices))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), vertices) / resolution


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Non-negative integer ``parts``-tuples summing to ``total``, descending lexicographic."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def interpolate_state_dicts(
    states: Sequence[Mapping[str, torch.Tensor]], coefficients: Sequence[float]
) -> dict[str, torch.Tensor]:
    """Linear combination ``sum_k c_k * theta_k`` of state dicts, key by key.

    Floating tensors are combined in at least float32 and cast back to their dtype
    (``c_k * theta_k`` accumulated in order k = 0, 1, ...; a coefficient vector with a single 1
    and zeros elsewhere returns that state's values exactly). Non-floating tensors (integer or
    bool buffers) are copied from the first state.

    Args:
        states: K state dicts with identical keys and shapes.
        coefficients: K finite coefficients (not required to sum to 1).

    Returns:
        A new state dict of freshly allocated tensors.
    """
    if len(states) == 0:
        raise ValueError("states must not be empty")
    if len(states) != len(coefficients):
        raise ValueError(
            f"got {len(states)} states but {len(coefficients)} coefficients; they must match"
        )
    coefficient_list = [float(c) for c in coefficients]
    if not all(math.isfinite(c) for c in coefficient_list):
        raise ValueError(f"coefficients must be finite, got {coefficient_list}")
    keys = list(states[0].keys())
    for index, state in enumerate(states[1:], start=1):
        if set(state.keys()) != set(keys):
            missing = sorted(set(keys) - set(state.keys()))[:5]
            extra = sorted(set(state.keys()) - set(keys))[:5]
            raise ValueError(
                f"state {index} has different keys from state 0 (missing {missing}, extra {extra})"
            )
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key in keys:
            first = states[0][key]
            for index, state in enumerate(states[1:], start=1):
                if state[key].shape != first.shape:
                    raise ValueError(
                        f"{key!r}: state {index} has shape {tuple(state[key].shape)}, "
                        f"state 0 has {tuple(first.shape)}"
                    )
            if not first.is_floating_point():
                out[key] = first.detach().clone()
                continue
            work_dtype = torch.promote_types(first.dtype, torch.float32)
            total = first.detach().to(work_dtype) * coefficient_list[0]
            for state, c in zip(states[1:], coefficient_list[1:], strict=True):
                total.add_(state[key].detach().to(device=total.device, dtype=work_dtype), alpha=c)
            out[key] = total.to(first.dtype)
    return out


class InterpolatedPolicies:
    """Policies whose weights are convex combinations of a base model and fine-tuned copies.

    The vertices are ``[base, *fine_tuned]`` (n + 1 models with identical architecture); grid
    point g has weights ``sum_k grid[g, k] * theta_k``.

    :meth:`model_at` loads the interpolated weights into ONE working copy of the base model
    (allocated once, here) and returns a :class:`LanguageModel` wrapping it: the working copy
    is shared, so a later ``model_at`` call overwrites the weights of every model returned
    before. Use each returned model before asking for the next one. The vertex weights are
    read from the vertex models when needed (not copied): do not modify them meanwhile.

    Args:
        base: The base model (vertex 0).
        fine_tuned: Fine-tuned models of the same architecture (vertices 1..n).
        resolution: Grid resolution, see :func:`simplex_grid`.

    Attributes:
        vertices: ``[base, *fine_tuned]``.
        grid: ``[G, n + 1]`` coefficients, ``simplex_grid(n + 1, resolution)``.
    """

    def __init__(
        self, base: LanguageModel, fine_tuned: Sequence[LanguageModel], resolution: int
    ) -> None:
        self.base = base
        self.vertices: list[LanguageModel] = [base, *fine_tuned]
        self.grid: np.ndarray = simplex_grid(len(self.vertices), resolution)
        keys = set(base.model.state_dict().keys())
        for index, vertex in enumerate(self.vertices[1:], start=1):
            if set(vertex.model.state_dict().keys()) != keys:
                raise ValueError(f"vertex {index} has different parameters from the base model")
        self._working = copy.deepcopy(base.model).eval()
        for parameter in self._working.parameters():
            parameter.requires_grad_(False)

    def __len__(self) -> int:
        """Number of grid points G."""
        return int(self.grid.shape[0])

    def vertex_index(self, k: int) -> int:
        """Grid row of vertex k (coefficient 1 on vertex k, 0 elsewhere)."""
        if not 0 <= k < len(self.vertices):
            raise IndexError(f"vertex {k} out of range 0..{len(self.vertices) - 1}")
        return int(np.flatnonzero(self.grid[:, k] == 1.0)[0])

    def model_at(self, g: int) -> LanguageModel:
        """The policy at grid point g, held in the shared working copy.

        Args:
            g: Grid row, ``0 <= g < G``.

        Returns:
            A :class:`LanguageModel` wrapping the working copy, now holding
            ``sum_k grid[g, k] * theta_k`` (overwritten by the next call).
        """
        if not 0 <= g < len(self):
            raise IndexError(f"grid point {g} out of range 0..{len(self) - 1}")
        coefficients = self.grid[g].tolist()
        states = [vertex.model.state_dict() for vertex in self.vertices]
        with torch.no_grad():
            self._working.load_state_dict(interpolate_state_dicts(states, coefficients))
        label = ",".join(f"{c:g}" for c in coefficients)
        return LanguageModel(
            self._working,
            self.base.tokenizer,
            f"{self.base.name}@[{label}]",
            self.base.prompt_format,
        )


# --------------------------------------------------------------------------------------------
# Divergences from the base policy, by sampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PolicySamples:
    """Replies sampled from a policy ``pi_g``, scored by it and by the initial policy.

    Attributes:
        prompt_index: ``[R]`` int64, index into the prompts of each row.
        replies: R replies, EOS cut off (as :meth:`LanguageModel.sample` returns them).
        policy_logprob: ``[R]`` float64, ``log pi_g`` of the complete reply
            (:func:`complete_reply`).
        init_logprob: ``[R]`` float64, ``log pi_init`` of the same complete reply.
    """

    prompt_index: np.ndarray
    replies: list[list[int]]
    policy_logprob: np.ndarray
    init_logprob: np.ndarray

    def __post_init__(self) -> None:
        n_rows = len(self.replies)
        for name in ("prompt_index", "policy_logprob", "init_logprob"):
            shape = np.shape(getattr(self, name))
            if shape != (n_rows,):
                raise ValueError(f"{name} must have shape ({n_rows},), got {shape}")


def sample_policy(
    policy: LanguageModel,
    init: LanguageModel,
    prompts: Sequence[Prompt],
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> PolicySamples:
    """Sample replies from ``policy`` and score them under ``policy`` and ``init``.

    One batched :meth:`LanguageModel.sample` call draws ``samples_per_prompt`` replies per
    prompt (prompt-major rows); each model then scores the complete replies
    (:func:`complete_reply`) in chunks of at most :data:`SCORING_CHUNK_ROWS` rows per forward.
    Both models are scored at ``temperature``, i.e. as the samplers ``softmax(logits / T)``
    actually used, so that ``policy_logprob`` is the log-density of the sampling distribution
    (as importance sampling requires) and ``pi_init`` is the initial policy run the same way.

    Args:
        policy: ``pi_g``, sampled and scored.
        init: ``pi_init``, scored only (same tokenizer as ``policy``).
        prompts: P prompts.
        samples_per_prompt: Replies per prompt (>= 1).
        max_new_tokens: Generation budget (>= 1).
        temperature: Sampling and scoring temperature (> 0).
        seed: Seed of the sampling call.

    Returns:
        The samples, ``R = P * samples_per_prompt`` rows.
    """
    if len(prompts) == 0:
        raise ValueError("prompts must not be empty")
    check_int("samples_per_prompt", samples_per_prompt, minimum=1)
    check_int("max_new_tokens", max_new_tokens, minimum=1)
    check_positive("temperature", temperature)
    eos = _require_eos(policy)
    if init.stop_token_ids != policy.stop_token_ids:
        raise ValueError("policy and init must share a tokenizer (their stop tokens differ)")
    prompt_index = np.repeat(np.arange(len(prompts), dtype=np.int64), samples_per_prompt)
    prompt_ids = [policy.encode_prompt(prompt) for prompt in prompts]
    contexts = [prompt_ids[i] for i in prompt_index]
    replies = policy.sample(contexts, max_new_tokens, temperature=temperature, seed=seed)
    complete = [complete_reply(reply, max_new_tokens, eos) for reply in replies]
    return PolicySamples(
        prompt_index=prompt_index,
        replies=replies,
        policy_logprob=_chunked_logprob(policy, contexts, complete, temperature),
        init_logprob=_chunked_logprob(init, contexts, complete, temperature),
    )


def _chunked_logprob(
    lm: LanguageModel,
    contexts: Sequence[list[int]],
    continuations: Sequence[list[int]],
    temperature: float,
) -> np.ndarray:
    """``[R]`` float64 ``lm.sequence_logprob`` in chunks of :data:`SCORING_CHUNK_ROWS` rows."""
    parts = [
        lm.sequence_logprob(
            contexts[start : start + SCORING_CHUNK_ROWS],
            continuations[start : start + SCORING_CHUNK_ROWS],
            temperature=temperature,
        )
        .double()
        .cpu()
        .numpy()
        for start in range(0, len(contexts), SCORING_CHUNK_ROWS)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def divergence_estimates(samples: PolicySamples, lam: float) -> dict[str, float]:
    """Monte Carlo estimates of ``D_f(pi_g || pi_init)`` from samples of ``pi_g``.

    With ``rho = policy_logprob - init_logprob`` and ``x = exp(rho) = pi_g / pi_init``,
    ``D_f(pi_g || pi_init) = E_init[f(x)] = E_g[f(x) / x]``, estimated by the sample mean over
    each prompt's rows, then averaged over prompts (each prompt weighted equally):

    * ``"kl"``, ``f(x) = lam x log x``: ``lam * mean(rho)``.
    * ``"chi2"``, ``f(x) = lam (x - 1)^2``: ``lam * mean((x - 1)^2 / x)``, computed stably as
      ``(x - 1)^2 / x = x - 2 + 1/x = 4 sinh(rho / 2)^2`` (no cancellation for small rho,
      exactly 0 at rho = 0). Nothing is clipped: an overflowing term gives ``inf``.
    * ``"tv"``, ``f(x) = lam |x - 1|``: ``lam * mean(|1 - exp(-rho)|)``, computed as
      ``|expm1(-rho)|``.

    Each is an unbiased estimate (of the prompt-averaged divergence), but its variance explodes
    for policies far from ``pi_init``: the terms grow like ``|rho|`` (KL), ``exp(|rho|)``
    (chi2, especially heavy-tailed) and are bounded by ``lam * max(1, exp(-rho))`` (TV).
    For the initial policy itself rho = 0 exactly, so every estimate is exactly 0.

    Args:
        samples: Rows sampled from ``pi_g`` (see :func:`sample_policy`).
        lam: Regularization weight multiplying every f (finite, >= 0).

    Returns:
        ``{"kl": ..., "chi2": ..., "tv": ...}``.
    """
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    if len(samples.replies) == 0:
        raise ValueError("samples must not be empty")
    rho = np.asarray(samples.policy_logprob, np.float64) - np.asarray(
        samples.init_logprob, np.float64
    )
    with np.errstate(over="ignore"):
        terms = {
            "kl": rho,
            "chi2": 4.0 * np.sinh(rho / 2.0) ** 2,
            "tv": np.abs(np.expm1(-rho)),
        }
    groups = np.unique(samples.prompt_index)
    out: dict[str, float] = {}
    for name, values in terms.items():
        per_prompt = [values[samples.prompt_index == group].mean() for group in groups]
        out[name] = float(lam * np.mean(per_prompt))
    return out


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def check_int(name: str, value: int, minimum: int) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_positive(name: str, value: float) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _require_eos(lm: LanguageModel) -> int:
    if lm.eos_token_id is None:
        raise ValueError("the model has no EOS token: complete replies cannot be scored")
    return int(lm.eos_token_id)

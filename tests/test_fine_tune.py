"""Reward-weighted fine-tuning, weight interpolation and divergence estimates (LM level)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import market_sim.lm.fine_tune as fine_tune_module
from market_sim.lm.fine_tune import (
    FineTuneConfig,
    InterpolatedPolicies,
    PolicySamples,
    divergence_estimates,
    interpolate_state_dicts,
    reward_weighted_fine_tune,
    sample_policy,
    simplex_grid,
)
from market_sim.lm.model import LanguageModel, complete_reply
from market_sim.prompting import build_prompt

torch.set_num_threads(1)

PROMPTS = [
    "Query: vacation in Hawaii\nReply:",
    "Query: Maui\nReply:",
    "Sponsor: Beta Resort: beachfront rooms on Maui.\nQuery: family trip to Maui\nReply:",
]
TARGET_TOKENS = frozenset(range(1, 41))  # ~11% of the random model's 369 tokens (EOS is 0)
MAX_NEW_TOKENS = 8
CONFIG = FineTuneConfig(
    samples_per_prompt=32,
    beta=0.05,
    steps=40,
    learning_rate=1e-2,
    batch_size=32,
    max_new_tokens=MAX_NEW_TOKENS,
)


def target_fraction(replies) -> np.ndarray:
    """Fraction of each reply's tokens that lie in TARGET_TOKENS (0 for an empty reply)."""
    return np.array([np.mean([t in TARGET_TOKENS for t in r]) if r else 0.0 for r in replies])


def target_reward(prompt_indices, replies) -> np.ndarray:
    assert len(prompt_indices) == len(replies)
    return target_fraction(replies)


def parameters_of(lm: LanguageModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


def mean_reward(lm: LanguageModel, prompts, reward, n: int, max_new_tokens: int, seed: int):
    rows = [p for p in prompts for _ in range(n)]
    index = np.repeat(np.arange(len(prompts)), n)
    return float(np.mean(reward(index, lm.sample(rows, max_new_tokens, seed=seed))))


@pytest.fixture(scope="module")
def fine_tuned(random_lm):
    before = parameters_of(random_lm)
    calls = []

    def counting_reward(prompt_indices, replies):
        calls.append(len(replies))
        return target_reward(prompt_indices, replies)

    result = reward_weighted_fine_tune(random_lm, PROMPTS, counting_reward, CONFIG, seed=0)
    return result, before, calls


# --------------------------------------------------------------------------------------------


def test_complete_reply_appends_eos_only_when_shorter():
    assert complete_reply([5, 6], max_new_tokens=3, eos_token_id=0) == [5, 6, 0]
    assert complete_reply([], max_new_tokens=3, eos_token_id=0) == [0]
    assert complete_reply([5, 6, 7], max_new_tokens=3, eos_token_id=0) == [5, 6, 7]
    with pytest.raises(ValueError, match="max_new_tokens"):
        complete_reply([1, 2, 3, 4], max_new_tokens=3, eos_token_id=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("samples_per_prompt", 0),
        ("samples_per_prompt", 2.5),
        ("beta", 0.0),
        ("beta", -1.0),
        ("beta", math.inf),
        ("steps", -1),
        ("learning_rate", 0.0),
        ("batch_size", 0),
        ("max_new_tokens", 0),
        ("temperature", 0.0),
        ("temperature", math.nan),
        ("num_threads", 0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be .*(>= 1|>= 0|> 0)"):
        FineTuneConfig(**{field: value})


def test_config_defaults():
    config = FineTuneConfig()
    assert (config.samples_per_prompt, config.beta, config.steps) == (16, 0.1, 30)
    assert (config.learning_rate, config.batch_size) == (1e-3, 32)
    assert (config.max_new_tokens, config.temperature) == (24, 1.0)


@pytest.mark.parametrize(("vertices", "resolution"), [(1, 3), (2, 1), (2, 4), (3, 3), (4, 5)])
def test_simplex_grid(vertices, resolution):
    grid = simplex_grid(vertices, resolution)
    assert grid.shape == (math.comb(resolution + vertices - 1, vertices - 1), vertices)
    np.testing.assert_allclose(grid.sum(1), 1.0, atol=1e-12)
    counts = grid * resolution
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert (grid >= 0).all()
    assert len({tuple(row) for row in np.round(counts).astype(int).tolist()}) == len(grid)
    for k in range(vertices):
        assert any(np.array_equal(row, np.eye(vertices)[k]) for row in grid)
    np.testing.assert_array_equal(grid, simplex_grid(vertices, resolution))
    rows = [tuple(row) for row in grid.tolist()]
    assert rows == sorted(rows, reverse=True)  # descending lexicographic: base vertex first
    np.testing.assert_array_equal(grid[0], np.eye(vertices)[0])


def test_simplex_grid_rejects_bad_args():
    with pytest.raises(ValueError, match="vertices"):
        simplex_grid(0, 3)
    with pytest.raises(ValueError, match="resolution"):
        simplex_grid(2, 0)


def test_interpolate_state_dicts():
    generator = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 4, generator=generator), "n": torch.tensor([1, 2])}
    b = {"w": torch.randn(3, 4, generator=generator), "n": torch.tensor([7, 8])}
    first = interpolate_state_dicts([a, b], [1.0, 0.0])
    assert torch.equal(first["w"], a["w"]) and torch.equal(first["n"], a["n"])
    assert first["w"].data_ptr() != a["w"].data_ptr()  # a new tensor
    second = interpolate_state_dicts([a, b], [0.0, 1.0])
    assert torch.equal(second["w"], b["w"]) and torch.equal(second["n"], a["n"])
    mean = interpolate_state_dicts([a, b], [0.5, 0.5])
    torch.testing.assert_close(mean["w"], (a["w"] + b["w"]) / 2, atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="keys"):
        interpolate_state_dicts([a, {"v": b["w"], "n": b["n"]}], [0.5, 0.5])
    with pytest.raises(ValueError, match="coefficients"):
        interpolate_state_dicts([a, b], [1.0])
    with pytest.raises(ValueError, match="shape"):
        interpolate_state_dicts([a, {"w": b["w"][:2], "n": b["n"]}], [0.5, 0.5])


def test_fine_tune_leaves_base_untouched_and_is_deterministic(random_lm, fine_tuned):
    result, before, calls = fine_tuned
    after = parameters_of(random_lm)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert calls == [len(PROMPTS) * CONFIG.samples_per_prompt]  # reward called once, all rows
    assert result.lm.name == f"{random_lm.name}+rwr" and not result.lm.model.training
    assert result.lm.model is not random_lm.model
    assert len(result.losses) == CONFIG.steps and all(math.isfinite(x) for x in result.losses)
    assert 1.0 <= result.effective_sample_size <= CONFIG.samples_per_prompt
    tuned = parameters_of(result.lm)
    assert any(not torch.equal(tuned[k], before[k]) for k in before)

    again = reward_weighted_fine_tune(random_lm, PROMPTS, target_reward, CONFIG, seed=0)
    repeated = parameters_of(again.lm)
    assert all(torch.equal(tuned[k], repeated[k]) for k in tuned)
    assert again.losses == result.losses
    assert again.mean_reward_base == result.mean_reward_base


def test_fine_tune_raises_the_reward(random_lm, fine_tuned):
    result, _, _ = fine_tuned
    base = mean_reward(random_lm, PROMPTS, target_reward, 96, MAX_NEW_TOKENS, seed=12345)
    tuned = mean_reward(result.lm, PROMPTS, target_reward, 96, MAX_NEW_TOKENS, seed=12345)
    # base ~0.10; across training seeds 0..5 the tuned model reached 0.25..0.37
    assert tuned >= base + 0.08, (base, tuned)


def test_fine_tune_validates_the_reward(random_lm):
    config = replace(CONFIG, steps=1, samples_per_prompt=2)
    with pytest.raises(ValueError, match="shape"):
        reward_weighted_fine_tune(random_lm, PROMPTS, lambda i, r: np.zeros(1), config, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        reward_weighted_fine_tune(
            random_lm, PROMPTS, lambda i, r: np.full(len(r), np.nan), config, seed=0
        )


def test_interpolated_policies(random_lm, fine_tuned):
    result, _, _ = fine_tuned
    policies = InterpolatedPolicies(random_lm, [result.lm], resolution=2)
    assert policies.grid.shape == (3, 2) and len(policies) == 3
    vertex_logprobs = [lm.next_token_logprobs(PROMPTS) for lm in (random_lm, result.lm)]
    for k, expected in enumerate(vertex_logprobs):
        g = policies.vertex_index(k)
        np.testing.assert_array_equal(policies.grid[g], np.eye(2)[k])
        torch.testing.assert_close(
            policies.model_at(g).next_token_logprobs(PROMPTS), expected, atol=1e-6, rtol=0
        )
    middle = int(np.flatnonzero(np.isclose(policies.grid[:, 0], 0.5))[0])
    mixed_lm = policies.model_at(middle)
    mixed = mixed_lm.next_token_logprobs(PROMPTS)
    for expected in vertex_logprobs:
        assert (mixed - expected).abs().max().item() > 1e-3
    # one shared working copy, distinct from both vertices
    assert policies.model_at(0).model is mixed_lm.model
    assert mixed_lm.model is not random_lm.model and mixed_lm.model is not result.lm.model


def test_sample_policy_scores_complete_replies(random_lm, fine_tuned, monkeypatch):
    result, _, _ = fine_tuned
    monkeypatch.setattr(fine_tune_module, "SCORING_CHUNK_ROWS", 5)  # several chunks
    samples = sample_policy(result.lm, random_lm, PROMPTS, 4, MAX_NEW_TOKENS, 1.0, seed=3)
    assert samples.prompt_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert len(samples.replies) == 12
    for row, reply in enumerate(samples.replies):
        prompt = PROMPTS[samples.prompt_index[row]]
        full = complete_reply(reply, MAX_NEW_TOKENS, random_lm.eos_token_id)
        for lm, scores in ((result.lm, samples.policy_logprob), (random_lm, samples.init_logprob)):
            expected = lm.sequence_logprob([prompt], [full])[0].item()
            assert scores[row] == pytest.approx(expected, abs=1e-4)


def test_temperature_scoring(random_lm):
    continuation = [random_lm.encode(" Fly nonstop.")]
    plain = random_lm.sequence_logprob(PROMPTS[:1], continuation)
    assert torch.equal(plain, random_lm.sequence_logprob(PROMPTS[:1], continuation, 1.0))
    ids = torch.tensor([random_lm.encode(PROMPTS[0]) + continuation[0]])
    with torch.inference_mode():
        logits = random_lm.model(input_ids=ids).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits / 2.0, -1)
    n = len(continuation[0])
    expected = logprobs[-n:].gather(-1, ids[0, -n:].unsqueeze(-1)).sum()
    hot = random_lm.sequence_logprob(PROMPTS[:1], continuation, temperature=2.0)
    assert hot.item() == pytest.approx(expected.item(), abs=1e-4)


def test_divergences_vanish_for_the_initial_policy(random_lm):
    samples = sample_policy(random_lm, random_lm, PROMPTS, 4, MAX_NEW_TOKENS, 1.0, seed=1)
    assert np.array_equal(samples.policy_logprob, samples.init_logprob)
    assert divergence_estimates(samples, lam=0.7) == {"kl": 0.0, "chi2": 0.0, "tv": 0.0}


def test_divergence_formulas_on_known_log_ratios():
    rho = np.array([math.log(2.0), 0.0, -math.log(4.0)])  # x = 2, 1, 1/4
    samples = PolicySamples(
        prompt_index=np.array([0, 0, 1]),
        replies=[[1], [2], [3]],
        policy_logprob=rho - 3.0,
        init_logprob=np.full(3, -3.0),
    )
    lam = 0.5
    estimates = divergence_estimates(samples, lam)
    # prompt 0: rows x = 2 and x = 1; prompt 1: row x = 1/4; prompts weighted equally.
    kl = lam * ((math.log(2.0) + 0.0) / 2 + (-math.log(4.0))) / 2
    chi2 = lam * (((2 - 1) ** 2 / 2 + 0.0) / 2 + (0.25 - 1) ** 2 / 0.25) / 2  # (x-1)^2 / x
    tv = lam * ((abs(1 - 1 / 2) + 0.0) / 2 + abs(1 - 4.0)) / 2  # |1 - 1/x|
    assert estimates["kl"] == pytest.approx(kl, rel=1e-12)
    assert estimates["chi2"] == pytest.approx(chi2, rel=1e-12)  # = 0.5 * (0.25 + 2.25) / 2
    assert estimates["tv"] == pytest.approx(tv, rel=1e-12)  # = 0.5 * (0.25 + 3) / 2
    with pytest.raises(ValueError, match="lam"):
        divergence_estimates(samples, -1.0)


def test_kl_estimate_positive_for_fine_tuned(random_lm, fine_tuned):
    result, _, _ = fine_tuned
    samples = sample_policy(result.lm, random_lm, PROMPTS, 32, MAX_NEW_TOKENS, 1.0, seed=7)
    estimates = divergence_estimates(samples, lam=1.0)
    assert estimates["kl"] > 0.05 and estimates["chi2"] > 0 and estimates["tv"] > 0


def test_bundled_model_learns_to_mention_the_beach():
    lm = LanguageModel.load("bundled:tiny-ads", device="cpu")
    prompts = [
        build_prompt("vacation in Hawaii"),
        build_prompt("family trip to Maui"),
        build_prompt("vacation in Hawaii", ["Alpha Airlines: nonstop flights to Hawaii."]),
    ]

    def beach(prompt_indices, replies):
        return np.array([float("beach" in lm.decode(r).lower()) for r in replies])

    config = FineTuneConfig(samples_per_prompt=32, beta=0.1, steps=20, max_new_tokens=24)
    result = reward_weighted_fine_tune(lm, prompts, beach, config, seed=0)
    base = mean_reward(lm, prompts, beach, 48, 24, seed=99)
    tuned = mean_reward(result.lm, prompts, beach, 48, 24, seed=99)
    assert tuned >= base + 0.3, (base, tuned)  # observed ~0.25 -> ~0.95
    samples = sample_policy(result.lm, lm, prompts, 16, 24, 1.0, seed=5)
    assert divergence_estimates(samples, lam=1.0)["kl"] > 0.1

"""DPO fine-tuning with TRL, cross-checked against our own DPO loss (LM level)."""

import copy
import math
import os
import tempfile
import warnings
from dataclasses import replace

import pytest
import torch

from market_sim.lm.model import LanguageModel
from market_sim.lm.preference import (
    DPOSettings,
    PairTokens,
    PreferencePair,
    completion_logprobs,
    dpo_batch_stats,
    dpo_fine_tune,
    pair_tokens,
)
from market_sim.prompting import build_prompt

torch.set_num_threads(1)

LOG2 = math.log(2.0)
BETA = 0.1
PAIRS = [
    PreferencePair(
        build_prompt("vacation in Hawaii"),
        " Fly nonstop to Hawaii with Alpha Airlines.",
        " Buy new running shoes today.",
    ),
    PreferencePair(
        build_prompt("cheap laptop for school"),
        " Get a budget laptop with long battery life.",
        " Book a beachfront room on Maui.",
    ),
    PreferencePair(
        build_prompt("family trip to Maui", ["Beta Resort: beachfront rooms on Maui."]),
        " Book a room with an ocean view at Beta Resort.",
        " Upgrade your phone plan now.",
    ),
    PreferencePair(
        build_prompt("running shoes"),
        " Try lightweight running shoes for daily training.",
        " Fly nonstop to Hawaii.",
    ),
    PreferencePair(
        build_prompt("weekend getaway"),
        " Relax on the beach in Maui.",
        " Buy a laptop.",
    ),
]
FULL_BATCH = DPOSettings(beta=BETA, steps=2, learning_rate=1e-4, batch_size=len(PAIRS))


@pytest.fixture(scope="module")
def tiny_lm() -> LanguageModel:
    return LanguageModel.load("bundled:tiny-ads", device="cpu")


@pytest.fixture(scope="module")
def base_weights(tiny_lm) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in tiny_lm.model.state_dict().items()}


@pytest.fixture(scope="module")
def two_steps(tiny_lm, base_weights):
    return dpo_fine_tune(tiny_lm, PAIRS, FULL_BATCH, seed=3)


@pytest.fixture(scope="module")
def one_step(tiny_lm, base_weights):
    return dpo_fine_tune(tiny_lm, PAIRS, replace(FULL_BATCH, steps=1), seed=3)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(
        torch.equal(state_a[k], state_b[k]) for k in state_a
    )


def trl_tokens(lm: LanguageModel, pairs, folder) -> list[PairTokens]:
    """The token ids of TRL's own prepared training dataset."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = DPOConfig(output_dir=str(folder), report_to=[], use_cpu=True, max_length=None)
        trainer = DPOTrainer(
            model=copy.deepcopy(lm.model),
            ref_model=copy.deepcopy(lm.model),
            args=config,
            train_dataset=Dataset.from_dict(
                {
                    "prompt": [p.prompt for p in pairs],
                    "chosen": [p.chosen for p in pairs],
                    "rejected": [p.rejected for p in pairs],
                }
            ),
            processing_class=copy.deepcopy(lm.tokenizer),
        )
    return [
        PairTokens(row["prompt_ids"], row["chosen_ids"], row["rejected_ids"])
        for row in trainer.train_dataset
    ]


# --------------------------------------------------------------------------------------------
# Tokenization and scoring
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_fixture", ["tiny_lm", "random_lm"])
def test_pair_tokens_match_trl(model_fixture, request, tmp_path):
    lm = request.getfixturevalue(model_fixture)
    pairs = [
        *PAIRS,
        # A trailing space merges with the reply's first word: the split is at the common prefix.
        PreferencePair("Query: vacation in Hawaii\nReply: ", "Fly nonstop.", "Buy shoes."),
        # A reply that already ends with the EOS text gets no second one.
        PreferencePair(PAIRS[0].prompt, PAIRS[0].chosen + lm.tokenizer.eos_token, " Buy."),
    ]
    ours = [pair_tokens(lm, pair) for pair in pairs]
    assert ours == trl_tokens(lm, pairs, tmp_path)
    eos = lm.eos_token_id
    for tokens in ours:
        assert tokens.chosen_ids[-1] == eos and tokens.chosen_ids.count(eos) == 1
        assert tokens.rejected_ids[-1] == eos and tokens.rejected_ids.count(eos) == 1
    # Ordinary prompts ending in "Reply:" are kept whole; the merged trailing space is not.
    assert ours[0].prompt_ids == lm.encode(PAIRS[0].prompt)
    assert lm.decode(ours[0].chosen_ids) == PAIRS[0].chosen
    merged = lm.encode(pairs[-2].prompt)
    assert len(ours[-2].prompt_ids) < len(merged)


def test_completion_logprobs_agree_with_the_model(tiny_lm):
    tokens = [pair_tokens(tiny_lm, pair) for pair in PAIRS]
    prompts = [t.prompt_ids for t in tokens]
    completions = [t.chosen_ids for t in tokens]
    ours = completion_logprobs(tiny_lm, prompts, completions)
    assert ours.dtype == torch.float64 and ours.shape == (len(PAIRS),)
    assert torch.all(ours < 0)
    reference = tiny_lm.sequence_logprob(prompts, completions).double()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)
    # A bare module scores the same, and each row as if it were alone.
    torch.testing.assert_close(completion_logprobs(tiny_lm.model, prompts, completions), ours)
    alone = completion_logprobs(tiny_lm, prompts[:1], completions[:1])
    torch.testing.assert_close(alone, ours[:1], rtol=1e-6, atol=1e-6)


def test_batch_stats_at_the_reference_are_log_two_and_zero(tiny_lm):
    stats = dpo_batch_stats(tiny_lm, tiny_lm, PAIRS, BETA)
    assert stats.loss.shape == stats.margin.shape == (len(PAIRS),)
    assert torch.all(stats.margin == 0)
    torch.testing.assert_close(stats.loss, torch.full((len(PAIRS),), LOG2, dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def test_one_step_lowers_the_loss_and_raises_the_margin(tiny_lm, one_step):
    before = dpo_batch_stats(tiny_lm, tiny_lm, PAIRS, BETA)
    after = dpo_batch_stats(one_step.lm, tiny_lm, PAIRS, BETA)
    assert float(after.loss.mean()) < float(before.loss.mean()) - 1e-3
    assert float(after.margin.mean()) > float(before.margin.mean()) + 1e-2
    assert one_step.losses[0] == pytest.approx(LOG2, abs=1e-5)


def test_trl_losses_match_our_dpo_loss(tiny_lm, one_step, two_steps):
    assert len(two_steps.losses) == len(two_steps.margins) == len(two_steps.accuracies) == 2
    # Step 1 is scored at policy == reference.
    assert two_steps.losses[0] == pytest.approx(LOG2, abs=1e-5)
    assert two_steps.margins[0] == pytest.approx(0.0, abs=1e-6)
    assert two_steps.accuracies[0] == 0.0  # ties are not "chosen > rejected"
    # Step 2 is scored (on the full batch, in TRL's shuffled order) with the model after one
    # step, which is what a separate one-step run with the same seed returns.
    ours = dpo_batch_stats(one_step.lm, tiny_lm, PAIRS, BETA)
    assert two_steps.losses[1] == pytest.approx(float(ours.loss.mean()), rel=1e-4)
    assert two_steps.margins[1] == pytest.approx(BETA * float(ours.margin.mean()), rel=1e-4)
    assert two_steps.accuracies[1] == pytest.approx(float((ours.margin > 0).double().mean()))
    assert two_steps.losses[1] < LOG2


def test_the_reference_is_the_model_as_passed(two_steps):
    # Had TRL reloaded the weights on disk as the reference, the second round would start
    # with a loss below log 2 (the first round moved away from those weights).
    again = dpo_fine_tune(two_steps.lm, PAIRS, FULL_BATCH, seed=3)
    assert again.losses[0] == pytest.approx(LOG2, abs=1e-5)
    assert again.margins[0] == pytest.approx(0.0, abs=1e-6)
    assert again.lm.name == "bundled:tiny-ads+dpo+dpo"
    assert not same_weights(again.lm.model, two_steps.lm.model)


def test_training_is_deterministic_and_leaves_the_base_untouched(
    tiny_lm, base_weights, two_steps, monkeypatch, tmp_path
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    repeat = dpo_fine_tune(tiny_lm, PAIRS, FULL_BATCH, seed=3)
    assert os.listdir(tmp_path) == []  # no files left behind
    assert repeat.losses == two_steps.losses
    assert same_weights(repeat.lm.model, two_steps.lm.model)
    state = tiny_lm.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base_weights.items())
    assert not same_weights(two_steps.lm.model, tiny_lm.model)
    other_seed = dpo_fine_tune(tiny_lm, PAIRS, replace(FULL_BATCH, batch_size=2), seed=4)
    assert not same_weights(other_seed.lm.model, two_steps.lm.model)


def test_result_is_a_frozen_eval_copy(tiny_lm, two_steps):
    result = two_steps.lm
    assert result.model is not tiny_lm.model
    assert result.name == "bundled:tiny-ads+dpo"
    assert not result.model.training
    assert not any(p.requires_grad for p in result.model.parameters())
    assert "forward" not in vars(result.model)  # TRL's fused-head patch is removed
    assert result.tokenizer is tiny_lm.tokenizer
    assert len(result.sample([PAIRS[0].prompt], max_new_tokens=4, seed=0)[0]) <= 4


def test_a_tokenizer_without_pad_token_is_not_mutated(tiny_lm):
    tokenizer = copy.deepcopy(tiny_lm.tokenizer)
    tokenizer.pad_token = None
    lm = LanguageModel(copy.deepcopy(tiny_lm.model), tokenizer, name="no-pad")
    pad_id = lm.pad_token_id
    result = dpo_fine_tune(lm, PAIRS[:2], replace(FULL_BATCH, steps=1), seed=0)
    assert tokenizer.pad_token is None
    assert lm.pad_token_id == pad_id == result.lm.pad_token_id
    assert result.losses[0] == pytest.approx(LOG2, abs=1e-5)


def test_zero_steps_returns_an_unchanged_copy(tiny_lm):
    result = dpo_fine_tune(tiny_lm, PAIRS, replace(FULL_BATCH, steps=0), seed=0)
    assert result.lm.model is not tiny_lm.model
    assert same_weights(result.lm.model, tiny_lm.model)
    assert result.losses == result.margins == result.accuracies == []


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beta", 0.0),
        ("beta", -0.1),
        ("beta", float("nan")),
        ("steps", -1),
        ("steps", 1.5),
        ("learning_rate", 0.0),
        ("batch_size", 0),
        ("num_threads", 0),
    ],
)
def test_settings_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        DPOSettings(**{field: value})


def test_pairs_are_validated(tiny_lm):
    with pytest.raises(ValueError, match="pairs must not be empty"):
        dpo_fine_tune(tiny_lm, [], DPOSettings(), seed=0)
    with pytest.raises(ValueError, match="pairs must not be empty"):
        dpo_batch_stats(tiny_lm, tiny_lm, [], BETA)
    with pytest.raises(ValueError, match="prompt"):
        PreferencePair("", " chosen", " rejected")
    with pytest.raises(ValueError, match="beta"):
        dpo_batch_stats(tiny_lm, tiny_lm, PAIRS, 0.0)
    with pytest.raises(ValueError, match="same length"):
        completion_logprobs(tiny_lm, [[1]], [])


def test_training_sends_no_telemetry_to_the_hub(tiny_lm, monkeypatch):
    """Found by an audit: TRL's DPOTrainer reports its use to huggingface.co when built (not
    under CI=1, which hid it from CI), a network call nobody asked for."""
    import queue

    from huggingface_hub import constants
    from huggingface_hub.utils import _telemetry

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    started: list[bool] = []
    monkeypatch.setattr(_telemetry, "_start_telemetry_thread", lambda: started.append(True))
    monkeypatch.setattr(_telemetry, "_TELEMETRY_QUEUE", queue.Queue())  # nothing consumes it
    dpo_fine_tune(tiny_lm, PAIRS[:2], replace(FULL_BATCH, steps=1, batch_size=2), seed=3)
    assert started == [] and _telemetry._TELEMETRY_QUEUE.empty()
    assert constants.HF_HUB_DISABLE_TELEMETRY is False  # restored afterwards

"""RoPE parity: batched, left-padded, cached log-probs equal single, unpadded, uncached ones.

A rotary model sees positions only through the rotation of queries and keys, which makes attention
depend on position differences only: a left-padded row is right when the mask hides its padding
and every cached step continues its own row's positions. Checked on a randomly
initialised ``LlamaForCausalLM`` built here (grouped-query attention, tied embeddings, like
SmolLM2) and on SmolLM2-135M-Instruct when ``market-sim lm get`` has cached it.

Tolerance: 1e-4 absolute on log-probabilities, the bound the issue sets. Padded and unpadded
forwards sum the same float32 terms in different orders and shapes. Measured on SmolLM2 (30
layers, vocabulary 49152, log-probs down to -33) with these prompts: two identical unpadded rows
in one batch already differ from a single row by up to 3.6e-5; a row left-padded by 45 tokens by
up to 6.5e-5 (at a token of log-prob -25.6; at most 3.1e-5 over tokens of log-prob > -10). The
random Llama stays below 2e-6. One wrong position or an attended pad moves log-probs by more than
1e-2 (see test_what_rope_parity_can_and_cannot_see).
"""

import pytest
import torch
from random_llama import build_random_llama

from market_sim.lm.cached_models import CachedModelMissingError, resolve_cached_model
from market_sim.lm.decoding import decode_combined
from market_sim.lm.model import LanguageModel
from market_sim.prompting import prompt_builder

TOLERANCE = 1e-4  # see the module docstring
ALPHA = "Alpha Airlines: nonstop flights to Hawaii."
BETA = "Beta Resort: beachfront rooms on Maui."
QUERIES_AND_CONTEXTS = [
    ("vacation in Hawaii", ()),
    ("vacation in Hawaii", (ALPHA,)),
    ("family trip to Maui with two kids and a dog", (BETA,)),
    ("Maui", (ALPHA, BETA)),
]
CONTINUATIONS = [" Fly nonstop.", " Relax on the beach today", "", " Book"]


@pytest.fixture(scope="module", params=["random-llama", "smollm2"])
def rope_lm(request, tmp_path_factory) -> LanguageModel:
    torch.set_num_threads(1)
    if request.param == "random-llama":
        return LanguageModel.load(
            str(build_random_llama(tmp_path_factory.mktemp("llama"))), device="cpu"
        )
    try:
        resolve_cached_model("cache:smollm2-135m-instruct")
    except CachedModelMissingError:
        pytest.skip("SmolLM2 is not in the cache (market-sim lm get smollm2-135m-instruct)")
    return LanguageModel.load("cache:smollm2-135m-instruct", device="cpu", dtype="float32")


def prompts_for(lm: LanguageModel) -> list[str]:
    """Chat prompts where the tokenizer has a template (SmolLM2), plain ones otherwise."""
    builder = prompt_builder("auto", lm.tokenizer)
    return [builder(query, contexts) for query, contexts in QUERIES_AND_CONTEXTS]


def single_logprobs(lm: LanguageModel, token_ids: list[int]) -> torch.Tensor:
    """Next-token log-probs of one unpadded sequence, no cache, default positions 0..L-1."""
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([token_ids]), use_cache=False).logits[0, -1]
    return torch.log_softmax(logits.float(), -1)


def test_rope_models_are_llama(rope_lm):
    assert type(rope_lm.model).__name__ == "LlamaForCausalLM"
    assert rope_lm.model.config.num_key_value_heads < rope_lm.model.config.num_attention_heads


def last_logprobs(lm: LanguageModel, batch, position_ids, attention_mask) -> torch.Tensor:
    with torch.inference_mode():
        logits = lm.model(
            input_ids=batch.input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).logits[:, -1]
    return torch.log_softmax(logits.float(), -1)


def test_what_rope_parity_can_and_cannot_see(rope_lm):
    """The power of the parity tests, and RoPE's invariance to a per-row position shift.

    RoPE scores depend on position differences only, so counting the padding in the positions
    (a constant shift of a row) changes nothing; attending to the padding, or one token's
    position off by one (what a cached step gets from a wrong next position), changes the
    log-probs by far more than the tolerance, so the parity tests below would catch it.
    """
    prompts = prompts_for(rope_lm)
    batch = rope_lm.pad(prompts)
    mask = batch.attention_mask
    padded_rows = (mask == 0).any(-1).nonzero().squeeze(-1).tolist()
    assert padded_rows  # the prompts have unequal lengths
    shifted = torch.arange(mask.shape[1]).expand_as(mask)  # counts the padding
    last_off_by_one = batch.position_ids.clone()
    last_off_by_one[:, -1] += 1
    invariant = last_logprobs(rope_lm, batch, shifted, mask)
    unmasked = last_logprobs(rope_lm, batch, batch.position_ids, torch.ones_like(mask))
    off_by_one = last_logprobs(rope_lm, batch, last_off_by_one, mask)
    for row in padded_rows:
        expected = single_logprobs(rope_lm, rope_lm.encode(prompts[row]))
        torch.testing.assert_close(invariant[row], expected, atol=TOLERANCE, rtol=0)
        assert (unmasked[row] - expected).abs().max().item() > 100 * TOLERANCE
        assert (off_by_one[row] - expected).abs().max().item() > 100 * TOLERANCE


def test_padded_next_token_logprobs_equal_single(rope_lm):
    prompts = prompts_for(rope_lm)
    batched = rope_lm.next_token_logprobs(prompts)
    for row, prompt in enumerate(prompts):
        expected = single_logprobs(rope_lm, rope_lm.encode(prompt))
        torch.testing.assert_close(batched[row], expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_continuation_scoring_equals_single(rope_lm, temperature):
    prompts = prompts_for(rope_lm)
    batched, mask = rope_lm.continuation_logprobs(prompts, CONTINUATIONS, temperature)
    for row, (prompt, continuation) in enumerate(zip(prompts, CONTINUATIONS, strict=True)):
        prefix, tokens = rope_lm.encode(prompt), rope_lm.encode(continuation)
        assert mask[row].sum().item() == len(tokens)
        for t, token in enumerate(tokens):
            with torch.inference_mode():
                logits = rope_lm.model(
                    input_ids=torch.tensor([prefix + tokens[:t]]), use_cache=False
                ).logits[0, -1]
            expected = torch.log_softmax(logits.float() / temperature, -1)[token].item()
            assert batched[row, t].item() == pytest.approx(expected, abs=TOLERANCE)


def test_grouped_decoding_with_finished_groups_dropped_equals_single(rope_lm):
    prompts = prompts_for(rope_lm)
    groups = [[prompts[0], prompts[1]], [prompts[2], prompts[3]], [prompts[1], prompts[2]]]
    eos = rope_lm.eos_token_id
    filler = rope_lm.encode(" the")[0]
    seen: list[tuple[int, int, torch.Tensor]] = []
    live: list[int] = []

    def greedy_mean_dropping(logprobs, group_index, step):
        live.append(len(group_index))
        tokens = logprobs.exp().mean(1).argmax(-1)
        tokens[tokens == eos] = filler  # only the forced stops below end a group
        tokens[(group_index == 0) & (step == 1)] = eos
        tokens[(group_index == 2) & (step == 3)] = eos
        for row, group in enumerate(group_index.tolist()):
            seen.append((group, step, logprobs[row].clone()))
        return tokens

    result = decode_combined(rope_lm, groups, greedy_mean_dropping, max_new_tokens=5)
    assert live == [3, 3, 2, 2, 1]  # groups 0 and 2 left the batch and the cache
    assert [len(tokens) for tokens in result.tokens] == [1, 5, 3]
    for group, step, logprobs in seen:
        prefix = result.tokens[group][:step]
        for member, prompt in enumerate(groups[group]):
            expected = single_logprobs(rope_lm, rope_lm.encode(prompt) + prefix)
            torch.testing.assert_close(logprobs[member], expected, atol=TOLERANCE, rtol=0)

"""LM layer: padded batched cached computations equal their single, unpadded, uncached versions."""

import pytest
import torch

from market_sim.lm.decoding import decode_combined
from market_sim.lm.loading import ModelNotFoundError, resolve_device, resolve_model_reference
from market_sim.lm.model import LanguageModel, left_pad

PROMPTS = [
    "Query: vacation in Hawaii\nReply:",
    "Sponsor: Alpha Airlines: nonstop flights to Hawaii.\nQuery: vacation in Hawaii\nReply:",
    "Sponsor: Beta Resort: beachfront rooms on Maui.\nQuery: family trip to Maui\nReply:",
    "Query: Maui\nReply:",
]


def single_logprobs(lm: LanguageModel, prompt: str) -> torch.Tensor:
    ids = torch.tensor([lm.encode(prompt)])
    with torch.inference_mode():
        logits = lm.model(input_ids=ids, use_cache=False).logits[0, -1]
    return torch.log_softmax(logits.float(), -1)


def test_left_pad_positions():
    batch = left_pad([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert batch.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]
    with pytest.raises(ValueError, match="empty prompt"):
        left_pad([[1], []], 0, torch.device("cpu"))


def test_batched_padded_logprobs_equal_single(random_lm):
    batched = random_lm.next_token_logprobs(PROMPTS)
    assert len({len(random_lm.encode(p)) for p in PROMPTS}) > 1  # padding really happens
    for row, prompt in enumerate(PROMPTS):
        torch.testing.assert_close(
            batched[row], single_logprobs(random_lm, prompt), atol=1e-4, rtol=0
        )


def test_continuation_logprobs_equal_single(random_lm):
    continuations = [" Fly nonstop.", " Relax on the beach today", "", " Book"]
    batched, mask = random_lm.continuation_logprobs(PROMPTS, continuations)
    for row, (prompt, continuation) in enumerate(zip(PROMPTS, continuations, strict=True)):
        tokens = random_lm.encode(continuation)
        assert mask[row].sum().item() == len(tokens)
        prefix = random_lm.encode(prompt)
        for t, token in enumerate(tokens):
            expected = single_logprobs(random_lm, prefix + tokens[:t])[token]
            assert batched[row, t].item() == pytest.approx(expected.item(), abs=1e-4)
    totals = random_lm.sequence_logprob(PROMPTS, continuations)
    torch.testing.assert_close(totals, (batched * mask).sum(-1))


def test_cached_decoding_matches_uncached_recomputation(random_lm):
    groups = [[PROMPTS[0], PROMPTS[1]], [PROMPTS[2], PROMPTS[3]], [PROMPTS[1], PROMPTS[3]]]
    seen: list[tuple[int, int, torch.Tensor]] = []

    def greedy_mean(logprobs, group_index, step):
        for row, group in enumerate(group_index.tolist()):
            seen.append((group, step, logprobs[row].clone()))
        return logprobs.exp().mean(1).argmax(-1)

    result = decode_combined(random_lm, groups, greedy_mean, max_new_tokens=6, stop_at_eos=False)
    assert result.steps == 6 and all(len(t) == 6 for t in result.tokens)
    for group, step, logprobs in seen:
        prefix = result.tokens[group][:step]
        for member, prompt in enumerate(groups[group]):
            expected = single_logprobs(random_lm, random_lm.encode(prompt) + prefix)
            torch.testing.assert_close(logprobs[member], expected, atol=1e-4, rtol=0)


def test_groups_stop_independently_at_eos(random_lm):
    eos = random_lm.eos_token_id
    groups = [[PROMPTS[0]] * 2, [PROMPTS[1]] * 2, [PROMPTS[2]] * 2]
    live_counts = []

    def stop_group_one_early(logprobs, group_index, step):
        live_counts.append(len(group_index))
        tokens = torch.full((len(group_index),), 7)
        tokens[(group_index == 1) & (step == 1)] = eos
        tokens[(group_index == 2) & (step == 3)] = eos
        return tokens

    result = decode_combined(random_lm, groups, stop_group_one_early, max_new_tokens=5)
    assert [len(t) for t in result.tokens] == [5, 1, 3]
    assert result.stopped_at_eos == [False, True, True]
    assert live_counts == [3, 3, 2, 2, 1]


def test_decoding_after_dropping_groups_stays_exact(random_lm):
    groups = [[PROMPTS[0], PROMPTS[1]], [PROMPTS[2], PROMPTS[3]]]
    eos = random_lm.eos_token_id
    seen = []

    def drop_first(logprobs, group_index, step):
        tokens = logprobs.exp().mean(1).argmax(-1)
        tokens[(group_index == 0) & (step == 1)] = eos
        tokens[(group_index == 1) & (tokens == eos)] = 3
        for row, group in enumerate(group_index.tolist()):
            seen.append((group, step, logprobs[row].clone()))
        return tokens

    result = decode_combined(random_lm, groups, drop_first, max_new_tokens=5)
    for group, step, logprobs in seen:
        prefix = result.tokens[group][:step]
        for member, prompt in enumerate(groups[group]):
            expected = single_logprobs(random_lm, random_lm.encode(prompt) + prefix)
            torch.testing.assert_close(logprobs[member], expected, atol=1e-4, rtol=0)


def test_model_references(tmp_path, random_model_dir):
    assert resolve_model_reference(str(random_model_dir)) == str(random_model_dir.resolve())
    assert resolve_model_reference("hub:some-org/some-model") == "some-org/some-model"
    with pytest.raises(ModelNotFoundError, match="no local model folder"):
        resolve_model_reference(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError, match="no local model folder"):
        resolve_model_reference("some-org/some-model")  # path-like: never tried on the hub
    with pytest.raises(ModelNotFoundError, match="unknown bundled model 'nope'"):
        resolve_model_reference("bundled:nope")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_plain_sampling_is_seeded(random_lm):
    first = random_lm.sample(PROMPTS[:2], max_new_tokens=5, seed=3, stop_at_eos=False)
    again = random_lm.sample(PROMPTS[:2], max_new_tokens=5, seed=3, stop_at_eos=False)
    assert first == again and all(len(t) == 5 for t in first)

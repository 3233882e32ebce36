"""Replies end at any of a model's stop tokens; the end-of-reply token comes first.

The models are the tests' random Llama with ChatML special tokens (``random_llama.py``). A
Gemma-like variant gets an end-of-sequence token ``</s>`` that its chat template never writes:
its turns close with ``<|im_end|>``, so a chat reply must stop there and be scored as ending.
"""

from pathlib import Path

import pytest
import torch
from random_llama import build_random_llama
from transformers import AutoModelForCausalLM, AutoTokenizer

from market_sim.lm.decoding import decode_combined
from market_sim.lm.model import LanguageModel, complete_reply
from market_sim.lm.stop_tokens import chat_turn_end

PROMPTS = ["Query: vacation in Hawaii\nReply:", "Sponsor: Beta Resort\nQuery: Maui\nReply:"]


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory) -> Path:
    return build_random_llama(tmp_path_factory.mktemp("chat-llama"), chat=True)


def load(folder: Path) -> tuple:
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)


def gemma_like(folder: Path, prompt_format: str) -> LanguageModel:
    """The chat model with a separate ``</s>`` as its tokenizer's and configs' EOS token."""
    tokenizer, model = load(folder)
    tokenizer.add_special_tokens({"eos_token": "</s>"})
    model.resize_token_embeddings(len(tokenizer))
    model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
    return LanguageModel(model, tokenizer, prompt_format=prompt_format)


def with_generation_stops(folder: Path, extra: list[int]) -> LanguageModel:
    """The model in the plain format, ``generation_config.eos_token_id = [eos, *extra]``."""
    tokenizer, model = load(folder)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *extra]
    return LanguageModel(model, tokenizer, prompt_format="plain")


def test_the_chat_turn_end_comes_first_in_chat_and_after_the_listed_ids_in_plain(chat_model_dir):
    tokenizer, _ = load(chat_model_dir)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert chat_turn_end(tokenizer) == im_end  # ChatML closes the assistant turn with it
    chat = gemma_like(chat_model_dir, "chat")
    eos = chat.tokenizer.convert_tokens_to_ids("</s>")
    assert eos != im_end
    assert chat.stop_token_ids == (im_end, eos) and chat.eos_token_id == im_end
    plain = gemma_like(chat_model_dir, "plain")
    assert plain.stop_token_ids == (eos, im_end) and plain.eos_token_id == eos


def test_generation_config_ids_are_stops_and_ids_outside_the_vocabulary_are_dropped(
    chat_model_dir,
):
    lm = with_generation_stops(chat_model_dir, [7, 7, 10**6])
    eos = lm.tokenizer.eos_token_id
    assert lm.stop_token_ids == (eos, 7) and lm.eos_token_id == eos


@pytest.mark.parametrize(
    "template",
    [
        "{% for m in messages %}{{ m['content'] }} END{% endfor %}",  # text, no special token
        "{{ raise_exception('no assistant turns') }}",
        "{% for m in messages %}{{ m['content'] }}{% endfor %}",  # nothing after the content
    ],
)
def test_no_turn_end_where_the_template_writes_none(chat_model_dir, template):
    tokenizer, _ = load(chat_model_dir)
    tokenizer.chat_template = template
    assert chat_turn_end(tokenizer) is None


def test_an_added_token_marked_special_closes_a_turn(chat_model_dir):
    """Phi-3 style: the turn-closing token is special only as an added token."""
    from tokenizers import AddedToken

    tokenizer, _ = load(chat_model_dir)
    tokenizer.add_tokens([AddedToken("<|end|>", special=True)])
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    assert end not in tokenizer.all_special_ids
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}<|end|>\n{% endfor %}"
    assert chat_turn_end(tokenizer) == end


def test_a_turn_end_after_whitespace_counts(chat_model_dir):
    tokenizer, _ = load(chat_model_dir)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n <|im_start|>{% endfor %}"
    assert chat_turn_end(tokenizer) == tokenizer.convert_tokens_to_ids("<|im_start|>")


def greedy(logprobs: torch.Tensor, group_index: torch.Tensor, step: int) -> torch.Tensor:
    """Each group's most likely token under its first row."""
    return logprobs[:, 0].argmax(-1)


def first_new_token(tokens: list[int], avoid: set[int]) -> tuple[int, int]:
    """(position, token) of the first token from position 1 on not seen before nor in ``avoid``."""
    for position, token in enumerate(tokens):
        if position >= 1 and token not in avoid and token not in tokens[:position]:
            return position, token
    raise AssertionError(f"every token of {tokens} repeats an earlier one")


def test_the_aggregated_decoding_stops_at_a_second_stop_token(chat_model_dir):
    single = with_generation_stops(chat_model_dir, [])
    groups = [[prompt] for prompt in PROMPTS]
    full = decode_combined(single, groups, greedy, max_new_tokens=12, stop_at_eos=False).tokens[0]
    position, token = first_new_token(full, set(single.stop_token_ids))
    assert single.eos_token_id not in full[:position]  # else that token would stop it first
    two = with_generation_stops(chat_model_dir, [token])
    result = decode_combined(two, groups, greedy, max_new_tokens=12)
    assert result.tokens[0] == full[:position] and result.stopped_at_eos[0]
    # the second group decodes on, unaffected, unless the same token stops it too
    other = decode_combined(single, groups, greedy, max_new_tokens=12, stop_at_eos=False).tokens[1]
    cut = other.index(token) if token in other else len(other)
    assert result.tokens[1] == other[:cut] and result.stopped_at_eos[1] == (token in other)


def test_sampling_stops_at_a_second_stop_token_with_the_same_draws_before_it(chat_model_dir):
    single = with_generation_stops(chat_model_dir, [])
    # generate's stop list changes no logits (no min_new_tokens here), so one prompt draws the
    # same tokens with either stop list until one of them stops it
    drawn = single.sample(PROMPTS[:1], max_new_tokens=24, seed=3)[0]
    position, token = first_new_token(drawn, set(single.stop_token_ids))
    two = with_generation_stops(chat_model_dir, [token])
    assert two.sample(PROMPTS[:1], max_new_tokens=24, seed=3)[0] == drawn[:position]


def test_a_complete_reply_scores_its_end_as_the_total_probability_of_the_stop_tokens(
    chat_model_dir,
):
    lm = with_generation_stops(chat_model_dir, [7, 11])
    prompt, reply = lm.encode(PROMPTS[0]), lm.encode(" Fly nonstop")
    complete = complete_reply(reply, max_new_tokens=8, eos_token_id=lm.eos_token_id)
    token_logprobs, mask = lm.continuation_logprobs([prompt], [complete])
    # independently: the next-token distribution after prompt + reply, one forward per prefix
    end = lm.next_token_logprobs([prompt + reply])[0]
    expected_end = torch.logsumexp(end[list(lm.stop_token_ids)], dim=0)
    first = lm.next_token_logprobs([prompt])[0, reply[0]]
    # float32 forwards over different batch shapes: equal to a few ulps of values of order 10
    assert mask[0].tolist() == [True] * len(complete)
    assert torch.isclose(token_logprobs[0, -1], expected_end, rtol=1e-5, atol=0)
    assert torch.isclose(token_logprobs[0, 0], first, rtol=1e-5, atol=0)
    # and it is more than the end-of-reply token alone (two more stop tokens add mass)
    assert token_logprobs[0, -1] > end[lm.eos_token_id]

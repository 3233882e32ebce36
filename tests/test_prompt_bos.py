"""A tokenizer that puts BOS before text (Llama 2, Mistral, TinyLlama) gets it before every prompt.

Prompts are encoded without special tokens, so that a reply never gets a BOS; a model trained
with a BOS at the start of every sequence would otherwise read every plain prompt without one.
The model here is the tests' random GPT-2 with ``<s>`` added and a post-processor that puts it
first, as those tokenizers do.
"""

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import build_random_model
from tokenizers import processors
from transformers import AutoModelForCausalLM, AutoTokenizer

from market_sim.lm.decoding import decode_combined
from market_sim.lm.model import LanguageModel
from market_sim.prompting import prompt_bos_id, with_bos

PROMPT = "Query: vacation in Hawaii\nReply:"


@pytest.fixture(scope="module")
def bos_model_dir(tmp_path_factory) -> Path:
    folder = build_random_model(tmp_path_factory.mktemp("bos-model"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bos_lm(bos_model_dir) -> LanguageModel:
    return LanguageModel.load(str(bos_model_dir), device="cpu")


def raw_logprobs(lm: LanguageModel, token_ids: list[int]) -> torch.Tensor:
    """``[L, V]`` next-token log-probabilities of one unpadded sequence, straight from the model."""
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([token_ids])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def test_the_bos_is_found_for_plain_prompts_only(bos_lm, random_lm):
    bos = bos_lm.tokenizer.convert_tokens_to_ids("<s>")
    assert bos_lm.prompt_bos_id == bos
    assert prompt_bos_id(bos_lm.tokenizer, "chat") is None  # a template writes its own
    assert random_lm.prompt_bos_id is None  # its tokenizer puts nothing before text
    ids = bos_lm.encode(PROMPT)
    assert ids[0] != bos and bos_lm.encode_prompt(PROMPT) == [bos, *ids]
    assert bos_lm.encode_prompt([bos, *ids]) == [bos, *ids]  # never twice
    assert with_bos(ids, None) == ids


def test_scores_and_decoding_read_the_prompt_after_its_bos(bos_lm):
    bos, prompt = bos_lm.prompt_bos_id, bos_lm.encode(PROMPT)
    reply = bos_lm.encode(" Fly nonstop")
    token_logprobs, _ = bos_lm.continuation_logprobs([PROMPT], [reply])
    # independently: one unpadded forward over [BOS, prompt, reply]
    raw = raw_logprobs(bos_lm, [bos, *prompt, *reply])
    start = 1 + len(prompt) - 1  # the position predicting the reply's first token
    expected = raw[start : start + len(reply)].gather(1, torch.tensor(reply)[:, None])[:, 0]
    # float32 forwards of different batch shapes: a few ulps of values of order 10
    assert torch.allclose(token_logprobs[0], expected, rtol=1e-5, atol=0)
    without_bos = raw_logprobs(bos_lm, [*prompt, *reply])[len(prompt) - 1, reply[0]]
    assert not torch.isclose(token_logprobs[0, 0], without_bos, rtol=1e-3, atol=0)

    def greedy(logprobs: torch.Tensor, group_index: torch.Tensor, step: int) -> torch.Tensor:
        return logprobs[:, 0].argmax(-1)

    decoded = decode_combined(bos_lm, [[PROMPT]], greedy, max_new_tokens=1, stop_at_eos=False)
    assert decoded.tokens[0] == [int(raw[len(prompt)].argmax())]


def test_the_prompt_length_check_counts_the_bos(bos_lm):
    from market_sim.scenario import ScenarioError, load_scenario
    from market_sim.scenario.prompt_fit import check_model_fits, prompt_cases

    hawaii = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"
    scenario = load_scenario(hawaii)
    longest = max(
        len(bos_lm.encode_prompt(bos_lm.prompt(text, contexts)))
        for _, text, contexts in prompt_cases(scenario)
    )
    limit = bos_lm.max_positions
    fits = dataclasses.replace(
        scenario,
        mechanism=dataclasses.replace(scenario.mechanism, max_new_tokens=limit - longest),
    )
    check_model_fits(fits, bos_lm)
    one_more = dataclasses.replace(
        scenario,
        mechanism=dataclasses.replace(scenario.mechanism, max_new_tokens=limit - longest + 1),
    )
    with pytest.raises(ScenarioError):
        check_model_fits(one_more, bos_lm)


def test_sampling_reads_the_prompt_after_its_bos(bos_lm):
    bos, prompt = bos_lm.prompt_bos_id, bos_lm.encode(PROMPT)
    next_logprobs = raw_logprobs(bos_lm, [bos, *prompt])[-1]
    with_bos = int(next_logprobs.argmax())
    without = int(raw_logprobs(bos_lm, prompt)[-1].argmax())
    assert with_bos != without  # else this test could not tell the two prompts apart
    assert with_bos not in bos_lm.stop_token_ids
    # at temperature 1e-3 a log-probability gap of 0.05 to the runner-up is a factor e^50: the
    # draw is the most likely token
    top_two = next_logprobs.topk(2).values
    assert float(top_two[0] - top_two[1]) > 0.05
    assert bos_lm.sample([PROMPT], max_new_tokens=1, temperature=1e-3, seed=0) == [[with_bos]]

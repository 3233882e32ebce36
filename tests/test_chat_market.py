"""Chat prompts through the whole market: every mechanism renders every prompt with one builder.

A 2-layer random Llama whose tokenizer carries ChatML (built in the test, as SmolLM2's) stands in
for a chat model. The spy records every text the model tokenizes as a prompt; in chat format each
must be a rendered chat prompt, so a call site that still writes the plain format fails here.
"""

from pathlib import Path

import pytest
import torch
from random_llama import build_random_llama

from market_sim.eva.reward import ReplyReward
from market_sim.lm.model import LanguageModel
from market_sim.platform.candidate_scoring import ReplySampling
from market_sim.prompting import CHAT_SYSTEM_INSTRUCTION, build_prompt
from market_sim.run import run_scenario
from market_sim.scenario import ScenarioError, dump_scenario_toml, load_scenario

ALPHA = "Alpha Airlines: nonstop flights to Hawaii."
BETA = "Beta Resort: beachfront rooms on Maui."
CHAT_START = f"<|im_start|>system\n{CHAT_SYSTEM_INSTRUCTION}"

SCENARIO = """
name = "chat"
seed = 3
rounds = 2

[model]
path = "{path}"
device = "cpu"

[mechanism]
{mechanism}
max_new_tokens = 6

[queries]
items = ["vacation in Hawaii", "family trip to Maui"]

[[advertisers]]
name = "Alpha Airlines"
context = "{alpha}"
valuation = {{ dist = "fixed", value = 1.0 }}

[[advertisers]]
name = "Beta Resort"
context = "{beta}"
valuation = {{ dist = "fixed", value = 0.8 }}
"""

MECHANISMS = {
    "token_auction": 'kind = "token_auction"',
    "mosaic_context_aware": 'kind = "mosaic"\ncandidates = 4\nproposal = "context_aware"',
    "affine_maximizer": 'kind = "affine_maximizer"\ncandidates = 4',
    "second_price_sampled_reply": 'kind = "second_price"\nreply = "sampled"',
}


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory) -> Path:
    return build_random_llama(tmp_path_factory.mktemp("chat-llama"), seed=1, chat=True)


@pytest.fixture(scope="module")
def chat_lm(chat_folder) -> LanguageModel:
    torch.set_num_threads(1)
    return LanguageModel.load(str(chat_folder), device="cpu")


def write_scenario(folder: Path, model_path: str, mechanism: str) -> Path:
    path = folder / "chat.toml"
    text = SCENARIO.format(path=model_path, mechanism=mechanism, alpha=ALPHA, beta=BETA)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def encoded_prompts(monkeypatch) -> list[str]:
    """Every text the market's models tokenize (replies are token ids, never text)."""
    seen: list[str] = []
    original = LanguageModel.encode

    def spy(self, prompt):
        if isinstance(prompt, str):
            seen.append(prompt)
        return original(self, prompt)

    monkeypatch.setattr(LanguageModel, "encode", spy)
    return seen


def test_auto_resolves_from_the_tokenizer_files_and_is_recorded(chat_folder, tmp_path):
    chat = load_scenario(write_scenario(tmp_path, str(chat_folder), MECHANISMS["token_auction"]))
    assert chat.model.prompt_format == "chat"
    assert 'prompt_format = "chat"' in dump_scenario_toml(chat)
    plain = load_scenario(write_scenario(tmp_path, "bundled:tiny-ads", 'kind = "token_auction"'))
    assert plain.model.prompt_format == "plain"
    assert plain.model.weights_sha256 is None  # bundled models are hashed only when pinned


def test_chat_on_a_model_without_template_is_one_line(tmp_path):
    path = write_scenario(tmp_path, "bundled:tiny-ads", 'kind = "token_auction"')
    with pytest.raises(ScenarioError) as error:
        load_scenario(path, ['model.prompt_format="chat"'])
    assert str(error.value) == (
        "model.prompt_format: 'chat': the tokenizer of 'bundled:tiny-ads' has no chat template; "
        "allowed: auto, plain"
    )


@pytest.mark.parametrize("mechanism", sorted(MECHANISMS))
def test_every_prompt_of_every_mechanism_is_a_chat_prompt(
    mechanism, chat_folder, chat_lm, encoded_prompts, tmp_path
):
    scenario = load_scenario(write_scenario(tmp_path, str(chat_folder), MECHANISMS[mechanism]))
    first = run_scenario(scenario, lm=chat_lm)
    prompts = set(encoded_prompts)
    assert prompts, "the market tokenized no prompt"
    plain_looking = sorted(p for p in prompts if not p.startswith(CHAT_START))
    assert plain_looking == []
    assert all(p.endswith("<|im_start|>assistant\n") for p in prompts)
    # p_0 (no sponsor) is rendered: the user's distribution always takes part.
    assert any("Sponsor:" not in p for p in prompts)
    if mechanism != "second_price_sampled_reply":  # the slot auction's reply has no sponsor
        assert any(f"Sponsor: {ALPHA}" in p for p in prompts)
    encoded_prompts.clear()
    second = run_scenario(scenario, lm=chat_lm)  # same seed, same bytes
    assert first.rounds.drop("wall_seconds", strict=False).equals(
        second.rounds.drop("wall_seconds", strict=False)
    )


def test_a_plain_scenario_on_a_chat_model_writes_plain_prompts(
    chat_folder, chat_lm, encoded_prompts, tmp_path
):
    path = write_scenario(tmp_path, str(chat_folder), MECHANISMS["token_auction"])
    scenario = load_scenario(path, ['model.prompt_format="plain"'])
    run_scenario(scenario, lm=chat_lm)  # the loaded chat-format model follows the scenario
    expected = {build_prompt(q) for q in scenario.queries.items} | {
        build_prompt(q, [c]) for q in scenario.queries.items for c in (ALPHA, BETA)
    }
    assert set(encoded_prompts) <= expected and set(encoded_prompts)


def test_chat_and_plain_formats_give_different_auctions(chat_folder, chat_lm, tmp_path):
    """The format reaches the LM: the same seed decodes from different distributions."""
    path = write_scenario(tmp_path, str(chat_folder), MECHANISMS["token_auction"])
    chat = run_scenario(load_scenario(path), lm=chat_lm).rounds
    plain = run_scenario(load_scenario(path, ['model.prompt_format="plain"']), lm=chat_lm).rounds
    assert chat["text"].to_list() != plain["text"].to_list()


def test_eva_judge_scores_against_the_chat_prompt_of_an_empty_query(chat_lm, encoded_prompts):
    sampling = ReplySampling(max_new_tokens=6, temperature=1.0)
    reward = ReplyReward(chat_lm, [ALPHA, BETA], [1.0, 0.8], user_weight=1.0, sampling=sampling)
    replies = chat_lm.sample([chat_lm.prompt("vacation in Hawaii")], 6, 1.0, seed=0)
    encoded_prompts.clear()
    breakdown = reward.score(["vacation in Hawaii"], replies)
    assert breakdown.total.shape == (1,)
    assert chat_lm.prompt("") in encoded_prompts  # the user term's empty-query baseline
    assert all(p.startswith(CHAT_START) for p in encoded_prompts)


def test_fine_tuned_copies_keep_the_prompt_format(chat_lm):
    from market_sim.lm.fine_tune import FineTuneConfig, reward_weighted_fine_tune

    config = FineTuneConfig(samples_per_prompt=2, steps=1, max_new_tokens=4)
    result = reward_weighted_fine_tune(
        chat_lm, [chat_lm.prompt("vacation in Hawaii")], lambda i, r: [1.0] * len(r), config, 0
    )
    assert result.lm.prompt_format == "chat"
    assert chat_lm.with_prompt_format("plain").prompt_format == "plain"


def test_eva_rewriter_asks_a_chat_model_in_chat(chat_lm, encoded_prompts):
    from market_sim.eva.creator import REWRITE_ANSWER_CUE, LMRewriter, rewrite_prompt
    from market_sim.eva.grammar import StructuredQuery
    from market_sim.eva.pool import QueryPool
    from market_sim.prompting import CHAT_TASK_ANSWER_INSTRUCTION

    prompt = rewrite_prompt("vacation in Hawaii", "Add the constraint 'on a budget'.", chat_lm)
    assert prompt.startswith(CHAT_START) and prompt.endswith("<|im_start|>assistant\n")
    assert "Query: vacation in Hawaii" in prompt and CHAT_TASK_ANSWER_INSTRUCTION in prompt
    assert REWRITE_ANSWER_CUE not in prompt
    plain = rewrite_prompt("vacation in Hawaii", "Add the constraint 'on a budget'.")
    assert plain.endswith(f"Query: vacation in Hawaii\n{REWRITE_ANSWER_CUE}")
    pool = QueryPool(["vacation in Hawaii"])
    parent = next(iter(pool.records.values()))
    child = StructuredQuery(parent.query.topic, constraints=("on a budget",))
    LMRewriter(chat_lm, max_new_tokens=4)(parent, "add_constraint", child, 0)
    assert encoded_prompts and all(p.startswith(CHAT_START) for p in encoded_prompts)

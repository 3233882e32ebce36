"""LM layer: padded batched cached computations equal their single, unpadded, uncached versions."""

import warnings
from dataclasses import dataclass

import pytest
import torch

from market_sim.lm import model as model_module
from market_sim.lm.decoding import (
    DecodeResult,
    cache_keyword,
    decode_combined,
    distinct_groups,
)
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


def assert_steps_match_single_rows(
    lm: LanguageModel,
    groups: list[list[str]],
    tokens: list[list[int]],
    seen: list[tuple[int, int, torch.Tensor]],
) -> None:
    """Every recorded (group, step, [n, V] log-probs) equals an uncached single-row forward.

    Row i of group g at step s must be the model's distribution after prompt i of g followed by
    g's first s tokens, computed alone, unpadded, without a cache.
    """
    for group, step, logprobs in seen:
        prefix = tokens[group][:step]
        for member, prompt in enumerate(groups[group]):
            expected = single_logprobs(lm, lm.encode(prompt) + prefix)
            # float32 forwards of differently padded batches agree to ~1e-6 on log-probs of
            # magnitude ~10: 1e-4 absolute leaves room for kernels, not for a wrong prefix
            torch.testing.assert_close(logprobs[member], expected, atol=1e-4, rtol=0)


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
    assert_steps_match_single_rows(random_lm, groups, result.tokens, seen)


def test_cache_keyword_follows_the_forward_signature():
    class Renamed(torch.nn.Module):
        def forward(self, input_ids, cache=None, past_key_values=None): ...

    class Older(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None): ...

    assert cache_keyword(Renamed()) == "cache"
    assert cache_keyword(Older()) == "past_key_values"
    compiled = torch.nn.Module()
    compiled._orig_mod = Renamed()  # what torch.compile's wrapper holds
    assert cache_keyword(compiled) == "cache"


def test_decoding_passes_the_cache_without_deprecation_warnings(random_lm):
    # transformers 5.24 warns (FutureWarning) on past_key_values=, which 5.40 removes.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = decode_combined(
            random_lm,
            [[PROMPTS[0], PROMPTS[1]]],
            lambda logprobs, group_index, step: logprobs.exp().mean(1).argmax(-1),
            max_new_tokens=3,
            stop_at_eos=False,
        )
    assert result.steps == 3
    deprecations = [str(w.message) for w in caught if "deprecated" in str(w.message)]
    assert deprecations == []


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
    assert_steps_match_single_rows(random_lm, groups, result.tokens, seen)


@dataclass
class ScheduledDecode:
    """What :func:`decode_on_schedule` observed."""

    result: DecodeResult
    batch_rows: list[int]  # rows of each forward
    live_seen: list[list[int]]  # the groups combine saw, per step
    seen: list[tuple[int, int, torch.Tensor]]  # (group, step, [n, V] log-probs)


def decode_on_schedule(
    lm: LanguageModel, groups, stop_at: dict[int, int], max_new_tokens: int
) -> ScheduledDecode:
    """Decode with group g emitting EOS exactly at step ``stop_at[g]``, recording everything.

    Tokens are the argmax of the mean plus the group index (so copies of a group diverge),
    EOS replaced by token 3 except where scheduled.
    """
    eos = lm.eos_token_id
    batch_rows: list[int] = []
    live_seen: list[list[int]] = []
    seen: list[tuple[int, int, torch.Tensor]] = []

    def stop_on_schedule(logprobs, group_index, step):
        live_seen.append(group_index.tolist())
        for row, group in enumerate(group_index.tolist()):
            seen.append((group, step, logprobs[row].clone()))
        tokens = (logprobs.exp().mean(1).argmax(-1) + group_index) % lm.vocab_size
        tokens[tokens == eos] = 3
        for group, stop in stop_at.items():
            tokens[(group_index == group) & (step == stop)] = eos
        return tokens

    hook = lm.model.register_forward_pre_hook(
        lambda module, args, kwargs: batch_rows.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    try:
        result = decode_combined(lm, groups, stop_on_schedule, max_new_tokens)
    finally:
        hook.remove()
    return ScheduledDecode(result, batch_rows, live_seen, seen)


def test_stopped_groups_left_in_the_batch_do_not_disturb_the_live_ones(random_lm):
    """Stopped groups stay in the batch until at most half are live; the rest decode exactly.

    Of 4 groups, group 0 stops at step 1 (3 of 4 live: kept in the batch, fed the pad token),
    group 2 at step 2 (2 of 4: the batch is compacted to 2 groups), group 3 at step 3 (1 of 2:
    compacted again). Every live group's distributions must equal an uncached single-row
    recomputation of its own prefix, and ``combine`` sees only live groups.
    """
    groups = [
        [PROMPTS[0], PROMPTS[1]],
        [PROMPTS[2], PROMPTS[3]],
        [PROMPTS[1], PROMPTS[2]],
        [PROMPTS[3], PROMPTS[0]],
    ]
    run = decode_on_schedule(random_lm, groups, {0: 1, 2: 2, 3: 3}, max_new_tokens=6)
    assert run.live_seen == [[0, 1, 2, 3], [0, 1, 2, 3], [1, 2, 3], [1, 3], [1], [1]]
    assert run.batch_rows == [8, 8, 8, 4, 2, 2]  # rows per forward: 4 groups until 2 of 4 live
    assert [len(t) for t in run.result.tokens] == [1, 6, 2, 3]
    assert run.result.stopped_at_eos == [True, False, True, True]
    assert_steps_match_single_rows(random_lm, groups, run.result.tokens, run.seen)


def test_shared_prefill_with_staggered_stops_decodes_exactly(random_lm):
    """Copies of a prompt group, stopping at different steps, two pad-fed stops in a row.

    Groups [A, B, A, C, A, B] share a 3-group first forward; group 0 stops at step 1 and group
    3 at step 2 (both left in the batch), group 5 at step 3 (3 of 6 live: compacted), group 2
    at step 4 (2 of 3 live: kept). Every live group's distributions must equal a single-row
    recomputation of its own prompts and prefix.
    """
    a, b, c = [PROMPTS[0], PROMPTS[1]], [PROMPTS[2], PROMPTS[3]], [PROMPTS[1], PROMPTS[2]]
    groups = [a, b, a, c, a, b]
    run = decode_on_schedule(random_lm, groups, {0: 1, 3: 2, 5: 3, 2: 4}, max_new_tokens=7)
    assert run.batch_rows == [6, 12, 12, 12, 6, 6, 6]
    assert run.live_seen == [
        [0, 1, 2, 3, 4, 5],
        [0, 1, 2, 3, 4, 5],
        [1, 2, 3, 4, 5],
        [1, 2, 4, 5],
        [1, 2, 4],
        [1, 4],
        [1, 4],
    ]
    tokens = run.result.tokens
    assert [len(t) for t in tokens] == [1, 7, 4, 2, 7, 3]
    assert tokens[1] != tokens[5] and tokens[2][:4] != tokens[4][:4]  # copies diverged
    assert_steps_match_single_rows(random_lm, groups, tokens, run.seen)


def test_distinct_groups_in_first_seen_order():
    groups = [[[1, 2], [3]], [[4], [5]], [[1, 2], [3]], [[1, 2], [4]], [[4], [5]]]
    distinct, source = distinct_groups(groups)
    assert distinct == [[[1, 2], [3]], [[4], [5]], [[1, 2], [4]]]
    assert source == [0, 1, 0, 2, 1]
    assert all(groups[b] == distinct[source[b]] for b in range(len(groups)))


def test_identical_groups_share_one_prefill_and_decode_as_alone(random_lm):
    """Groups with the same prompts share the first forward, then decode their own tokens.

    The combine picks a different token per group (argmax of the mean plus the group index), so
    the copies diverge after the first step: every step's distributions must still equal an
    uncached single-row recomputation of that group's own prefix.
    """
    one, two = [PROMPTS[0], PROMPTS[1]], [PROMPTS[2], PROMPTS[3]]
    groups = [one, two, one, one, two]
    first_forward_rows: list[int] = []
    hook = random_lm.model.register_forward_pre_hook(
        lambda module, args, kwargs: first_forward_rows.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    seen: list[tuple[int, int, torch.Tensor]] = []

    def diverging(logprobs, group_index, step):
        for row, group in enumerate(group_index.tolist()):
            seen.append((group, step, logprobs[row].clone()))
        return (logprobs.exp().mean(1).argmax(-1) + group_index) % random_lm.vocab_size

    try:
        result = decode_combined(random_lm, groups, diverging, max_new_tokens=4, stop_at_eos=False)
    finally:
        hook.remove()
    assert first_forward_rows == [2 * 2, 5 * 2, 5 * 2, 5 * 2]  # 2 distinct groups, then 5
    assert len({tuple(tokens) for tokens in result.tokens}) == 5  # the copies diverged
    assert_steps_match_single_rows(random_lm, groups, result.tokens, seen)


def test_shared_prefill_gives_the_unshared_tokens(random_lm):
    """A group decoded among copies of itself samples what it samples decoded alone.

    The combine draws each group's token with a generator seeded by the group's label, so the
    randomness does not depend on the batch; groups 0 and 2 share their prefill in the batch
    and nothing is shared when each group is decoded alone.
    """
    groups = [[PROMPTS[0], PROMPTS[1]], [PROMPTS[2], PROMPTS[3]], [PROMPTS[0], PROMPTS[1]]]

    def seeded_sampler(labels):
        def combine(logprobs, group_index, step):
            tokens = []
            for row, group in enumerate(group_index.tolist()):
                generator = torch.Generator().manual_seed(1000 * labels[group] + step)
                probs = logprobs[row].exp().mean(0)
                tokens.append(torch.multinomial(probs, 1, generator=generator))
            return torch.cat(tokens)

        return combine

    shared = decode_combined(random_lm, groups, seeded_sampler([0, 1, 2]), 6, stop_at_eos=False)
    assert shared.tokens[0] != shared.tokens[2]  # same prompts, own draws
    for group in range(len(groups)):
        alone = decode_combined(
            random_lm, [groups[group]], seeded_sampler([group]), 6, stop_at_eos=False
        )
        assert alone.tokens[0] == shared.tokens[group]


def test_encode_remembers_prompt_strings(random_lm, monkeypatch):
    fresh = LanguageModel(random_lm.model, random_lm.tokenizer)
    calls = []
    original = fresh.tokenizer.encode

    def counting_encode(text, **kwargs):
        calls.append(text)
        return original(text, **kwargs)

    monkeypatch.setattr(fresh.tokenizer, "encode", counting_encode)
    monkeypatch.setattr(model_module, "ENCODE_MEMO_SIZE", 2)
    expected = [list(original(p, add_special_tokens=False)) for p in PROMPTS[:3]]
    assert [fresh.encode(p) for p in PROMPTS[:2] * 3] == (expected[:2]) * 3
    assert calls == PROMPTS[:2]  # each string tokenized once
    fresh.encode(PROMPTS[0]).append(-1)  # callers get a copy: the memo is not changed
    assert fresh.encode(PROMPTS[0]) == expected[0]
    assert fresh.encode(PROMPTS[2]) == expected[2]  # a third string: the memo starts over
    assert fresh.encode(PROMPTS[0]) == expected[0] and calls[-2:] == [PROMPTS[2], PROMPTS[0]]
    assert fresh.encode([5, 6]) == [5, 6]


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
    # torch.device takes these too, but a scenario's model.device does not: one list for both
    # (found by an audit: lm generate --device cpu:1 ran while run refused it)
    for name in ("cpu:1", "meta", "CPU"):
        with pytest.raises(ValueError, match=f"device '{name}' is not supported; allowed: auto"):
            resolve_device(name)


def test_a_damaged_weight_file_is_one_line_not_a_traceback(tmp_path, random_model_dir):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(random_model_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: the header no longer parses
    with pytest.raises(ModelNotFoundError, match="SafetensorError") as caught:
        LanguageModel.load(str(damaged), device="cpu")
    assert "\n" not in str(caught.value)


def test_plain_sampling_is_seeded(random_lm):
    first = random_lm.sample(PROMPTS[:2], max_new_tokens=5, seed=3, stop_at_eos=False)
    again = random_lm.sample(PROMPTS[:2], max_new_tokens=5, seed=3, stop_at_eos=False)
    assert first == again and all(len(t) == 5 for t in first)


def test_sampling_ignores_the_generation_settings_a_model_ships(tmp_path, random_model_dir):
    """Scores read the plain tempered distribution, so draws must too: generate() used to fill
    unset settings from the model's generation_config.json (repetition penalty, no-repeat
    n-grams), and the same weights then sampled other replies."""
    import json
    import shutil

    from market_sim.lm.model import LanguageModel

    shipped = tmp_path / "shipped-settings"
    shutil.copytree(random_model_dir, shipped)
    settings = {"repetition_penalty": 50.0, "no_repeat_ngram_size": 1}
    (shipped / "generation_config.json").write_text(json.dumps(settings))
    plain = LanguageModel.load(str(random_model_dir), device="cpu")
    penalized = LanguageModel.load(str(shipped), device="cpu")
    prompts = ["Query: vacation in Hawaii\nReply:"] * 4
    draws = plain.sample(prompts, 16, 1.0, 0, stop_at_eos=False)
    assert penalized.sample(prompts, 16, 1.0, 0, stop_at_eos=False) == draws
    assert any(len(set(tokens)) < len(tokens) for tokens in draws)  # repeats that n-grams ban
    assert penalized.model.generation_config.no_repeat_ngram_size == 1  # set aside, not lost


def test_weights_short_of_the_config_or_no_tokenizer_are_refused_in_one_line(
    tmp_path, random_model_dir
):
    """transformers gave missing tensors random values with a warning (hidden by default), and
    built an empty tokenizer when none was there: both ran, printing garbage or a traceback."""
    import json
    import shutil

    from market_sim.lm.loading import ModelNotFoundError
    from market_sim.lm.model import LanguageModel

    deeper = tmp_path / "deeper"
    shutil.copytree(random_model_dir, deeper)
    config = json.loads((deeper / "config.json").read_text())
    config["n_layer"] += 1  # a block the weight file does not hold
    (deeper / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError) as short:
        LanguageModel.load(str(deeper), device="cpu")
    assert "\n" not in str(short.value)
    assert f"lack 12 tensor(s) the config asks for (transformer.h.{config['n_layer'] - 1}." in str(
        short.value
    )
    untokenized = tmp_path / "untokenized"
    shutil.copytree(random_model_dir, untokenized)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (untokenized / name).unlink(missing_ok=True)
    with pytest.raises(ModelNotFoundError, match="no tokenizer .* beside the weights"):
        LanguageModel.load(str(untokenized), device="cpu")


@pytest.mark.parametrize("architecture", ["gpt_neox", "gemma"])
def test_load_refuses_a_folder_whose_tokenizer_holds_only_special_tokens(architecture, tmp_path):
    """Without tokenizer files transformers builds the config's tokenizer class holding only
    its default special tokens: 2 for GPT-NeoX, 5 for Gemma (a length-1 check missed both)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from market_sim.lm.loading import ModelNotFoundError
    from market_sim.lm.model import LanguageModel
    from market_sim.lm.tokenizer_only import TokenizerOnly

    config = AutoConfig.for_model(
        architecture,
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / architecture)
    with pytest.raises(ModelNotFoundError, match="no tokenizer .* beside the weights"):
        LanguageModel.load(str(tmp_path / architecture), device="cpu")
    with pytest.raises(ModelNotFoundError, match="no tokenizer .* beside the weights"):
        TokenizerOnly.load(str(tmp_path / architecture))  # a sweep's check before its runs


def test_a_tokenizer_with_more_tokens_than_embedding_rows_is_refused_in_one_line(
    tmp_path, random_model_dir
):
    """Found by an audit: chat tokens added to a tokenizer without resizing the embeddings
    loaded fine and failed at the first forward with an IndexError traceback."""
    import shutil

    from transformers import AutoTokenizer

    from market_sim.lm.loading import ModelNotFoundError
    from market_sim.lm.model import LanguageModel

    grown = tmp_path / "grown"
    shutil.copytree(random_model_dir, grown)
    tokenizer = AutoTokenizer.from_pretrained(grown)
    rows = LanguageModel.load(str(random_model_dir), device="cpu").model.get_input_embeddings()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|turn|>", "<|end|>"]})
    tokenizer.save_pretrained(grown)
    assert len(tokenizer) > rows.num_embeddings  # the premise: ids now run past the table
    with pytest.raises(ModelNotFoundError) as caught:
        LanguageModel.load(str(grown), device="cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert f"has {len(tokenizer)} tokens but the model's embedding table only " in message
    assert f"{rows.num_embeddings} rows" in message


def test_a_quantized_checkpoint_without_its_library_is_one_line(tmp_path, random_model_dir):
    """Found by an audit: a config asking for bitsandbytes (not installed) raised ImportError
    with a traceback, exit 1, instead of one line."""
    import importlib.util
    import json
    import shutil

    from market_sim.lm.loading import ModelNotFoundError
    from market_sim.lm.model import LanguageModel

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here: the checkpoint would load")
    quantized = tmp_path / "quantized"
    shutil.copytree(random_model_dir, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match="bitsandbytes") as caught:
        LanguageModel.load(str(quantized), device="cpu")
    assert "\n" not in str(caught.value)

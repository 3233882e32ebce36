"""Tests of the ad-copy corpus, the tiny-LM trainer and the bundled checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from market_sim.lm.corpus import DocumentKind, generate_corpus, generate_documents
from market_sim.lm.corpus_brands import BRANDS, DOMAIN_QUERIES, brand_by_name, brands_in
from market_sim.lm.tiny import (
    BUNDLED_MODEL_DIR,
    TinyLMConfig,
    train_tiny_lm,
    train_tokenizer,
)
from market_sim.prompting import build_prompt

BRAND_NAMES = tuple(brand.name for brand in BRANDS)
ALPHA = "Alpha Airlines: nonstop flights to Hawaii."
BETA = "Beta Resort: beachfront rooms on Maui."
TINY_CONFIG = TinyLMConfig(
    n_layer=2, n_head=2, n_embd=32, n_positions=96, vocab_size=400, batch_size=8, n_documents=200
)


@pytest.fixture(scope="module")
def documents():
    return generate_documents(seed=0, n_documents=2000)


# --- corpus ---------------------------------------------------------------------------------


def test_corpus_is_deterministic_by_seed():
    assert generate_corpus(seed=3, n_documents=300) == generate_corpus(seed=3, n_documents=300)


def test_corpus_differs_across_seeds():
    assert generate_corpus(seed=0, n_documents=300) != generate_corpus(seed=1, n_documents=300)


def test_corpus_has_requested_size_and_prompt_format():
    texts = generate_corpus(seed=0, n_documents=50)
    assert len(texts) == 50
    for text in texts:
        assert "\nReply: " in text or text.startswith("Query: ")
        assert "<|endoftext|>" not in text


def test_catalogue_has_flagship_brands_and_competitors():
    assert brand_by_name("Alpha Airlines").context == ALPHA
    assert brand_by_name("Beta Resort").context == BETA
    assert len(BRANDS) >= 12
    assert len(set(BRAND_NAMES)) == len(BRAND_NAMES)
    for domain in DOMAIN_QUERIES:
        assert len(brands_in(domain)) >= 2, domain
    domains = {brand.domain for brand in BRANDS}
    assert domains == set(DOMAIN_QUERIES)


def test_brand_templates_name_their_brand():
    for brand in BRANDS:
        for line in (*brand.contexts, *brand.openers, *brand.follow_ups):
            assert brand.name in line, line
        for context in brand.contexts:
            assert context.startswith(f"{brand.name}: ")


def test_kind_mix_is_roughly_half_quarter_quarter(documents):
    shares = {kind: 0 for kind in DocumentKind}
    for document in documents:
        shares[document.kind] += 1
    assert 0.44 < shares[DocumentKind.SINGLE] / len(documents) < 0.56
    assert 0.19 < shares[DocumentKind.UNSPONSORED] / len(documents) < 0.31
    assert 0.19 < shares[DocumentKind.JOINT] / len(documents) < 0.31


def test_unsponsored_documents_never_name_a_brand(documents):
    unsponsored = [d for d in documents if d.kind is DocumentKind.UNSPONSORED]
    assert unsponsored
    for document in unsponsored:
        assert document.contexts == ()
        assert not any(name in document.text for name in BRAND_NAMES), document.text


def test_single_sponsor_documents_name_the_sponsor(documents):
    for document in (d for d in documents if d.kind is DocumentKind.SINGLE):
        (context,) = document.contexts
        sponsor = context.split(":")[0]
        assert sponsor in document.reply
        assert set(document.brands) <= set(BRAND_NAMES)


def test_joint_documents_name_both_sponsors_in_either_order(documents):
    joint = [d for d in documents if d.kind is DocumentKind.JOINT]
    assert joint
    first_mentioned = set()
    for document in joint:
        sponsors = [context.split(":")[0] for context in document.contexts]
        assert len(sponsors) == 2 and sponsors[0] != sponsors[1]
        assert all(sponsor in document.reply for sponsor in sponsors)
        first_mentioned.add(document.brands[0] == sponsors[0])
    assert first_mentioned == {True, False}


def test_documents_use_the_shared_prompt_format(documents):
    for document in documents[:200]:
        prompt = build_prompt(document.query, document.contexts)
        assert document.text == f"{prompt} {document.reply}"
        assert document.query in DOMAIN_QUERIES[_domain_of(document)]


def test_replies_are_short(documents):
    for document in documents:
        assert 4 <= len(document.reply.split()) <= 25, document.reply


def _domain_of(document):
    for domain, queries in DOMAIN_QUERIES.items():
        if document.query in queries:
            return domain
    raise AssertionError(document.query)


# --- tokenizer and trainer ------------------------------------------------------------------


def test_tokenizer_round_trips_text():
    tokenizer = train_tokenizer(generate_corpus(seed=0, n_documents=300), vocab_size=500)
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == "<|endoftext|>"
    for text in (
        build_prompt("vacation in Hawaii", [ALPHA]) + " Fly nonstop with Alpha Airlines.",
        "Unseen words: café, naïve, 🌺, tabs\tand\nnewlines  double  spaces.",
    ):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.eos_token_id not in ids
        assert tokenizer.decode(ids) == text


def _safetensors_bytes(out_dir: Path) -> bytes:
    return (out_dir / "model.safetensors").read_bytes()


def test_training_is_reproducible_by_seed(tmp_path):
    first = train_tiny_lm(tmp_path / "a", seed=0, steps=20, config=TINY_CONFIG, progress=False)
    again = train_tiny_lm(tmp_path / "b", seed=0, steps=20, config=TINY_CONFIG, progress=False)
    other = train_tiny_lm(tmp_path / "c", seed=1, steps=20, config=TINY_CONFIG, progress=False)
    assert _safetensors_bytes(first) == _safetensors_bytes(again)
    assert _safetensors_bytes(first) != _safetensors_bytes(other)
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        assert (first / name).is_file()


def test_training_restores_torch_settings(tmp_path):
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    train_tiny_lm(tmp_path, seed=0, steps=2, config=TINY_CONFIG, progress=False)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_training_reports_its_time_and_loss_once_and_leaves_the_saved_line_to_the_cli(
    tmp_path, capsys
):
    train_tiny_lm(tmp_path, seed=0, steps=2, config=TINY_CONFIG, progress=True)
    lines = capsys.readouterr().err.splitlines()
    recorded = json.loads((tmp_path / "training_info.json").read_text())["final_loss"]
    shown = re.fullmatch(r"trained in \d+s, final loss (\d+\.\d{3})", lines[-1])
    # the line rounds to 3 decimals and the file to 4: they agree to within both roundings
    assert shown is not None and abs(float(shown.group(1)) - recorded) <= 6e-4
    assert not any("saved" in line for line in lines)  # `lm train` prints where, once


# --- the bundled checkpoint -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    if not (BUNDLED_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip("bundled checkpoint not built (market-sim lm train)")
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(BUNDLED_MODEL_DIR, use_safetensors=True)
    return model.eval(), tokenizer


def _greedy_reply(bundled, contexts, query="vacation in Hawaii") -> str:
    model, tokenizer = bundled
    ids = tokenizer(build_prompt(query, contexts), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(**ids, do_sample=False, max_new_tokens=24)
    return tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_bundled_checkpoint_is_a_small_fp32_gpt2(bundled):
    model, tokenizer = bundled
    assert model.config.model_type == "gpt2"
    assert model.dtype == torch.float32
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert (BUNDLED_MODEL_DIR / "model.safetensors").stat().st_size < 20 * 2**20


def test_bundled_alpha_reply_names_alpha_airlines(bundled):
    assert "Alpha Airlines" in _greedy_reply(bundled, [ALPHA])


def test_bundled_beta_reply_names_beta_resort(bundled):
    assert "Beta Resort" in _greedy_reply(bundled, [BETA])


def test_bundled_unsponsored_reply_names_no_brand(bundled):
    reply = _greedy_reply(bundled, [])
    assert reply.strip()
    assert not any(name in reply for name in BRAND_NAMES), reply


def test_bundled_joint_reply_names_both(bundled):
    reply = _greedy_reply(bundled, [ALPHA, BETA])
    assert "Alpha Airlines" in reply and "Beta Resort" in reply, reply

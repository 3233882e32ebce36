"""Shared fixtures: small local models built by the tests themselves (never downloaded)."""

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers import decoders as tokenizer_decoders
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from market_sim.lm.model import LanguageModel

TOKENIZER_TEXT = [
    "Sponsor: Alpha Airlines: nonstop flights to Hawaii.",
    "Sponsor: Beta Resort: beachfront rooms on Maui.",
    "Query: vacation in Hawaii\nReply: Fly nonstop and relax on the beach.",
    "Query: family trip to Maui\nReply: Book a room with an ocean view.",
]


def build_random_model(folder: Path, seed: int = 0, layers: int = 2, width: int = 32) -> Path:
    """Save a randomly initialised GPT-2-style model and a small BPE tokenizer to `folder`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizer_decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(TOKENIZER_TEXT * 5, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(wrapped),
        n_positions=128,
        n_embd=width,
        n_layer=layers,
        n_head=2,
        eos_token_id=wrapped.eos_token_id,
        bos_token_id=wrapped.eos_token_id,
        pad_token_id=wrapped.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    wrapped.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    return build_random_model(tmp_path_factory.mktemp("random-gpt2"))


@pytest.fixture(scope="session")
def random_lm(random_model_dir) -> LanguageModel:
    torch.set_num_threads(1)
    return LanguageModel.load(str(random_model_dir), device="cpu")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts with one torch CPU thread, whatever an earlier test set.

    Results are byte-identical only for one thread count (the LM's float32 reductions depend on
    it), and the CLI sets the process-wide count from ``--threads``: without this, a test that
    ran the CLI with ``--threads 2`` moved a later test's LM log-probs by ~1e-6 relative.
    """
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)

"""Shared fixtures: small local models built by the tests themselves (never downloaded)."""

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers import decoders as tokenizer_decoders
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from market_sim.lm.model import LanguageModel
from market_sim.plugins.registry import ignore_installed_plugins
from market_sim.scenario.strategy_plugins import ignore_installed_strategies

# Property tests draw the same examples on every run unless asked otherwise: a CI run must not
# fail on an example no earlier run drew (one such find, a subnormal bid ratio, was a test's
# tolerance, not a bug). `HYPOTHESIS_PROFILE=explore` draws fresh random examples each run.
settings.register_profile("derandomized", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))

# The suite's results must not depend on what else is installed: a mechanism plugin installed in
# this venv (`pip install -e examples/posted_price_plugin`) would add a kind to every list of
# kinds and clash with the tests' own posted price. Entry-point tests load their own fakes.
ignore_installed_plugins()
ignore_installed_strategies()

# The shipped example plugin package, importable as an installed copy would be.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "posted_price_plugin"))

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


def write_stand_in_cached_model(root: Path, name: str) -> Path:
    """A stand-in for a ``cache:<name>`` model: the files a scenario's parser reads, no weights.

    ``config.json``, a placeholder ``model.safetensors``, a chat template and the manifest that
    ``market-sim lm get`` writes, under ``root/models/<name>``. It parses (model.path,
    prompt_format, weights_sha256) but cannot be loaded: tests use it where only the scenario is
    read, so shipped scenarios on downloadable models are checked in CI, where nothing downloads.
    """
    import hashlib
    import json

    from market_sim.lm.cached_models import MANIFEST_FILE, model_folder

    folder = model_folder(name, root)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    weights = b"stand-in weights"
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "chat_template.jinja").write_text("{{ messages }}", encoding="utf-8")
    manifest = {"sha256": {"weights": {"model.safetensors": hashlib.sha256(weights).hexdigest()}}}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture
def shipped_scenario_models(tmp_path, monkeypatch):
    """``prepare(path)``: make a shipped scenario's ``cache:`` model parseable.

    The user's cache is used when it holds the model; otherwise ``MARKET_SIM_CACHE`` points at a
    stand-in (:func:`write_stand_in_cached_model`).
    """
    import tomllib

    from market_sim.lm.cached_models import (
        CACHE_PREFIX,
        CachedModelMissingError,
        resolve_cached_model,
    )

    def prepare(path: Path) -> None:
        reference = tomllib.loads(path.read_text("utf-8")).get("model", {}).get("path", "")
        if not reference.startswith(CACHE_PREFIX):
            return
        try:
            resolve_cached_model(reference)
        except CachedModelMissingError:
            root = tmp_path / "stand-in-cache"
            write_stand_in_cached_model(root, reference.removeprefix(CACHE_PREFIX))
            monkeypatch.setenv("MARKET_SIM_CACHE", str(root))

    return prepare

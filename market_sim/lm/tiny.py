"""Train the bundled tiny ad-copy language model from the template corpus.

The model is a small GPT-2 with a byte-level BPE tokenizer, both trained from scratch on
:func:`market_sim.lm.corpus.generate_corpus`. Training is deterministic: the same seed and
configuration give a byte-identical ``model.safetensors`` (fixed thread count, deterministic
algorithms, seeded initialisation and batch order).

Example:
    >>> from market_sim.lm.tiny import train_tiny_lm
    >>> train_tiny_lm("/tmp/tiny-ads", seed=0, steps=200)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from transformers import set_seed as set_global_seed

from market_sim.lm.bundled_models import BUNDLED_ROOT
from market_sim.lm.corpus import generate_corpus
from market_sim.prompting import REPLY_PREFIX

BUNDLED_MODEL_DIR = BUNDLED_ROOT / "tiny-ads"
"""Where the checkpoint shipped with the package lives (``bundled:tiny-ads``)."""

EOS_TOKEN = "<|endoftext|>"
"""The one special token: end of sequence, beginning of sequence and padding."""

TRAINING_INFO_FILE = "training_info.json"


@dataclass(frozen=True)
class TinyLMConfig:
    """Architecture and optimisation settings of the tiny LM.

    Attributes:
        n_layer: Transformer blocks.
        n_head: Attention heads per block.
        n_embd: Width of the residual stream.
        n_positions: Longest sequence the model accepts (prompt plus reply).
        vocab_size: Target vocabulary of the BPE tokenizer (the trained one may be smaller when
            the corpus runs out of merges; the model is sized to the trained tokenizer).
        batch_size: Documents per optimisation step.
        lr: Peak AdamW learning rate (linear warm-up, cosine decay to 10%).
        warmup_steps: Steps of linear learning-rate warm-up.
        weight_decay: AdamW weight decay.
        steps: Optimisation steps.
        n_documents: Size of the generated training corpus.
        num_threads: Torch CPU threads used while training (fixed for reproducibility).
        loss_on_prompt: Also train on predicting the prompt tokens; by default the loss covers
            only the reply and its eos token, which spends the small model's capacity on what
            it is used for (continuing prompts).
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 96
    n_positions: int = 128
    vocab_size: int = 2048
    batch_size: int = 24
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    steps: int = 2400
    n_documents: int = 20_000
    num_threads: int = 1
    loss_on_prompt: bool = False


def train_tiny_lm(
    out_dir: str | Path = BUNDLED_MODEL_DIR,
    seed: int = 0,
    steps: int | None = None,
    config: TinyLMConfig | None = None,
    progress: bool = True,
) -> Path:
    """Generate the corpus, train tokenizer and model, and save a transformers checkpoint.

    Args:
        out_dir: Folder to write (created if missing): ``config.json``, ``model.safetensors``,
            ``generation_config.json``, tokenizer files and ``training_info.json``.
        seed: Seeds the corpus, the initialisation and the batch order.
        steps: Optimisation steps; overrides ``config.steps`` when given.
        config: Architecture and optimisation settings (defaults: :class:`TinyLMConfig`).
        progress: Print the loss now and then to stderr.

    Returns:
        The output folder.
    """
    config = config or TinyLMConfig()
    if steps is not None:
        config = replace(config, steps=steps)
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    texts = generate_corpus(seed=seed, n_documents=config.n_documents)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    tokenizer.model_max_length = config.n_positions
    documents = encode_documents(tokenizer, texts, config.n_positions)
    with reproducible_torch(seed, config.num_threads):
        model = build_model(config, tokenizer)
        final_loss = _optimise(model, documents, tokenizer.pad_token_id, config, seed, progress)
    save_checkpoint(model, tokenizer, out_path)
    _write_training_info(out_path, config, seed, final_loss, parameter_count(model))
    if progress:
        elapsed = time.perf_counter() - started
        print(f"trained in {elapsed:.0f}s, final loss {final_loss:.3f}", file=sys.stderr)
    return out_path


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer whose only special token is ``<|endoftext|>``.

    Args:
        texts: Training documents.
        vocab_size: Largest vocabulary to learn (all 256 bytes and the special token included).

    Returns:
        A fast tokenizer with ``<|endoftext|>`` as its eos, bos and pad token. Encoding adds
        no special tokens.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False,
    )


class EncodedDocument(NamedTuple):
    """One tokenized training document.

    Attributes:
        ids: Token ids of prompt, reply and the final eos token.
        n_prompt_tokens: How many leading ids belong to the prompt (up to ``"Reply:"``).
    """

    ids: list[int]
    n_prompt_tokens: int


def encode_documents(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_length: int
) -> list[EncodedDocument]:
    """Tokenize documents, end each with the eos token and locate the reply.

    The prompt (everything up to and including the last ``"Reply:"``) and the reply are
    tokenized separately; with a byte-level pre-tokenizer this equals tokenizing the whole text,
    because the reply starts with a space.

    Args:
        tokenizer: The trained tokenizer.
        texts: Documents without eos text.
        max_length: Documents longer than this (eos included) are cut to this length.

    Returns:
        One encoded document per text.
    """
    eos = tokenizer.eos_token_id
    split_at = [text.rindex(REPLY_PREFIX) + len(REPLY_PREFIX) for text in texts]
    prompts = [text[:cut] for text, cut in zip(texts, split_at, strict=True)]
    replies = [text[cut:] for text, cut in zip(texts, split_at, strict=True)]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(replies, add_special_tokens=False)["input_ids"]
    return [
        EncodedDocument((prompt + reply + [eos])[:max_length], min(len(prompt), max_length))
        for prompt, reply in zip(prompt_ids, reply_ids, strict=True)
    ]


def build_model(config: TinyLMConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """Initialise a GPT-2 sized to the tokenizer, without dropout (uses the global torch RNG).

    Args:
        config: Architecture settings.
        tokenizer: The trained tokenizer (its length is the model's vocabulary).

    Returns:
        A freshly initialised fp32 model.
    """
    eos = tokenizer.eos_token_id
    gpt2_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(gpt2_config)


def save_checkpoint(
    model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, out_dir: Path
) -> None:
    """Save model (safetensors, fp32), tokenizer and a generation config with eos."""
    eos = tokenizer.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, max_new_tokens=24
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "model.safetensors").chmod(0o644)  # written as a private temp file


def parameter_count(model: torch.nn.Module) -> int:
    """Number of distinct trainable parameters (tied weights counted once)."""
    return sum(parameter.numel() for parameter in model.parameters())


@contextmanager
def reproducible_torch(seed: int, num_threads: int, warn_only: bool = False) -> Iterator[None]:
    """Seed all RNGs, force deterministic algorithms and fix the thread count, then restore.

    Args:
        seed: Seeds python, numpy and torch (``transformers.set_seed``).
        num_threads: Torch CPU threads inside the block.
        warn_only: Let kernels without a deterministic version warn instead of raise (CUDA
            matmuls would otherwise need ``CUBLAS_WORKSPACE_CONFIG``).
    """
    saved_threads = torch.get_num_threads()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    saved_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    set_global_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_deterministic, warn_only=saved_warn_only)


def _optimise(
    model: GPT2LMHeadModel,
    documents: Sequence[EncodedDocument],
    pad_id: int,
    config: TinyLMConfig,
    seed: int,
    progress: bool,
) -> float:
    """Run AdamW on shuffled, right-padded batches; return the mean loss of the last steps."""
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, config.warmup_steps, config.steps)
    )
    recent: list[float] = []
    batches = _batches(documents, config.batch_size, pad_id, seed, config.loss_on_prompt)
    for step in range(1, config.steps + 1):
        input_ids, attention_mask, labels = next(batches)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-50:]
        if progress and (step % 100 == 0 or step == config.steps):
            print(
                f"step {step}/{config.steps} loss {sum(recent) / len(recent):.4f}", file=sys.stderr
            )
    model.eval()
    return sum(recent) / max(len(recent), 1)


def _lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _batches(
    documents: Sequence[EncodedDocument],
    batch_size: int,
    pad_id: int,
    seed: int,
    loss_on_prompt: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(input_ids, attention_mask, labels)`` forever, reshuffling every epoch.

    Batches are drawn uniformly at random, not bucketed by length: document length correlates
    with document kind, and kind-homogeneous batches were seen to slow down learning whether a
    reply has already named its sponsor.
    """
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(documents), generator=generator).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = [documents[i] for i in order[start : start + batch_size]]
            yield _pad_batch(batch, pad_id, loss_on_prompt)


def _pad_batch(
    documents: Sequence[EncodedDocument], pad_id: int, loss_on_prompt: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad documents into ``(input_ids, attention_mask, labels)``.

    Every document starts at position 0. Labels are the ids with padding (and, unless
    ``loss_on_prompt``, the prompt) replaced by -100; the document's own eos is a target.
    """
    width = max(len(document.ids) for document in documents)
    input_ids = torch.full((len(documents), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(documents), width), dtype=torch.long)
    labels = torch.full((len(documents), width), -100, dtype=torch.long)
    for row, (ids, n_prompt_tokens) in enumerate(documents):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        first_target = 0 if loss_on_prompt else n_prompt_tokens
        labels[row, first_target : len(ids)] = input_ids[row, first_target : len(ids)]
    return input_ids, attention_mask, labels


def _write_training_info(
    out_dir: Path, config: TinyLMConfig, seed: int, final_loss: float, n_parameters: int
) -> None:
    """Record how the checkpoint was made (deterministic content: no timestamps)."""
    info = {
        "seed": seed,
        "config": asdict(config),
        "n_parameters": n_parameters,
        "final_loss": round(final_loss, 4),
        "corpus": "market_sim.lm.corpus.generate_corpus(seed, config.n_documents)",
        "trainer": "market_sim.lm.tiny.train_tiny_lm(out_dir, seed, config=config)",
    }
    (out_dir / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")

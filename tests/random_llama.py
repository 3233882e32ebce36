"""A small randomly initialised Llama (RoPE, grouped-query attention) with a BPE tokenizer.

Built by the tests that need a RoPE architecture or a chat template in CI, where no pretrained
model may be downloaded.
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers import decoders as tokenizer_decoders
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# ChatML, the template family of SmolLM2 (without its default system message).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TOKENIZER_TEXT = [
    "Sponsor: Alpha Airlines: nonstop flights to Hawaii.",
    "Sponsor: Beta Resort: beachfront rooms on Maui.",
    "Query: vacation in Hawaii\nReply: Fly nonstop and relax on the beach.",
    "Query: family trip to Maui with two kids and a dog\nReply: Book a room with an ocean view.",
]


def build_random_llama(
    folder: Path, seed: int = 0, chat: bool = False, extra_special: tuple[str, ...] = ()
) -> Path:
    """A 2-layer Llama (4 query heads, 2 key/value heads, RoPE) with a small BPE tokenizer.

    Args:
        folder: Where to save the model and tokenizer.
        seed: Seeds the weights.
        chat: Give the tokenizer ChatML's special tokens and template (:data:`CHATML`), with
            ``<|im_end|>`` as end of sequence, as SmolLM2 has.
        extra_special: More special tokens in the vocabulary (after the ones above).
    """
    named = ["<|im_start|>", "<|im_end|>"] if chat else ["</s>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizer_decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[*named, *extra_special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(TOKENIZER_TEXT * 5, trainer)
    end = named[-1]
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=end, bos_token=named[0], pad_token=end
    )
    if chat:
        wrapped.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(wrapped),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512 if chat else 256,
        tie_word_embeddings=True,
        # Larger than the default 0.02 so that attention, hence position, visibly moves the
        # logits (a near-uniform model would pass a parity test whatever the positions).
        initializer_range=0.2,
        eos_token_id=wrapped.eos_token_id,
        bos_token_id=wrapped.bos_token_id,
        pad_token_id=wrapped.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    wrapped.save_pretrained(folder)
    return folder

"""Cached decoding of B independent groups of n contexts, one shared continuation per group.

Each of B groups ("auctions", to the caller) holds n prompts. Every step runs ONE forward over
all ``B * n`` rows with a single :class:`transformers.DynamicCache`; a caller-supplied combine
function turns each group's n next-token distributions into one token, which is appended to all n
rows of that group. A group stops when its token is EOS (or at ``max_new_tokens``); finished
groups are dropped from the batch and the cache, so late steps cost only the live groups.

Device and dtype: the forward runs in the model's dtype on its device; log-probabilities are
float32 there; ``combine`` gets them and returns ``[A]`` long tokens on the same device. Tokens
are written into a device buffer, so the loop reads the host only once per step (the number of
groups still live, to stop at EOS; none at all with ``stop_at_eos=False``) and once at the end.

This is the whole cost model of LLM-native auctions: per step about the price of plain batched
generation of ``B * n`` sequences (see ``benchmarks/bench_decoding.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from market_sim.lm.model import LanguageModel, Prompt

NO_TOKEN = -1
"""Marks the steps after a group stopped in the ``[B, max_new_tokens]`` token buffer."""

CombineFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``combine(logprobs, group_index, step) -> tokens``.

* ``logprobs``: ``[A, n, V]`` float32 next-token log-probabilities of the A live groups.
* ``group_index``: ``[A]`` long, which of the B groups each live row block is.
* ``step``: 0-based index of the token being chosen.
* returns ``[A]`` long, the token each live group appends.
"""


@dataclass(frozen=True)
class DecodeResult:
    """Output of :func:`decode_combined`.

    Attributes:
        tokens: B lists of generated token ids (EOS excluded).
        stopped_at_eos: B flags, true where the group emitted EOS.
        steps: Forward passes run.
    """

    tokens: list[list[int]]
    stopped_at_eos: list[bool]
    steps: int


@torch.inference_mode()
def decode_combined(
    lm: LanguageModel,
    prompts: Sequence[Sequence[Prompt]],
    combine: CombineFn,
    max_new_tokens: int,
    stop_at_eos: bool = True,
) -> DecodeResult:
    """Decode B groups of n prompts, each group sharing one continuation chosen by ``combine``.

    Args:
        lm: The language model.
        prompts: B groups of n prompts each (same n for every group), text or token ids.
        combine: Maps each live group's n distributions to one token (see :data:`CombineFn`).
        max_new_tokens: Maximum tokens per group.
        stop_at_eos: Whether an EOS token ends its group.

    Returns:
        The generated tokens per group.
    """
    group_count = len(prompts)
    if group_count == 0:
        return DecodeResult([], [], 0)
    width = len(prompts[0])
    if width == 0 or any(len(group) != width for group in prompts):
        raise ValueError("every group needs the same, non-zero number of prompts")
    batch = lm.pad([prompt for group in prompts for prompt in group])
    attention_mask = batch.attention_mask
    next_positions = batch.position_ids[:, -1:] + 1
    input_ids, position_ids = batch.input_ids, batch.position_ids
    cache = DynamicCache(config=lm.model.config)
    live_groups = torch.arange(group_count, device=lm.device)
    chosen = torch.full((group_count, max(max_new_tokens, 0)), NO_TOKEN, device=lm.device)
    eos = lm.eos_token_id if stop_at_eos else None
    steps = 0
    for step in range(max_new_tokens):
        logits = lm.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        steps += 1
        logprobs = torch.log_softmax(logits.float(), dim=-1).view(len(live_groups), width, -1)
        tokens = combine(logprobs, live_groups, step).to(torch.long)
        chosen[live_groups, step] = tokens
        if step == max_new_tokens - 1:
            break
        if eos is None:
            live = len(tokens)
        else:
            keep = tokens != eos
            live = int(keep.sum())  # the one host read per step: which groups stopped
        if live == 0:
            break
        if live < len(tokens):
            row_keep = keep.repeat_interleave(width).nonzero().squeeze(-1)
            cache.batch_select_indices(row_keep)
            attention_mask, next_positions = attention_mask[row_keep], next_positions[row_keep]
            live_groups, tokens = live_groups[keep], tokens[keep]
        input_ids = tokens.repeat_interleave(width).unsqueeze(-1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(input_ids)], dim=-1)
        position_ids = next_positions
        next_positions = next_positions + 1
    generated, stopped = split_at_eos(chosen.cpu().tolist(), eos)
    return DecodeResult(generated, stopped, steps)


def split_at_eos(rows: list[list[int]], eos: int | None) -> tuple[list[list[int]], list[bool]]:
    """Each group's tokens up to its EOS (excluded) or its first unfilled slot, and EOS flags."""
    generated, stopped = [], []
    for row in rows:
        tokens = []
        ended = False
        for token in row:
            if token == NO_TOKEN:
                break
            if token == eos:
                ended = True
                break
            tokens.append(token)
        generated.append(tokens)
        stopped.append(ended)
    return generated, stopped

"""Cached decoding of B independent groups of n contexts, one shared continuation per group.

Each of B groups ("auctions", to the caller) holds n prompts. Every step runs ONE forward over
all ``B * n`` rows with a single :class:`transformers.DynamicCache`; a caller-supplied combine
function turns each group's n next-token distributions into one token, which is appended to all n
rows of that group. A group stops when its token is one of the model's stop tokens
(:attr:`~market_sim.lm.model.LanguageModel.stop_token_ids`, :mod:`market_sim.lm.stop_tokens`) or
at ``max_new_tokens``. Stopped
groups stay in the batch (fed the pad token, their outputs dropped before ``combine``) until at
most half the groups in it are live; then the batch and the cache are compacted to the live
groups. Compacting at every stop copied the whole cache once per stopping step (8% of a
24-token round of 64 auctions); halving bounds the copies by twice one cache and the wasted
rows by the live ones.

Shared prefill: groups whose n prompts are token for token the same (a round's auctions that drew
the same query for the same advertisers, or replicate markets in lockstep drawing from one pool)
get the same first forward. The first forward therefore runs once per DISTINCT group, and its
cache rows and logits are gathered out to every group before the first token is chosen; from
then on each group decodes its own continuation. With K auctions over a pool of Q queries the
prompt pass costs min(K, Q) groups instead of K (the longest part of a short reply's cost; see
``benchmarks/bench_batched_rounds.py``). Nothing changes when all groups differ (always so for
one group, hence for one auction per round). A row's prefill computed in a smaller batch may
differ from the large batch's at the rounding of the model's dtype (kernels can depend on the
batch size, on GPUs in particular); on the CPUs measured it was bit-identical.

Device and dtype: the forward runs in the model's dtype on its device; log-probabilities are
float32 there; ``combine`` gets them and returns ``[A]`` long tokens on the same device. Tokens
are written into a device buffer, so the loop reads the host only once per step (the number of
groups still live, to stop at a stop token; none with ``stop_at_eos=False``) and once at the end.

This is the whole cost model of LLM-native auctions: per step about the price of plain batched
generation of ``B * n`` sequences (see ``benchmarks/bench_decoding.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from market_sim.lm.model import LanguageModel, Prompt, left_pad
from market_sim.lm.stop_tokens import cut_at_stop

NO_TOKEN = -1
"""Marks the steps after a group stopped in the ``[B, max_new_tokens]`` token buffer."""

CombineFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``combine(logprobs, group_index, step) -> tokens``.

* ``logprobs``: ``[A, n, V]`` float32 next-token log-probabilities of the A live groups.
* ``group_index``: ``[A]`` long, which of the B groups each live row block is, in ascending
  order (live groups keep their original order as others stop).
* ``step``: 0-based index of the token being chosen.
* returns ``[A]`` long, the token each live group appends.
"""


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword under which ``model``'s forward takes its key/value cache.

    Later transformers 5 releases (5.24 here) take ``cache`` and deprecate ``past_key_values``,
    announcing its removal for 5.40; earlier 5.x releases take only ``past_key_values``. Passing
    the name the installed forward declares keeps decoding working across the ``>=5,<6`` pin
    and emits no deprecation warning.

    A ``torch.compile`` wrapper is read through to the model it compiled. A forward that
    declares neither name (``**kwargs`` only, or a decorator that hides the signature) gets
    ``past_key_values``, the name every transformers 5 release before 5.40 accepts.

    Args:
        model: A transformers causal LM.

    Returns:
        ``"cache"`` when the forward's signature has that parameter, else ``"past_key_values"``.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile keeps the original here
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


@dataclass(frozen=True)
class DecodeResult:
    """Output of :func:`decode_combined`.

    Attributes:
        tokens: B lists of generated token ids (the stop token excluded).
        stopped_at_eos: B flags, true where the group emitted a stop token.
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
        stop_at_eos: Whether a stop token (:attr:`LanguageModel.stop_token_ids`) ends its group.

    Returns:
        The generated tokens per group.
    """
    group_count = len(prompts)
    if group_count == 0:
        return DecodeResult([], [], 0)
    width = len(prompts[0])
    if width == 0 or any(len(group) != width for group in prompts):
        raise ValueError("every group needs the same, non-zero number of prompts")
    encoded = [[lm.encode_prompt(prompt) for prompt in group] for group in prompts]
    distinct, source = distinct_groups(encoded)
    batch = left_pad([row for group in distinct for row in group], lm.pad_token_id, lm.device)
    # [B * n] row of the distinct batch that each row copies after the first forward
    expand = None
    if len(distinct) < group_count:
        source_rows = torch.tensor(source, device=lm.device).repeat_interleave(width) * width
        expand = source_rows + torch.arange(width, device=lm.device).repeat(group_count)
    attention_mask = batch.attention_mask
    next_positions = batch.position_ids[:, -1:] + 1
    input_ids, position_ids = batch.input_ids, batch.position_ids
    cache = DynamicCache(config=lm.model.config)
    cache_argument = cache_keyword(lm.model)
    # The batch holds blocks of n rows; block_groups [G] says which group each block decodes
    # and block_live [G] whether that group is still going. Stopped blocks stay in the batch
    # (fed the pad token, their outputs dropped) until at most half the blocks are live.
    block_groups = torch.arange(group_count, device=lm.device)
    block_live = torch.ones(group_count, dtype=torch.bool, device=lm.device)
    live_groups, all_live = block_groups, True
    chosen = torch.full((group_count, max(max_new_tokens, 0)), NO_TOKEN, device=lm.device)
    stop_ids = lm.stop_token_ids if stop_at_eos else ()
    stop_tensor = torch.as_tensor(stop_ids, dtype=torch.long, device=lm.device)
    steps = 0
    for step in range(max_new_tokens):
        logits = lm.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
            **{cache_argument: cache},
        ).logits[:, -1, :]
        if expand is not None:  # the first forward ran on the distinct groups only
            logits, attention_mask = logits[expand], attention_mask[expand]
            next_positions = next_positions[expand]
            cache.batch_select_indices(expand)
            expand = None
        steps += 1
        logits = logits.view(len(block_groups), width, -1)
        if not all_live:
            logits = logits[block_live]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        tokens = combine(logprobs, live_groups, step).to(torch.long)
        chosen[live_groups, step] = tokens
        if step == max_new_tokens - 1:
            break
        if stop_ids:
            keep = ~torch.isin(tokens, stop_tensor)
            live = int(keep.sum())  # the one host read per step: which groups stopped
            if live == 0:
                break
            if live < len(tokens):
                block_live[block_live.clone()] = keep
                live_groups, tokens, all_live = live_groups[keep], tokens[keep], False
                if 2 * live <= len(block_groups):  # compact: drop the stopped blocks
                    row_keep = block_live.repeat_interleave(width)
                    cache.batch_select_indices(row_keep.nonzero()[:, 0])
                    attention_mask = attention_mask[row_keep]
                    next_positions = next_positions[row_keep]
                    block_groups = block_groups[block_live]
                    block_live = block_live[block_live]
                    all_live = True
        block_tokens = tokens
        if not all_live:
            block_tokens = torch.full_like(block_groups, lm.pad_token_id)
            block_tokens[block_live] = tokens
        input_ids = block_tokens.repeat_interleave(width).unsqueeze(-1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(input_ids)], dim=-1)
        position_ids = next_positions
        next_positions = next_positions + 1
    generated, stopped = split_at_eos(chosen.cpu().tolist(), stop_ids)
    return DecodeResult(generated, stopped, steps)


TokenGroup = list[list[int]]
"""One group's n prompts as token ids."""


def distinct_groups(groups: Sequence[TokenGroup]) -> tuple[list[TokenGroup], list[int]]:
    """The distinct groups of token-id prompts, in first-seen order, and each group's source.

    Args:
        groups: B groups of n token-id lists.

    Returns:
        ``(distinct, source)``: the U <= B distinct groups, and for each of the B groups the
        index in ``distinct`` of the group equal to it.
    """
    index: dict[tuple[tuple[int, ...], ...], int] = {}
    distinct, source = [], []
    for group in groups:
        key = tuple(tuple(row) for row in group)
        if key not in index:
            index[key] = len(distinct)
            distinct.append(list(group))
        source.append(index[key])
    return distinct, source


def split_at_eos(
    rows: list[list[int]], stop_ids: Sequence[int]
) -> tuple[list[list[int]], list[bool]]:
    """Each group's tokens up to its first stop token (excluded) or first unfilled slot.

    Returns:
        The tokens of each row, and whether a stop token ended it.
    """
    cut = [
        cut_at_stop(row[: row.index(NO_TOKEN)] if NO_TOKEN in row else row, stop_ids)
        for row in rows
    ]
    return [tokens for tokens, _ in cut], [stopped for _, stopped in cut]

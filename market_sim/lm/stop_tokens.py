"""The tokens that end a reply: any of several stops it, one is written at its end.

A model can end a reply with more than one token. Instruction-tuned models close the assistant's
turn with a token of their chat template that is not always the tokenizer's end-of-sequence token
(Gemma: ``<end_of_turn>`` against ``<eos>``; Phi-3: ``<|end|>`` against ``<|endoftext|>``), and
their ``generation_config.json`` lists every token that ends a generation (Llama 3.1:
``<|end_of_text|>``, ``<|eom_id|>``, ``<|eot_id|>``). Decoding that stopped at the tokenizer's
end-of-sequence token alone would run such a model past the end of its turn into a new turn, up
to ``max_new_tokens``.

:func:`stop_tokens` therefore collects, in this order and without repeats:

1. the token that closes an assistant turn in the chat template (:func:`chat_turn_end`), when the
   model is prompted in the chat format;
2. the tokenizer's ``eos_token_id``;
3. the ids of ``generation_config.eos_token_id`` and then ``config.eos_token_id`` (an int or a
   list);
4. the chat template's turn-closing token when the model is prompted in the plain format (a chat
   model may still close a turn there).

The first is the **end-of-reply token** (:attr:`StopTokens.end_of_reply`): the one written after
a reply that stopped (:func:`market_sim.lm.model.complete_reply`), the one the affine maximizer's
fine-tuning trains on. (Preference training through TRL appends the tokenizer's own EOS text to
each reply, as TRL does; :func:`market_sim.lm.preference.pair_tokens` follows TRL there.)
Every one of them stops decoding. Scoring a complete reply scores its last token as the event
"the reply ends here", i.e. the total probability of the stop tokens
(:meth:`market_sim.lm.model.LanguageModel.continuation_logprobs`), which is the probability with
which a reply that stops there is sampled. With one stop token (the bundled LM, SmolLM2, every
model of the tests but one) this is the probability of that token, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

TURN_MARKER = "market-sim-reply-marker"
"""Assistant message rendered to find the token that follows an assistant turn's content."""


@dataclass(frozen=True)
class StopTokens:
    """The ids that end a model's replies.

    Attributes:
        ids: Every id that ends a reply, :attr:`end_of_reply` first; empty when the model
            names none (replies then end only at ``max_new_tokens``).
        end_of_reply: ``ids[0]``, or None when there is none.
    """

    ids: tuple[int, ...]

    @property
    def end_of_reply(self) -> int | None:
        """The id written at the end of a reply that stopped."""
        return self.ids[0] if self.ids else None


def _as_ids(value: Any) -> list[int]:
    """An ``eos_token_id`` setting (None, an int or a list of ints) as a list."""
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(item) for item in value if item is not None]


def _unique(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(int(token) for token in ids))


def cut_at_stop(tokens: Sequence[int], stop_ids: Iterable[int]) -> tuple[list[int], bool]:
    """The tokens before the first stop token, and whether one was found.

    Args:
        tokens: A generated row.
        stop_ids: The ids that end a reply (:attr:`StopTokens.ids`).
    """
    stops = set(stop_ids)
    for position, token in enumerate(tokens):
        if token in stops:
            return list(tokens[:position]), True
    return list(tokens), False


def chat_turn_end(tokenizer: Any) -> int | None:
    """The special token a chat template writes right after an assistant message, if any.

    The template renders a user turn and an assistant turn whose content is
    :data:`TURN_MARKER`; the text after the marker is tokenized, and the first special token of
    it (a named special token, or an added token marked special) is the answer, provided only
    whitespace precedes it (ChatML's ``<|im_end|>``, Llama 3's
    ``<|eot_id|>``, Gemma's ``<end_of_turn>``, Mistral's ``</s>``).

    Returns:
        The token id, or None: no chat template, a template that does not render such a
        conversation, or text before the first special token.
    """
    from market_sim.prompting import has_chat_template

    if not has_chat_template(tokenizer):
        return None
    conversation = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": TURN_MARKER},
    ]
    try:
        rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    except Exception:  # noqa: BLE001 - any template that cannot render this has no answer here
        return None
    if not isinstance(rendered, str) or TURN_MARKER not in rendered:
        return None
    after = rendered[rendered.rindex(TURN_MARKER) + len(TURN_MARKER) :]
    special = set(tokenizer.all_special_ids) | {
        int(token)
        for token, added in getattr(tokenizer, "added_tokens_decoder", {}).items()
        if getattr(added, "special", False)
    }  # Phi-3's <|end|> is special only as an added token, not a named special token
    for token in tokenizer.encode(after, add_special_tokens=False):
        if token in special:
            return int(token)
        if tokenizer.decode([token]).strip():
            return None
    return None


def stop_tokens(tokenizer: Any, model: Any, prompt_format: str) -> StopTokens:
    """The stop tokens of a model prompted in ``prompt_format`` (see the module docstring).

    Args:
        tokenizer: The model's tokenizer.
        model: A transformers model (its ``config`` and ``generation_config`` are read).
        prompt_format: ``plain`` or ``chat``.
    """
    turn_end = chat_turn_end(tokenizer)
    listed = [
        *_as_ids(tokenizer.eos_token_id),
        *_as_ids(getattr(getattr(model, "generation_config", None), "eos_token_id", None)),
        *_as_ids(getattr(model.config, "eos_token_id", None)),
    ]
    chat_first = prompt_format == "chat" and turn_end is not None
    ordered = [turn_end, *listed] if chat_first else [*listed, *_as_ids(turn_end)]
    return StopTokens(_unique(token for token in ordered if token is not None))

"""A causal language model with batched, padded, cached primitives.

This module knows nothing about auctions: it turns prompts into next-token log-probabilities,
scores continuations, and samples plainly. The aggregated decoding loop lives in
:mod:`market_sim.lm.decoding`. It carries one piece of wording: its prompt builder
(:attr:`LanguageModel.prompt`, :mod:`market_sim.prompting`), chosen once per model so that every
platform, reward model and eva step renders a (query, contexts) pair the same way.

Batching convention: prompts of unequal length are *left*-padded, the attention mask marks real
tokens, and position ids are ``attention_mask.cumsum(-1) - 1`` clamped at 0, so that a padded row
sees exactly the positions it would see alone (transformers 5 does not infer them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel

from market_sim.config.fields import first_line
from market_sim.lm.loading import (
    CONFIG_ERRORS,
    ModelNotFoundError,
    check_tokenizer_fits_embeddings,
    check_tokenizer_has_vocabulary,
    checked_reference,
    local_files_only,
    resolve_device,
    resolve_dtype,
)
from market_sim.lm.stop_tokens import cut_at_stop, stop_tokens
from market_sim.lm.tokenizer_only import config_max_positions
from market_sim.prompting import prompt_bos_id, prompt_builder, with_bos

Prompt = str | Sequence[int]

ENCODE_MEMO_SIZE = 4096
"""Distinct prompt strings whose token ids a :class:`LanguageModel` remembers."""


@dataclass(frozen=True)
class PaddedBatch:
    """Left-padded token ids.

    Attributes:
        input_ids: ``[B, L]`` long, pad id in the left padding.
        attention_mask: ``[B, L]`` long, 1 for real tokens.
        position_ids: ``[B, L]`` long, ``cumsum(mask) - 1`` clamped at 0.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


def left_pad(
    token_lists: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> PaddedBatch:
    """Left-pad token lists into one batch with matching mask and position ids.

    Args:
        token_lists: B non-empty lists of token ids.
        pad_id: Token id written into the padding (masked out, its value is irrelevant).
        device: Where the tensors go.

    Returns:
        The padded batch, tensors of shape ``[B, max_len]``.
    """
    if any(len(tokens) == 0 for tokens in token_lists):
        raise ValueError("cannot pad an empty prompt: every prompt needs at least one token")
    width = max(len(tokens) for tokens in token_lists)
    input_ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        input_ids[row, width - len(tokens) :] = torch.as_tensor(tokens, dtype=torch.long)
        attention_mask[row, width - len(tokens) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return PaddedBatch(input_ids.to(device), attention_mask.to(device), position_ids.to(device))


class LanguageModel:
    """A transformers causal LM, its tokenizer and its device.

    Args:
        model: A loaded causal LM (put in eval mode here).
        tokenizer: Its tokenizer.
        name: The reference it was loaded from, for the record.
        prompt_format: ``auto``, ``plain`` or ``chat`` (:mod:`market_sim.prompting`); resolved
            here against the tokenizer, so :attr:`prompt_format` is ``plain`` or ``chat``.

    Raises:
        ValueError: An unknown ``prompt_format``, or ``chat`` for a tokenizer without a chat
            template.
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer, name: str = "", prompt_format: str = "auto"
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.prompt = prompt_builder(prompt_format, tokenizer)
        self.device = next(model.parameters()).device
        vocab_size = self.vocab_size
        stops = stop_tokens(tokenizer, model, self.prompt.format).ids
        self.stop_token_ids: tuple[int, ...] = tuple(t for t in stops if 0 <= t < vocab_size)
        """Every id that ends a reply (:mod:`market_sim.lm.stop_tokens`), :attr:`eos_token_id`
        first."""
        self.eos_token_id: int | None = self.stop_token_ids[0] if self.stop_token_ids else None
        """The end-of-reply token, written after a reply that stopped (:func:`complete_reply`)."""
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else (self.eos_token_id or 0)
        self.prompt_bos_id: int | None = prompt_bos_id(tokenizer, self.prompt.format)
        """The BOS id put before every prompt (:meth:`encode_prompt`), or None
        (:func:`market_sim.prompting.prompt_bos_id`)."""
        self._token_ids: dict[str, tuple[int, ...]] = {}

    @property
    def prompt_format(self) -> str:
        """``plain`` or ``chat``: how :attr:`prompt` renders (query, contexts) for this model."""
        return self.prompt.format

    def with_prompt_format(self, prompt_format: str) -> LanguageModel:
        """This model (same weights, tokenizer and device) with another prompt format.

        Returns ``self`` when the resolved format is already this model's.

        Raises:
            ValueError: See the class.
        """
        builder = prompt_builder(prompt_format, self.tokenizer)
        if builder.format == self.prompt_format:
            return self
        return LanguageModel(self.model, self.tokenizer, self.name, builder.format)

    @classmethod
    def load(
        cls,
        reference: str = "bundled:tiny-ads",
        device: str = "auto",
        dtype: str = "auto",
        prompt_format: str = "auto",
    ):
        """Load a model reference (see :mod:`market_sim.lm.loading`) onto a device.

        Weights are read with safetensors only; remote code is never trusted (transformers
        refuses a model that needs it instead of asking on the terminal); a hub model is read
        from the local cache only while the hub is offline.

        Raises:
            ModelNotFoundError: The reference names nothing loadable, or transformers cannot
                load it (unknown architecture, missing tokenizer, damaged or mismatched weight
                files, a quantization library not installed, a tokenizer with more tokens than
                the embedding table has rows, no network); one line.
            UnknownDtypeError: ``dtype`` names no dtype offered (a :class:`ValueError`).
            ValueError: The device is not available.
        """
        resolved = checked_reference(reference)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        local_only = local_files_only(resolved)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                resolved.source, trust_remote_code=False, local_files_only=local_only
            )
            model, loading = AutoModelForCausalLM.from_pretrained(
                resolved.source,
                dtype=torch_dtype,
                use_safetensors=True,
                trust_remote_code=False,
                local_files_only=local_only,
                output_loading_info=True,
            )
        except CONFIG_ERRORS + (SafetensorError, RuntimeError, ImportError) as error:
            # SafetensorError: a damaged weight file; RuntimeError: weights of other shapes;
            # ImportError: a quantized checkpoint whose library (bitsandbytes, gptq, ...) is
            # not installed.
            raise ModelNotFoundError(
                f"transformers cannot load {resolved.text!r}: {first_line(error)}"
            ) from None
        missing = sorted(loading.get("missing_keys") or ())
        if missing:  # transformers would fill them with random values and only warn
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise ModelNotFoundError(
                f"transformers cannot load {resolved.text!r}: its weight files lack "
                f"{len(missing)} tensor(s) the config asks for ({shown}); they would be random"
            )
        check_tokenizer_has_vocabulary(tokenizer, resolved.text)
        check_tokenizer_fits_embeddings(tokenizer, model, resolved.text)
        return cls(model.to(torch_device), tokenizer, name=reference, prompt_format=prompt_format)

    @property
    def max_positions(self) -> int | None:
        """Longest token sequence the model can attend over (prompt + reply), if it has a limit.

        :func:`~market_sim.lm.tokenizer_only.config_max_positions` of its config.
        """
        return config_max_positions(self.model.config)

    @property
    def vocab_size(self) -> int:
        """Width of the model's output distribution (may exceed the tokenizer's vocabulary)."""
        return int(self.model.get_output_embeddings().weight.shape[0])

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt (strings are tokenized without special tokens).

        A market renders the same few prompts every round (a query pool times the advertisers'
        contexts), so string prompts are tokenized once and remembered, up to
        ``ENCODE_MEMO_SIZE`` distinct strings (then the memo starts over).
        """
        if isinstance(prompt, str):
            token_ids = self._token_ids.get(prompt)
            if token_ids is None:
                if len(self._token_ids) >= ENCODE_MEMO_SIZE:
                    self._token_ids.clear()
                token_ids = tuple(self.tokenizer.encode(prompt, add_special_tokens=False))
                self._token_ids[prompt] = token_ids
            return list(token_ids)
        return [int(token) for token in prompt]

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt as the model reads it: :meth:`encode`, BOS first if due.

        :attr:`prompt_bos_id` goes first when there is one and the ids do not start with it
        already. Every prompt (a context that a reply continues) goes through here; continuations go
        through :meth:`encode`, so a BOS never lands inside a sequence.
        """
        return with_bos(self.encode(prompt), self.prompt_bos_id)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids, special tokens dropped."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def pad(self, prompts: Sequence[Prompt]) -> PaddedBatch:
        """Encode and left-pad prompts (see :func:`left_pad`)."""
        return left_pad([self.encode_prompt(p) for p in prompts], self.pad_token_id, self.device)

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[Prompt]) -> torch.Tensor:
        """Log-probabilities of the next token after each prompt, in one padded forward.

        Args:
            prompts: B prompts (text or token ids).

        Returns:
            ``[B, V]`` float32 log-probabilities, V = :attr:`vocab_size`.
        """
        batch = self.pad(prompts)
        logits = self.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
            logits_to_keep=1,
        ).logits[:, -1, :]
        return torch.log_softmax(logits.float(), dim=-1)

    @torch.inference_mode()
    def continuation_logprobs(
        self,
        contexts: Sequence[Prompt],
        continuations: Sequence[Prompt],
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-likelihood of each continuation given its context, in one forward.

        Row b scores ``log p(c_t | context_b, c_<t)`` for every token ``c_t`` of continuation b,
        with ``p = softmax(logits / temperature)`` (the distribution :meth:`sample` draws from
        at that temperature). The end-of-reply token (:attr:`eos_token_id`) is scored as the
        event "the reply ends here": ``log sum_{s in S} p(s | context_b, c_<t)`` over the stop
        tokens S (:attr:`stop_token_ids`), the probability with which :meth:`sample` stops
        there. With one stop token that is ``log p(c_t | ...)``.

        Args:
            contexts: B contexts (non-empty).
            continuations: B continuations (may be empty).
            temperature: Softmax temperature (> 0); 1.0 scores the model itself.

        Returns:
            ``(token_logprobs, mask)``, both ``[B, T]`` with T the longest continuation:
            float32 log-probs of continuation token t in column t (left-aligned), and a bool
            mask of real continuation tokens.
        """
        if len(contexts) != len(continuations):
            raise ValueError("contexts and continuations must have the same length")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        context_ids = [self.encode_prompt(c) for c in contexts]
        continuation_ids = [self.encode(c) for c in continuations]
        batch = left_pad(
            [c + k for c, k in zip(context_ids, continuation_ids, strict=True)],
            self.pad_token_id,
            self.device,
        )
        width = max((len(k) for k in continuation_ids), default=0)
        # Rows are left-padded, so every continuation token sits in the last `width` positions:
        # only the logits predicting them ([B, width + 1, V], the last one unused) are computed,
        # not [B, L, V] (prompt + reply positions x a 49k vocabulary is gigabytes per 100 rows).
        logits = self.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
            logits_to_keep=width + 1,
        ).logits[:, -(width + 1) :]  # a no-op where the model honours logits_to_keep
        scaled = logits[:, :-1].float()
        if temperature != 1.0:
            scaled = scaled / temperature
        logprobs = torch.log_softmax(scaled, dim=-1)
        targets = batch.input_ids[:, batch.input_ids.shape[1] - width :]
        target_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        if len(self.stop_token_ids) > 1:
            ends = targets == self.eos_token_id
            if bool(ends.any()):
                stops = torch.as_tensor(self.stop_token_ids, device=logprobs.device)
                end_logprobs = torch.logsumexp(logprobs.index_select(-1, stops), dim=-1)
                target_logprobs = torch.where(ends, end_logprobs, target_logprobs)
        out = torch.zeros((len(contexts), width), dtype=torch.float32, device=self.device)
        mask = torch.zeros((len(contexts), width), dtype=torch.bool, device=self.device)
        for row, tokens in enumerate(continuation_ids):
            if tokens:
                out[row, : len(tokens)] = target_logprobs[row, -len(tokens) :]
                mask[row, : len(tokens)] = True
        return out, mask

    def sequence_logprob(
        self,
        contexts: Sequence[Prompt],
        continuations: Sequence[Prompt],
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Total log-likelihood ``sum_t log p(c_t | context, c_<t)`` of each continuation.

        Args:
            contexts: B contexts (non-empty).
            continuations: B continuations (may be empty).
            temperature: Softmax temperature (> 0), see :meth:`continuation_logprobs`.

        Returns:
            ``[B]`` float32.
        """
        token_logprobs, mask = self.continuation_logprobs(contexts, continuations, temperature)
        return (token_logprobs * mask).sum(-1)

    @torch.inference_mode()
    def sample(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: int = 0,
        stop_at_eos: bool = True,
    ) -> list[list[int]]:
        """Plain batched sampling with ``model.generate`` (no top-k, no top-p).

        This is the baseline the aggregated decoding loop is compared against.

        Args:
            prompts: B prompts.
            max_new_tokens: Tokens to generate per prompt.
            temperature: Softmax temperature.
            seed: Seeds torch's global generator (``generate`` has no generator argument).
            stop_at_eos: If false, every row generates exactly ``max_new_tokens`` tokens.

        Returns:
            B lists of generated token ids, the first stop token (:attr:`stop_token_ids`) and
            anything after it removed.
        """
        batch = self.pad(prompts)
        torch.manual_seed(seed)
        extra = {} if stop_at_eos else {"min_new_tokens": max_new_tokens}
        # Our settings over neutral defaults, not over the model's generation_config.json:
        # generate() fills every setting left None from the model's own config, so a shipped
        # repetition penalty, no_repeat_ngram_size or min_p would shape the draws while every
        # score (continuation_logprobs, the decoding loop) reads the plain tempered
        # distribution. The model's config is set aside for the call.
        settings = GenerationConfig(
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_token_id,
            eos_token_id=list(self.stop_token_ids) or None,
            **extra,
        )
        shipped = self.model.generation_config
        self.model.generation_config = GenerationConfig()
        try:
            output = self.model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                generation_config=settings,
            )
        finally:
            self.model.generation_config = shipped
        generated = output[:, batch.input_ids.shape[1] :].tolist()
        return [cut_at_stop(tokens, self.stop_token_ids)[0] for tokens in generated]


def complete_reply(
    tokens: Sequence[int], max_new_tokens: int, eos_token_id: int | None
) -> list[int]:
    """Token sequence of the event "this reply was generated", as scored and trained on.

    :meth:`LanguageModel.sample` cuts EOS off. A reply shorter than ``max_new_tokens`` stopped
    at EOS, so its probability as a whole reply includes the EOS token; a reply of exactly
    ``max_new_tokens`` tokens was truncated, and its event is "the first ``max_new_tokens``
    tokens are these" (no EOS). Scoring every model on this event keeps likelihood ratios of
    sampled replies exact.

    Args:
        tokens: A reply as :meth:`LanguageModel.sample` returns it.
        max_new_tokens: The cap it was sampled with.
        eos_token_id: The model's EOS id (None: nothing is appended).

    Returns:
        ``[*tokens, eos_token_id]`` when the reply is shorter than ``max_new_tokens``, else
        the tokens.

    Raises:
        ValueError: The reply is longer than ``max_new_tokens``.
    """
    if len(tokens) > max_new_tokens:
        raise ValueError(
            f"a reply of {len(tokens)} tokens cannot come from max_new_tokens={max_new_tokens}"
        )
    reply = [int(token) for token in tokens]
    if eos_token_id is not None and len(reply) < max_new_tokens:
        return [*reply, int(eos_token_id)]
    return reply

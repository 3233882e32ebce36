"""A model's tokenizer and position limit without its weights: prompt checks before any run.

A sweep checks every grid point's prompts against its model before the first run
(:func:`market_sim.sweep.check_task_prompts`); loading each model's weights in the sweep's own
process for that would cost what a run costs. The tokenizer and the config give the two things
the check reads (:class:`~market_sim.scenario.prompt_fit.TokenizedModel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from market_sim.config.fields import first_line
from market_sim.lm.loading import (
    CONFIG_ERRORS,
    ModelNotFoundError,
    check_tokenizer_has_vocabulary,
    check_weight_headers,
    checked_reference,
    local_files_only,
)

POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")
"""Config attributes that hold the position limit (``n_positions`` in GPT-2 configs)."""


def config_max_positions(config: Any) -> int | None:
    """The first positive integer among :data:`POSITION_KEYS` of a model config, else None."""
    for name in POSITION_KEYS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass
class TokenizerOnly:
    """A tokenizer and the model's position limit (what a prompt-length check reads).

    Attributes:
        tokenizer: The model's tokenizer.
        max_positions: Its position limit, or None.
    """

    tokenizer: Any
    max_positions: int | None
    _token_ids: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt text, without special tokens (as the model encodes it)."""
        if prompt not in self._token_ids:
            self._token_ids[prompt] = list(self.tokenizer.encode(prompt, add_special_tokens=False))
        return self._token_ids[prompt]

    @classmethod
    def load(cls, reference: str) -> TokenizerOnly:
        """The tokenizer and config of a model reference (local files only while offline).

        Raises:
            ModelNotFoundError: The reference names nothing loadable, transformers cannot
                read its tokenizer or config, the folder has no tokenizer files, or a weights
                file's header does not parse (:func:`~market_sim.lm.loading.check_weight_headers`).
        """
        from transformers import AutoConfig, AutoTokenizer

        resolved = checked_reference(reference)
        local_only = local_files_only(resolved)  # one quick probe, not transformers' retries
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                resolved.source, trust_remote_code=False, local_files_only=local_only
            )
            config = AutoConfig.from_pretrained(
                resolved.source, trust_remote_code=False, local_files_only=local_only
            )
        except CONFIG_ERRORS as error:
            raise ModelNotFoundError(
                f"transformers cannot read the tokenizer or config of {resolved.text!r}: "
                f"{first_line(error)}"
            ) from None
        check_tokenizer_has_vocabulary(tokenizer, resolved.text)
        check_weight_headers(resolved)
        return cls(tokenizer, config_max_positions(config))

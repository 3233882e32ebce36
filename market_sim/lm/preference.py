"""Direct preference optimisation (DPO) of a causal LM with TRL's ``DPOTrainer``.

This module is LM-level: it knows nothing about auctions. A preference is a
:class:`PreferencePair` of texts (a prompt, a preferred and a dispreferred reply), and
:func:`dpo_fine_tune` trains a copy of a :class:`~market_sim.lm.model.LanguageModel` on such
pairs with the DPO objective of Rafailov et al. (2023)::

    L = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x))
                             - (log pi(y_l|x) - log pi_ref(y_l|x))])

where ``x`` is the prompt, ``y_w`` the chosen and ``y_l`` the rejected reply, ``pi`` the policy
being trained and ``pi_ref`` the frozen reference.

Why TRL. The issue asks to use TRL's DPO trainer when it installs cleanly and runs on CPU. It
does: trl 1.16 installs from the package registry without extra system dependencies and runs
on CPU at about 0.1 s per optimisation step on the bundled tiny LM. The training loop (data
collation, optimiser, gradient clipping, logging) is therefore TRL's, and this module only
adapts it: it pins the configuration (constant learning rate, no warm-up, no weight decay, no
dropout, no files, no network), makes it deterministic and quiet, and returns a trained copy.

Cross-check. :func:`pair_tokens` replicates TRL's tokenization of a non-conversational pair
and :func:`dpo_batch_stats` is an independent implementation of the DPO loss on those tokens
(left-padded, float64, as scored everywhere else in :mod:`market_sim.lm`). The tests check that
TRL's logged losses agree with it, which pins both TRL's behaviour and our reading of it.

Choices:

* Reference model: the model *as passed*, frozen at call time. TRL is run with
  ``ref_model=None`` and ``precompute_ref_log_probs=True``, so it scores every pair once with
  the (still untrained) copy before the first update and never reloads weights from
  ``config._name_or_path``. Calling :func:`dpo_fine_tune` again on its result therefore starts
  a new DPO round against the previous result (iterative DPO, one round per call).
* End of sequence: TRL appends the tokenizer's EOS text to every chosen and rejected reply that
  does not already end with it. A reply that was cut at ``max_new_tokens`` (no EOS, see
  :func:`~market_sim.lm.model.complete_reply`) is thus trained on as if it had ended there,
  a small deviation from the "replies as events" convention of :mod:`market_sim.lm.fine_tune`.
* No truncation: ``max_length=None``, so TRL trains on exactly the tokens of
  :func:`pair_tokens` (the model's context limit still applies).
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from market_sim.lm.fine_tune import check_int, check_positive, sequence_logprob_tensor
from market_sim.lm.model import LanguageModel
from market_sim.lm.tiny import reproducible_torch

_QUIET_LOGGERS = ("trl", "transformers", "datasets", "accelerate")
"""Libraries whose loggers (set to ERROR) and warnings are silenced while TRL runs."""


# --------------------------------------------------------------------------------------------
# Data and settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencePair:
    """One preference: for ``prompt``, the reply ``chosen`` is preferred to ``rejected``.

    Attributes:
        prompt: Prompt text, e.g. :func:`market_sim.prompting.build_prompt` (ends in
            ``"Reply:"``); must not be empty.
        chosen: Preferred reply text as :meth:`LanguageModel.decode` gives it (usually starting
            with a space), without the EOS token (TRL appends it).
        rejected: Dispreferred reply text, same conventions.
    """

    prompt: str
    chosen: str
    rejected: str

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not self.prompt:
            raise ValueError("prompt must not be empty")


@dataclass(frozen=True)
class DPOSettings:
    """Settings of :func:`dpo_fine_tune`.

    Attributes:
        beta: DPO temperature (> 0): the implicit reward is ``beta * log(pi / pi_ref)``. Small
            beta lets the policy move far from the reference, large beta keeps it close.
        steps: Optimisation steps (>= 0; 0 returns an unchanged copy without building a
            trainer).
        learning_rate: Constant AdamW learning rate (> 0), no warm-up, no weight decay,
            gradient norm clipped at 1.0.
        batch_size: Pairs per step (>= 1; capped at the number of pairs).
        num_threads: Torch CPU threads while training (>= 1, fixed for reproducibility).
    """

    beta: float = 0.1
    steps: int = 16
    learning_rate: float = 5e-5
    batch_size: int = 8
    num_threads: int = 1

    def __post_init__(self) -> None:
        check_positive("beta", self.beta)
        check_int("steps", self.steps, minimum=0)
        check_positive("learning_rate", self.learning_rate)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("num_threads", self.num_threads, minimum=1)


@dataclass(frozen=True)
class PairTokens:
    """Token ids of a pair exactly as TRL trains on them.

    Attributes:
        prompt_ids: The prompt (up to the common prefix with both completions).
        chosen_ids: The chosen reply, ending in EOS.
        rejected_ids: The rejected reply, ending in EOS.
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


@dataclass(frozen=True, eq=False)
class DPOResult:
    """Output of :func:`dpo_fine_tune`.

    Attributes:
        lm: The trained copy (eval mode, gradients off), named ``f"{lm.name}+dpo"``.
        losses: TRL's logged DPO loss of each step (length ``steps``), computed on that
            step's batch before the update.
        margins: TRL's logged ``rewards/margins`` of each step: the batch mean of
            ``beta * margin`` (see :class:`DPOBatchStats`).
        accuracies: TRL's logged ``rewards/accuracies`` of each step: the fraction of the
            batch whose chosen reward exceeds the rejected one.
    """

    lm: LanguageModel
    losses: list[float]
    margins: list[float]
    accuracies: list[float]


@dataclass(frozen=True, eq=False)
class DPOBatchStats:
    """Per-pair DPO quantities (see :func:`dpo_batch_stats`).

    Attributes:
        loss: ``[B]`` float64, ``-log sigmoid(beta * margin)``.
        margin: ``[B]`` float64,
            ``(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))``
            (not multiplied by beta).
    """

    loss: torch.Tensor
    margin: torch.Tensor


# --------------------------------------------------------------------------------------------
# Tokenization and scoring
# --------------------------------------------------------------------------------------------


def pair_tokens(lm: LanguageModel, pair: PreferencePair) -> PairTokens:
    """Tokenize a pair the way TRL 1.x does for non-conversational data.

    Replicates ``DPOTrainer._prepare_dataset``: the EOS text is appended to ``chosen`` and
    ``rejected`` unless they already end with it; ``prompt``, ``prompt + chosen`` and
    ``prompt + rejected`` are tokenized with the tokenizer's default special tokens; the
    prompt is cut at the shortest common prefix of the tokenized prompt with both tokenized
    concatenations (tokens may merge across the boundary), and each completion is the rest of
    its concatenation.

    Args:
        lm: The model whose tokenizer is used (it must have an EOS token).
        pair: The texts.

    Returns:
        The token ids.
    """
    tokenizer = lm.tokenizer
    eos = tokenizer.eos_token
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: TRL cannot terminate the replies")
    chosen = pair.chosen if pair.chosen.endswith(eos) else pair.chosen + eos
    rejected = pair.rejected if pair.rejected.endswith(eos) else pair.rejected + eos
    prompt_ids = list(tokenizer(text=pair.prompt)["input_ids"])
    chosen_full = list(tokenizer(text=pair.prompt + chosen)["input_ids"])
    rejected_full = list(tokenizer(text=pair.prompt + rejected)["input_ids"])
    cut = min(_common_prefix(prompt_ids, chosen_full), _common_prefix(prompt_ids, rejected_full))
    return PairTokens(
        prompt_ids=prompt_ids[:cut], chosen_ids=chosen_full[cut:], rejected_ids=rejected_full[cut:]
    )


@torch.inference_mode()
def completion_logprobs(
    lm_or_model: LanguageModel | torch.nn.Module,
    prompt_ids: Sequence[list[int]],
    completion_ids: Sequence[list[int]],
) -> torch.Tensor:
    """Total log-likelihood ``sum_t log p(c_t | prompt, c_<t)`` of each completion.

    One left-padded forward (position ids ``cumsum(mask) - 1`` as in
    :mod:`market_sim.lm.model`), log-softmax in float64.

    Args:
        lm_or_model: A :class:`LanguageModel` or a bare causal LM module.
        prompt_ids: B prompts (token ids; a prompt may be empty if its completion is not).
        completion_ids: B completions (token ids; may be empty, scoring 0).

    Returns:
        ``[B]`` float64 on the CPU.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError("prompt_ids and completion_ids must have the same length")
    if len(prompt_ids) == 0:
        return torch.zeros(0, dtype=torch.float64)
    if isinstance(lm_or_model, LanguageModel):
        model, pad_id = lm_or_model.model, lm_or_model.pad_token_id
    else:
        model, pad_id = lm_or_model, 0
    device = next(model.parameters()).device
    return sequence_logprob_tensor(
        model,
        [list(p) for p in prompt_ids],
        [list(c) for c in completion_ids],
        pad_id,
        device,
        dtype=torch.float64,
    ).cpu()


def dpo_batch_stats(
    policy: LanguageModel,
    reference: LanguageModel,
    pairs: Sequence[PreferencePair],
    beta: float,
) -> DPOBatchStats:
    """The DPO loss and margin of each pair, computed here independently of TRL.

    With ``x`` the prompt, ``y_w`` the chosen and ``y_l`` the rejected reply, tokenized by
    :func:`pair_tokens` (the policy's tokenizer; EOS included)::

        margin = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))
        loss   = -log sigmoid(beta * margin)

    At ``policy == reference`` every margin is 0 and every loss ``log 2``. The mean of ``loss``
    over a batch is what TRL minimises (and logs) with ``loss_type=["sigmoid"]``.

    Args:
        policy: ``pi``.
        reference: ``pi_ref`` (same tokenizer).
        pairs: B pairs (non-empty).
        beta: DPO temperature (> 0).

    Returns:
        ``[B]`` float64 losses and margins.
    """
    _check_pairs(pairs)
    check_positive("beta", beta)
    tokens = [pair_tokens(policy, pair) for pair in pairs]
    prompts = [t.prompt_ids for t in tokens] * 2
    completions = [t.chosen_ids for t in tokens] + [t.rejected_ids for t in tokens]
    policy_chosen, policy_rejected = completion_logprobs(policy, prompts, completions).chunk(2)
    ref_chosen, ref_rejected = completion_logprobs(reference, prompts, completions).chunk(2)
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return DPOBatchStats(loss=-torch.nn.functional.logsigmoid(beta * margin), margin=margin)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def dpo_fine_tune(
    lm: LanguageModel,
    pairs: Sequence[PreferencePair],
    settings: DPOSettings,
    seed: int,
) -> DPOResult:
    """Fine-tune a copy of ``lm`` on preference pairs with TRL's ``DPOTrainer``.

    Each step minimises the batch mean of
    ``L = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) -
    log pi_ref(y_l|x))])`` with AdamW (constant learning rate, no warm-up, no weight decay,
    gradient norm clipped at 1.0, dropout disabled), on ``min(batch_size, len(pairs))`` pairs
    drawn by TRL's seeded sampler (epochs of a shuffled order).

    The reference ``pi_ref`` is ``lm`` as passed, frozen at call time: TRL precomputes the
    reference log-probabilities of every pair with the untrained copy before the first update
    (``precompute_ref_log_probs=True``, ``ref_model=None``; nothing is reloaded from disk).
    Repeated calls on the previous result are rounds of iterative DPO. TRL appends EOS to every
    reply, including one that was truncated at ``max_new_tokens`` (see the module docstring).

    Every parameter of the copy is trained (``requires_grad`` is switched back on, since ``lm``
    may be a frozen earlier result). ``lm`` itself is never modified: TRL gets the copy and a
    copy of the tokenizer, the run writes only into a temporary directory that is removed, and
    TRL's and transformers' warnings and logging are silenced for the duration of the call.
    The same seed gives identical weights.

    Args:
        lm: The model to start from (and the reference).
        pairs: Preference pairs (non-empty).
        settings: Optimisation settings.
        seed: Seeds TRL's batch order (``seed`` and ``data_seed``) and every RNG.

    Returns:
        The trained copy and TRL's per-step logs.
    """
    _check_pairs(pairs)
    if not isinstance(settings, DPOSettings):
        raise ValueError(f"settings must be a DPOSettings, got {type(settings).__name__}")
    check_int("seed", seed, minimum=0)
    if lm.tokenizer.eos_token is None:
        raise ValueError("the tokenizer has no EOS token: TRL cannot terminate the replies")
    model = copy.deepcopy(lm.model)
    model.requires_grad_(True)  # the passed model may be a frozen earlier result
    losses: list[float] = []
    margins: list[float] = []
    accuracies: list[float] = []
    if settings.steps > 0:
        with (
            reproducible_torch(seed, settings.num_threads, warn_only=True),
            _quiet(),
            tempfile.TemporaryDirectory(prefix="market-sim-dpo-") as folder,
        ):
            history = _train_with_trl(model, lm, pairs, settings, seed, folder)
        for step in range(1, settings.steps + 1):
            entry = history[step]
            losses.append(float(entry["loss"]))
            margins.append(float(entry["rewards/margins"]))
            accuracies.append(float(entry["rewards/accuracies"]))
    model.eval()
    model.requires_grad_(False)
    return DPOResult(
        lm=LanguageModel(model, lm.tokenizer, f"{lm.name}+dpo", lm.prompt_format),
        losses=losses,
        margins=margins,
        accuracies=accuracies,
    )


def _train_with_trl(
    model: torch.nn.Module,
    lm: LanguageModel,
    pairs: Sequence[PreferencePair],
    settings: DPOSettings,
    seed: int,
    folder: str,
) -> dict[int, dict[str, float]]:
    """Run TRL on ``model`` in place; return its training logs keyed by step (1-based)."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        output_dir=os.path.join(folder, "output"),
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        max_steps=settings.steps,
        per_device_train_batch_size=min(settings.batch_size, len(pairs)),
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=seed,
        data_seed=seed,
        use_cpu=lm.device.type == "cpu",
        # gradient_checkpointing=False under its transformers 5 name (the old one warns)
        activation_checkpointing=False,
        disable_tqdm=True,
        bf16=False,
        fp16=False,
        dataloader_num_workers=0,
        loss_type=["sigmoid"],
        beta=settings.beta,
        disable_dropout=True,
        precompute_ref_log_probs=True,
        max_length=None,
    )
    tokenizer = copy.deepcopy(lm.tokenizer)  # TRL sets pad_token on the tokenizer it gets
    dataset = _file_backed_dataset(Dataset, pairs, folder)
    saved_forward = model.__dict__.get("forward")
    with _no_hub_telemetry():
        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    trainer.remove_callback(PrinterCallback)
    try:
        trainer.train()
    finally:
        # TRL patches an instance-level forward (fused LM head) onto the model; undo it.
        if saved_forward is None:
            model.__dict__.pop("forward", None)
        else:
            model.forward = saved_forward
    history = {int(entry["step"]): entry for entry in trainer.state.log_history if "loss" in entry}
    del trainer
    return history


def _file_backed_dataset(dataset_class, pairs: Sequence[PreferencePair], folder: str):
    """A ``datasets.Dataset`` of the pairs stored in ``folder``.

    An in-memory dataset would make TRL cache the reference log-probabilities in a process-wide
    temporary directory (removed only at exit); a file-backed one keeps every cache file next to
    its source, in ``folder``.
    """
    in_memory = dataset_class.from_dict(
        {
            "prompt": [pair.prompt for pair in pairs],
            "chosen": [pair.chosen for pair in pairs],
            "rejected": [pair.rejected for pair in pairs],
        }
    )
    return in_memory.map(
        lambda example: example, cache_file_name=os.path.join(folder, "pairs.arrow")
    )


@contextmanager
def _no_hub_telemetry() -> Iterator[None]:
    """Keep TRL's trainers from reporting their use to huggingface.co while inside.

    TRL's trainers call ``huggingface_hub.utils.send_telemetry`` when built (a request to the
    Hub, whose headers may also fetch the Hub's agent registry): a network call the user never
    asked for, which this project's offline promise rules out. ``send_telemetry`` reads
    ``huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY`` at each call (the environment
    variable is read once, at import), so the constant is set here and restored afterwards.
    """
    from huggingface_hub import constants

    saved = constants.HF_HUB_DISABLE_TELEMETRY
    constants.HF_HUB_DISABLE_TELEMETRY = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_TELEMETRY = saved


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence warnings, library logging and progress bars; restore everything afterwards."""
    import datasets
    import transformers

    saved_levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    saved_verbosity = transformers.logging.get_verbosity()
    saved_datasets_verbosity = datasets.logging.get_verbosity()
    saved_progress = datasets.utils.logging.is_progress_bar_enabled()
    saved_tqdm = os.environ.get("TQDM_DISABLE")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            for name in _QUIET_LOGGERS:
                warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
            for name in _QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            transformers.logging.set_verbosity_error()
            datasets.logging.set_verbosity_error()
            datasets.disable_progress_bars()
            os.environ["TQDM_DISABLE"] = "1"  # TRL's reference-log-prob progress bar reads it
            yield
    finally:
        if saved_tqdm is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved_tqdm
        if saved_progress:
            datasets.enable_progress_bars()
        datasets.logging.set_verbosity(saved_datasets_verbosity)
        transformers.logging.set_verbosity(saved_verbosity)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _common_prefix(ids: Sequence[int], other: Sequence[int]) -> int:
    length = 0
    for a, b in zip(ids, other, strict=False):
        if a != b:
            break
        length += 1
    return length


def _check_pairs(pairs: Sequence[PreferencePair]) -> None:
    if len(pairs) == 0:
        raise ValueError("pairs must not be empty")
    for index, pair in enumerate(pairs):
        if not isinstance(pair, PreferencePair):
            raise ValueError(f"pairs[{index}] must be a PreferencePair, got {type(pair).__name__}")

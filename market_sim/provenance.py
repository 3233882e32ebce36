"""How a run was made: software versions, the exact model and weights, the scenario's hash.

:func:`run_provenance` returns three tables for ``summary.json``:

* ``versions``: market-sim, Python and :data:`PACKAGES` (read from the installed distributions'
  metadata, no imports);
* ``provenance``: what determines the results wherever they are computed: the model as
  referenced (``bundled:tiny-ads``, a folder, a hub id), its kind (``bundled``, ``local``,
  ``hub``), the hub id and the revision (commit) it resolved to, the sha256 of every weight file
  (``*.safetensors``) and of every file that configures the model or its tokenizer
  (:data:`SETTING_FILES`: ``config.json``, ``tokenizer.json``, ...; a changed
  ``layer_norm_epsilon`` or tokenizer normalizer changes the replies as much as new weights), the
  dtype, and the sha256 of the resolved scenario (``scenario.toml``);
* ``execution``: what depends on the machine and checkout that ran it: the absolute model
  folder, the device, torch's CPU thread count, and the git commit of the market-sim checkout
  (with whether tracked files differed from it), null when not run from a git checkout or when
  git is absent. A sweep keeps ``execution`` out of ``runs.parquet`` (with the wall-clock keys,
  in ``timings.parquet``), so that table stays identical whichever machines ran the runs.

Weight hashes are cached per process by (path, size, modification time): a sweep hashes each
file once. Importing this module does not import torch (``market-sim --version`` stays fast).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import platform
import re
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from market_sim.lm.get import sha256_file as sha256_of_file

if TYPE_CHECKING:  # torch is imported only where a model is at hand: --version stays fast
    import torch

    from market_sim.lm.model import LanguageModel

PACKAGES: tuple[str, ...] = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "mesa",
    "polars",
    "numpy",
    "scipy",
    "trl",
    "accelerate",
)
"""Distributions whose versions every summary records (besides market-sim and Python): what
computes the replies (torch, transformers, tokenizers, safetensors), the market and tables, and
eva's DPO step (trl, accelerate); None for one not installed."""
WEIGHT_PATTERNS: tuple[str, ...] = ("*.safetensors",)
SETTING_FILES: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)
"""Files beside the weights that transformers reads to build the model and its tokenizer."""
MODEL_HASH_KEYS: tuple[str, ...] = ("weights_sha256", "settings_sha256")
"""The model record's file-hash tables (file name -> sha256)."""
FOLDER_SCHEMES: tuple[str, ...] = ("bundled", "cache")
"""Reference prefixes (``bundled:<name>``, ``cache:<name>``) recorded as the model's source."""
CHECKOUT = Path(__file__).resolve().parent.parent
"""The folder above the package: a git checkout when market-sim runs from source."""
GIT_TIMEOUT_SECONDS = 10


def distribution_version(name: str) -> str | None:
    """Installed version of a distribution, None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def market_sim_version() -> str:
    """market-sim's version (from its installed metadata; ``unknown`` when not installed)."""
    return distribution_version("market-sim") or "unknown"


def software_versions() -> dict[str, str | None]:
    """market-sim, Python and :data:`PACKAGES` versions (a fresh copy of the process's)."""
    return dict(installed_versions())


@functools.cache
def installed_versions() -> dict[str, str | None]:
    """The versions, read once per process.

    The modules a process imported do not change under it, so every run of a sweep or of
    replicates records the same versions; reading the distributions' metadata costs about
    5 ms per package, which 64 replicates paid 64 times.
    """
    versions: dict[str, str | None] = {
        "market_sim": market_sim_version(),
        "python": platform.python_version(),
    }
    versions.update({name: distribution_version(name) for name in PACKAGES})
    return versions


def run_git(*args: str, folder: Path = CHECKOUT) -> str | None:
    """Output of ``git -C folder ARGS``, or None when git is absent, fails or times out."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_diff_sha256(folder: Path) -> str | None:
    """sha256 of the bytes ``git diff HEAD --binary`` prints in ``folder`` (None on failure).

    Read as bytes: a diff of a file that is not UTF-8 (or has CRLF line ends) is hashed as git
    prints it, so ``git diff HEAD --binary | sha256sum`` gives the same hash.
    """
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "diff", "HEAD", "--binary"],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return hashlib.sha256(done.stdout).hexdigest() if done.returncode == 0 else None


def git_state(folder: Path = CHECKOUT) -> dict[str, Any]:
    """The git commit of the checkout holding ``folder``, and its tracked changes.

    ``git_commit``, ``git_dirty`` (tracked files differ from it) and ``git_diff_sha256``: when
    dirty, the sha256 of what ``git diff HEAD --binary`` prints (two runs with the same commit
    and hash ran the same edited code; the diff itself is not recorded), else None. All are None
    when ``folder`` is not in a git checkout (an installed wheel) or git is absent.
    """
    if not (folder / ".git").exists():
        return {"git_commit": None, "git_dirty": None, "git_diff_sha256": None}
    commit = run_git("rev-parse", "HEAD", folder=folder)
    status = run_git("status", "--porcelain", "--untracked-files=no", folder=folder)
    dirty = None if status is None else bool(status)
    digest = git_diff_sha256(folder) if dirty else None
    return {"git_commit": commit, "git_dirty": dirty, "git_diff_sha256": digest}


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of_file(Path(path))


SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
"""A SHA-256 digest as written in results and scenarios: 64 lowercase hexadecimal digits."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (cached by path, size and modification time)."""
    stat = path.stat()
    return _sha256_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def weight_hashes(folder: Path) -> dict[str, str]:
    """File name -> sha256 of every weight file at the top of ``folder``, sorted by name.

    Only the top level: transformers loads a model's weights from there, so a subfolder (a
    trainer's ``checkpoint-*/``, a copy kept beside the model) neither changes the recorded
    hashes nor is read.
    """
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)})
    return {str(p.relative_to(folder)): sha256_file(p) for p in files}


def setting_hashes(folder: Path) -> dict[str, str]:
    """File name -> sha256 of each of :data:`SETTING_FILES` present in ``folder``, sorted."""
    return {
        name: sha256_file(folder / name)
        for name in sorted(SETTING_FILES)
        if (folder / name).is_file()
    }


def model_file_hashes(folder: Path) -> dict[str, dict[str, str]]:
    """``weights_sha256`` and ``settings_sha256`` of a model folder (:data:`MODEL_HASH_KEYS`)."""
    return {"weights_sha256": weight_hashes(folder), "settings_sha256": setting_hashes(folder)}


def current_model_hashes(reference: str) -> dict[str, dict[str, str]] | None:
    """:func:`model_file_hashes` of the folder ``reference`` names now, without any download.

    None when there is no such local folder (a hub model not in the local cache): nothing to
    compare a recorded run against.
    """
    from market_sim.lm.loading import ModelNotFoundError, resolve_model_reference

    try:
        resolved = resolve_model_reference(reference)
    except ModelNotFoundError:
        return None
    folder = Path(resolved) if Path(resolved).is_dir() else hub_snapshot(resolved, None)
    return model_file_hashes(folder) if folder is not None else None


def changed_model_files(recorded: Any, current: dict[str, dict[str, str]] | None) -> list[str]:
    """Files whose hashes differ between a run's recorded model and the model's folder now.

    Args:
        recorded: The ``provenance.model`` table of a run (only the hash tables it has are
            compared: runs recorded before ``settings_sha256`` existed compare their weights).
        current: :func:`current_model_hashes`, or None (nothing to compare: no change).

    Returns:
        Sorted names of files changed, added or removed (``["<no record>"]`` when ``recorded``
        has no hash table at all, e.g. an unreadable summary).
    """
    if current is None:
        return []
    tables = [key for key in MODEL_HASH_KEYS if isinstance(recorded, dict) and key in recorded]
    if not tables:
        return ["<no record>"]
    changed: set[str] = set()
    for key in tables:
        before, now = recorded[key] or {}, current[key]
        changed |= {
            name for name in before.keys() | now.keys() if before.get(name) != now.get(name)
        }
    return sorted(changed)


def hub_snapshot(hub_id: str, revision: str | None) -> Path | None:
    """The local cache folder of a hub model's snapshot, without any network access."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(hub_id, revision=revision, local_files_only=True)
    except (ImportError, OSError, ValueError):  # not in the local cache (or no hub library)
        return None
    return Path(folder)


def model_provenance(reference: str, lm: LanguageModel | None = None) -> tuple[dict, str | None]:
    """What identifies the model's weights, and the absolute folder they were read from.

    Args:
        reference: The model reference as the scenario gives it.
        lm: The loaded model. A hub model's revision is its config's ``_commit_hash`` where
            transformers keeps it, else the name of its cache snapshot folder (the hub cache
            names each snapshot by its commit).

    Returns:
        ``(provenance, folder)``: ``provenance`` has ``reference``, ``source`` (``bundled``,
        ``cache``, ``local`` or ``hub``), ``hub_id`` and ``revision`` (hub models, else None),
        ``weights_sha256`` and ``settings_sha256`` (file -> hash; empty when no file could be
        found, see :func:`model_file_hashes`); ``folder`` is the
        absolute folder of the weights (for a hub model, its local cache snapshot) or None.
    """
    from market_sim.lm.loading import resolve_model_reference

    resolved = resolve_model_reference(reference)
    if Path(resolved).is_dir():
        scheme = reference.split(":", 1)[0]
        source = scheme if scheme in FOLDER_SCHEMES else "local"
        folder: Path | None = Path(resolved).resolve()
        hub_id = revision = None
    else:
        source, hub_id = "hub", resolved
        config = getattr(getattr(lm, "model", None), "config", None)
        revision = getattr(config, "_commit_hash", None)
        folder = hub_snapshot(hub_id, revision)
        if revision is None and folder is not None and folder.parent.name == "snapshots":
            revision = folder.name  # transformers 5 drops _commit_hash; the snapshot is named so
    record = {
        "reference": reference,
        "source": source,
        "hub_id": hub_id,
        "revision": revision,
        **(
            model_file_hashes(folder)
            if folder is not None
            else {key: {} for key in MODEL_HASH_KEYS}
        ),
    }
    return record, str(folder) if folder is not None else None


def model_dtype(lm: LanguageModel) -> str:
    """The dtype of the model's parameters, e.g. ``float32``."""
    return str(next(lm.model.parameters()).dtype).removeprefix("torch.")


def scenario_sha256(scenario_toml: str) -> str:
    """Hex sha256 of the resolved scenario text (``scenario.toml``, UTF-8)."""
    return hashlib.sha256(scenario_toml.encode("utf-8")).hexdigest()


def run_provenance(lm: LanguageModel, reference: str, scenario_toml: str) -> dict[str, Any]:
    """The ``versions``, ``provenance`` and ``execution`` tables of a run's ``summary.json``.

    Args:
        lm: The loaded model the run used.
        reference: The scenario's model reference (``model.path``).
        scenario_toml: The resolved scenario text.
    """
    import torch

    model, folder = model_provenance(reference, lm)
    return {
        "versions": software_versions(),
        "provenance": {
            "model": model,
            "dtype": model_dtype(lm),
            "prompt_format": lm.prompt_format,
            "stop_token_ids": list(lm.stop_token_ids),
            "prompt_bos_id": lm.prompt_bos_id,
            "scenario_sha256": scenario_sha256(scenario_toml),
        },
        "execution": {
            "model_folder": folder,
            "device": str(lm.device),
            **machine_state(lm.device),
            "torch_threads": torch.get_num_threads(),
            **git_state(),
        },
    }


def machine_state(device: torch.device) -> dict[str, Any]:
    """What a result may depend on of the machine: floats can round otherwise elsewhere.

    ``machine`` (the CPU architecture), ``cpu_capability`` (the vector instruction set torch's
    CPU kernels use there, e.g. ``AVX2``: it sets their summation order), ``cuda_version``
    (the CUDA runtime torch was built with, or None) and ``device_name`` (the CUDA device's
    name, or None off CUDA).
    """
    import torch

    return {
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda_version": torch.version.cuda,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


PROVENANCE_FILE = "provenance.json"
"""What an experiment folder (eva, audit, convergence, lambda sweep) records of how it was made."""


def write_provenance(
    out_dir: Path,
    lm: LanguageModel,
    scenario_toml: str,
    reference: str,
    mechanism_plugins: Mapping[str, Mapping[str, Any]] | None = None,
    **settings: Any,
) -> None:
    """Write :data:`PROVENANCE_FILE`: :func:`run_provenance`'s tables and the command's settings.

    A run records these in ``summary.json``; the experiment commands, whose summaries are
    tables of their own, record them here, next to the ``scenario.toml`` they hash.

    Args:
        out_dir: The experiment's folder.
        lm: The loaded model the experiment used.
        scenario_toml: The resolved scenario text it wrote.
        reference: The scenario's model reference (``model.path``).
        mechanism_plugins: Kind -> origin of each mechanism the experiment ran that a plugin
            outside market-sim provides (:func:`market_sim.plugins.origin.plugin_origin`),
            recorded as ``provenance.mechanism_plugins`` when there is one.
        **settings: The command's own settings outside the scenario (seeds, generations).
    """
    from market_sim.results.files import atomic_write_json

    record = {"settings": settings, **run_provenance(lm, reference, scenario_toml)}
    if mechanism_plugins:
        record["provenance"]["mechanism_plugins"] = {
            kind: dict(origin) for kind, origin in sorted(mechanism_plugins.items())
        }
    atomic_write_json(out_dir / PROVENANCE_FILE, record)


def version_line() -> str:
    """``market-sim X (git <commit>)`` for ``--version``; the commit only from a checkout."""
    commit = git_state()["git_commit"]
    suffix = f" (git {commit[:12]})" if commit else ""
    return f"market-sim {market_sim_version()}{suffix}"


class VersionAction(argparse.Action):
    """``--version``: print :func:`version_line` and exit (git is asked only when used)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        kwargs.setdefault("help", "print market-sim's version (and git commit) and exit")
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: D102
        print(version_line())
        parser.exit()

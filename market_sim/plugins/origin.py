"""Where a run's mechanism comes from, when it is not market-sim's own: its plugin's origin.

market-sim's version (``summary.json``'s ``versions``) pins its built-in mechanisms; a mechanism
added by a plugin is code of another package or script, and a result computed with it can only
be recomputed with that code. :func:`plugin_origin` names it for the run's provenance.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from market_sim.plugins.registry import entry_point_package, mechanism_plugin
from market_sim.provenance import sha256_file

MAIN_MODULES = ("__main__", "__mp_main__")
"""A script's module name in its own process, and in the processes ``multiprocessing`` spawns
(sweep workers): both are recorded as ``__main__``, so a sweep's records do not depend on its
number of workers."""


@functools.cache
def module_distributions() -> dict[str, list[str]]:
    """Top-level import name -> the installed distributions providing it (read once)."""
    return dict(metadata.packages_distributions())


def module_file(module: str) -> Path | None:
    """The resolved source file of an imported module, if it has one."""
    loaded = sys.modules.get(module)
    name = getattr(loaded, "__file__", None)
    return Path(name).resolve() if name else None


def providing_distribution(module: str) -> tuple[str, str] | None:
    """``(distribution, version)`` of the installed distribution whose files hold ``module``.

    Matching the top-level name alone would credit a local ``analysis/mech.py`` to whichever
    installed distribution ships an ``analysis`` package: the module's file must be one of the
    distribution's files.
    """
    source = module_file(module)
    if source is None:
        return None
    for name in module_distributions().get(module.split(".")[0], []):
        files = metadata.distribution(name).files or []
        if any(Path(file.locate()).resolve() == source for file in files):
            return name, metadata.version(name)
    return None


def is_main_guard(node: ast.stmt) -> bool:
    """Whether a top-level statement is ``if __name__ == "__main__":``."""
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


REGISTERING_CALLS = frozenset(
    {"register_mechanism", "registered", "register_strategy", "registered_strategy"}
)
"""Calls that register a plugin: a ``__main__`` block making one is part of its code."""


def defines_mechanism(block: ast.If) -> bool:
    """Whether a ``__main__`` block defines code or registers a plugin (then it is hashed).

    A script run in one process (a sweep with one worker runs there) may register its plugin
    in that block, with a lambda or arguments that are the mechanism; only a block that just
    runs things (a sweep over seeds) is left out.
    """
    for node in ast.walk(ast.Module(body=block.body, type_ignores=[])):
        if isinstance(node, ast.Lambda | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return True
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in REGISTERING_CALLS:
                return True
    return False


def code_text(source: bytes) -> str | None:
    """A module's code as Python parses it: no comments or formatting, no plain ``__main__`` block.

    A script that registers its plugin at top level and starts its sweep under ``if __name__ ==
    "__main__":`` (the layout sweeps need) changes its seeds or grid there; that block, like a
    comment, does not change the mechanism, so it is left out (its ``else:`` branch, which
    spawned workers run, is kept), unless it defines code or registers a plugin
    (:func:`defines_mechanism`).

    Returns:
        The text, or None when the bytes do not parse as Python (the caller hashes the bytes).
    """
    try:
        tree = ast.parse(source)  # bytes: the coding cookie or BOM decides the encoding
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    body: list[ast.stmt] = []
    for node in tree.body:
        if is_main_guard(node) and not defines_mechanism(node):
            body.extend(node.orelse)
        else:
            body.append(node)
    tree.body = body
    return ast.unparse(tree)


CODE_HASH = f"python{sys.version_info.major}.{sys.version_info.minor}-ast"
"""How :func:`code_sha256` hashes: ``ast.unparse`` writes some code (f-string quotes) differently
from one Python version to the next, so a record names the version its hashes come from."""


@functools.cache
def _code_sha256(path: Path, modified_ns: int, size: int) -> str:
    """:func:`code_sha256` of one version of a file (the cache key holds its stat)."""
    data = path.read_bytes()
    text = code_text(data) if path.suffix == ".py" else None
    return hashlib.sha256(text.encode() if text is not None else data).hexdigest()


def code_sha256(path: Path) -> str | None:
    """SHA-256 of a source file's :func:`code_text`, read again whenever the file changes.

    The bytes are hashed when the file is not Python source (a compiled extension); None when
    it cannot be read.
    """
    try:
        stat = path.stat()
        return _code_sha256(path, stat.st_mtime_ns, stat.st_size)
    except OSError:  # '<stdin>', a deleted file
        return None


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes (the hash older records hold: ``source_sha256``), or None.

    :func:`market_sim.provenance.sha256_file`, cached by path, size and modification time.
    """
    try:
        return sha256_file(path)
    except OSError:
        return None


PLUGIN_CALLABLES = (
    "build",
    "report_space",
    "check",
    "slow_settings",
    "auction_memory",
    "fewest_advertisers",
    "fixed_queries",
)
"""The plugin's fields whose code runs the mechanism; their modules are hashed."""


def is_built_in(module: str) -> bool:
    """Whether ``module`` is market-sim's own (its version pins that code)."""
    return module == "market_sim" or module.startswith("market_sim.")


def recorded_module(module: str) -> str:
    """The name a module is recorded under (a script's is ``__main__`` in every process)."""
    return "__main__" if module in MAIN_MODULES else module


def source_path(module: str) -> Path | None:
    """A module's source file: loaded, else found without importing it.

    ``__main__`` is the running script (a sweep's parent reads the script its workers import).
    """
    source = module_file(module)
    if source is None and module not in MAIN_MODULES:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        origin = getattr(spec, "origin", None)
        source = Path(origin).resolve() if origin and Path(origin).is_file() else None
    return source


def source_sha256(module: str) -> str | None:
    """:func:`code_sha256` of a module's source file now.

    None: no file, e.g. an interactive session's ``__main__``.
    """
    source = source_path(module)
    return code_sha256(source) if source is not None else None


def plugin_origin(kind: str, modules: Iterable[str] = ()) -> dict[str, Any] | None:
    """The plugin that runs ``kind``: its name, module, package, version and source hashes.

    The package is the one whose ``market_sim.mechanisms`` entry point loaded the plugin, else
    the installed distribution whose files hold the module of its settings class (None for a
    script's or a test's plugin). Since a package's version stays the same across edits of an
    editable install, the code is identified by ``sources`` in every case: the SHA-256 of the
    source file of each module outside market-sim that defines the plugin's settings class,
    one of its callables (:data:`PLUGIN_CALLABLES`: ``build``, ``report_space``, ...), or one of
    ``modules`` (the run passes its platform's class). Code those modules import is not hashed.
    A hash covers the module's code as parsed (:func:`code_text`): comments, formatting and an
    ``if __name__ == "__main__":`` block do not change it, so a sweep script may widen its
    seeds there without rerunning the runs it has.

    Args:
        kind: The mechanism kind.
        modules: Further module names holding the mechanism's code.

    Returns:
        ``{"name", "module", "package", "version", "sources": {module: sha256 or None},
        "code_hash"}`` (:data:`CODE_HASH`; None for a module without a source file), or None
        for a built-in mechanism (defined in ``market_sim``).
    """
    plugin = mechanism_plugin(kind)
    module = plugin.config_type.__module__
    if is_built_in(module):
        return None
    package = entry_point_package(plugin.name) or providing_distribution(module)
    defining = [
        module,
        *(getattr(getattr(plugin, field), "__module__", None) for field in PLUGIN_CALLABLES),
    ]
    names = sorted(
        {
            recorded_module(name)
            for name in (*defining, *modules)
            if name is not None and not is_built_in(name)
        }
    )
    return {
        "name": plugin.name,
        "module": recorded_module(module),
        "package": package[0] if package else None,
        "version": package[1] if package else None,
        "sources": {name: source_sha256(name) for name in names},
        "code_hash": CODE_HASH,
    }


def changed_plugin_code(recorded: object) -> list[str]:
    """What of a recorded :func:`plugin_origin` differs from the code found now.

    Args:
        recorded: A run's ``provenance.mechanism_plugin`` (None for a built-in mechanism;
            an older record holds ``source_sha256``, the bytes of one module's file, instead
            of ``sources``).

    Returns:
        The modules whose code hash differs (or whose file is gone), the hash scheme when the
        record's is another Python version's (``python3.11-ast -> python3.12-ast``: they
        cannot be compared), and ``version`` when the installed package's version differs;
        empty when the code is the same. A module recorded without a file cannot be compared
        (:func:`uncompared_modules`) and is not listed.
    """
    if not isinstance(recorded, dict):
        return []
    sources = recorded.get("sources")
    if isinstance(sources, dict):
        scheme = recorded.get("code_hash")
        if scheme != CODE_HASH:
            changed = [f"{scheme} -> {CODE_HASH}"]
        else:
            changed = [
                module
                for module, digest in sorted(sources.items())
                if digest is not None and source_sha256(module) != digest
            ]
    elif recorded.get("source_sha256"):  # an older record: one module, its file's bytes
        module = str(recorded.get("module"))
        source = source_path(module)
        now = file_sha256(source) if source is not None else None
        changed = [module] if now != recorded["source_sha256"] else []
    else:
        changed = []
    package = recorded.get("package")
    if package:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = None
        if version != recorded.get("version"):
            changed.append("version")
    return changed


def uncompared_modules(recorded: object) -> list[str]:
    """Modules of a recorded :func:`plugin_origin` that had no source file to hash.

    A plugin defined in an interactive session: whether its code changed cannot be told.
    """
    sources = recorded.get("sources") if isinstance(recorded, dict) else None
    if not isinstance(sources, dict):
        return []
    return sorted(module for module, digest in sources.items() if digest is None)


def plugin_origins(
    kinds: Iterable[str], platform_modules: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Kind -> :func:`plugin_origin` of each of ``kinds`` that a plugin outside market-sim runs.

    Args:
        kinds: Mechanism kinds.
        platform_modules: Kind -> the module of the platform class built for it.

    Returns:
        An empty dict when every kind is built in.
    """
    modules = platform_modules or {}
    origins = {
        kind: plugin_origin(kind, [modules[kind]] if kind in modules else [])
        for kind in dict.fromkeys(kinds)
    }
    return {kind: origin for kind, origin in origins.items() if origin is not None}

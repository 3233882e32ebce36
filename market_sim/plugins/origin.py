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


def code_text(source: str) -> str:
    """A module's code as Python parses it: no comments or formatting, no ``__main__`` block.

    A script that registers its plugin and starts its sweep under ``if __name__ ==
    "__main__":`` (the layout sweeps need) changes its seeds or grid there; that block, like a
    comment, does not change the mechanism, so it is left out of the hash.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    tree.body = [node for node in tree.body if not is_main_guard(node)]
    return ast.unparse(tree)


@functools.cache
def _code_sha256(path: Path, modified_ns: int, size: int) -> str:
    """:func:`code_sha256` of one version of a file (the cache key holds its stat)."""
    return hashlib.sha256(code_text(path.read_text(encoding="utf-8")).encode()).hexdigest()


def code_sha256(path: Path) -> str:
    """SHA-256 of a source file's :func:`code_text`, read again whenever the file changes."""
    stat = path.stat()
    return _code_sha256(path, stat.st_mtime_ns, stat.st_size)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the hash older records hold: ``source_sha256``)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    """:func:`code_sha256` of a module's source file now (None: no file)."""
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
        ``{"name", "module", "package", "version", "sources": {module: sha256}}``, or None for a
        built-in mechanism (defined in ``market_sim``).
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
    }


def changed_plugin_code(recorded: object) -> list[str]:
    """What of a recorded :func:`plugin_origin` differs from the code found now.

    Args:
        recorded: A run's ``provenance.mechanism_plugin`` (None for a built-in mechanism;
            an older record holds ``source_sha256``, the bytes of one module's file, instead
            of ``sources``).

    Returns:
        The modules whose source hash differs (or whose file is gone), and ``version`` when the
        installed package's version differs; empty when the code is the same.
    """
    if not isinstance(recorded, dict):
        return []
    if isinstance(recorded.get("sources"), dict):
        changed = [
            module
            for module, digest in sorted(recorded["sources"].items())
            if source_sha256(module) != digest
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

"""The layering contracts of pyproject.toml ([tool.importlinter]) hold: no import runs upward."""

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent


def test_import_layers_are_kept(monkeypatch):
    monkeypatch.chdir(ROOT)  # the contracts name the packages of this checkout
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_market_sim_source_never_names_analysis():
    """Also a dynamic import (importlib, entry points by module name) would run upward."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "market_sim").rglob("*.py"))
        if 'import_module("analysis' in path.read_text("utf-8")
        or "from analysis" in path.read_text("utf-8")
        or "import analysis" in path.read_text("utf-8")
    ]
    assert offenders == []

"""Where the checkpoints shipped with the package live (torch-free, for the scenario validator)."""

from __future__ import annotations

from pathlib import Path

BUNDLED_ROOT = Path(__file__).parent / "bundled"
BUNDLED_PREFIX = "bundled:"


def bundled_model_names() -> tuple[str, ...]:
    """Names of the shipped checkpoints, accepted as ``bundled:<name>``."""
    if not BUNDLED_ROOT.is_dir():
        return ()
    return tuple(sorted(p.name for p in BUNDLED_ROOT.iterdir() if (p / "config.json").is_file()))

"""Figure files: PNG for screens, SVG and PDF for papers, the same bytes on every rerun.

Every figure is written in :data:`FORMATS` at :data:`DPI` by :func:`write_figure`:

* **Reproducible bytes.** matplotlib stamps SVG and PDF files with the time of writing and gives
  SVG elements random ids; both are switched off (``Date`` / ``CreationDate`` left out, a fixed
  ``svg.hashsalt``), so the same data drawn with the same library versions gives byte-identical
  files, as the result files do. PNG files carry no time.
* **Atomic.** Each file is rendered in memory and renamed into place
  (:func:`market_sim.results.files.atomic_write`): an interrupted ``plot`` leaves the earlier
  figure or none, never half a file.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from market_sim.results.files import atomic_write

DPI = 150
"""Dots per inch of every figure (PNG pixel size = figure inches x DPI)."""
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
"""File formats of every figure, in the order written."""
SVG_HASH_SALT = "market-sim"
"""Fixed salt of the ids matplotlib gives SVG elements (random per process by default)."""
UNDATED: dict[str, dict[str, None]] = {
    "png": {},
    "svg": {"Date": None},
    "pdf": {"CreationDate": None},
}
"""Per format, the metadata entries left out so that a file does not depend on the clock."""


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """``fig`` rendered as ``fmt`` (one of :data:`FORMATS`) at :data:`DPI`, undated."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        fig.savefig(buffer, dpi=DPI, format=fmt, metadata=UNDATED[fmt])
    return buffer.getvalue()


def write_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png``, ``name.svg`` and ``name.pdf`` into ``out_dir`` atomically.

    Returns:
        The paths written, in :data:`FORMATS` order.
    """
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{name}.{fmt}"
        content = figure_bytes(fig, fmt)
        atomic_write(path, lambda tmp, content=content: tmp.write_bytes(content))
        paths.append(path)
    return paths

"""Result files written atomically, readable as the umask says, and free of NaN and Infinity.

Every result file is written under a temporary name beside its target and renamed into place
(``os.replace``), so a reader sees either the old file or the new one, never half of one. The
temporary name is ``.<target name>.<8 characters of [a-z0-9_]>.tmp`` (the pattern of
``tempfile.mkstemp``, which earlier versions used): a writer killed before its rename leaves
such a file, and the next write of the same target removes it (:func:`remove_stale_temporaries`).
That assumes one writer per result file at a time, which holds for run folders (one run each)
and sweep folders (only the sweep's parent process writes its tables).

The temporary file's bytes are flushed to the disk (``fsync``) before the rename, and the folder
after it (where the system allows opening a folder), so that a crash or a power cut after a write
returned leaves the new file, not an empty one of the new name (a rename can reach the disk before
the data it names).

The temporary file is created with ``os.open(..., 0o666)``, so the kernel applies the process's
umask: a umask of ``0o022`` gives ``0o644`` (``mkstemp`` would give ``0o600`` whatever the umask,
so collaborators could not read the results).

JSON results are written with ``allow_nan=False``: a NaN or infinite number is never written as
the non-standard ``NaN`` / ``Infinity`` tokens; :class:`NonFiniteResultError` names the key
instead. Statistics that are undefined (a mean over no values) are ``None`` (JSON ``null``).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from market_sim.process_lifetime import interrupts_blocked

if TYPE_CHECKING:
    import polars as pl

TEMPORARY_SUFFIX = ".tmp"
RANDOM_PART = r"[a-z0-9_]{8}"
"""The random part of a temporary name (``mkstemp``'s alphabet and length)."""


class NonFiniteResultError(ValueError):
    """A result holds NaN or an infinity; the message names the file and the key or column."""


def temporary_name_pattern(target: str) -> re.Pattern[str]:
    """The names of the temporary files of ``target``: ``.<target>.<8 of [a-z0-9_]>.tmp``."""
    return re.compile(re.escape(f".{target}.") + RANDOM_PART + re.escape(TEMPORARY_SUFFIX))


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files an interrupted write of ``path`` left beside it.

    Only names of :func:`temporary_name_pattern` for this target are touched.

    Returns:
        The files removed.
    """
    pattern = temporary_name_pattern(path.name)
    removed = []
    for candidate in path.parent.glob(f".{glob_escape(path.name)}.*{TEMPORARY_SUFFIX}"):
        if pattern.fullmatch(candidate.name) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def glob_escape(text: str) -> str:
    """Escape glob metacharacters (``*?[``) so ``text`` matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def create_temporary(path: Path) -> Path:
    """Create an empty temporary file beside ``path``, mode ``0o666`` minus the umask."""
    while True:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place.

    ``write`` must write into the existing file ``tmp`` (opening it for writing truncates it and
    keeps its mode, as ``Path.write_text`` and polars' ``write_parquet`` do). Stale temporary files
    of ``path`` are removed first; this call's own is removed if ``write`` fails. The file, then
    its folder, are flushed to the disk (see the module docstring).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = create_temporary(path)
    try:
        write(tmp)
        flush_to_disk(tmp)
        os.replace(tmp, path)
    finally:
        remove_despite_interrupts(tmp)
    flush_folder_to_disk(path.parent)


def atomic_write_together(paths: Sequence[Path], writes: Sequence[Callable[[Path], None]]) -> None:
    """:func:`atomic_write` of several files, every one written before any is renamed.

    For files that must change together (the checkpoints of replicates in lockstep): a process
    killed while writing leaves every target as it was, since the renames, which take
    microseconds, come only after every temporary file is written and flushed. It holds each
    target's old and new bytes on the disk at once, until the renames.

    Args:
        paths: The target files.
        writes: One ``write(tmp)`` per target, as in :func:`atomic_write`.
    """
    temporaries: list[Path] = []
    try:
        for path, write in zip(paths, writes, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            temporaries.append(create_temporary(path))
            write(temporaries[-1])
            flush_to_disk(temporaries[-1])
        for path, tmp in zip(paths, temporaries, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temporaries:
            remove_despite_interrupts(tmp)
    for folder in dict.fromkeys(path.parent for path in paths):
        flush_folder_to_disk(folder)


def flush_to_disk(path: Path) -> None:
    """``fsync`` a written file, so that its bytes are on the disk before it is renamed.

    Opened read-only where that suffices (POSIX); Windows flushes only a handle open for writing.
    """
    descriptor = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def flush_folder_to_disk(folder: Path) -> None:
    """``fsync`` a folder, so that a rename inside it is on the disk.

    Skipped where a folder cannot be opened (Windows) or synced (some network file systems).
    """
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_despite_interrupts(tmp: Path) -> None:
    """Remove ``tmp`` even when Ctrl-C or SIGTERM arrives during the removal.

    An interrupt that stops a write is often followed by a second one (polars re-raises a
    pending SIGINT of its own, a user presses Ctrl-C twice): raised inside ``unlink`` it left the
    temporary file behind. New signals wait while the file is removed; an interrupt raised by a
    signal already pending is caught, the removal retried, and the interrupt raised afterwards.
    """
    interrupted: KeyboardInterrupt | None = None
    with interrupts_blocked():
        while True:
            try:
                tmp.unlink(missing_ok=True)
                break
            except KeyboardInterrupt as interrupt:
                interrupted = interrupt
    if interrupted is not None:
        raise interrupted


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically (UTF-8)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def non_finite_keys(value: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys (list items as ``key[i]``) of the NaN or infinite floats inside ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        yield prefix or "<value>"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from non_finite_keys(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from non_finite_keys(item, f"{prefix}[{index}]")


def finite_json(
    value: Any,
    name: str,
    *,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """``value`` as indented JSON text with a final newline; never ``NaN`` or ``Infinity``.

    Args:
        value: JSON-able data.
        name: The file name, for the error message.
        sort_keys: Sort the keys of every object.
        default: How to encode other objects (``json.dumps``'s ``default``).

    Raises:
        NonFiniteResultError: ``value`` holds a NaN or an infinity (the first key is named).
    """
    try:
        text = json.dumps(value, indent=2, sort_keys=sort_keys, allow_nan=False, default=default)
    except ValueError:
        keys = list(non_finite_keys(value))
        if not keys:
            raise
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        raise NonFiniteResultError(
            f"{name}: {keys[0]} is not a finite number{more}; results never hold NaN or Infinity"
        ) from None
    return text + "\n"


def atomic_write_json(
    path: Path,
    value: Any,
    *,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``value`` as JSON atomically, refusing NaN and infinities (see :func:`finite_json`)."""
    atomic_write_text(path, finite_json(value, path.name, sort_keys=sort_keys, default=default))


def check_finite_frame(frame: pl.DataFrame, name: str) -> None:
    """Refuse a table whose float columns (or lists of floats) hold NaN or an infinity.

    Nulls are allowed: they mark values that were not measured.

    Raises:
        NonFiniteResultError: Naming the file, the first such column and how many values.
    """
    import polars as pl

    for column in frame.columns:
        series = frame[column]
        while isinstance(series.dtype, pl.List | pl.Array):
            series = series.explode()
        if not series.dtype.is_float():
            continue
        bad = int((~series.drop_nulls().is_finite()).sum())
        if bad:
            raise NonFiniteResultError(
                f"{name}: column {column} has {bad} value(s) that are not finite numbers; "
                "results never hold NaN or Infinity"
            )

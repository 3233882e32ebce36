"""One writer per results folder: an advisory lock held while a command writes into it.

Two commands writing one folder at once (the same ``run --out`` started twice, a sweep resumed
while it still runs) would each write every file atomically, yet interleave checkpoints and
tables of different moments. A command takes the folder's lock once its inputs are checked,
before it writes, and holds it to the end; a second one is refused in one line. The lock is
``flock`` on the folder itself (no lock file is left in the results), released by the kernel
when the holder exits however it ends. Where ``fcntl`` is missing (not POSIX) there is no lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FolderBusyError(Exception):
    """Another process holds the folder's lock (one line naming the folder)."""


@contextmanager
def exclusive_folder(folder: Path, option: str = "--out") -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block, creating the folder if needed.

    Folders it created are removed again at the end while still empty (a run interrupted before
    its first write leaves nothing behind, as before the lock).

    Args:
        folder: The results folder.
        option: The option that named it (for the message).

    Yields:
        The folder.

    Raises:
        FolderBusyError: Another process holds it.
    """
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if fcntl is None:  # pragma: no cover
            yield folder
            return
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusyError(
                    f"{option}: '{folder}' is being written by another market-sim process; "
                    "wait for it to end, or choose another folder"
                ) from None
            yield folder
        finally:
            os.close(descriptor)  # releases the lock
    finally:
        for path in created:  # innermost first; a folder with anything in it stays
            try:
                path.rmdir()
            except OSError:
                break


@contextmanager
def exclusive_folders(folders: list[Path], option: str = "--out") -> Iterator[list[Path]]:
    """:func:`exclusive_folder` of each of ``folders`` (all or none).

    Yields:
        The folders.
    """
    with ExitStack() as stack:
        for folder in folders:
            stack.enter_context(exclusive_folder(folder, option))
        yield folders

"""Checkpoints of a run in progress: its state between two rounds, so an interrupted run resumes.

A run with a results folder writes ``checkpoint.pickle`` there every ``checkpoint_seconds`` of
rounds (never after its last round), and removes it once its results are written. A later run of
the same run in the same folder reads it and starts after the checkpoint's round instead of at
round 0. The market is deterministic given its state, so the resumed run writes the bytes an
uninterrupted run writes (the timing fields of ``summary.json`` aside); ``tests/test_resume.py``
checks that for the token auction, MOSAIC, the fine-tuned affine maximizer, the ad-slot array
round, the eva stream, learners of bids and report scales (grid, contextual, policy gradient)
and replicates (one case across two processes).

What "the same run" means is the checkpoint's ``identity``: the caller's dictionary of
everything its results depend on (for a market run: the run id, which hashes the resolved scenario
and names the torch thread count, the software versions, the model's weight hashes and the git
state of the code). A checkpoint of another identity is ignored, with one warning line, and
overwritten by the run's own.

The file holds two pickles: a header (format, identity, completed rounds, compute seconds) and the
state. Objects of the run that are not state (the loaded language model, shared by every
replicate) are written as a reference and restored from the caller's loaded object
(:meth:`pickle.Pickler.persistent_id`); an object of a ``refused_types`` type anywhere else in the
state (a second copy of a model's weights) stops the write with :class:`CheckpointError`, as does
anything pickle cannot write (a plugin's lambda), and the caller goes on without checkpoints.

A pickle runs whatever code it names when loaded: a run reads only the checkpoint in the folder it
writes its own results to. Do not resume in a folder somebody else wrote.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from market_sim.results.files import atomic_write, atomic_write_together

CHECKPOINT_FILE = "checkpoint.pickle"
CHECKPOINT_FORMAT = 1
"""Bumped when the header's layout changes (an older checkpoint is then ignored)."""
SHARED_REFERENCE = "shared"
"""The persistent id that stands for the caller's shared object (the loaded model)."""


class CheckpointError(Exception):
    """A checkpoint could not be written (an object of the state cannot or must not be pickled)."""


@dataclass(frozen=True)
class Checkpoint:
    """A run's state after ``completed_rounds`` rounds.

    Attributes:
        identity: What the run's results depend on (see the module docstring).
        completed_rounds: Rounds finished before the state was taken.
        wall_seconds: Seconds the run spent on those rounds (summed over its sessions).
        state: The caller's state (for a market run: the market and the global generators).
    """

    identity: Mapping[str, Any]
    completed_rounds: int
    wall_seconds: float
    state: Any


class _CheckpointPickler(pickle.Pickler):
    """Writes ``shared`` as a reference and refuses other objects of ``refused_types``."""

    def __init__(self, handle: BinaryIO, shared: object, refused_types: tuple[type, ...]) -> None:
        super().__init__(handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared
        self.refused_types = refused_types

    def persistent_id(self, obj: object) -> str | None:
        if obj is self.shared:
            return SHARED_REFERENCE
        if self.refused_types and isinstance(obj, self.refused_types):
            raise CheckpointError(
                f"the run's state holds a {type(obj).__name__} other than the loaded model "
                "(a checkpoint would copy its weights)"
            )
        return None


class _CheckpointUnpickler(pickle.Unpickler):
    """Restores the shared reference as the caller's loaded object."""

    def __init__(self, handle: BinaryIO, shared: object) -> None:
        super().__init__(handle)
        self.shared = shared

    def persistent_load(self, pid: Any) -> object:
        if pid != SHARED_REFERENCE:
            raise pickle.UnpicklingError(f"unknown reference {pid!r} in a checkpoint")
        return self.shared


def write_checkpoint(
    path: Path,
    checkpoint: Checkpoint,
    shared: object = None,
    refused_types: tuple[type, ...] = (),
) -> None:
    """Write ``checkpoint`` to ``path`` atomically (the previous one stays until the rename).

    Args:
        path: The checkpoint file.
        checkpoint: What to write.
        shared: An object the state refers to but does not own (written as a reference).
        refused_types: Types no other object of the state may have.

    Raises:
        CheckpointError: The state holds a refused object or one pickle cannot write (nothing
            is written then; an earlier checkpoint at ``path`` is kept).
    """
    atomic_write(path, checkpoint_writer(checkpoint, shared, refused_types))


def write_checkpoints_together(
    paths: Sequence[Path],
    checkpoints: Sequence[Checkpoint],
    shared: object = None,
    refused_types: tuple[type, ...] = (),
) -> None:
    """:func:`write_checkpoint` of replicates: every file written before any is renamed.

    A process killed while writing (SIGKILL, the OOM killer) leaves every earlier checkpoint in
    place, so the replicates' checkpoints stay of one round and the run resumes from it
    (:func:`~market_sim.results.files.atomic_write_together`).

    Raises:
        CheckpointError: As :func:`write_checkpoint`; no file is replaced then.
    """
    writers = [checkpoint_writer(item, shared, refused_types) for item in checkpoints]
    atomic_write_together(paths, writers)


def checkpoint_writer(
    checkpoint: Checkpoint, shared: object, refused_types: tuple[type, ...]
) -> Callable[[Path], None]:
    """``write(tmp)``: the header, then the state, pickled into ``tmp``.

    The returned function raises :class:`CheckpointError` when the state holds a refused object
    or pickle cannot write it.
    """
    header = {
        "format": CHECKPOINT_FORMAT,
        "identity": dict(checkpoint.identity),
        "completed_rounds": checkpoint.completed_rounds,
        "wall_seconds": checkpoint.wall_seconds,
    }

    def dump(temporary: Path) -> None:
        try:
            with temporary.open("wb") as handle:
                pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
                _CheckpointPickler(handle, shared, refused_types).dump(checkpoint.state)
        except CheckpointError:
            raise
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            raise CheckpointError(f"pickle cannot write the run's state ({error})") from None

    return dump


def read_checkpoint(
    path: Path, identity: Mapping[str, Any], shared: object = None
) -> tuple[Checkpoint | None, str | None]:
    """The checkpoint at ``path`` if it is one of the run ``identity`` describes.

    Args:
        path: The checkpoint file (need not exist).
        identity: The run's identity; a checkpoint of another one is not loaded.
        shared: The object to restore the state's shared reference as.

    Returns:
        ``(checkpoint, None)``; ``(None, None)`` when there is no file; ``(None, why)`` when
        the file is of another run or cannot be read (``why``: one line for a warning).
    """
    if not path.is_file():
        return None, None
    try:
        with path.open("rb") as handle:
            header = pickle.load(handle)
            if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
                return None, "it is of another checkpoint format"
            differing = sorted(
                key
                for key in set(identity) | set(header["identity"])
                if header["identity"].get(key) != identity.get(key)
            )
            if differing:
                return None, f"it is of another run ({', '.join(differing)} differ)"
            state = _CheckpointUnpickler(handle, shared).load()
    except Exception as error:  # noqa: BLE001 - any unreadable file means: start over
        return None, f"it cannot be read ({type(error).__name__}: {error})"
    rounds, seconds = header["completed_rounds"], header["wall_seconds"]
    return Checkpoint(header["identity"], rounds, seconds, state), None

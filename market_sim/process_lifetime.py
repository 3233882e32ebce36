"""Process lifetime: interrupts end a command cleanly, pool workers never outlive their parent.

Interrupts. The CLI treats SIGTERM (what a job scheduler sends) like Ctrl-C's SIGINT, as a
``KeyboardInterrupt`` (:func:`terminate_as_interrupt`), and reports either in one line with exit
status :data:`INTERRUPTED_EXIT_STATUS`. A terminal's Ctrl-C sends SIGINT to every process of the
foreground group, and schedulers may signal all of a job's processes; pool workers therefore
start with SIGINT and SIGTERM blocked (:func:`interrupts_blocked` around their start: a blocked
signal mask is inherited across fork and exec; :func:`block_interrupts` in the worker), so only
the parent reacts: it cancels what is queued, ends the workers and writes what is complete. A
worker interrupted in the middle of a run would only print a traceback.

Orphans. If the parent dies without shutting its pool down (``kill -9``, the out-of-memory
killer), its workers would be reparented to PID 1 and go on running queued runs into the sweep
folder. :func:`die_with_parent` ends them by two guards:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment its
  parent ends (precisely: the parent *thread* that started it; the pool starts its workers from
  the thread that submits, which lives as long as the pool);
* everywhere, a daemon thread that polls ``os.getppid()`` every :data:`WATCHDOG_INTERVAL_SECONDS`
  and exits the worker once the parent PID has changed.

multiprocessing's resource tracker (a helper process the parent starts for its semaphores) reads a
pipe whose write ends the parent and the workers hold; it exits by itself once they are all gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal the kernel sends this process when its parent ends (Linux)."""
WATCHDOG_INTERVAL_SECONDS = 0.5
ORPHANED_EXIT_STATUS = 1
INTERRUPT_SIGNALS: frozenset[signal.Signals] = frozenset({signal.SIGINT, signal.SIGTERM})
"""Signals the parent handles for its workers."""
INTERRUPTED_EXIT_STATUS = 128 + signal.SIGINT
"""Exit status of an interrupted command (130: the shell's status for a SIGINT death)."""


def raise_keyboard_interrupt(signum: int, frame: object) -> None:
    """Signal handler: raise ``KeyboardInterrupt`` in the main thread, as SIGINT's does."""
    raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` for the block (only from the main thread).

    Elsewhere (signal handlers can only be set from the main thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, then act on the first that came.

    Python runs its signal handlers in the main thread whichever thread the kernel delivered
    the signal to, so a signal mask set in the main thread (:func:`interrupts_blocked`) does
    not hold a signal back while other threads (torch's) leave it unblocked; this replaces
    the handlers for the block instead, and raises the first signal received again at its
    end, to the handlers the block found. Only from the main thread (where handlers can be
    set); elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if received:
            signal.raise_signal(received[0])


def request_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``signum`` to this process when its parent ends.

    Returns:
        Whether the request took effect (False on other systems or without ``prctl``).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent_pid: int, interval: float = WATCHDOG_INTERVAL_SECONDS) -> None:
    """Exit this process at once (no cleanup) when its parent is no longer ``parent_pid``."""
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(ORPHANED_EXIT_STATUS)


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when its parent ``parent_pid`` ends (see the module docstring).

    Call it first thing in a worker (a pool initializer). If the parent has already gone, the
    process exits here.

    Args:
        parent_pid: The PID of the process that started this one.
    """
    request_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(ORPHANED_EXIT_STATUS)
    threading.Thread(
        target=watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True
    ).start()


def block_interrupts() -> None:
    """Block SIGINT and SIGTERM in the calling thread (in a worker: leave them to the parent)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)


@contextmanager
def interrupts_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread for the duration of the block.

    Processes and threads started inside inherit the blocked signals; a signal that arrives
    meanwhile is delivered when the block ends.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class SweepWorkerDiedError(RuntimeError):
    """A worker process of the local pool died mid-run.

    Killed by a signal: the out-of-memory killer, or a user. Its message (one line) says how
    many runs are complete and how to resume.
    """

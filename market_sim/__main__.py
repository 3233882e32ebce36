"""``python -m market_sim`` and the ``market-sim`` console script: the command line.

Interrupts are handled from this module's first lines. Until :func:`market_sim.cli.main` takes
over (one line, exit status 130), Ctrl-C or SIGTERM while the command's modules are imported
print the same line and exit with 130 at once, instead of a ``KeyboardInterrupt`` traceback
(SIGINT) or a silent exit 143 (SIGTERM). Only the interpreter's own start-up, before any code
of this project runs, is left uncovered.

Importing this module installs those handlers for the whole process: it is the program's entry,
not a library module (a notebook should import :mod:`market_sim.cli` instead).
"""

import os
import signal
import sys

INTERRUPTED_WHILE_STARTING = 130
"""Exit status of an interrupt during start-up: 128 + SIGINT, as
:data:`market_sim.process_lifetime.INTERRUPTED_EXIT_STATUS` (not imported: it costs time)."""


def interrupted_while_starting(signum: int, frame: object) -> None:
    """Say so in one line and exit at once (nothing has been written yet)."""
    sys.stderr.write("market-sim: interrupted\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED_WHILE_STARTING)


def spawned_worker() -> bool:
    """Whether this process is a sweep worker that multiprocessing's spawn is starting.

    Spawn re-imports the parent's main module (the console script, hence this module) in each
    worker, under the name ``__mp_main__`` (with the parent's ``sys.argv``); a worker leaves
    interrupts to its sweep (it blocks them once started), so it must not print a line of its
    own. The parent itself never has a module of that name.
    """
    return "__mp_main__" in sys.modules


if not spawned_worker():
    signal.signal(signal.SIGINT, interrupted_while_starting)
    signal.signal(signal.SIGTERM, interrupted_while_starting)


def main() -> None:
    """Import the command line, hand interrupts back to it, and run it."""
    from market_sim.cli import console_main

    signal.signal(signal.SIGINT, signal.default_int_handler)  # main() turns it into one line
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # main() handles it; console_main then ignores
    console_main()


if __name__ == "__main__":
    main()

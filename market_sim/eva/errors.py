"""The one error eva and audit raise for a setting they cannot work with."""

from __future__ import annotations


class EvaSettingError(ValueError):
    """A scenario key or option of ``eva`` / ``audit`` that the experiment cannot work with.

    The message starts with the key or flag (``queries.heldout: ...``, ``--generations: ...``)
    and says what would work. The CLI prints it on one line and exits 2; any other
    ``ValueError`` from an experiment is a fault in the code, not in the input, and keeps its
    traceback.
    """

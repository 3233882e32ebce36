"""An argparse parser whose errors are one line and whose single-valued options are given once."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from market_sim.cli.options import UsageError


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit 2), not a usage block.

    A single-valued option given twice (``--rounds 5 ... --rounds 50``) is refused instead of
    the last one winning silently: :func:`given_once` versions replace argparse's ``store``
    actions. Repeatable options (``--set``, ``--grid``: ``append``) stay repeatable.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, base in ONCE_ACTIONS.items():
            self.register("action", name, given_once(base))
        self.options_given: set[argparse.Action] = set()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse as argparse does, with this parser's record of the options given emptied."""
        self.options_given = set()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """Raise the error as a :class:`UsageError` (``main`` prints it in one line)."""
        raise UsageError(message)


ONCE_ACTIONS: dict[str | None, type[argparse.Action]] = {
    None: argparse._StoreAction,  # add_argument without action=
    "store": argparse._StoreAction,
    "store_const": argparse._StoreConstAction,
    "store_true": argparse._StoreTrueAction,
    "store_false": argparse._StoreFalseAction,
}
"""argparse's single-valued actions, by their ``action=`` name."""


def given_once(base: type[argparse.Action]) -> type[argparse.Action]:
    """``base`` refusing a second occurrence of its option in one command line."""

    class GivenOnce(base):  # type: ignore[misc, valid-type]
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            if option_string is not None and isinstance(parser, OneLineParser):
                if self in parser.options_given:
                    parser.error(f"{self.option_strings[-1]}: given twice; give it once")
                parser.options_given.add(self)
            super().__call__(parser, namespace, values, option_string)

    GivenOnce.__name__ = f"GivenOnce{base.__name__}"
    return GivenOnce

"""Command-line overrides of scenario keys: ``--set dotted.key=value``.

The value is parsed as a TOML value (``50`` -> int, ``["a", "b"]`` -> list, ``"x"`` -> str) and
falls back to the raw string when it is not valid TOML, so ``mechanism.payment=first_price`` works
unquoted. Path segments that are integers index into lists, in either spelling:
``advertisers.0.strategy.kind`` or ``advertisers[0].strategy.kind`` (the one error messages print).
Missing tables are created; the result is validated afterwards like any scenario.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from market_sim.config.fields import ScenarioError, show, significant_digits

OVERRIDE_KEY = "--set"
OVERRIDE_FORMAT = "expected dotted.key=value, e.g. rounds=50 or advertisers[0].strategy.kind=fixed"
INDEX_SPELLING = re.compile(r"\[\s*(\d+)\s*\]")
"""``[i]`` after a key: the bracket spelling of the list index segment ``.i``."""


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with each ``dotted.key=value`` override applied in order.

    Args:
        data: Parsed scenario TOML (not modified).
        overrides: Strings of the form ``dotted.key=value``.

    Returns:
        The updated copy.

    Raises:
        ScenarioError: On a malformed override (key ``--set``), a list index out of range, or a
            path that runs through a value that is not a table or list.
    """
    result = copy.deepcopy(data)
    for override in overrides:
        path, value = parse_override(override)
        set_path(result, path, value)
    return result


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split ``dotted.key=value`` into path segments and a parsed value."""
    if not isinstance(override, str) or "=" not in override:
        raise ScenarioError(OVERRIDE_KEY, f"{OVERRIDE_FORMAT}; got {show(override)}")
    dotted, raw_value = override.split("=", 1)
    segments = split_key(dotted)
    if not all(segments):
        raise ScenarioError(OVERRIDE_KEY, f"{OVERRIDE_FORMAT}; got {show(override)}")
    try:
        return segments, parse_value(raw_value.strip())
    except ValueError as error:
        raise ScenarioError(display_key(segments), str(error)) from None


def split_key(dotted: str) -> list[str]:
    """Path segments of a dotted key; ``a[0].b`` and ``a.0.b`` both give ``["a", "0", "b"]``."""
    return [segment.strip() for segment in INDEX_SPELLING.sub(r".\1", dotted.strip()).split(".")]


def display_key(segments: Sequence[str]) -> str:
    """The key as error messages print it: index segments in brackets (``advertisers[0].name``)."""
    text = ""
    for segment in segments:
        if segment.isdigit() and text:
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text


TOML_OPENERS = ('"', "'", "[", "{")
"""First characters of a value that is meant as TOML (a string, an array, an inline table)."""


def parse_value(raw_value: str) -> Any:
    """Parse ``raw_value`` as a TOML value, or return it unchanged if it is not one.

    A bare word (``hawaii``, ``first_price``) is taken as the string it spells. A value that
    opens like TOML (a quote, ``[`` or ``{``) must parse as TOML: ``"unterminated`` kept its
    quote as a string before.

    Raises:
        ValueError: The value opens like TOML but does not parse (the message says why).
    """
    try:
        parsed = tomllib.loads("v = " + raw_value)
    except (tomllib.TOMLDecodeError, ValueError) as error:  # ValueError: an int too long
        if raw_value.startswith(TOML_OPENERS):
            reason = re.sub(r" \(at .*\)$", "", str(error))  # positions count the "v = " too
            raise ValueError(f"{raw_value!r} is not a TOML value ({reason})") from None
        return raw_value
    if set(parsed) != {"v"}:
        return raw_value
    return parsed["v"]


def set_path(data: dict[str, Any], segments: list[str], value: Any) -> None:
    """Set ``value`` at the path ``segments`` inside ``data``, creating missing tables."""
    container: Any = data
    for depth in range(len(segments) - 1):
        container = step_into(container, segments, depth)
    assign(container, segments, value)


def step_into(container: Any, segments: list[str], depth: int) -> Any:
    """Return the child of ``container`` named by ``segments[depth]``, creating a missing table.

    A missing child followed by an index segment is an error (there is no list to index into).
    """
    segment = segments[depth]
    if isinstance(container, list):
        return container[list_index(container, segments, depth)]
    if segment not in container:
        if segments[depth + 1].isdigit():
            raise ScenarioError(
                display_key(segments),
                f"index {segments[depth + 1]} out of range: {dotted(segments, depth)} is missing",
            )
        container[segment] = {}
    child = container[segment]
    if not isinstance(child, dict | list):
        raise not_a_table(segments, depth + 1)
    return child


def assign(container: Any, segments: list[str], value: Any) -> None:
    """Set the last segment of ``segments`` inside ``container``."""
    depth = len(segments) - 1
    if isinstance(container, list):
        container[list_index(container, segments, depth)] = value
    elif isinstance(container, dict):
        container[segments[depth]] = value
    else:
        raise not_a_table(segments, depth)


def list_index(items: list[Any], segments: list[str], depth: int) -> int:
    """Interpret ``segments[depth]`` as an index into ``items``; raise if it is not valid."""
    segment = segments[depth]
    full_key = display_key(segments)
    parent = dotted(segments, depth - 1)
    digits = significant_digits(segment)
    if digits is None:
        raise ScenarioError(full_key, f"{parent} is a list; expected an index, got {show(segment)}")
    index = int(digits) if len(digits) <= 9 else None  # a longer one is out of range anyway
    if index is None or index >= len(items):
        allowed = f"0..{len(items) - 1}" if items else "none, the list is empty"
        shown = segment if index is not None else f"of {len(digits)} digits"
        raise ScenarioError(
            full_key, f"index {shown} out of range for {parent} (allowed: {allowed})"
        )
    return index


def not_a_table(segments: list[str], depth: int) -> ScenarioError:
    """Error for a path that runs through a plain value at ``segments[depth - 1]``."""
    return ScenarioError(
        display_key(segments),
        f"cannot set a key inside {dotted(segments, depth - 1)}: it is not a table or list",
    )


def dotted(segments: list[str], depth: int) -> str:
    """The key of ``segments[: depth + 1]``, as error messages print it."""
    return display_key(segments[: depth + 1])

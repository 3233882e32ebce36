"""Generic, data-only validation of parsed TOML values.

Every check raises :class:`ScenarioError` with the dotted key of the offending value and a one-line
message that says what is allowed. Nothing here evaluates strings as code.

The building blocks are small *field specs* (:class:`IntRange`, :class:`FloatRange`,
:class:`Choice`, :class:`Text`, :class:`TextList`, :class:`FloatList`, :class:`ChoiceList`). Each
turns one raw value into a typed value or raises. :func:`validate_fields` applies a table of specs
to a TOML table, after rejecting unknown keys.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_SHOWN_VALUE_CHARS = 60

ParamValue = int | float | str


class ScenarioError(ValueError):
    """An invalid scenario: a dotted key and a one-line message that says what is allowed.

    Attributes:
        key: Dotted path of the offending value, e.g. ``advertisers[1].valuation.low``; a file path
            for file-level errors; ``--set`` for malformed overrides.
        message: What is wrong and what would be accepted.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = one_line(key)
        self.message = one_line(message)
        super().__init__(f"{self.key}: {self.message}")

    def __reduce__(self) -> tuple[type[ScenarioError], tuple[str, str]]:
        """Pickle as ``(key, message)``: a sweep worker's error reaches the parent intact."""
        return type(self), (self.key, self.message)


def significant_digits(text: str) -> str | None:
    """``text`` without its leading zeros (``"0"`` if all zeros), or None unless ASCII digits.

    ``'²'.isdigit()`` is true, and ``int()`` refuses more than 4,300 digits: a caller bounds the
    length of the result before calling ``int()`` on it.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    return text.lstrip("0") or "0"


def first_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception (``Type`` alone without a message)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def one_line(text: str) -> str:
    """Collapse all whitespace runs that contain a line break into single spaces."""
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def show(value: object) -> str:
    """Render a raw value for an error message: TOML-like, one line, shortened if long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = repr(value)
    if len(text) > MAX_SHOWN_VALUE_CHARS:
        text = text[: MAX_SHOWN_VALUE_CHARS - 3] + "..."
    return text


def child_key(parent: str, name: str) -> str:
    """Dotted key of field ``name`` inside table ``parent`` (``parent`` may be empty)."""
    return f"{parent}.{name}" if parent else name


def item_key(parent: str, index: int) -> str:
    """Key of list element ``index`` of ``parent``, e.g. ``advertisers[1]``."""
    return f"{parent}[{index}]"


def format_number(value: float) -> str:
    """Format a bound for a message: ``1`` rather than ``1.0`` for whole numbers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- raw type checks


def require_table(value: object, key: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a TOML table, else raise."""
    if not isinstance(value, Mapping):
        raise ScenarioError(key, f"expected a table, got {show(value)}")
    return value


def require_list(value: object, key: str, what: str) -> Sequence[Any]:
    """Return ``value`` if it is a TOML array, else raise (``what`` names the elements)."""
    if not isinstance(value, list | tuple):
        raise ScenarioError(key, f"expected a list of {what}, got {show(value)}")
    return value


def require_float(value: object, key: str) -> float:
    """Return ``value`` as a finite float if it is a TOML integer or float, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(key, f"expected a number, got {show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf if value > 0 else -math.inf
    if not math.isfinite(number):
        raise ScenarioError(key, f"must be a finite number, got {show(number)}")
    return number


def require_str(value: object, key: str) -> str:
    """Return ``value`` if it is a TOML string, else raise."""
    if not isinstance(value, str):
        raise ScenarioError(key, f"expected a string, got {show(value)}")
    return value


def require_bool(value: object, key: str) -> bool:
    """Return ``value`` if it is a TOML boolean, else raise."""
    if not isinstance(value, bool):
        raise ScenarioError(key, f"expected true or false, got {show(value)}")
    return value


def check_known_keys(table: Mapping[str, Any], allowed: Sequence[str], key: str) -> None:
    """Raise on the first key of ``table`` (in sorted order) that is not in ``allowed``."""
    unknown = sorted(str(name) for name in table if name not in allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) or "(none)"
        raise ScenarioError(
            child_key(key, unknown[0]),
            f"unknown key{did_you_mean(unknown[0], allowed)}; allowed keys: {allowed_text}",
        )


def did_you_mean(name: str, allowed: Sequence[str]) -> str:
    """``" (did you mean `payment`?)"`` for the closest allowed name, or ``""`` if none is close.

    Closeness is :func:`difflib.get_close_matches` with ratio >= 0.75, which catches swapped,
    missing and extra letters in names of a few characters or more.
    """
    matches = difflib.get_close_matches(name, [str(option) for option in allowed], n=1, cutoff=0.75)
    return f" (did you mean `{matches[0]}`?)" if matches else ""


def check_choice(value: str, allowed: Sequence[str], key: str) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise listing them."""
    if value not in allowed:
        raise ScenarioError(
            key,
            f"unknown value {show(value)}{did_you_mean(value, allowed)}; "
            f"allowed: {', '.join(allowed)}",
        )
    return value


# --------------------------------------------------------------------------- field specs


class Required:
    """Marker default: the key must be present."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = Required()


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[min, max]`` (either bound optional)."""

    min: int | None = None
    max: int | None = None
    default: Any = REQUIRED

    def parse(self, value: object, key: str) -> int:
        """Check type and range of ``value``; return it (a wrong type names the range too)."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(key, f"expected {self.allowed()}, got {show(value)}")
        check_bounds(value, self.min, self.max, key)
        return value

    def allowed(self) -> str:
        """``an integer between 1 and 4096`` (or ``>= 1``, ``<= 9``, or no bound)."""
        bounds = bounds_text(self.min, self.max)
        return f"an integer {bounds}" if bounds else "an integer"


@dataclass(frozen=True)
class FloatRange:
    """A finite float in a range; integers are accepted and converted.

    ``exclusive_min`` makes the lower bound strict (``> min`` instead of ``>= min``),
    ``exclusive_max`` the upper one (``< max``).
    """

    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    default: Any = REQUIRED
    exclusive_max: bool = False

    def parse(self, value: object, key: str) -> float:
        """Check type and range of ``value``; return it as a float."""
        number = require_float(value, key)
        if not (self.exclusive_min or self.exclusive_max):
            check_bounds(number, self.min, self.max, key)
            return number
        low_ok = self.min is None or (
            number > self.min if self.exclusive_min else number >= self.min
        )
        high_ok = self.max is None or (
            number < self.max if self.exclusive_max else number <= self.max
        )
        if not (low_ok and high_ok):
            rules = []
            if self.min is not None:
                rules.append(f"{'>' if self.exclusive_min else '>='} {format_number(self.min)}")
            if self.max is not None:
                rules.append(f"{'<' if self.exclusive_max else '<='} {format_number(self.max)}")
            raise ScenarioError(key, f"must be {' and '.join(rules)}, got {number!r}")
        return number


def check_bounds(number: float, low: float | None, high: float | None, key: str) -> None:
    """Raise unless ``low <= number <= high`` (``None`` bounds are open)."""
    low_ok = low is None or number >= low
    high_ok = high is None or number <= high
    if low_ok and high_ok:
        return
    raise ScenarioError(key, f"must be {bounds_text(low, high)}, got {number!r}")


def bounds_text(low: float | None, high: float | None) -> str:
    """``between 1 and 9``, ``>= 1``, ``<= 9`` or ``""`` (no bound)."""
    if low is not None and high is not None:
        return f"between {format_number(low)} and {format_number(high)}"
    if low is not None:
        return f">= {format_number(low)}"
    if high is not None:
        return f"<= {format_number(high)}"
    return ""


@dataclass(frozen=True)
class Choice:
    """A string from a fixed set."""

    values: tuple[str, ...]
    default: Any = REQUIRED

    def parse(self, value: object, key: str) -> str:
        """Check that ``value`` is one of ``values``; return it."""
        if not isinstance(value, str):
            allowed = ", ".join(self.values)
            raise ScenarioError(key, f"expected a string, got {show(value)}; allowed: {allowed}")
        return check_choice(value, self.values, key)


@dataclass(frozen=True)
class Text:
    """A string; ``non_empty`` rejects strings that are empty or only whitespace."""

    non_empty: bool = False
    default: Any = REQUIRED

    def parse(self, value: object, key: str) -> str:
        """Check that ``value`` is a (non-empty) string; return it."""
        text = require_str(value, key)
        if self.non_empty and not text.strip():
            raise ScenarioError(key, "must be a non-empty string")
        return text


SLUG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A safe folder name: letters, digits, ``.``, ``_``, ``-``; starts with a letter or digit."""


@dataclass(frozen=True)
class Slug:
    """A string that is safe as one folder name (no separators, ``..``, control characters).

    Used for names joined into output paths (``results/<name>-seed<seed>``).
    """

    default: Any = REQUIRED

    def parse(self, value: object, key: str) -> str:
        """Check that ``value`` is a safe slug; return it."""
        text = require_str(value, key)
        if not SLUG_PATTERN.fullmatch(text) or ".." in text:
            raise ScenarioError(
                key,
                "must be a safe folder name (1-128 letters, digits, '.', '_' or '-', starting "
                f"with a letter or digit, no '..'; it names the output folder), got {show(text)}",
            )
        return text


@dataclass(frozen=True)
class Flag:
    """A boolean."""

    default: Any = REQUIRED

    def parse(self, value: object, key: str) -> bool:
        """Check that ``value`` is a boolean; return it."""
        return require_bool(value, key)


@dataclass(frozen=True)
class TextList:
    """A list of non-empty strings, returned as a tuple."""

    min_items: int = 0
    default: Any = REQUIRED

    def parse(self, value: object, key: str) -> tuple[str, ...]:
        """Check every element; return them as a tuple."""
        items = require_list(value, key, "strings")
        check_min_items(items, self.min_items, key)
        element = Text(non_empty=True)
        return tuple(element.parse(item, item_key(key, i)) for i, item in enumerate(items))


@dataclass(frozen=True)
class FloatList:
    """A list of floats, each checked against ``element``; returned as a tuple.

    ``distinct`` refuses a value given twice (a sweep axis, where a repeat would run twice).
    """

    element: FloatRange
    min_items: int = 0
    default: Any = REQUIRED
    distinct: bool = False

    def parse(self, value: object, key: str) -> tuple[float, ...]:
        """Check every element (and, if ``distinct``, that none repeats); return a tuple."""
        items = require_list(value, key, "numbers")
        check_min_items(items, self.min_items, key)
        parsed = tuple(self.element.parse(item, item_key(key, i)) for i, item in enumerate(items))
        if self.distinct:
            check_distinct(parsed, key)
        return parsed


@dataclass(frozen=True)
class IntList:
    """A list of integers, each checked against ``element``; returned as a tuple.

    ``distinct`` refuses a value given twice (a sweep axis, where a repeat would run twice).
    """

    element: IntRange
    min_items: int = 0
    default: Any = REQUIRED
    distinct: bool = False

    def parse(self, value: object, key: str) -> tuple[int, ...]:
        """Check every element (and, if ``distinct``, that none repeats); return a tuple."""
        items = require_list(value, key, "integers")
        check_min_items(items, self.min_items, key)
        parsed = tuple(self.element.parse(item, item_key(key, i)) for i, item in enumerate(items))
        if self.distinct:
            check_distinct(parsed, key)
        return parsed


@dataclass(frozen=True)
class ChoiceList:
    """A list of distinct strings from a fixed set; returned as a tuple."""

    values: tuple[str, ...]
    min_items: int = 0
    default: Any = REQUIRED

    def parse(self, value: object, key: str) -> tuple[str, ...]:
        """Check every element and that none repeats; return them as a tuple."""
        items = require_list(value, key, "strings")
        check_min_items(items, self.min_items, key)
        element = Choice(self.values)
        chosen = tuple(element.parse(item, item_key(key, i)) for i, item in enumerate(items))
        check_distinct(chosen, key)
        return chosen


def check_distinct(items: Sequence[Any], key: str) -> None:
    """Raise naming ``key[i]`` for the first element equal to an earlier one."""
    for i, item in enumerate(items):
        if item in items[:i]:
            raise ScenarioError(item_key(key, i), f"duplicate value {show(item)}")


def check_min_items(items: Sequence[Any], min_items: int, key: str) -> None:
    """Raise if ``items`` has fewer than ``min_items`` elements."""
    if len(items) < min_items:
        plural = "" if min_items == 1 else "s"
        raise ScenarioError(key, f"needs at least {min_items} element{plural}, got {len(items)}")


FieldSpec = (
    IntRange
    | FloatRange
    | Choice
    | Text
    | Slug
    | Flag
    | TextList
    | FloatList
    | IntList
    | ChoiceList
)


def validate_fields(
    table: Mapping[str, Any], specs: Mapping[str, FieldSpec], key: str
) -> dict[str, Any]:
    """Validate a TOML table against field specs.

    Unknown keys are rejected first; then each spec is applied in its declaration order.
    Missing optional fields take the spec's default; missing required fields raise.

    Args:
        table: The raw TOML table.
        specs: Field name -> spec, in the order to check.
        key: Dotted key of ``table`` (empty for the top level).

    Returns:
        Field name -> validated value, for every field in ``specs``.

    Raises:
        ScenarioError: On the first invalid, unknown or missing key.
    """
    check_known_keys(table, tuple(specs), key)
    return {name: parse_field(table, name, spec, key) for name, spec in specs.items()}


def parse_field(table: Mapping[str, Any], name: str, spec: FieldSpec, key: str) -> Any:
    """Validate one field of ``table`` or return its default."""
    field_key = child_key(key, name)
    if name in table:
        return spec.parse(table[name], field_key)
    if spec.default is REQUIRED:
        raise ScenarioError(field_key, f"required key is missing ({describe(spec)})")
    return spec.default


def describe(spec: FieldSpec) -> str:
    """Say in a few words what a spec accepts, for "missing key" messages."""
    if isinstance(spec, Choice):
        return "one of: " + ", ".join(spec.values)
    if isinstance(spec, IntRange):
        return "an integer"
    if isinstance(spec, FloatRange):
        return "a number"
    if isinstance(spec, Flag):
        return "true or false"
    if isinstance(spec, Text | Slug):
        return "a string"
    return "a list"


# --------------------------------------------------------------------------- frozen mapping


class FrozenParams(Mapping[str, ParamValue]):
    """A small immutable, hashable, picklable mapping (used for strategy parameters)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, ParamValue] | None = None) -> None:
        object.__setattr__(self, "_items", dict(items or {}))

    def __getitem__(self, name: str) -> ParamValue:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FrozenParams is immutable")

    def __getstate__(self) -> dict[str, ParamValue]:
        return self._items

    def __setstate__(self, state: dict[str, ParamValue]) -> None:
        object.__setattr__(self, "_items", dict(state))

    def __repr__(self) -> str:
        return f"FrozenParams({self._items!r})"

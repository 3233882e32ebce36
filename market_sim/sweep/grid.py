"""The grid and the seeds of a sweep, as given on the command line.

``--grid KEY=V1,V2,...`` values are TOML-typed and split on commas outside brackets, braces and
quotes (:func:`parse_grid`); ``--seeds`` is ``N``, ``A-B`` or a comma list of them
(:func:`parse_seeds`). The grid's points are the product of its values, the first key varying
slowest (:func:`grid_points`).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import tomli_w

from market_sim.config.bounds import SEED_MAX
from market_sim.config.fields import significant_digits
from market_sim.scenario.overrides import parse_value, split_key
from market_sim.sweep.backends import (
    SweepError,
)

GRID_FORMAT = "expected dotted.key=v1,v2,... e.g. mechanism.payment=first_price,second_price"


SEEDS_FORMAT = "expected N, A-B or a comma list such as 0-9 or 0,3,5 (integers >= 0)"


MAX_SEEDS = 100_000
"""Most seeds one ``--seeds`` may name (runs of a sweep, replicates, eva seeds)."""


RESERVED_GRID_KEYS: tuple[str, ...] = ("seed", "run_dir")


Grid = dict[str, tuple[Any, ...]]


def split_top_level(raw: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes (so ``[1,2],[3]`` is two values)."""
    parts, depth, quote, current = [], 0, "", []
    for char in raw:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_grid(specs: Sequence[str]) -> Grid:
    """Parse ``--grid dotted.key=v1,v2,...`` flags (values TOML-typed, like ``--set``).

    Args:
        specs: One string per ``--grid`` flag.

    Returns:
        Dotted key -> its values, in flag order.

    Raises:
        SweepError: A malformed flag, an empty value, a key given twice, a repeated value, or a
            reserved key (``seed``: use ``--seeds``).
    """
    grid: Grid = {}
    for spec in specs:
        key, separator, raw_values = spec.partition("=")
        key = key.strip()
        if not separator or not key or any(not part.strip() for part in key.split(".")):
            raise SweepError(f"--grid: {GRID_FORMAT}; got {spec!r}")
        if key in RESERVED_GRID_KEYS:
            raise SweepError(f"--grid: {key!r} cannot be a grid key; use --seeds for seeds")
        same = [earlier for earlier in grid if split_key(earlier) == split_key(key)]
        if same:
            twice = key if same[0] == key else f"{same[0]} (as {key})"
            raise SweepError(f"--grid: {twice} is given twice; put all its values in one flag")
        raw = split_top_level(raw_values)
        if any(not value for value in raw):
            raise SweepError(f"--grid: {key}: empty value in {raw_values!r}; {GRID_FORMAT}")
        try:
            values = tuple(parse_value(value) for value in raw)
        except ValueError as error:
            raise SweepError(f"--grid: {key}: {error}") from None
        if any(same_value(values[i], values[j]) for i in range(len(values)) for j in range(i)):
            raise SweepError(f"--grid: {key}: repeated value in {raw_values!r}")
        grid[key] = values
    return grid


def same_value(first: Any, second: Any) -> bool:
    """Whether two grid values are one value: equal as written, or equal numbers.

    ``0``, ``0.0`` and ``-0.0`` resolve to one scenario (its runs were silently merged) or to
    two runs of one experiment (``-0.0``); a boolean is never a number here.
    """
    if format_value(first) == format_value(second):
        return True
    numbers = [
        isinstance(value, int | float) and not isinstance(value, bool) for value in (first, second)
    ]
    return all(numbers) and first == second


def parse_seeds(text: str | Sequence[int]) -> tuple[int, ...]:
    """Parse ``--seeds``: ``7``, ``0-9`` (inclusive), ``0,3,5`` or a mix such as ``0-3,8``.

    Args:
        text: The flag's value, or already a sequence of seeds.

    Returns:
        The seeds in the given order.

    Raises:
        SweepError: Anything else: negative numbers, reversed ranges, empty parts, a seed above
            ``SEED_MAX``, a seed given twice, or more than ``MAX_SEEDS`` seeds (counted before
            any range is expanded).
    """
    if not isinstance(text, str):
        items = [str(seed) for seed in text]
    else:
        items = [part.strip() for part in text.split(",")]
    ranges: list[tuple[int, int]] = []
    for item in items:
        match = re.fullmatch(r"([0-9]+)(?:\s*-\s*([0-9]+))?", item)
        if match is None:
            raise SweepError(f"--seeds: {SEEDS_FORMAT}; got {text!r}")
        digits = [significant_digits(group) for group in match.groups() if group is not None]
        longest = max(len(group) for group in digits)
        if longest > len(str(SEED_MAX)):  # int() would refuse 4,300+ digits
            raise SweepError(
                f"--seeds: a {longest}-digit seed is above the largest seed, {SEED_MAX}"
            )
        first, last = int(digits[0]), int(digits[-1])
        if last < first:
            raise SweepError(f"--seeds: range {item!r} runs backwards; {SEEDS_FORMAT}")
        if last > SEED_MAX:
            raise SweepError(f"--seeds: {last} is above the largest seed, {SEED_MAX}")
        ranges.append((first, last))
    count = sum(last - first + 1 for first, last in ranges)
    if count > MAX_SEEDS:
        raise SweepError(f"--seeds: {count:,} seeds; at most {MAX_SEEDS:,}")
    seeds = [seed for first, last in ranges for seed in range(first, last + 1)]
    if not seeds:
        raise SweepError(f"--seeds: {SEEDS_FORMAT}; got {text!r}")
    repeated = next((seed for seed, n in Counter(seeds).items() if n > 1), None)
    if repeated is not None:
        raise SweepError(f"--seeds: seed {repeated} is given twice in {text!r}; give each once")
    return tuple(seeds)


def format_value(value: Any) -> str:
    """A grid value as TOML text (what ``--set key=<text>`` parses back to ``value``)."""
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


def grid_points(grid: Grid) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the grid's values (first key slowest); one empty point if no grid."""
    keys = list(grid)
    return [tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]

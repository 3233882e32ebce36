"""Reading a scenario's TOML file: UTF-8, a leading byte-order mark skipped, errors by path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from market_sim.config.fields import (
    ScenarioError,
)

UTF8_BOM = "\ufeff"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a UTF-8 TOML file; every failure becomes a ScenarioError keyed by the file path.

    A UTF-8 byte-order mark at the start (written by some Windows editors) is skipped.
    """
    key = str(path)
    if path.is_dir():
        raise ScenarioError(key, "is a folder; expected a scenario TOML file")
    if path.is_char_device() or path.is_block_device():  # /dev/zero: read without end
        raise ScenarioError(key, "is a device, not a file; expected a scenario TOML file")
    try:
        text = path.read_bytes().decode("utf-8").removeprefix(UTF8_BOM)
    except FileNotFoundError as error:
        raise ScenarioError(key, "no such scenario file") from error
    except UnicodeDecodeError as error:
        message = f"not valid UTF-8 ({error.reason} at byte {error.start})"
        raise ScenarioError(key, message) from error
    except OSError as error:
        raise ScenarioError(key, f"cannot read the file: {error.strerror or error}") from error
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(key, f"invalid TOML: {error}") from error
    except ValueError as error:  # e.g. an integer with more digits than Python converts
        raise ScenarioError(key, f"invalid TOML: {error}") from error

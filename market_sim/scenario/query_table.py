"""The ``[queries]`` table: a fixed list, a query file (with its sha256), or an eva stream."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from market_sim.config.fields import (
    ScenarioError,
    item_key,
    parse_field,
    show,
    validate_fields,
)
from market_sim.provenance import SHA256_PATTERN
from market_sim.scenario.schema import (
    QueryConfig,
)
from market_sim.scenario.table_specs import QUERY_STREAM_SPEC, STATIC_QUERY_SPECS
from market_sim.scenario.toml_file import UTF8_BOM


def parse_queries(table: Mapping[str, Any], base_dir: Path) -> QueryConfig:
    """Validate ``[queries]`` and merge the queries of ``file`` after ``items``.

    ``file`` is resolved against ``base_dir`` (the scenario file's folder) and kept as written;
    its SHA-256 is recorded beside it, so the resolved scenario (and the run id hashed from it)
    depends on the file's contents, not on where the scenario lies. A resolved dump says
    ``file_merged = true``: its ``items`` are final and the file is not read again.
    """
    parse_field(table, "stream", QUERY_STREAM_SPEC, "queries")
    values = validate_fields(table, STATIC_QUERY_SPECS, "queries")
    items: tuple[str, ...] = values["items"]
    file_name: str | None = values["file"]
    digest: str | None = values["file_sha256"]
    if digest is not None and not SHA256_PATTERN.fullmatch(digest):
        raise ScenarioError(
            "queries.file_sha256", f"expected 64 lowercase hex digits, got {show(digest)}"
        )
    if file_name is not None and not values["file_merged"]:
        file_items, file_digest = read_query_file(base_dir / Path(file_name).expanduser())
        if digest is not None and digest != file_digest:
            raise ScenarioError(
                "queries.file_sha256",
                f"the file's SHA-256 is {file_digest}, not {digest}: the query file changed",
            )
        items, digest = items + file_items, file_digest
    if not items:
        raise ScenarioError(
            "queries.items",
            "at least one query is required (a non-empty list of strings, or queries.file)",
        )
    check_heldout(values, items)
    return QueryConfig(
        stream=values["stream"],
        items=items,
        file=file_name,
        file_sha256=digest if file_name is not None else None,
        order=values["order"],
        heldout=values["heldout"],
        heldout_fraction=values["heldout_fraction"],
    )


def check_heldout(values: Mapping[str, Any], items: Sequence[str]) -> None:
    """Held-out queries are distinct and outside the pool; a fractional split needs 2 queries."""
    heldout: tuple[str, ...] = values["heldout"]
    for index, query in enumerate(heldout):
        if query in heldout[:index]:
            raise ScenarioError(
                item_key("queries.heldout", index), f"duplicate held-out query {show(query)}"
            )
    for query in heldout:
        if query in items:
            raise ScenarioError(
                "queries.heldout",
                f"query {show(query)} is also in queries.items; held-out queries must not be in "
                "the training pool",
            )
    fraction: float = values["heldout_fraction"]
    if values["stream"] == "eva" and not heldout and fraction > 0.0 and len(items) < 2:
        raise ScenarioError(
            "queries.items",
            f"the eva stream holds out heldout_fraction = {fraction!r} of the pool "
            "(queries.heldout is empty), so it needs at least 2 queries, one on each side of the "
            f"split; got {len(items)} (add queries, list queries.heldout, or set "
            "heldout_fraction = 0)",
        )


def read_query_file(path: Path) -> tuple[tuple[str, ...], str]:
    """The non-empty, stripped lines of a UTF-8 query file, and the SHA-256 of its bytes.

    A UTF-8 byte-order mark at the start is skipped.
    """
    key = "queries.file"
    path = path.resolve()
    if path.is_char_device() or path.is_block_device():  # /dev/zero: read without end
        raise ScenarioError(key, f"'{path}' is a device, not a file; expected a text file")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8").removeprefix(UTF8_BOM)
    except FileNotFoundError as error:
        raise ScenarioError(key, f"no query file at '{path}'") from error
    except IsADirectoryError as error:
        raise ScenarioError(key, f"'{path}' is a folder; expected a text file") from error
    except UnicodeDecodeError as error:
        raise ScenarioError(key, f"'{path}' is not valid UTF-8 ({error.reason})") from error
    except OSError as error:
        raise ScenarioError(key, f"cannot read '{path}': {error.strerror or error}") from error
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    return lines, hashlib.sha256(data).hexdigest()

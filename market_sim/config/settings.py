"""A dataclass field declared once: its spec (type, bounds, allowed values, default) and its doc.

A configuration class lists its keys as ordinary dataclass fields whose default comes from
:func:`setting`::

    @dataclass(frozen=True)
    class MosaicConfig(MechanismConfig):
        tau: float = setting(temperature(1.0), "Temperature of the KL regularization.")

The spec validates the raw TOML value (:mod:`market_sim.config.fields`), the doc is the key's
one-line entry in the generated key reference, and ``when`` says under which values of other keys
of the same table the key is read (``{"policy_space": ("fine_tuned",)}``). Parsing, error
messages, the resolved dump and the key reference all read :func:`settings_of`, so a key is
declared in exactly one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from market_sim.config.bounds import (
    MAX_LEARNING_RATE,
    MAX_TEMPERATURE,
    MAX_VALUATION,
    MIN_TEMPERATURE,
)
from market_sim.config.fields import REQUIRED, FieldSpec, FloatRange

SPEC = "market_sim.spec"
DOC = "market_sim.doc"
WHEN = "market_sim.when"


@dataclass(frozen=True)
class Setting:
    """One declared key of a configuration class.

    Attributes:
        name: The key (the dataclass field's name).
        spec: How its raw value is validated, with its default.
        doc: One line saying what it is.
        when: Other keys of the table -> the values under which this key is read (empty:
            always read).
    """

    name: str
    spec: FieldSpec
    doc: str
    when: Mapping[str, tuple[str, ...]]

    def is_read(self, values: Mapping[str, Any]) -> bool:
        """Whether the key is read, given the (already parsed) values of the keys in ``when``."""
        return all(values.get(name) in allowed for name, allowed in self.when.items())


def setting(spec: FieldSpec, doc: str, when: Mapping[str, tuple[str, ...]] | None = None) -> Any:
    """A dataclass field whose default is ``spec.default``, carrying its spec and doc.

    Args:
        spec: The field spec (validation and default; a REQUIRED default makes the field
            required in files, and the dataclass field gets no default).
        doc: One-line documentation.
        when: Other keys -> values under which this key is read (None: always).

    Returns:
        A ``dataclasses.field`` (typed ``Any`` so it can stand as a default).
    """
    metadata = {SPEC: spec, DOC: doc, WHEN: dict(when or {})}
    if spec.default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    default = spec.default
    if isinstance(default, list):  # lists are given as tuples; never share a mutable default
        default = tuple(default)
    return dataclasses.field(default=default, metadata=metadata)


def settings_of(config_type: type) -> tuple[Setting, ...]:
    """The declared keys of a configuration dataclass, in declaration order.

    Fields declared without :func:`setting` (e.g. a plugin's ``kind``) are not keys.
    """
    declared = []
    for field_info in dataclasses.fields(config_type):
        if SPEC in field_info.metadata:
            metadata = field_info.metadata
            declared.append(Setting(field_info.name, metadata[SPEC], metadata[DOC], metadata[WHEN]))
    return tuple(declared)


def temperature(default: float) -> FloatRange:
    """A temperature-like divisor in ``[MIN_TEMPERATURE, MAX_TEMPERATURE]`` (see bounds)."""
    return FloatRange(min=MIN_TEMPERATURE, max=MAX_TEMPERATURE, default=default)


def amount(default: float | None, exclusive_min: bool = False) -> FloatRange:
    """A value-like amount in ``[0, MAX_VALUATION]`` (``> 0`` with ``exclusive_min``)."""
    return FloatRange(min=0.0, max=MAX_VALUATION, exclusive_min=exclusive_min, default=default)


def learning_rate(default: float) -> FloatRange:
    """An optimizer learning rate in ``(0, MAX_LEARNING_RATE]``."""
    return FloatRange(min=0.0, max=MAX_LEARNING_RATE, exclusive_min=True, default=default)

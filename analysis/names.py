"""Readable mechanism names, mechanism families, their order, and one fixed colour per mechanism.

A run's mechanism is its ``mechanism`` kind plus its variant values (``aggregation``,
``payment``, ``settlement``) and, for ad-slot auctions, the number of slots (the length of
``mechanism.click_through_rates`` in its resolved scenario). The readable name says what the
rule is: a second-price auction over two slots charges every winner the highest losing bid, so it
is named "uniform price, 2 slots".

Families, in figure order: LLM-native mechanisms (token auction, MOSAIC, affine maximizer), then
ad slots beside an unsponsored reply (first price, second/uniform price, GSP, VCG). Unknown kinds
come last, in sorted order, so a new kind needs no code here.

Colours are colour-blind safe (Okabe-Ito without its yellow, then Paul Tol's *muted* set) and
depend only on the readable name, never on which other mechanisms a figure shows: a mechanism has
the same colour in every figure and every sweep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

LLM_NATIVE = "LLM-native"
AD_SLOTS = "ad slots"
OTHER_FAMILY = "other"
FAMILY_ORDER: tuple[str, ...] = (LLM_NATIVE, AD_SLOTS, OTHER_FAMILY)
KIND_FAMILY: dict[str, str] = {
    "token_auction": LLM_NATIVE,
    "mosaic": LLM_NATIVE,
    "affine_maximizer": LLM_NATIVE,
    "first_price": AD_SLOTS,
    "second_price": AD_SLOTS,
    "gsp": AD_SLOTS,
    "vcg": AD_SLOTS,
}
KIND_ORDER: tuple[str, ...] = tuple(KIND_FAMILY)
PAYMENT_NAMES: dict[str, str] = {
    "second_price": "second price",
    "first_price": "first price",
    "none": "no payment",
    "mosaic": "MOSAIC payment",
    "affine_maximizer": "affine-maximizer payment",
}
PAYMENT_ORDER: tuple[str, ...] = tuple(PAYMENT_NAMES)

OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
EXTRA_COLORS: tuple[str, ...] = (
    "#332288",
    "#CC6677",
    "#117733",
    "#88CCEE",
    "#882255",
    "#44AA99",
    "#999933",
    "#AA4499",
    "#6699CC",
)
"""Paul Tol's muted set without its sand (#DDCC77: 1.6:1 on white, too faint for a line), and
one more: colours of names without a fixed colour."""
OLIVE = "#999933"
"""Second / uniform price's colour (Paul Tol's muted olive), not Okabe-Ito's yellow: that
yellow has a contrast of 1.3:1 against the white background, too faint for a 1.5-point line or a
point label; olive has 3.0:1."""
NAME_COLORS: dict[str, str] = {
    "token auction, second price": OKABE_ITO["blue"],
    "token auction, first price": OKABE_ITO["sky_blue"],
    "token auction, no payment": "#88CCEE",
    "MOSAIC": OKABE_ITO["vermillion"],
    "MOSAIC, no payment": "#CC6677",
    "affine maximizer": OKABE_ITO["bluish_green"],
    "affine maximizer, no payment": "#117733",
    "first price, 1 slot": OKABE_ITO["orange"],
    "first price, 2 slots": OKABE_ITO["orange"],
    "first price": OKABE_ITO["orange"],  # the name when the runs shown differ in slot count
    "second price, 1 slot": OLIVE,
    "uniform price, 2 slots": OLIVE,
    "second / uniform price": OLIVE,
    "GSP": OKABE_ITO["reddish_purple"],
    "VCG": OKABE_ITO["black"],
}
"""Fixed colours of the mechanisms the scenarios run (other names: :func:`mechanism_color`)."""


def slot_count(scenario: Mapping[str, Any]) -> int | None:
    """Number of ad slots of a resolved scenario (``mechanism.click_through_rates``)."""
    rates = scenario.get("mechanism.click_through_rates")
    return len(rates) if isinstance(rates, list | tuple) else None


def mechanism_name(
    kind: str,
    variants: Mapping[str, Any] | None = None,
    slots: int | None = None,
    slots_vary: bool = False,
) -> str:
    """Readable name of a mechanism.

    Args:
        kind: The ``mechanism`` kind.
        variants: ``aggregation``, ``payment`` and ``settlement`` of the run (any may be absent).
        slots: Number of ad slots (ad-slot kinds; None: the default, 1).
        slots_vary: The runs so named differ in their slot count: no count in the name
            (second price is then ``second / uniform price``).

    Returns:
        e.g. ``token auction, second price``, ``token auction, second price, log-linear, ex
        post``, ``uniform price, 2 slots``, ``GSP``, ``MOSAIC, no payment``; a kind this
        module does not know (a plugin's) is named by the kind and its variant values, e.g.
        ``all_pay, winner_pays`` (a value equal to the kind is not repeated).
    """
    variants = variants or {}
    payment = str(variants.get("payment") or "")
    aggregation = str(variants.get("aggregation") or "linear")
    settlement = str(variants.get("settlement") or "expected")
    if kind == "token_auction":
        parts = ["token auction", PAYMENT_NAMES.get(payment or "second_price", payment)]
        if aggregation != "linear":
            parts.append(aggregation.replace("_", "-"))
        if settlement != "expected":
            parts.append(settlement.replace("_", " "))
        return ", ".join(parts)
    if kind in ("mosaic", "affine_maximizer"):
        base = "MOSAIC" if kind == "mosaic" else "affine maximizer"
        return f"{base}, no payment" if payment == "none" else base
    if kind in ("gsp", "vcg"):
        return kind.upper()
    if kind in ("first_price", "second_price") and slots_vary:
        return "first price" if kind == "first_price" else "second / uniform price"
    if kind in ("first_price", "second_price"):
        count = slots or 1
        rule = "first price" if kind == "first_price" else "second price"
        if kind == "second_price" and count > 1:
            rule = "uniform price"
        return f"{rule}, {count} slot{'s' if count != 1 else ''}"
    shown = [
        str(value)
        for key in ("payment", "aggregation", "settlement")
        if (value := variants.get(key)) is not None and str(value) not in ("", kind)
    ]
    return ", ".join([kind, *shown])  # a plugin's kind: its variants as its summary records them


def family(kind: str) -> str:
    """The family of a mechanism kind (:data:`FAMILY_ORDER`)."""
    return KIND_FAMILY.get(kind, OTHER_FAMILY)


def sort_key(kind: str, variants: Mapping[str, Any] | None = None) -> tuple:
    """Figure order: family, kind (:data:`KIND_ORDER`), payment, then the variant values."""
    variants = variants or {}
    payment = str(variants.get("payment") or "")
    kind_rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    pay_rank = PAYMENT_ORDER.index(payment) if payment in PAYMENT_ORDER else len(PAYMENT_ORDER)
    rest = tuple(str(variants.get(key) or "") for key in ("aggregation", "settlement"))
    return (FAMILY_ORDER.index(family(kind)), kind_rank, kind, pay_rank, payment, rest)


def mechanism_color(name: str) -> str:
    """The fixed colour of a readable mechanism name.

    Names in :data:`NAME_COLORS` have their colour; any other name gets one of
    :data:`EXTRA_COLORS` chosen by a hash of the name, so it never depends on the other
    mechanisms in a figure.
    """
    if name in NAME_COLORS:
        return NAME_COLORS[name]
    digest = int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16)
    return EXTRA_COLORS[digest % len(EXTRA_COLORS)]

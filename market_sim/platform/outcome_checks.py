"""What a platform hands back, checked at the boundary where the market takes it.

A mechanism plugin's platform is code the market did not write: an outcome with a payment per
query instead of per advertiser, a NaN allocation, or a counterfactual that returns one value
for K reports would otherwise surface as an ``IndexError`` in an advertiser's settlement or
as NaN in the results. These checks name the mechanism, the field and what was expected, in
one line (a ``ValueError``), before anything of the round is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from market_sim.platform.base import AuctionOutcome, CounterfactualValues

PER_ADVERTISER_FIELDS = ("allocations", "reported_allocations", "payments")
"""The outcome's arrays with one entry per advertiser."""


def as_host_array(value: object) -> np.ndarray:
    """``value`` as a numpy array (a torch tensor detached and copied to the host first)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a tensor: on a GPU, with grad
        value = value.detach().cpu()
    return np.asarray(value)


def per_advertiser_array(kind: str, owner: str, name: str, value: object, count: int) -> np.ndarray:
    """Check that ``value`` is ``[count]`` finite real numbers.

    Returns:
        ``[count]`` the values as a numpy array.

    Raises:
        ValueError: One line naming the mechanism, ``owner.name`` and the expected shape.
    """
    array = as_host_array(value)
    if array.dtype.kind not in "biuf" or array.shape != (count,):
        raise ValueError(
            f"mechanism {kind!r}: {owner}.{name} must be {count} real numbers (one per "
            f"{'advertiser' if owner == 'AuctionOutcome' else 'report'}), got "
            f"{type(value).__name__} of shape {array.shape} and dtype {array.dtype}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"mechanism {kind!r}: {owner}.{name} holds a NaN or infinite value")
    return array


def check_user_value(kind: str, user_value: object) -> None:
    """Check that ``user_value`` is one finite real number (a Python, numpy or 0-d tensor one).

    Raises:
        ValueError: One line naming the mechanism and the field.
    """
    array = as_host_array(user_value)
    if array.ndim != 0 or array.dtype.kind not in "iuf":
        raise ValueError(
            f"mechanism {kind!r}: AuctionOutcome.user_value must be a real number, got "
            f"{type(user_value).__name__}"
        )
    if not math.isfinite(float(array)):
        raise ValueError(f"mechanism {kind!r}: AuctionOutcome.user_value is {float(array)}")


def check_outcome_count(kind: str, outcomes: Sequence[object], auctions: int) -> None:
    """Check that ``run_auctions`` returned one outcome per query (every round: it is cheap).

    Raises:
        ValueError: One line naming the mechanism and both counts.
    """
    if len(outcomes) != auctions:
        raise ValueError(
            f"mechanism {kind!r}: run_auctions returned {len(outcomes)} outcomes for "
            f"{auctions} queries"
        )


def check_group_count(kind: str, groups: Sequence[object], batches: int) -> None:
    """Check that ``run_auction_groups`` returned one list of outcomes per batch (replicate).

    Raises:
        ValueError: One line naming the mechanism and both counts.
    """
    if len(groups) != batches:
        raise ValueError(
            f"mechanism {kind!r}: run_auction_groups returned {len(groups)} lists of outcomes "
            f"for {batches} batches (one per replicate)"
        )


def check_outcomes(kind: str, outcomes: Sequence[object], auctions: int, advertisers: int) -> None:
    """Check a platform's outcomes of one batch of auctions.

    Args:
        kind: The mechanism's kind (named in the message).
        outcomes: What ``run_auctions`` returned.
        auctions: The number of queries it was given.
        advertisers: The number of bidders per query.

    Raises:
        ValueError: The count, a type, an array's shape or a non-finite number is wrong.
    """
    check_outcome_count(kind, outcomes, auctions)
    for outcome in outcomes:
        if not isinstance(outcome, AuctionOutcome):
            raise ValueError(
                f"mechanism {kind!r}: run_auctions returned a {type(outcome).__name__}, "
                "not an AuctionOutcome"
            )
        if not isinstance(outcome.text, str):
            raise ValueError(
                f"mechanism {kind!r}: AuctionOutcome.text must be a str, got "
                f"{type(outcome.text).__name__}"
            )
        for name in PER_ADVERTISER_FIELDS:
            per_advertiser_array(kind, "AuctionOutcome", name, getattr(outcome, name), advertisers)
        check_user_value(kind, outcome.user_value)
        engine = outcome.counterfactual
        if engine is not None and not callable(getattr(engine, "evaluate", None)):
            raise ValueError(
                f"mechanism {kind!r}: AuctionOutcome.counterfactual must have an evaluate("
                f"agent, reports) method or be None, got {type(engine).__name__}"
            )


def check_counterfactual_values(kind: str, values: object, reports: int) -> CounterfactualValues:
    """Check what a counterfactual's ``evaluate`` returned for ``reports`` reports.

    Returns:
        ``values`` with both fields as float64 numpy arrays (a plugin may give lists or tensors).

    Raises:
        ValueError: Not a :class:`CounterfactualValues` of ``[reports]`` finite arrays.
    """
    if not isinstance(values, CounterfactualValues):
        raise ValueError(
            f"mechanism {kind!r}: Counterfactual.evaluate returned a "
            f"{type(values).__name__}, not CounterfactualValues"
        )
    allocations, payments = (
        per_advertiser_array(kind, "CounterfactualValues", name, getattr(values, name), reports)
        for name in ("allocations", "payments")
    )
    return CounterfactualValues(allocations.astype(np.float64), payments.astype(np.float64))

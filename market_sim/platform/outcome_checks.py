"""What a platform hands back, checked at the boundary where the market takes it.

A mechanism plugin's platform is code the market did not write: an outcome with a payment per
query instead of per advertiser, a NaN allocation, or a counterfactual that returns one value
for K reports would otherwise surface as an ``IndexError`` in an advertiser's settlement or
as NaN in the results. These checks name the mechanism, the field and what was expected, in
one line (a :class:`MechanismOutputError`, which the command line prints as one line), before
anything of the round is recorded. They run on every round (about 16 us an outcome): a branch
of a plugin that first runs in round 300 is checked like round 0.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from market_sim.platform.base import AuctionOutcome, CounterfactualValues, ReportSpace
from market_sim.results.records import EXTRA_PREFIX, ROUNDS

PER_ADVERTISER_FIELDS = ("allocations", "reported_allocations", "payments")
"""The outcome's arrays with one entry per advertiser."""


MARKET_COLUMNS = frozenset(column.name for column in ROUNDS.columns if column.group != "extra")
"""``rounds.parquet`` columns the market or the query stream fills: no mechanism extra's name."""


class MechanismOutputError(ValueError):
    """What a mechanism's platform returned is not what the market takes (one line)."""


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
        MechanismOutputError: One line naming the mechanism, ``owner.name`` and the expected shape.
    """
    array = as_host_array(value)
    if array.dtype.kind not in "biuf" or array.shape != (count,):
        raise MechanismOutputError(
            f"mechanism {kind!r}: {owner}.{name} must be {count} real numbers (one per "
            f"{'advertiser' if owner == 'AuctionOutcome' else 'report'}), got "
            f"{type(value).__name__} of shape {array.shape} and dtype {array.dtype}"
        )
    if not np.all(np.isfinite(array)):
        raise MechanismOutputError(
            f"mechanism {kind!r}: {owner}.{name} holds a NaN or infinite value"
        )
    return array


def check_real_number(kind: str, field: str, value: object) -> None:
    """Check that ``value`` is one finite real number (a Python, numpy or 0-d tensor one).

    Args:
        kind: The mechanism's kind (named in the message).
        field: What ``value`` is, e.g. ``AuctionOutcome.user_value``.
        value: The value to check.

    Raises:
        MechanismOutputError: One line naming the mechanism and the field.
    """
    array = as_host_array(value)
    if array.ndim != 0 or array.dtype.kind not in "iuf":
        raise MechanismOutputError(
            f"mechanism {kind!r}: {field} must be a real number, got {type(value).__name__}"
        )
    if not math.isfinite(float(array)):
        raise MechanismOutputError(f"mechanism {kind!r}: {field} is {float(array)}")


def check_count(
    kind: str, method: str, returned: Sequence[object], expected: int, what: str, per: str
) -> None:
    """Check that a platform method returned one item per input (every round: it is cheap).

    Args:
        kind: The mechanism's kind (named in the message).
        method: The platform method, e.g. ``run_auctions``.
        returned: What it returned.
        expected: How many items it should have returned.
        what: What it returns, plural (``outcomes``).
        per: What it was given, plural (``queries``).

    Raises:
        MechanismOutputError: One line naming the mechanism and both counts.
    """
    if len(returned) != expected:
        raise MechanismOutputError(
            f"mechanism {kind!r}: {method} returned {len(returned)} {what} for {expected} {per}"
        )


def check_platform(kind: str, platform: object, report_space: ReportSpace) -> None:
    """Check what a plugin's ``build`` made: a platform of ``kind`` with its plugin's report space.

    The market writes ``platform.kind`` into every round and searches deviations over
    ``platform.report_space``, while scenario loading read the plugin's ``report_space(config)``:
    a platform without them failed with an ``AttributeError`` after its first round, and one
    with another kind or report space ran on silently.

    Args:
        kind: The scenario's ``mechanism.kind``.
        platform: What the plugin's ``build`` returned.
        report_space: The plugin's ``report_space(config)``.

    Raises:
        MechanismOutputError: One line naming the mechanism and the attribute.
    """
    if not callable(getattr(platform, "run_auctions", None)):
        raise MechanismOutputError(
            f"mechanism {kind!r}: its plugin's build returned a {type(platform).__name__}, not a "
            "platform with run_auctions(queries, bidders, seed)"
        )
    own_kind = getattr(platform, "kind", None)
    if own_kind != kind:
        raise MechanismOutputError(
            f"mechanism {kind!r}: its platform's kind is {own_kind!r}; it must be the "
            f"scenario's mechanism.kind {kind!r}"
        )
    own_space = getattr(platform, "report_space", None)
    if own_space != report_space:
        raise MechanismOutputError(
            f"mechanism {kind!r}: its platform's report_space is {own_space!r}, its plugin's "
            f"report_space(config) is {report_space!r}; they must be equal"
        )


def check_outcomes(kind: str, outcomes: Sequence[object], auctions: int, advertisers: int) -> None:
    """Check a platform's outcomes of one batch of auctions.

    Args:
        kind: The mechanism's kind (named in the message).
        outcomes: What ``run_auctions`` returned.
        auctions: The number of queries it was given.
        advertisers: The number of bidders per query.

    Raises:
        MechanismOutputError: The count, a type, an array's shape or a non-finite number is wrong.
    """
    check_count(kind, "run_auctions", outcomes, auctions, "outcomes", "queries")
    for outcome in outcomes:
        if not isinstance(outcome, AuctionOutcome):
            raise MechanismOutputError(
                f"mechanism {kind!r}: run_auctions returned a {type(outcome).__name__}, "
                "not an AuctionOutcome"
            )
        if not isinstance(outcome.text, str):
            raise MechanismOutputError(
                f"mechanism {kind!r}: AuctionOutcome.text must be a str, got "
                f"{type(outcome.text).__name__}"
            )
        for name in PER_ADVERTISER_FIELDS:
            per_advertiser_array(kind, "AuctionOutcome", name, getattr(outcome, name), advertisers)
        check_real_number(kind, "AuctionOutcome.user_value", outcome.user_value)
        check_extras(kind, outcome.extras)
        engine = outcome.counterfactual
        evaluate = getattr(engine, "evaluate", None)
        if engine is not None and not (callable(evaluate) and takes_agent_and_reports(evaluate)):
            raise MechanismOutputError(
                f"mechanism {kind!r}: AuctionOutcome.counterfactual must have an evaluate("
                f"agent, reports) method or be None, got {type(engine).__name__}"
                + ("" if evaluate is None else f" with evaluate{signature_text(evaluate)}")
            )


def takes_agent_and_reports(evaluate: Callable[..., object]) -> bool:
    """Whether ``evaluate(agent, reports)`` binds (a signature Python cannot read passes).

    A method is checked once per function (every outcome of a round carries one).
    """
    function = getattr(evaluate, "__func__", None)
    if function is not None and inspect.isfunction(function):  # (self, agent, reports)
        return binds(function, 3)  # one entry per class: its method is one function
    return binds.__wrapped__(evaluate, 2)  # a closure per outcome: not cached (nor kept)


@functools.lru_cache(maxsize=256)
def binds(function: Callable[..., object], positional: int) -> bool:
    """Whether ``function`` accepts ``positional`` positional arguments."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*range(positional))
    except TypeError:
        return False
    return True


def signature_text(evaluate: Callable[..., object]) -> str:
    """``(reports)``: the parameters of ``evaluate`` as written, or ``(...)``."""
    try:
        return str(inspect.signature(evaluate))
    except (TypeError, ValueError):
        return "(...)"


def check_extras(kind: str, extras: object) -> None:
    """Check ``AuctionOutcome.extras``: declared names to finite real numbers.

    A plugin names its own ``extra_<name>``. A bad column is refused in its round, naming the
    mechanism, not after the last round when ``rounds.parquet`` is built.

    Raises:
        MechanismOutputError: Not a mapping, an undeclared name, or a value that is not a
            finite real number.
    """
    if not isinstance(extras, Mapping):
        raise MechanismOutputError(
            f"mechanism {kind!r}: AuctionOutcome.extras must be a dict of name -> number, got "
            f"{type(extras).__name__}"
        )
    # An extra named like a column the market or the stream fills would replace it (revenue
    # included) or, absent from a row, clash with its type; mechanism columns are fine.
    overwritten = sorted(name for name in extras if name in MARKET_COLUMNS)
    if overwritten:
        raise MechanismOutputError(
            f"mechanism {kind!r}: AuctionOutcome.extras {overwritten} would overwrite the "
            "columns the market computes; name them extra_<name>"
        )
    for name, value in extras.items():
        if not isinstance(name, str) or ROUNDS.column(name) is None:
            raise MechanismOutputError(
                f"mechanism {kind!r}: AuctionOutcome.extras name {name!r} is not a rounds.parquet "
                f"column; name it {EXTRA_PREFIX}<name>"
            )
        check_real_number(kind, f"AuctionOutcome.extras[{name!r}]", value)


def check_counterfactual_values(kind: str, values: object, reports: int) -> CounterfactualValues:
    """Check what a counterfactual's ``evaluate`` returned for ``reports`` reports.

    Returns:
        ``values`` with both fields as float64 numpy arrays (a plugin may give lists or tensors).

    Raises:
        MechanismOutputError: Not a :class:`CounterfactualValues` of ``[reports]`` finite arrays.
    """
    if not isinstance(values, CounterfactualValues):
        raise MechanismOutputError(
            f"mechanism {kind!r}: Counterfactual.evaluate returned a "
            f"{type(values).__name__}, not CounterfactualValues"
        )
    allocations, payments = (
        per_advertiser_array(kind, "CounterfactualValues", name, getattr(values, name), reports)
        for name in ("allocations", "payments")
    )
    return CounterfactualValues(allocations.astype(np.float64), payments.astype(np.float64))


def checked_jump_bids(kind: str, counterfactual: object, agent: int) -> np.ndarray | None:
    """``counterfactual.jump_bids(agent)`` checked, or None where it has no ``jump_bids``.

    Args:
        kind: The mechanism's kind (named in the message).
        counterfactual: A round's counterfactual (:class:`~market_sim.platform.base.JumpBids`
            when it has ``jump_bids``).
        agent: The advertiser's seat.

    Returns:
        ``[J]`` float64 jump bids, or None.

    Raises:
        MechanismOutputError: Not a 1-D array of finite real numbers.
    """
    method = getattr(counterfactual, "jump_bids", None)
    if method is None:
        return None
    if not callable(method):
        raise MechanismOutputError(
            f"mechanism {kind!r}: Counterfactual.jump_bids must be a method jump_bids(agent), "
            f"got {type(method).__name__}"
        )
    value = method(agent)
    array = as_host_array(value)
    if array.dtype.kind not in "iuf" or array.ndim != 1:
        raise MechanismOutputError(
            f"mechanism {kind!r}: Counterfactual.jump_bids must be a 1-D array of real numbers, "
            f"got {type(value).__name__} of shape {array.shape} and dtype {array.dtype}"
        )
    if not np.all(np.isfinite(array)):
        raise MechanismOutputError(
            f"mechanism {kind!r}: Counterfactual.jump_bids holds a NaN or infinite value"
        )
    return array.astype(np.float64)

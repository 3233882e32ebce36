"""What ``Report.report_scale`` means for each built-in mechanism, and the range searched.

Light to import (no torch): a mechanism plugin declares its report space from here when a scenario
is validated, and the platform that runs the mechanism reads the same object.
"""

from __future__ import annotations

from market_sim.platform.base import ReportSpace

BIDS_ONLY = ReportSpace(None)
"""Classic auctions read the bid only."""
SHARPEN = ReportSpace("sharpen", 0.25, 4.0)
"""Token auction: the reported distribution is proportional to p^s; s searched in [1/4, 4]."""
RELEVANCE_EXPONENT = ReportSpace("relevance_exponent", 0.25, 4.0)
"""MOSAIC: the reported reward is b s(y)^gamma; gamma searched in [1/4, 4]."""
GROUP_DISTORTION_RANGES: dict[str, tuple[float, float]] = {
    "reward_scale": (0.25, 4.0),
    "blend": (0.5, 2.0),
}
"""Affine maximizer: report scales a deviation search or learner grid tries, per distortion."""


def group_report_space(distortion: str) -> ReportSpace:
    """The report space of a group mechanism whose ``report_scale`` means ``distortion``.

    Raises:
        ValueError: An unknown distortion.
    """
    if distortion not in GROUP_DISTORTION_RANGES:
        allowed = ", ".join(GROUP_DISTORTION_RANGES)
        raise ValueError(f"group_distortion must be one of {allowed}, got {distortion!r}")
    return ReportSpace(distortion, *GROUP_DISTORTION_RANGES[distortion])

"""Errors of the insights package (under the collector's one root, `CollectorError`)."""

from __future__ import annotations

from ..errors import CollectorError

__all__ = ["InsightsError", "PolicyError"]


class InsightsError(CollectorError):
    """Drift, appraisal or the report cannot run as asked (bad input, missing history)."""

    reason = "insights.error"


class PolicyError(InsightsError):
    """The policy file is missing, empty, unreadable or does not match its schema."""

    reason = "insights.policy_invalid"

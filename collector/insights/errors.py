"""Errors of the insights package (under the collector's one root, `CollectorError`)."""

from __future__ import annotations

from ..errors import CollectorError, Reason

__all__ = ["InsightsError", "PolicyError"]


class InsightsError(CollectorError):
    """Drift, appraisal or the report cannot run as asked (bad input, missing history)."""

    reason = Reason.INSIGHTS_ERROR


class PolicyError(InsightsError):
    """The policy file is missing, empty, unreadable or does not match its schema."""

    reason = Reason.INSIGHTS_POLICY_INVALID

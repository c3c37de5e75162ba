"""The store's errors: one small hierarchy under `StoreError`, each message one line that is safe
to show a user (no DSN, no SQL)."""

from __future__ import annotations

from typing import ClassVar


class StoreError(Exception):
    """Base of the store's errors; the message is one line, safe to show."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (or is locked past the busy timeout)."""


class NotFound(StoreError):
    pass


class UserExists(StoreError):
    pass


class AgentExists(StoreError):
    pass


class ReplayedReport(StoreError):
    """A report id already stored with other bytes or by another agent."""


class AgentRevoked(StoreError):
    """The agent was revoked after its request was authenticated; its report is not stored."""


class StaleCredential(StoreError):
    """The token or key a report was checked with no longer belongs to its agent (re-enrolled
    meanwhile); the report is not stored."""


class HostClaimed(StoreError):
    """The report is about a host that another, still enrolled, agent reports: an agent speaks
    only for the hosts it reports first (or took over from a revoked agent)."""


class AuditAltered(StoreError):
    """The audit chain does not verify where an operation needed it to."""


class ScanRunning(StoreError):
    """A scan of these zones is running already."""


class EnrollmentInvalid(StoreError):
    """`reason`: "unknown" | "expired" | "used" | "name_mismatch"."""

    _MESSAGES: ClassVar[dict[str, str]] = {
        "unknown": "the enrolment token is not known",
        "expired": "the enrolment token has expired",
        "used": "the enrolment token has already been used",
        "name_mismatch": "the enrolment token was issued for another agent name",
    }

    def __init__(self, reason: str) -> None:
        super().__init__(self._MESSAGES[reason])
        self.reason = reason

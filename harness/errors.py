"""The exception types the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class HarnessError(Exception):
    """A user-facing failure: the message names the problem in one line."""

    exit_code = 2

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        # Multi-line context (a server log tail, say) kept apart so the CLI can print one line.
        self.detail = detail


class ServiceError(HarnessError):
    """A service could not start, is not healthy, or was unreachable."""

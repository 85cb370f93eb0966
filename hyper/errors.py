"""One error type for everything a user can get wrong.

Services raise ``HyperError(message, hint)``; the CLI boundary prints the message and the hint on one line
each and exits with ``exit_code``. Exit codes follow PBS where PBS has one (an unknown job id is 153,
PBSE_UNKJOBID 15001 modulo 256), so scripts written for PBS keep working.
"""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNKNOWN_JOB = 153


class HyperError(Exception):
    """An expected failure: bad input, missing resource, unreachable store. Never shown as a traceback."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:  # one line for logs and for tests
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UnknownJobError(HyperError):
    """A job id that parses but names no job in the store."""

    def __init__(self, job_id: str):
        super().__init__(f"unknown job id {job_id}", "list jobs with `qstat -x`", EXIT_UNKNOWN_JOB)
        self.job_id = job_id


class UsageError(HyperError):
    """Malformed input on the command line or in a file (directive, id, range, unit)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, EXIT_USAGE)


class DiskFullError(HyperError):
    """The local disk has no room left for the store: transient, never a reason to discard anything."""

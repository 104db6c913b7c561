"""The one exception tree of dispara and the one table that maps errors to exit codes.

Core code raises these; only `dispara.cli` turns them into messages and exit codes.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    CONFIG = 3
    BAD_INPUT = 4
    DATABASE = 5
    SERVICE = 6
    FAILED_MESSAGES = 7
    """`watch` and `send --watch`: the campaign finished, but some of its messages failed."""
    COUNTS_DISAGREE = 8
    """`status --verify`: the campaign summary differs from a count of its message_logs."""
    INTERRUPTED = 130


class DisparaError(Exception):
    """Base of every error a user may see; the message is one line that says what and where."""

    exit_code: ExitCode = ExitCode.UNEXPECTED


class ConfigError(DisparaError):
    """The configuration file, the environment or a setting is wrong or missing."""

    exit_code = ExitCode.CONFIG


class InputError(DisparaError):
    """A campaign file, a contacts CSV or a command argument is wrong."""

    exit_code = ExitCode.BAD_INPUT


class NotFoundError(InputError):
    """The campaign, job or record named on the command line does not exist."""


class DatabaseError(DisparaError):
    """The database is unreachable, behind on migrations, or refused a statement."""

    exit_code = ExitCode.DATABASE


class SchemaBehindError(DatabaseError):
    """An external database whose schema is missing or older than this version of dispara."""


class SchemaChangedError(DatabaseError):
    """An applied migration is not the file this dispara ships (edited after it ran, or unknown to it)."""


class ServiceError(DisparaError):
    """An external service (Evolution, QStash, ElevenLabs, Groq, Storage, webhook) failed."""

    exit_code = ExitCode.SERVICE

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


class TransientServiceError(ServiceError):
    """A failure worth retrying: network error, timeout, 5xx, 429, a closed WhatsApp connection."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, transient=True, status=status)
        self.retry_after = retry_after


class PermanentServiceError(ServiceError):
    """A failure that retrying cannot fix: number not on WhatsApp, validation, bad credentials."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code for any exception that reached the command line."""
    if isinstance(exc, DisparaError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.UNEXPECTED

"""How a file that cannot be opened is described: one line that says which file and why."""

from __future__ import annotations


def cannot_open(exc: OSError, display: str, what: str) -> str:
    """`exc` (from opening or reading `display`, a `what` such as "CSV file") as a one-line message."""
    if isinstance(exc, FileNotFoundError):
        return f"{display}: file not found"
    if isinstance(exc, IsADirectoryError):
        return f"{display}: is a directory, not a {what}"
    if isinstance(exc, PermissionError):
        return f"{display}: cannot be read (permission denied)"
    return f"{display}: cannot be read: {exc.strerror or exc}"

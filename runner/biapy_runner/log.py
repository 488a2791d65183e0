"""Progress messages on stderr, one line each, readable in a Galaxy job log.

Warnings are also kept (``warnings_since``) so that the report can list those of the run.
"""

from __future__ import annotations

import sys
import time

_START = time.monotonic()
_WARNINGS: list[str] = []


def elapsed() -> str:
    """Seconds since the runner started, formatted as ``[  12.3s]``."""
    return f"[{time.monotonic() - _START:7.1f}s]"


def info(message: str) -> None:
    """Write one progress line to stderr, prefixed with the elapsed time."""
    print(f"{elapsed()} {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Write one warning line to stderr and keep it for the report."""
    _WARNINGS.append(message)
    print(f"{elapsed()} WARNING: {message}", file=sys.stderr, flush=True)


def warning_count() -> int:
    """How many warnings were written so far (a mark for ``warnings_since``)."""
    return len(_WARNINGS)


def warnings_since(mark: int) -> list[str]:
    """The warnings written after ``mark`` (a value of ``warning_count``)."""
    return list(_WARNINGS[mark:])

"""Progress messages on stderr, one line each, readable in a Galaxy job log.

Warnings are also kept (``warnings_since``) so that the report can list those of the run.
A thread may hold its lines back (``held``) to write them later in the order of the work they
describe (``emit``), as when one image is decoded while the next one is predicted.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

_START = time.monotonic()
_WARNINGS: list[str] = []
_LOCAL = threading.local()
#: A held line: its text and, for a warning, the warning's message.
Held = tuple[str, "str | None"]


def elapsed() -> str:
    """Seconds since the runner started, formatted as ``[  12.3s]``."""
    return f"[{time.monotonic() - _START:7.1f}s]"


def _write(line: str, warning: str | None) -> None:
    lines = getattr(_LOCAL, "held", None)
    if lines is not None:
        lines.append((line, warning))
        return
    if warning is not None:
        _WARNINGS.append(warning)
    print(line, file=sys.stderr, flush=True)


def info(message: str) -> None:
    """Write one progress line to stderr, prefixed with the elapsed time."""
    _write(f"{elapsed()} {message}", None)


def warn(message: str) -> None:
    """Write one warning line to stderr and keep it for the report."""
    _write(f"{elapsed()} WARNING: {message}", message)


@contextlib.contextmanager
def held() -> Iterator[list[Held]]:
    """Within the block, this thread's lines are collected in the yielded list instead of being
    written (their time is when they were made); ``emit`` writes them."""
    lines: list[Held] = []
    before = getattr(_LOCAL, "held", None)
    _LOCAL.held = lines
    try:
        yield lines
    finally:
        _LOCAL.held = before


def emit(lines: list[Held]) -> None:
    """Write held lines (and keep their warnings), in order."""
    for line, warning in lines:
        _write(line, warning)
    lines.clear()


def warning_count() -> int:
    """How many warnings were written so far (a mark for ``warnings_since``)."""
    return len(_WARNINGS)


def warnings_since(mark: int) -> list[str]:
    """The warnings written after ``mark`` (a value of ``warning_count``)."""
    return list(_WARNINGS[mark:])

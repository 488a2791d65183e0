"""Progress messages on stderr, one line each, readable in a Galaxy job log.

Warnings are also kept (``warnings_since``) so that the report can list those of the run.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

_START = time.monotonic()
_WARNINGS: list[str] = []
#: inside ``quiet()``: how deep, and the warnings already shown there
_QUIET: list[set[str]] = []


def elapsed() -> str:
    """Seconds since the runner started, formatted as ``[  12.3s]``."""
    return f"[{time.monotonic() - _START:7.1f}s]"


def info(message: str) -> None:
    """Write one progress line to stderr, prefixed with the elapsed time (none inside
    ``quiet()``)."""
    if not _QUIET:
        print(f"{elapsed()} {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Write one warning line to stderr and keep it for the report (inside ``quiet()``, each
    distinct warning once)."""
    if _QUIET:
        if message in _QUIET[0]:
            return
        _QUIET[0].add(message)
    _WARNINGS.append(message)
    print(f"{elapsed()} WARNING: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet(shown: set[str] | None = None) -> Iterator[None]:
    """Silence the progress lines of a step repeated thousands of times (a chunk's decoding), whose
    own lines would flood a job log; its warnings still show, each distinct one once: ``shown``
    holds those already shown (pass one set to every repetition)."""
    _QUIET.append(_QUIET[0] if _QUIET else set() if shown is None else shown)
    try:
        yield
    finally:
        _QUIET.pop()


class Progress:
    """``<what> done/total (seconds)`` lines for a long loop: at most one every ``every_s``
    seconds, and always the last one. Call it with ``(done, total)``, or ``step()`` one more
    done of the ``total`` given at creation."""

    def __init__(self, what: str, total: int = 0, every_s: float = 5.0) -> None:
        self.what, self.total, self.every_s = what, int(total), every_s
        self.done = 0
        self.start = time.monotonic()
        self.last = self.start

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self.last >= self.every_s:
            self.last = now
            info(f"  {self.what} {done}/{total} ({now - self.start:.1f}s)")

    def step(self) -> None:
        """One more done."""
        self.done += 1
        self(self.done, self.total)


def warning_count() -> int:
    """How many warnings were written so far (a mark for ``warnings_since``)."""
    return len(_WARNINGS)


def warnings_since(mark: int) -> list[str]:
    """The warnings written after ``mark`` (a value of ``warning_count``)."""
    return list(_WARNINGS[mark:])

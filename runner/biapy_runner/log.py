"""Progress messages on stderr, one line each, readable in a Galaxy job log."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def elapsed() -> str:
    """Seconds since the runner started, formatted as ``[  12.3s]``."""
    return f"[{time.monotonic() - _START:7.1f}s]"


def info(message: str) -> None:
    """Write one progress line to stderr, prefixed with the elapsed time."""
    print(f"{elapsed()} {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Write one warning line to stderr."""
    print(f"{elapsed()} WARNING: {message}", file=sys.stderr, flush=True)

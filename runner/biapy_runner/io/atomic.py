"""Replacing one file atomically, safe when several processes (on several hosts) write it.

A file is written under a temporary name beside it that no other writer can choose (the process
id, the host and a random part), then renamed onto its final name (``os.replace``, atomic within
one file system). A reader sees the old file or the new one, never a half-written one; two
writers of the same file each write their own temporary file and the last rename wins. The
temporary name starts with a dot, so that listings of finished files pass over it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path


def host_name() -> str:
    """This machine's name made safe for file names (characters other than letters, digits and
    ``.`` turned into ``_``)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def process_tag() -> str:
    """``<pid>@<host>``: this process among the writers of every host."""
    return f"{os.getpid()}@{host_name()}"


def temporary_sibling(path: Path, suffix: str = ".part") -> Path:
    """A name beside ``path`` for writing it before the rename.

    Parameters
    ----------
    path : the final file
    suffix : the end of the name (``.partial.zip`` where a writer wants a zip's suffix)

    Returns
    -------
    ``.<name>.<pid>@<host>-<random><suffix>`` in ``path``'s folder: no two writers share it.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{process_tag()}-{secrets.token_hex(4)}{suffix}")


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ".part") -> Iterator[Path]:
    """The temporary name to write ``path`` under; renamed onto ``path`` when the block ends
    without error, removed when it raises (or is stopped by a signal).

    Parameters
    ----------
    path : the final file (its folder must exist)
    suffix : as for :func:`temporary_sibling`

    Returns
    -------
    A context manager giving the temporary path.
    """
    temporary = temporary_sibling(path, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")

"""Errors the runner reports to users, each carrying the process exit code.

Exit codes: 0 ok, 2 bad input or configuration, 3 model could not be obtained or run,
1 anything else (an unexpected internal error).
"""

from __future__ import annotations

import zipfile


class RunnerError(Exception):
    """Base class for errors shown to the user as one paragraph, without a traceback."""

    exit_code: int = 1


class InputError(RunnerError):
    """Bad input: a missing, unreadable or inconsistent image, table or argument."""

    exit_code = 2


class ConfigError(InputError):
    """Bad configuration: unknown key, wrong type or value."""


class ModelError(RunnerError):
    """The model could not be obtained, loaded or run."""

    exit_code = 3


class Stopped(BaseException):  # noqa: N818  (not an error: the job was told to stop)
    """The process was told to stop by a signal (SIGINT, SIGTERM, SIGHUP); exit 128 + signal.

    A ``BaseException`` so that no ``except Exception`` on the way swallows it: the output
    stage's cleanup runs and the command line exits with the conventional code.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


def real_cause(err: BaseException) -> str:
    """The innermost useful message of an exception chain, for a one-paragraph error.

    Network and file errors are named with their type; bioimageio's id-map chatter is skipped.

    >>> try:
    ...     try:
    ...         raise FileNotFoundError("no such file: rdf.yaml")
    ...     except OSError as inner:
    ...         raise ValueError("could not load") from inner
    ... except ValueError as outer:
    ...     real_cause(outer)
    'FileNotFoundError: no such file: rdf.yaml'
    """
    chain = []
    current: BaseException | None = err
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    useful = [e for e in chain if "BIOIMAGEIO_ID_MAP" not in str(e) and str(e).strip()]
    for candidate in useful:
        if type(candidate).__module__.startswith(("httpx", "httpcore")) or isinstance(
            candidate, (OSError, zipfile.BadZipFile)
        ):
            return f"{type(candidate).__name__}: {candidate}"
    return str(useful[0] if useful else err).strip()

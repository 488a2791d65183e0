"""Errors the runner reports to users, each carrying the process exit code.

Exit codes: 0 ok, 2 bad input or configuration, 3 model could not be obtained or run,
1 anything else (an unexpected internal error).
"""

from __future__ import annotations


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

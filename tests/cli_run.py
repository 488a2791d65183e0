"""Running the command line in the test process, as the shell would see it."""

from __future__ import annotations

from collections.abc import Sequence


def run_cli(args: Sequence[str]) -> int:
    """``biapy-runner ARGS`` in this process: its exit code (also when it exits by SystemExit,
    as argparse does on bad options)."""
    from biapy_runner.cli import main

    try:
        return int(main(list(args)) or 0)
    except SystemExit as stop:
        return int(stop.code or 0)

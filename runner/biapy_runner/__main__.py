"""Allow ``python -m biapy_runner``."""

from biapy_runner.cli import entry

entry()

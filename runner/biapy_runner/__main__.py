"""Allow ``python -m biapy_runner``."""

from biapy_runner.cli import main

raise SystemExit(main())

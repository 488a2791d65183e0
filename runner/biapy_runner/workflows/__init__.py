"""Workflow implementations; importing this package registers them."""

from biapy_runner.workflows import (  # noqa: F401
    classification,
    detection,
    instance,
    restoration,
    semantic,
)

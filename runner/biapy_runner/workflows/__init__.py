"""Workflow implementations; importing this package registers them."""

from biapy_runner.workflows import semantic  # noqa: F401
from biapy_runner.workflows import restoration, classification  # noqa: F401
from biapy_runner.workflows import detection  # noqa: F401
from biapy_runner.workflows import instance  # noqa: F401

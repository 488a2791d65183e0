"""``torchscript`` weights, run by torch."""

from __future__ import annotations

import io
from typing import Any

import torch

from biapy_runner.models.backends import Forward


def load(descr: Any, device: torch.device, threads: int | None) -> Forward:
    """Load the TorchScript module of the package on ``device``, in eval mode."""
    module = torch.jit.load(io.BytesIO(descr.weights.torchscript.get_reader().read()), device)
    return module.eval()

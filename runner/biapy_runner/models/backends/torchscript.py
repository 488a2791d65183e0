"""``torchscript`` weights, run by torch."""

from __future__ import annotations

import io

import torch

from biapy_runner.models.backends import Forward, Weights


def load(weights: Weights, device: torch.device, threads: int | None) -> Forward:
    """Load the TorchScript module of the package on ``device``, in eval mode."""
    module = torch.jit.load(io.BytesIO(weights.data()), device)
    return module.eval()

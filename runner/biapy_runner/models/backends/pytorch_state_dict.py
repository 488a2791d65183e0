"""``pytorch_state_dict`` weights: the package's architecture code with its state dict (torch)."""

from __future__ import annotations

from typing import Any

import torch

from biapy_runner.models.backends import Forward


def load(descr: Any, device: torch.device, threads: int | None) -> Forward:
    """Build the architecture the rdf names, load its state dict on ``device``, in eval mode."""
    from bioimageio.core.backends.pytorch_backend import load_torch_model

    return load_torch_model(descr.weights.pytorch_state_dict, devices=[device]).eval()

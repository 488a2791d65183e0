"""``onnx`` weights, run by ONNX Runtime (CUDA provider when asked for and installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from biapy_runner.models.backends import BackendUnavailable, Forward, Weights


def load(weights: Weights, device: torch.device, threads: int | None) -> Forward:
    """An ONNX Runtime session for the package's weights, wrapped to take and give torch tensors."""
    return session(weights.data(), device, threads)


def session(model: bytes | Path, device: torch.device, threads: int | None) -> Forward:
    """An ONNX Runtime session for ``model`` (the bytes or path of an ONNX file), wrapped to take
    and give torch tensors on ``device``; ``threads`` sets its intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise BackendUnavailable(
            "needs onnxruntime, which is not installed (pip install onnxruntime)"
        ) from err

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    source = str(model) if isinstance(model, Path) else model
    runner = ort.InferenceSession(source, sess_options=options, providers=providers)
    name = runner.get_inputs()[0].name

    def forward(x: torch.Tensor) -> torch.Tensor:
        feed = {name: x.detach().cpu().numpy().astype(np.float32, copy=False)}
        return torch.from_numpy(runner.run(None, feed)[0]).to(x.device)

    return forward

"""ONNX weights (the package's or our own export) compiled and run by OpenVINO on the CPU.

Inference precision is forced to float32: OpenVINO's default on CPUs with bfloat16 units would
change the results by ~1e-2 (5e-3 measured here). One compiled model is kept per tile shape
(static shapes run fastest); a batch runs tile by tile through it, so batches of any size share
one compilation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from biapy_runner.models.backends import BackendUnavailable, Forward


def compile_onnx(
    model: bytes | Path,
    device: torch.device,
    threads: int | None,
    cache_dir: Path | None = None,
    *,
    batch_axis: bool = True,
) -> Forward:
    """An OpenVINO forward for ``model`` (bytes or path of an ONNX file), taking and giving torch
    tensors; ``threads`` sets its inference threads, ``cache_dir`` keeps compiled blobs.
    ``batch_axis``: the first axis of the input is a batch axis (run tile by tile)."""
    if device.type != "cpu":
        raise BackendUnavailable(f"runs on the CPU only, not on {device}")
    try:
        import openvino as ov
    except ImportError as err:
        raise BackendUnavailable(
            "needs openvino, which is not installed (pip install openvino)"
        ) from err

    core = ov.Core()
    if cache_dir is not None:
        core.set_property({"CACHE_DIR": str(cache_dir)})
    network = core.read_model(str(model) if isinstance(model, Path) else model)
    config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled: dict[tuple[int, ...], object] = {}

    def run_one(tile: np.ndarray) -> np.ndarray:
        shape = tuple(tile.shape)
        if shape not in compiled:
            static = network.clone()
            static.reshape({static.inputs[0]: list(shape)})
            compiled[shape] = core.compile_model(static, "CPU", config)
        return compiled[shape](tile)[0]  # type: ignore[operator]

    def forward(x: torch.Tensor) -> torch.Tensor:
        batch = x.detach().cpu().numpy()
        if not batch_axis or batch.shape[0] == 1:
            return torch.from_numpy(run_one(batch))
        tiles = [run_one(batch[i : i + 1]) for i in range(len(batch))]
        return torch.from_numpy(np.concatenate(tiles))

    return forward

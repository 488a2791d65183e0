"""Conversions the runner makes itself from a loaded torch model (no network).

- channels-last: the same module with weights and inputs in the ``channels_last`` (2D) or
  ``channels_last_3d`` (3D) memory format, which oneDNN convolutions run faster on CPUs.
- TorchScript: traced (or the package's script), frozen and optimised for inference.
- ONNX: ``torch.onnx.export`` with dynamic batch and spatial axes, run by ONNX Runtime or OpenVINO.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from biapy_runner.io.atomic import replacing
from biapy_runner.models.backends import BackendUnavailable, Forward

_MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the tracer's and exporter's warnings (they concern training-time control flow)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def channels_last(module: torch.nn.Module, example: torch.Tensor) -> Forward:
    """A copy of ``module`` whose weights and inputs use the channels-last memory format of
    ``example``'s rank (4: 2D images, 5: 3D volumes); outputs come back contiguous."""
    memory_format = _MEMORY_FORMATS.get(example.dim())
    if memory_format is None:
        raise BackendUnavailable(f"needs 4D or 5D inputs, not {example.dim()}D")
    converted = copy.deepcopy(module).to(memory_format=memory_format)

    def forward(x: torch.Tensor) -> torch.Tensor:
        y = converted(x.contiguous(memory_format=memory_format))
        y = y[0] if isinstance(y, (list, tuple)) else y
        return y.contiguous()

    return forward


def torchscript(module: torch.nn.Module, example: torch.Tensor) -> Forward:
    """``module`` traced on ``example`` (a TorchScript module as it is), frozen and optimised for
    inference."""
    with _quiet(), torch.no_grad():
        script = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.trace(
            module, example, check_trace=False
        )
        return torch.jit.optimize_for_inference(torch.jit.freeze(script.eval()))


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    out_rank: int,
    fixed_inputs: Sequence[int] = (1,),
    fixed_outputs: Sequence[int] = (1,),
) -> Path:
    """Export ``module`` to ONNX at ``path`` (written atomically), every axis of the input and of
    the output (of rank ``out_rank``) dynamic but the ``fixed_*`` ones (the channel axes)."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as err:
        raise BackendUnavailable("needs onnx to export the model (pip install onnx)") from err
    dynamic = {
        "input": {i: f"in{i}" for i in range(example.dim()) if i not in fixed_inputs},
        "output": {i: f"out{i}" for i in range(out_rank) if i not in fixed_outputs},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as partial, _quiet(), torch.no_grad():
        torch.onnx.export(
            module, (example,), str(partial), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["output"], dynamic_axes=dynamic,
        )
    return path


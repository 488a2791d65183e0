"""Image restoration workflows: denoising, super-resolution, self-supervised and image-to-image.

All four output the model's image (``post_proc/<stem>.tif``): float32 by default, or cast to the
input's dtype as ``TEST.OUTPUT_DTYPE`` says; super-resolution output is larger than the input by
the model's scale, which must agree with ``PROBLEM.SUPER_RESOLUTION.UPSCALING``. With ground truth
(an image of the output's shape, paired by stem) each image is scored with PSNR, SSIM, MAE and MSE
(:mod:`biapy_runner.metrics.restoration`; ``TEST.METRICS`` may choose among them) and the ``ALL`` row is the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner import log
from biapy_runner.errors import ConfigError, InputError
from biapy_runner.io.images import Image, read_image
from biapy_runner.metrics import restoration as restoration_metrics
from biapy_runner.workflows.base import Decoded, Predictor, Scored, Workflow, register

#: ``TEST.OUTPUT_DTYPE`` values: keep the model's float32, cast, or rescale then cast.
OUTPUT_DTYPES = ("float32", "input_cast", "input_rescale")
#: BiaPy metric keywords this runner does not compute (they need extra networks).
_UNSUPPORTED_METRICS = ("fid", "is", "lpips")


class RestorationWorkflow(Workflow):
    """Shared behaviour of the image-to-image workflows (output at the input's size)."""

    def expected_scale(self, model_scale: Sequence[float]) -> tuple[float, ...]:
        """The scale the model must have; identity except for super-resolution."""
        return (1.0,) * len(model_scale)

    def predict(self, image: Image, predictor: Predictor) -> np.ndarray:
        """Check the model's scale against the configuration, then predict tile by tile."""
        model_scale = tuple(float(s) for s in predictor.model.scale)
        expected = self.expected_scale(model_scale)
        if not np.allclose(model_scale, expected):
            raise ConfigError(self._scale_message(model_scale, expected))
        return predictor.tiled(image.data)

    def _scale_message(self, model_scale: tuple[float, ...], expected: tuple[float, ...]) -> str:
        return (
            f"The model's output is {_fmt(model_scale)} times its input (per spatial axis), but "
            f"PROBLEM.TYPE {self.problem_type} expects an output of the input's size; use "
            "PROBLEM.TYPE: SUPER_RESOLUTION with PROBLEM.SUPER_RESOLUTION.UPSCALING set to the "
            "model's scale, or a model made for this workflow."
        )

    def decode(self, raw: np.ndarray, image: Image) -> Decoded:
        """The model's image, converted as ``TEST.OUTPUT_DTYPE`` asks."""
        mode = str(self.cfg.get("TEST.OUTPUT_DTYPE"))
        return Decoded(images={"post_proc": convert_output(raw, image.data, mode)})

    def chunk_halo(self) -> int | None:
        """Per pixel, except ``input_rescale`` (the whole output's and input's ranges)."""
        return None if self.cfg.get("TEST.OUTPUT_DTYPE") == "input_rescale" else 0

    def decode_file(self, path: Path, image: Image) -> Decoded:
        """An existing restored image (``evaluate``): scored as it is."""
        return Decoded(images={"post_proc": image.data})

    def load_gt(self, path: Path, image: Image) -> np.ndarray:
        """The target image, channel first, in its own dtype (its size is checked at scoring)."""
        return read_image(Path(path), ndim=image.data.ndim - 1).data

    def score(self, decoded: Decoded, gt: Any, image: Image) -> Scored:
        """PSNR, SSIM, MAE, MSE of the output against ``gt``."""
        pred = decoded.images["post_proc"]
        if np.shape(gt) != pred.shape:
            raise InputError(
                f"The output for {image.path.name} has shape {pred.shape} but its ground truth "
                f"has shape {np.shape(gt)} (channel first); restoration metrics need the GT at "
                "the output's size (for super-resolution: the input's size times the scale)."
            )
        return Scored(row=restoration_metrics.compute(np.asarray(gt), pred, self.metric_names()))

    def metric_names(self) -> tuple[str, ...]:
        """The metrics chosen by ``TEST.METRICS`` (all four when empty), in table order."""
        asked = [str(m).lower() for m in (self.cfg.get("TEST.METRICS") or [])]
        unknown = [
            m for m in asked if m not in restoration_metrics.METRICS + _UNSUPPORTED_METRICS
        ]
        if unknown:
            raise ConfigError(
                f"TEST.METRICS has {unknown}, unknown for PROBLEM.TYPE {self.problem_type}; "
                f"choose among {list(restoration_metrics.METRICS)}."
            )
        skipped = [m for m in asked if m in _UNSUPPORTED_METRICS]
        if skipped:
            log.warn(f"TEST.METRICS {skipped} are not computed by this runner; skipped.")
        chosen = [m for m in restoration_metrics.METRICS if m in asked]
        return tuple(chosen) if asked else restoration_metrics.METRICS

    def summarize(self, decoded: Decoded, image: Image) -> dict[str, Any]:
        """Shape, dtype and intensity statistics of the output image."""
        out = decoded.images["post_proc"]
        return {
            "shape": "x".join(str(s) for s in out.shape),
            "dtype": str(out.dtype),
            "min": float(np.min(out)),
            "max": float(np.max(out)),
            "mean": float(np.mean(out)),
        }


def convert_output(raw: np.ndarray, source: np.ndarray, mode: str) -> np.ndarray:
    """Convert the model output ``raw`` as ``TEST.OUTPUT_DTYPE`` = ``mode`` says.

    ``float32``: the model's values as float32. ``input_cast``: the values rounded and clipped to
    the input's dtype (for models whose output is in the input's intensity units).
    ``input_rescale``: the output's min..max mapped linearly onto the input image's min..max, then
    cast like ``input_cast`` (for models that output normalized values).
    """
    if mode not in OUTPUT_DTYPES:
        raise ConfigError(
            f"TEST.OUTPUT_DTYPE is {mode!r}; choose one of {list(OUTPUT_DTYPES)}."
        )
    out = np.asarray(raw, dtype=np.float32)
    if mode == "float32":
        return out
    if mode == "input_rescale":
        out = _rescale(out, float(np.min(source)), float(np.max(source)))
    return _cast(out, source.dtype)


def _rescale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``values``' min..max linearly onto ``low..high`` (constant images go to ``low``)."""
    vmin, vmax = float(np.min(values)), float(np.max(values))
    if vmax == vmin:
        return np.full_like(values, low)
    scaled = (values.astype(np.float64) - vmin) / (vmax - vmin) * (high - low) + low
    return scaled.astype(np.float32)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip to an integer dtype's range, or cast to a float dtype."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if np.issubdtype(dtype, np.bool_):
        return values > 0.5
    return values.astype(dtype)


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


@register
class Denoising(RestorationWorkflow):
    """``DENOISING``: e.g. Noise2Void models; PROBLEM.DENOISING.* are training-only keys."""

    problem_type = "DENOISING"


@register
class SelfSupervised(RestorationWorkflow):
    """``SELF_SUPERVISED``: the pretext model's reconstruction of each image.

    The images are given to the model as they are: for a ``crappify`` pretext task, give
    degraded images and their originals as GT to score the reconstruction.
    """

    problem_type = "SELF_SUPERVISED"


@register
class ImageToImage(RestorationWorkflow):
    """``IMAGE_TO_IMAGE``: e.g. virtual staining (bright-field to fluorescence)."""

    problem_type = "IMAGE_TO_IMAGE"


@register
class SuperResolution(RestorationWorkflow):
    """``SUPER_RESOLUTION``: the output is the input's size times the model's scale."""

    problem_type = "SUPER_RESOLUTION"

    def expected_scale(self, model_scale: Sequence[float]) -> tuple[float, ...]:
        """``PROBLEM.SUPER_RESOLUTION.UPSCALING`` per spatial axis, or the model's own scale
        when the key is empty."""
        upscaling = upscaling_per_axis(
            self.cfg.get("PROBLEM.SUPER_RESOLUTION.UPSCALING"), len(model_scale)
        )
        if upscaling is None:
            log.info(f"  super-resolution: upscaling {_fmt(model_scale)} from the model")
            return tuple(model_scale)
        return upscaling

    def _scale_message(self, model_scale: tuple[float, ...], expected: tuple[float, ...]) -> str:
        return (
            f"PROBLEM.SUPER_RESOLUTION.UPSCALING is {_fmt(expected)} but the model's output axes "
            f"scale its input by {_fmt(model_scale)} (per spatial axis); set "
            f"PROBLEM.SUPER_RESOLUTION.UPSCALING to {_fmt(model_scale)} or choose a model made "
            "for the upscaling you want."
        )


def upscaling_per_axis(value: Any, ndim: int) -> tuple[float, ...] | None:
    """BiaPy's UPSCALING (an int, or a tuple per spatial axis (y, x) / (z, y, x)) as a tuple of
    ``ndim`` floats; ``None`` when unset (empty)."""
    if value is None or value == () or value == []:
        return None
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * ndim
    try:
        factors = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        factors = ()
    if len(factors) != ndim or any(f <= 0 for f in factors):
        raise ConfigError(
            f"PROBLEM.SUPER_RESOLUTION.UPSCALING is {value!r}; give one positive factor per "
            f"spatial axis ({ndim} here), e.g. {(2,) * ndim}."
        )
    return factors

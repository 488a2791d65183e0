"""Image-quality metrics of the restoration workflows: PSNR, SSIM, MAE and MSE.

PSNR, SSIM and MSE are scikit-image's own functions (``skimage.metrics``), so anyone can
reproduce a value from the two TIFFs. Both arrays are channel first, ``(C, *spatial)``.

Data range convention (used by PSNR and SSIM): for integer ground truth, the range of its dtype
(``iinfo.max - iinfo.min``: 255 for uint8, 65535 for uint16), which is scikit-image's default;
for floating-point ground truth, ``GT.max() - GT.min()`` (1.0 when the GT is constant).
SSIM uses scikit-image's defaults (7-pixel uniform window, per channel with ``channel_axis=0``
when there are several channels), the window shrunk to the largest odd size that fits the
smallest spatial axis of small images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from biapy_runner.errors import InputError

#: metric names in the order of the metrics table (BiaPy's ``TEST.METRICS`` keywords).
METRICS = ("psnr", "ssim", "mae", "mse")


def data_range(gt: np.ndarray) -> float:
    """The data range of ``gt`` under this module's convention (see the module docstring)."""
    if np.issubdtype(gt.dtype, np.integer):
        info = np.iinfo(gt.dtype)
        return float(info.max) - float(info.min)
    if np.issubdtype(gt.dtype, np.bool_):
        return 1.0
    span = float(np.max(gt)) - float(np.min(gt))
    return span if span > 0 else 1.0


def psnr(gt: np.ndarray, pred: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` when the images are identical)."""
    with np.errstate(divide="ignore"):
        return float(
            peak_signal_noise_ratio(_as_float(gt), _as_float(pred), data_range=data_range(gt))
        )


def ssim(gt: np.ndarray, pred: np.ndarray) -> float:
    """Structural similarity (mean SSIM over the image and its channels)."""
    true, test = _as_float(gt), _as_float(pred)
    channel_axis: int | None = 0
    if true.shape[0] == 1:
        true, test, channel_axis = true[0], test[0], None
    spatial = true.shape[1:] if channel_axis == 0 else true.shape
    return float(
        structural_similarity(
            true,
            test,
            data_range=data_range(gt),
            channel_axis=channel_axis,
            win_size=ssim_window(spatial),
        )
    )


def ssim_window(spatial_shape: Sequence[int]) -> int:
    """scikit-image's 7-pixel window, or the largest odd size fitting the smallest axis."""
    smallest = min(int(s) for s in spatial_shape)
    if smallest < 3:
        raise InputError(
            f"SSIM needs at least 3 pixels along every spatial axis; this image is "
            f"{tuple(spatial_shape)}. Leave 'ssim' out of TEST.METRICS for such small images."
        )
    return min(7, smallest if smallest % 2 else smallest - 1)


def mae(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_as_float(gt) - _as_float(pred))))


def mse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error (``skimage.metrics.mean_squared_error``)."""
    return float(mean_squared_error(_as_float(gt), _as_float(pred)))


_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "psnr": psnr,
    "ssim": ssim,
    "mae": mae,
    "mse": mse,
}


def compute(gt: np.ndarray, pred: np.ndarray, names: Sequence[str] = METRICS) -> dict[str, float]:
    """The metrics ``names`` of ``pred`` against ``gt`` (same shape, channel first)."""
    if gt.shape != pred.shape:
        raise InputError(
            f"The prediction has shape {pred.shape} but its ground truth has shape {gt.shape} "
            "(channel first); restoration metrics need the same shape (for super-resolution the "
            "GT must be the input's size times the model's scale)."
        )
    return {name: _FUNCTIONS[name](gt, pred) for name in names}


def _as_float(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)

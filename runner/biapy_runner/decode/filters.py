"""Filters applied to raw model outputs before decoding (BiaPy's TEST.POST_PROCESSING median filters).

BiaPy applies ``TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS`` / ``MEDIAN_FILTER_SIZE`` pair by pair,
each a median filter of one channel at a time over the named plane (``"xy"``/``"yx"``), the
``z``-``y`` or ``z``-``x`` planes, or along ``z`` only; an even size is made odd by adding one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError

_AXES_2D = {"xy": (1, 1), "yx": (1, 1)}
_AXES_3D = {
    "xy": (0, 1, 1),
    "yx": (0, 1, 1),
    "zy": (1, 1, 0),
    "yz": (1, 1, 0),
    "zx": (1, 0, 1),
    "xz": (1, 0, 1),
    "z": (1, 0, 0),
}


def _footprint_size(axis: str, size: int, spatial_ndim: int) -> tuple[int, ...]:
    """Median window of one filter over the spatial axes ``(z, y, x)`` or ``(y, x)``."""
    table = _AXES_3D if spatial_ndim == 3 else _AXES_2D
    key = str(axis).lower()
    if key not in table:
        raise ConfigError(
            f"TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS: {axis!r} is not valid for "
            f"{spatial_ndim}D data; use one of {sorted(table)}."
        )
    size = int(size)
    if size < 1:
        raise ConfigError(
            f"TEST.POST_PROCESSING.MEDIAN_FILTER_SIZE: {size} must be a positive integer."
        )
    if size % 2 == 0:
        size += 1
    return tuple(size if used else 1 for used in table[key])


def median_filter_channels(
    raw: np.ndarray, axes: Sequence[str], size: Sequence[int] | int
) -> np.ndarray:
    """Median-filter each channel of ``raw`` ``(C, *spatial)`` as BiaPy does.

    ``axes`` lists BiaPy's MEDIAN_FILTER_AXIS values (``"xy"``, ``"yx"``, ``"zy"``, ``"yz"``,
    ``"zx"``, ``"xz"``, ``"z"``), applied in order; ``size`` is one size per axis entry (or a
    single size for all). Returns a new float array of the same shape; ``raw`` is not modified.
    Raises ``ConfigError`` for an axis that does not exist in the data's dimensionality or a
    number of sizes that does not match the number of axes.
    """
    if isinstance(axes, str):
        axes = [axes]
    sizes = [size] * len(axes) if isinstance(size, (int, np.integer)) else list(size)
    if len(sizes) != len(axes):
        raise ConfigError(
            "TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS and MEDIAN_FILTER_SIZE must have the same "
            f"length (got {len(axes)} axes and {len(sizes)} sizes)."
        )
    spatial_ndim = raw.ndim - 1
    out = np.array(raw, dtype=np.float32 if raw.dtype.kind != "f" else raw.dtype, copy=True)
    for axis, value in zip(axes, sizes):
        window = _footprint_size(axis, value, spatial_ndim)
        for c in range(out.shape[0]):
            out[c] = ndimage.median_filter(out[c], size=window)
    return out


def configured_median_filter(raw: np.ndarray, cfg: Config) -> np.ndarray:
    """``raw`` median-filtered as TEST.POST_PROCESSING.MEDIAN_FILTER(_AXIS/_SIZE) ask, or as it
    is when the filter is off."""
    key = "TEST.POST_PROCESSING.MEDIAN_FILTER"
    if not cfg.get(key):
        return raw
    return median_filter_channels(raw, cfg.get(key + "_AXIS"), cfg.get(key + "_SIZE"))

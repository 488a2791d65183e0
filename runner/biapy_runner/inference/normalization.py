"""BiaPy's DATA.NORMALIZATION for models whose rdf does not normalise their input themselves.

Statistics are taken over the whole image (per channel), never per tile. Types:
``div`` (divide by 255, or by 65535 when values exceed 255), ``scale_range`` (min..max to 0..1),
``zero_mean_unit_variance`` (``ZERO_MEAN_UNIT_VAR.MEAN_VAL/STD_VAL`` when set, else the image's
own); ``PERC_CLIP`` clips to percentiles (or fixed values) first.
"""

from __future__ import annotations

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError

KEY = "DATA.NORMALIZATION"


def _clip(image: np.ndarray, cfg: Config) -> np.ndarray:
    if not cfg.get(f"{KEY}.PERC_CLIP.ENABLE"):
        return image
    low, high = (float(cfg.get(f"{KEY}.PERC_CLIP.{k}")) for k in ("LOWER_VALUE", "UPPER_VALUE"))
    if low == -1 or high == -1:
        low_perc, high_perc = (
            float(cfg.get(f"{KEY}.PERC_CLIP.{k}")) for k in ("LOWER_PERC", "UPPER_PERC")
        )
        if not (0 <= low_perc < high_perc <= 100):
            raise ConfigError(
                f"{KEY}.PERC_CLIP is enabled but LOWER_PERC/UPPER_PERC are {low_perc}/{high_perc}: "
                "give percentiles with 0 <= LOWER_PERC < UPPER_PERC <= 100 (or LOWER_VALUE / "
                "UPPER_VALUE)."
            )
        low, high = np.percentile(image, [low_perc, high_perc])
    return np.clip(image, low, high)


def _per_channel(image: np.ndarray, reduce: str) -> np.ndarray:
    axes = tuple(range(1, image.ndim))
    return getattr(image, reduce)(axis=axes, keepdims=True)


def normalize(image: np.ndarray, cfg: Config) -> np.ndarray:
    """``image`` ``(C, *spatial)`` normalised as DATA.NORMALIZATION says, as float32."""
    data = _clip(np.asarray(image, dtype=np.float32), cfg)
    kind = str(cfg.get(f"{KEY}.TYPE"))
    if kind == "div":
        return data / (65535.0 if data.max() > 255 else 255.0)
    if kind == "scale_range":
        low, high = _per_channel(data, "min"), _per_channel(data, "max")
        return (data - low) / np.maximum(high - low, np.finfo(np.float32).eps)
    if kind in ("zero_mean_unit_variance", "custom"):
        mean = float(cfg.get(f"{KEY}.ZERO_MEAN_UNIT_VAR.MEAN_VAL"))
        std = float(cfg.get(f"{KEY}.ZERO_MEAN_UNIT_VAR.STD_VAL"))
        if mean == -1 or std == -1:
            mean, std = _per_channel(data, "mean"), _per_channel(data, "std")
        return (data - mean) / np.maximum(std, 1e-6)
    return data

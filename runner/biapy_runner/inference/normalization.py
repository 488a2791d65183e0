"""BiaPy's DATA.NORMALIZATION for models whose rdf does not normalise their input themselves.

Statistics are taken over the whole image (per channel), never per tile. Types:
``div`` (divide by 255, or by 65535 when values exceed 255), ``scale_range`` (min..max to 0..1),
``zero_mean_unit_variance`` (``ZERO_MEAN_UNIT_VAR.MEAN_VAL/STD_VAL`` when set, else the image's
own); ``PERC_CLIP`` clips to percentiles (or fixed values) first. Since BiaPy 3.7 the fixed
values are lists with one value per channel (one value applies to every channel); -1 = unset.
"""

from __future__ import annotations

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError

KEY = "DATA.NORMALIZATION"


def _channel_values(cfg: Config, key: str, channels: int) -> np.ndarray | None:
    """``key``'s value as ``(C, 1, ...)``-broadcastable floats, or None when unset (-1)."""
    raw = cfg.get(key)
    values = [float(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
    if not values or any(v == -1 for v in values):
        return None
    if len(values) not in (1, channels):
        raise ConfigError(
            f"{key} is {raw!r}: give one value, or one per image channel ({channels})."
        )
    return np.asarray(values, dtype=np.float32)


def _broadcast(values: np.ndarray, image: np.ndarray) -> np.ndarray:
    return values.reshape(-1, *([1] * (image.ndim - 1)))


def _clip(image: np.ndarray, cfg: Config) -> np.ndarray:
    if not cfg.get(f"{KEY}.PERC_CLIP.ENABLE"):
        return image
    low_v, high_v = (
        _channel_values(cfg, f"{KEY}.PERC_CLIP.{k}", image.shape[0])
        for k in ("LOWER_VALUE", "UPPER_VALUE")
    )
    if low_v is not None and high_v is not None:
        return np.clip(image, _broadcast(low_v, image), _broadcast(high_v, image))
    low_perc, high_perc = (
        _channel_values(cfg, f"{KEY}.PERC_CLIP.{k}", 1) for k in ("LOWER_PERC", "UPPER_PERC")
    )
    if low_perc is None or high_perc is None or not (0 <= low_perc[0] < high_perc[0] <= 100):
        raise ConfigError(
            f"{KEY}.PERC_CLIP is enabled but LOWER_PERC/UPPER_PERC are "
            f"{cfg.get(f'{KEY}.PERC_CLIP.LOWER_PERC')}/{cfg.get(f'{KEY}.PERC_CLIP.UPPER_PERC')}: "
            "give percentiles with 0 <= LOWER_PERC < UPPER_PERC <= 100 (or LOWER_VALUE / "
            "UPPER_VALUE)."
        )
    low, high = np.percentile(image, [float(low_perc[0]), float(high_perc[0])])
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
        mean_v, std_v = (
            _channel_values(cfg, f"{KEY}.ZERO_MEAN_UNIT_VAR.{k}", data.shape[0])
            for k in ("MEAN_VAL", "STD_VAL")
        )
        if mean_v is None or std_v is None:
            mean, std = _per_channel(data, "mean"), _per_channel(data, "std")
        else:
            mean, std = _broadcast(mean_v, data), _broadcast(std_v, data)
        return (data - mean) / np.maximum(std, 1e-6)
    return data

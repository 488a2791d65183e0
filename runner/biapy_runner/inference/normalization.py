"""BiaPy's DATA.NORMALIZATION for models whose rdf does not normalise their input themselves.

BiaPy 3.7.1's ``biapy/data/norm.py`` is the reference. Statistics are taken over the whole image,
channel by channel, never per tile. Types: ``div`` (divide by 255, or by 65535 when the channel's
values exceed 255; a float channel already within 0..1 is left as it is),
``scale_range`` (the channel's min..max to 0..1), ``zero_mean_unit_variance``
(``ZERO_MEAN_UNIT_VAR.MEAN_VAL/STD_VAL`` when set, else the channel's own); ``PERC_CLIP`` clips
each channel to its percentiles (or fixed values) first. A binary channel (only 0 and 1) is
neither clipped nor normalised. Since BiaPy 3.7 the fixed values are lists with one value per
channel (one value applies to every channel); -1 = unset.

An image read by chunks is normalised region by region with statistics computed over the whole
image beforehand (``stats``: the keys ``statistics_needed`` names, see ``inference/chunked.py``).
"""

from __future__ import annotations

from typing import Any

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


#: scale_range's and zero_mean_unit_variance's smallest denominator (BiaPy's ``eps``)
EPS = 1e-6


def statistics_needed(cfg: Config) -> tuple[tuple[float, float] | None, set[str]]:
    """What ``normalize`` takes from the whole image: the clipping percentiles (None when it
    does not clip by percentiles; ``stats["clip"]`` then holds ``(low, high)`` per channel),
    ``"binary_c"`` (per channel: only 0 and 1) and the statistics of the (clipped) image among
    ``"min_c"``/``"max_c"`` and ``"mean_c"``/``"std_c"`` (per channel)."""
    clip = None
    if cfg.get(f"{KEY}.PERC_CLIP.ENABLE") and _fixed_clip(cfg, 1) is None:
        clip = _clip_percentiles(cfg)
    kind = str(cfg.get(f"{KEY}.TYPE"))
    if kind == "div":
        return clip, {"binary_c", "max_c"}
    if kind == "scale_range":
        return clip, {"binary_c", "min_c", "max_c"}
    if kind in ("zero_mean_unit_variance", "custom") and _fixed_moments(cfg, 1) is None:
        return clip, {"binary_c", "mean_c", "std_c"}
    return clip, {"binary_c"}


def _fixed_clip(cfg: Config, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    low_v, high_v = (
        _channel_values(cfg, f"{KEY}.PERC_CLIP.{k}", channels)
        for k in ("LOWER_VALUE", "UPPER_VALUE")
    )
    return None if low_v is None or high_v is None else (low_v, high_v)


def _clip_percentiles(cfg: Config) -> tuple[float, float]:
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
    return float(low_perc[0]), float(high_perc[0])


def _fixed_moments(cfg: Config, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    mean_v, std_v = (
        _channel_values(cfg, f"{KEY}.ZERO_MEAN_UNIT_VAR.{k}", channels)
        for k in ("MEAN_VAL", "STD_VAL")
    )
    return None if mean_v is None or std_v is None else (mean_v, std_v)


def _clip(image: np.ndarray, cfg: Config, stats: dict[str, Any] | None = None) -> np.ndarray:
    if not cfg.get(f"{KEY}.PERC_CLIP.ENABLE"):
        return image
    fixed = _fixed_clip(cfg, image.shape[0])
    if fixed is not None:
        return np.clip(image, _broadcast(fixed[0], image), _broadcast(fixed[1], image))
    if stats is not None:
        low, high = (np.asarray(v, dtype=np.float32) for v in zip(*stats["clip"]))
    else:
        low, high = np.percentile(image.reshape(len(image), -1), list(_clip_percentiles(cfg)),
                                  axis=1).astype(np.float32)
    return np.clip(image, _broadcast(low, image), _broadcast(high, image))


def binary_channels(image: np.ndarray) -> np.ndarray:
    """Per channel of ``(C, ...)``: whether it holds only 0 and 1 (BiaPy leaves those as they
    are)."""
    flat = image.reshape(len(image), -1)
    return ((flat == 0) | (flat == 1)).all(axis=1)


def _per_channel(image: np.ndarray, reduce: str) -> np.ndarray:
    axes = tuple(range(1, image.ndim))
    return getattr(image, reduce)(axis=axes, keepdims=True)


def normalize(image: np.ndarray, cfg: Config, stats: dict[str, Any] | None = None) -> np.ndarray:
    """``image`` ``(C, *spatial)`` normalised as DATA.NORMALIZATION says, as float32; with
    ``stats`` (a region of a larger image) the whole image's statistics instead of its own.

    Parameters
    ----------
    image : the image as read (its dtype decides ``div``'s rule for floats already in 0..1)
    cfg : the configuration
    stats : the whole image's statistics (``statistics_needed``), or None: the image's own

    Returns
    -------
    np.ndarray
        float32, the shape of ``image``; binary channels unchanged.
    """
    raw = np.asarray(image)
    binary = np.asarray(stats["binary_c"]) if stats is not None else binary_channels(raw)
    data = raw.astype(np.float32)
    if binary.all():
        return data
    normalised = _normalized(_clip(data, cfg, stats), cfg, stats, integer=raw.dtype.kind in "biu")
    return np.where(_broadcast(binary, data), data, normalised) if binary.any() else normalised


def _normalized(data: np.ndarray, cfg: Config, stats: dict[str, Any] | None, *,
                integer: bool) -> np.ndarray:
    kind = str(cfg.get(f"{KEY}.TYPE"))
    if kind == "div":
        top = np.asarray(stats["max_c"]) if stats is not None else _per_channel(data, "max")
        divisor = np.where(np.asarray(top) > 255, 65535.0, 255.0)
        if not integer:  # a float channel already within 0..1 is not divided again
            divisor = np.where(np.asarray(top) <= 1.0, 1.0, divisor)
        return data / _broadcast(divisor.astype(np.float32), data)
    if kind == "scale_range":
        if stats is not None:
            low, high = _broadcast(stats["min_c"], data), _broadcast(stats["max_c"], data)
        else:
            low, high = _per_channel(data, "min"), _per_channel(data, "max")
        return (data - low) / np.maximum(high - low, EPS)
    if kind in ("zero_mean_unit_variance", "custom"):
        fixed = _fixed_moments(cfg, data.shape[0])
        if fixed is not None:
            mean, std = _broadcast(fixed[0], data), _broadcast(fixed[1], data)
        elif stats is not None:
            mean, std = _broadcast(stats["mean_c"], data), _broadcast(stats["std_c"], data)
        else:
            mean, std = _per_channel(data, "mean"), _per_channel(data, "std")
        return (data - mean) / np.maximum(std, EPS)
    return data

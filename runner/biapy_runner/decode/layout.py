"""Where each named instance channel lies in a raw prediction, for the non-watershed decoders.

BiaPy names a model's instance outputs with ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS``; some names
cover several output channels: ``E_offset`` and ``E_sigma`` one per spatial axis, ``R`` one per
ray (``DATA_CHANNELS_EXTRA_OPTS[0]["R"]["nrays"]``), ``A`` one per affinity offset. The decoders
accept either those configured names (a multi-channel name then takes its width; ``E`` stands for
``E_offset``, ``E_sigma``, ``E_seediness`` as BiaPy expands it) or one name per output channel (a
run of equal names is one entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biapy_runner.config.load import Config, voxel_spacing
from biapy_runner.errors import ConfigError
from biapy_runner.io.images import label_dtype

IS = "PROBLEM.INSTANCE_SEG."
#: names whose width is the number of spatial axes
PER_AXIS = ("E_offset", "E_sigma")
#: names whose width is configured (rays, affinity offsets): they take what the others leave
VARIABLE = ("R", "A")
#: BiaPy's shorthand channels and what they expand to
EXPANSIONS = {"E": ("E_offset", "E_sigma", "E_seediness")}


def _fixed_width(name: str, ndim: int) -> int | None:
    if name in PER_AXIS:
        return ndim
    return None if name in VARIABLE else 1


def _runs(names: Sequence[str]) -> list[tuple[str, int]]:
    runs: list[tuple[str, int]] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + 1)
        else:
            runs.append((name, 1))
    return runs


def _widths_ok(runs: list[tuple[str, int]], ndim: int) -> bool:
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        return False
    return all(_fixed_width(n, ndim) in (None, w) for n, w in runs)


def channel_slices(channels: Sequence[str], n_raw: int, ndim: int) -> dict[str, slice]:
    """Slice of the raw channel axis that each channel name occupies.

    Parameters
    ----------
    channels : sequence of str
        Configured names (``["E_offset", "E_sigma", "E_seediness"]``) or one name per output
        channel (``["E_offset", "E_offset", "E_sigma", ...]``).
    n_raw : int
        Number of channels of the raw prediction.
    ndim : int
        Number of spatial axes (2 or 3).

    Returns
    -------
    dict of str to slice
        ``{name: slice}`` in channel order.

    Raises
    ------
    ConfigError
        When the names cannot account for ``n_raw`` channels.
    """
    names = [part for c in channels for part in EXPANSIONS.get(str(c), (str(c),))]
    per_channel = _runs(names)
    if len(names) == n_raw and _widths_ok(per_channel, ndim):
        runs = per_channel
    else:
        fixed = [_fixed_width(n, ndim) for n in names]
        n_variable = sum(w is None for w in fixed)
        rest = n_raw - sum(w or 0 for w in fixed)
        runs = [(n, rest if w is None else w) for n, w in zip(names, fixed)]
        if (
            len(set(names)) != len(names)
            or n_variable > 1
            or rest < (1 if n_variable else 0)
            or not n_variable
            and rest != 0
        ):
            runs = []
    if not runs:
        raise ConfigError(
            f"{IS}DATA_CHANNELS {names} does not describe the model's {n_raw} output channel(s) "
            f"for {ndim}D data (E_offset and E_sigma take {ndim} channels each, R one per ray, "
            "A one per affinity offset, every other name one). Set DATA_CHANNELS to the channels "
            "the model predicts, in its order."
        )
    out: dict[str, slice] = {}
    start = 0
    for name, width in runs:
        out[name] = slice(start, start + width)
        start += width
    return out


def require(slices: dict[str, slice], needed: Sequence[str], process: str) -> None:
    """ConfigError naming the channels ``process`` needs that ``slices`` lacks."""
    missing = [n for n in needed if n not in slices]
    if missing:
        raise ConfigError(
            f"{IS}INSTANCE_CREATION_PROCESS '{process}' needs the channel(s) {missing} in "
            f"{IS}DATA_CHANNELS (got {list(slices)})."
        )


def extra_opts(cfg: Config, name: str) -> dict[str, Any]:
    """The options of channel ``name`` in ``DATA_CHANNELS_EXTRA_OPTS[0]`` (empty if unset)."""
    opts = cfg.get(IS + "DATA_CHANNELS_EXTRA_OPTS", [{}]) or [{}]
    first = opts[0] if isinstance(opts, list) else opts
    value = (first or {}).get(name, {}) if isinstance(first, dict) else {}
    return dict(value or {})


def spacing(cfg: Config, ndim: int) -> tuple[float, ...]:
    """Voxel size per spatial axis from ``DATA.TEST.RESOLUTION`` (ones when unset)."""
    res = tuple(cfg.get("DATA.TEST.RESOLUTION", (-1,)) or ())
    return voxel_spacing(res[-ndim:] if len(res) > ndim else res, ndim)


def as_labels(labels: np.ndarray) -> np.ndarray:
    """Integer labels in the smallest unsigned dtype that holds them."""
    return labels.astype(label_dtype(int(labels.max(initial=0))), copy=False)

"""The watershed of BiaPy's legacy channel strings (``BC``, ``BCM``, ``BCD``, ``BP``, ...).

BiaPy < 3.7 rules: seeds are the AND of the thresholded channels (``DATA_MW_TH_TYPE`` ``auto``:
Otsu, with the foreground threshold half the binary-mask one; ``manual``: the
``DATA_MW_TH_BINARY_MASK`` / ``_CONTOUR`` / ``_FOREGROUND`` / ``_DISTANCE`` / ``_POINTS``
values), restricted to the growth mask, labelled (face connectivity) and grown over the binary
channel inside the foreground.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.segmentation import relabel_sequential

from biapy_runner import log
from biapy_runner.decode.channels import Channels
from biapy_runner.decode.watershed import (
    DecodeResult,
    WatershedOptions,
    _morph_planes,
    _otsu,
    grow_seeds,
    label_components,
    label_dtype,
)
from biapy_runner.errors import ConfigError


@dataclass
class Condition:
    """One thresholded channel: ``channel op threshold`` (threshold None = Otsu)."""

    channel: str
    op: str
    threshold: float | None
    #: name under which the threshold is reported (default ``<channel><op>``)
    name: str = ""


@dataclass
class DecodeSettings(WatershedOptions):
    """The legacy (channel string) watershed's thresholds (plus the common options)."""

    th_auto: bool = True
    th_binary_mask: float = 0.5
    th_contour: float = 0.1
    th_foreground: float = 0.3
    th_distance: float = 1.0
    th_points: float = 0.5


class _Plan:
    """Seeds, surface and growth mask of one channel set, evaluated on one prediction."""

    def __init__(self, raw: np.ndarray, channels: Channels, st: DecodeSettings) -> None:
        if raw.shape[0] != len(channels.names):
            raise ConfigError(
                f"The prediction has {raw.shape[0]} channels but "
                f"PROBLEM.INSTANCE_SEG.DATA_CHANNELS names {len(channels.names)} "
                f"({', '.join(channels.names)})."
            )
        self.raw, self.ch, self.st = raw, channels, st
        self.used: dict[str, float] = {}

    def get(self, name: str) -> np.ndarray:
        return self.raw[self.ch.index(name)]

    def threshold(self, cond: Condition) -> np.ndarray:
        x = self.get(cond.channel)
        th = _otsu(x) if cond.threshold is None else float(cond.threshold)
        self.used[cond.name or f"{cond.channel}{cond.op}"] = th
        return x > th if cond.op == ">" else x < th

    def all_of(self, conds: Sequence[Condition]) -> np.ndarray:
        out = self.threshold(conds[0])
        for cond in conds[1:]:
            out &= self.threshold(cond)
        return out


def _legacy_thresholds(plan: _Plan) -> dict[str, float | None]:
    """BiaPy's legacy thresholds; in auto mode the seed ones are Otsu and FOREGROUND = BINARY/2."""
    st, names = plan.st, plan.ch.names
    if not st.th_auto:
        return {
            "bm": st.th_binary_mask,
            "ct": st.th_contour,
            "fg": st.th_foreground,
            "dist": st.th_distance,
            "pt": st.th_points,
        }
    bm = _otsu(plan.get("B")) if "B" in names else None
    return {
        "bm": bm,
        "ct": _otsu(plan.get("C")) if "C" in names else None,
        "fg": bm / 2 if bm is not None else None,
        "dist": st.th_distance,
        "pt": _otsu(plan.get("P")) if "P" in names else None,
    }


def _legacy_plan(plan: _Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Seeds (bool), surface (high inside objects) and growth mask for a legacy channel string."""
    t = _legacy_thresholds(plan)
    names = plan.ch.names
    if names == ("C",):
        c = plan.get("C")
        bm = _otsu(1 - c) if plan.st.th_auto else t["bm"]
        ct = t["ct"]
        fg = bm / 2 if plan.st.th_auto else t["fg"]
        plan.used.update({"TH_BINARY_MASK": bm, "TH_CONTOUR": ct, "TH_FOREGROUND": fg})
        return ((1 - c) > bm) & (c < ct), 1 - c, (1 - c) > fg
    if names == ("Dv2",):
        d = plan.get("Dv2")
        plan.used["TH_DISTANCE"] = t["dist"]
        return d < t["dist"], -d, None
    seed_conds = [Condition("B", ">", t["bm"], "TH_BINARY_MASK")]
    if "C" in names:
        seed_conds.append(Condition("C", "<", t["ct"], "TH_CONTOUR"))
    if "P" in names:
        seed_conds.append(Condition("P", ">", t["pt"], "TH_POINTS"))
    if "D" in names:
        seed_conds.append(Condition("D", ">", t["dist"], "TH_DISTANCE"))
    if "Dv2" in names:
        seed_conds.append(Condition("Dv2", "<", t["dist"], "TH_DISTANCE"))
    if names == ("B", "P"):
        seed_conds = [Condition("P", ">", t["pt"], "TH_POINTS")]
    seeds = plan.all_of(seed_conds)
    fg = t["fg"] if t["fg"] is not None else t["bm"]
    if names == ("B", "P") and plan.st.th_auto:
        fg = _otsu(plan.get("B"))
    growth = plan.threshold(Condition("B", ">", fg, "TH_FOREGROUND"))
    surface = -plan.get("Dv2") if "Dv2" in names else plan.get("B")
    return seeds, surface, growth


def decode_instances(raw: np.ndarray, channels: Channels, st: DecodeSettings) -> DecodeResult:
    """Instance labels from a prediction in a legacy channel string (BiaPy < 3.7 rules).

    Parameters
    ----------
    raw
        Channel-first prediction ``(C, *spatial)``.
    channels
        The legacy channels.
    st
        Thresholds and options.

    Returns
    -------
    DecodeResult
        Labels ``(*spatial)``, the thresholds used and the number of seeds.
    """
    raw = np.asarray(raw, dtype=np.float32)
    plan = _Plan(raw, channels, st)
    seeds, surface, growth = _legacy_plan(plan)
    if st.seed_morph_sequence:
        seeds = _morph_planes(seeds, list(zip(st.seed_morph_sequence, st.seed_morph_radius)))
    if growth is not None and st.close_growth_mask:
        growth = _morph_planes(
            growth, [("dilate", st.fore_dilation_radius), ("erode", st.fore_erosion_radius)]
        )
    if growth is not None:
        seeds &= growth
    markers, _ = label_components(seeds, 1)
    if st.remove_before and st.small_before > 0:
        sizes = np.bincount(markers.ravel())
        small = sizes < int(st.small_before)
        small[0] = False
        markers[small[markers]] = 0
        markers, _, _ = relabel_sequential(markers)
    n_seeds = int(markers.max())
    log.info(
        f"watershed: {n_seeds} seeds, thresholds "
        + ", ".join(f"{k}={v:.3g}" for k, v in plan.used.items())
    )
    labels = grow_seeds(markers, surface, growth, st.by_2d_slices)
    dtype = label_dtype(int(labels.max()))
    return DecodeResult(labels.astype(dtype, copy=False), plan.used, n_seeds)

"""From BiaPy instance channels to instance labels: channel semantics and marker-controlled watershed.

BiaPy describes what an instance model predicts with ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS``:

- legacy strings (BiaPy < 3.7): ``B`` binary mask of each instance without its contour, ``C``
  contour, ``M`` whole foreground mask (B and C), ``D`` distance to the contour, ``Dv2`` distance
  that also covers the background (low at the centre), ``P`` central points; combined as
  ``B, C, BC, BCM, BCD, BCDv2, BD, BDv2, BP, BCP, Dv2``. Thresholds come from
  ``DATA_MW_TH_TYPE`` (``auto``: Otsu) and ``DATA_MW_TH_BINARY_MASK`` / ``_CONTOUR`` /
  ``_FOREGROUND`` / ``_DISTANCE`` / ``_POINTS``.
- the 3.7 list form, e.g. ``["F", "C"]``: ``F`` foreground, ``B`` background, ``P`` central part,
  ``C`` contour, ``Db`` distance to the boundary, ``Dc`` distance to the centre, ``D`` signed
  distance; the seeds, the topographic surface and the growth mask come from
  ``PROBLEM.INSTANCE_SEG.WATERSHED.*`` (empty = chosen from the channels, thresholds ``auto`` =
  Otsu).

Seeds are thresholded channels (AND of the seed conditions), optionally eroded/dilated slice by
slice and labelled (face connectivity); they grow with ``skimage.segmentation.watershed`` over the
negated topographic surface inside the growth mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.morphology import disk
from skimage.segmentation import relabel_sequential, watershed

from biapy_runner import log
from biapy_runner.config.schema import BINARY_CHANNELS as SCHEMA_BINARY
from biapy_runner.config.schema import (
    INSTANCE_CHANNELS,
    LEGACY_BINARY_CHANNELS,
    LEGACY_CHANNEL_SETS,
    WATERSHED_CHANNEL_DIRECTIONS,
)
from biapy_runner.decode.thresholds import otsu
from biapy_runner.errors import ConfigError
from biapy_runner.io.images import label_dtype

#: legacy channel strings this decoder understands (the vocabulary is config/schema.py's)
LEGACY_CHANNELS = {
    name: tokens
    for name, tokens in LEGACY_CHANNEL_SETS.items()
    if set(tokens) <= {"B", "C", "M", "D", "Dv2", "P"}
}
#: 3.7 channel names this decoder understands, with the direction of "inside an object".
LIST_DIRECTIONS = WATERSHED_CHANNEL_DIRECTIONS
#: 3.7 channel names BiaPy knows but that need other decoders (embeddings, rays, affinities...).
LIST_UNSUPPORTED = set(INSTANCE_CHANNELS) - set(LIST_DIRECTIONS)
#: Channels whose model output is a probability (per-channel IoU against GT-derived targets).
BINARY_CHANNELS = set(SCHEMA_BINARY) | set(LEGACY_BINARY_CHANNELS)


@dataclass(frozen=True)
class Channels:
    """The configured channels: one name per model output channel, and the spelling used."""

    names: tuple[str, ...]
    legacy: bool

    def index(self, name: str) -> int:
        """Position of channel ``name`` in the model output."""
        return self.names.index(name)

    @property
    def foreground_channel(self) -> str | None:
        """The channel giving the probability of being inside an object (None if there is none)."""
        for name in ("B", "M") if self.legacy else ("F", "M", "P"):
            if name in self.names:
                return name
        return None


def parse_channels(value: Any) -> Channels:
    """Read ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS`` in either spelling; ``ConfigError`` if unknown."""
    key = "PROBLEM.INSTANCE_SEG.DATA_CHANNELS"
    if isinstance(value, str):
        if value in LEGACY_CHANNELS:
            return Channels(LEGACY_CHANNELS[value], legacy=True)
        raise ConfigError(
            f"{key} = {value!r} is not a channel set this runner can decode; use one of "
            f"{', '.join(LEGACY_CHANNELS)} or a list such as ['F', 'C']."
        )
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key} must be a string such as 'BC' or a list such as ['F', 'C'].")
    names = tuple(str(v) for v in value)
    for name in names:
        if name in LIST_UNSUPPORTED:
            raise ConfigError(
                f"{key} contains {name!r}, a channel that needs a decoder other than "
                "marker-controlled watershed; this runner decodes F, B, P, C, M, Db, Dc and D."
            )
        if name not in LIST_DIRECTIONS:
            raise ConfigError(
                f"{key} contains unknown channel {name!r}; BiaPy's channels are "
                f"{', '.join(sorted(set(LIST_DIRECTIONS) | LIST_UNSUPPORTED))}."
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{key} = {list(names)} repeats a channel.")
    return Channels(names, legacy=False)


@dataclass
class Condition:
    """One thresholded channel: ``channel op threshold`` (threshold None = Otsu)."""

    channel: str
    op: str
    threshold: float | None
    #: name under which the threshold is reported (default ``<channel><op>``)
    name: str = ""


@dataclass
class DecodeSettings:
    """Everything the watershed needs besides the channels (built from the config)."""

    th_auto: bool = True
    th_binary_mask: float = 0.5
    th_contour: float = 0.1
    th_foreground: float = 0.3
    th_distance: float = 1.0
    th_points: float = 0.5
    seed_channels: list[str] = field(default_factory=list)
    seed_thresholds: list[Any] = field(default_factory=list)
    surface_channel: str = ""
    growth_channels: list[str] = field(default_factory=list)
    growth_thresholds: list[Any] = field(default_factory=list)
    remove_before: bool = False
    small_before: int = 10
    seed_morph_sequence: list[str] = field(default_factory=list)
    seed_morph_radius: list[int] = field(default_factory=list)
    close_growth_mask: bool = False
    fore_erosion_radius: int = 5
    fore_dilation_radius: int = 5
    by_2d_slices: bool = False
    resolution: tuple[float, ...] = ()


@dataclass
class DecodeResult:
    """Instance labels plus what the decoder used (thresholds, for the log and tests)."""

    labels: np.ndarray
    thresholds: dict[str, float]
    n_seeds: int


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
        th = otsu(x) if cond.threshold is None else float(cond.threshold)
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
    bm = otsu(plan.get("B")) if "B" in names else None
    return {
        "bm": bm,
        "ct": otsu(plan.get("C")) if "C" in names else None,
        "fg": bm / 2 if bm is not None else None,
        "dist": st.th_distance,
        "pt": otsu(plan.get("P")) if "P" in names else None,
    }


def _legacy_plan(plan: _Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Seeds (bool), surface (high inside objects) and growth mask for a legacy channel string."""
    t = _legacy_thresholds(plan)
    names = plan.ch.names
    if names == ("C",):
        c = plan.get("C")
        bm = otsu(1 - c) if plan.st.th_auto else t["bm"]
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
        fg = otsu(plan.get("B"))
    growth = plan.threshold(Condition("B", ">", fg, "TH_FOREGROUND"))
    surface = -plan.get("Dv2") if "Dv2" in names else plan.get("B")
    return seeds, surface, growth


def _as_threshold(value: Any, key: str) -> float | None:
    if isinstance(value, str) and value.lower() == "auto":
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {value!r} must be a number or 'auto'.") from exc


def _conditions(
    names: Sequence[str], ths: Sequence[Any], ch: Channels, key: str
) -> list[Condition]:
    if ths and len(ths) != len(names):
        raise ConfigError(f"{key}_THRESH must have one value per channel in {key} ({list(names)}).")
    out = []
    for i, name in enumerate(names):
        if name not in ch.names:
            raise ConfigError(
                f"{key} names channel {name!r}, which is not in "
                f"PROBLEM.INSTANCE_SEG.DATA_CHANNELS ({list(ch.names)})."
            )
        th = _as_threshold(ths[i], key + "_THRESH") if ths else None
        out.append(Condition(name, LIST_DIRECTIONS[name], th))
    return out


def _default_seed_channels(ch: Channels) -> list[str]:
    names = ch.names
    if "P" in names:
        return ["P"]
    base = [n for n in ("F", "M", "B", "Db", "D", "Dc") if n in names][:1]
    if "C" in names:
        base.append("C")
    if "Db" in names and base[:1] != ["Db"]:
        base.append("Db")
    return base or [names[0]]


def _default_surface(ch: Channels) -> str:
    for name in ("Db", "D", "F", "M", "B", "Dc", "P", "C"):
        if name in ch.names:
            return name
    return ch.names[0]


def _default_growth(ch: Channels) -> list[str]:
    for name in ("F", "M", "B", "D", "C"):  # BiaPy 3.7: F before M (F+C+M grows in F)
        if name in ch.names:
            return [name]
    return []


def _growth_mask(plan: _Plan, names: Sequence[str], ths: Sequence[Any]) -> np.ndarray | None:
    """Union of the thresholded growth channels; ``auto`` is Otsu, halved for '>' channels."""
    key = "PROBLEM.INSTANCE_SEG.WATERSHED.GROWTH_MASK_CHANNELS"
    conds = _conditions(names, ths, plan.ch, key)
    mask = None
    for cond in conds:
        if cond.threshold is None:
            auto = otsu(plan.get(cond.channel))
            cond.threshold = auto / 2 if cond.op == ">" else auto
        cond.name = f"growth {cond.channel}{cond.op}"
        part = plan.threshold(cond)
        mask = part if mask is None else mask | part
    return mask


def _list_plan(plan: _Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Seeds, surface and growth mask for the 3.7 list form."""
    st, ch = plan.st, plan.ch
    key = "PROBLEM.INSTANCE_SEG.WATERSHED.SEED_CHANNELS"
    seed_names = st.seed_channels or _default_seed_channels(ch)
    seeds = plan.all_of(_conditions(seed_names, st.seed_thresholds, ch, key))
    surface_name = st.surface_channel or _default_surface(ch)
    if surface_name not in ch.names:
        raise ConfigError(
            f"PROBLEM.INSTANCE_SEG.WATERSHED.TOPOGRAPHIC_SURFACE_CHANNEL {surface_name!r} is not "
            f"in PROBLEM.INSTANCE_SEG.DATA_CHANNELS ({list(ch.names)})."
        )
    surface = plan.get(surface_name)
    if LIST_DIRECTIONS[surface_name] == "<":
        surface = -surface
    growth_names = st.growth_channels or _default_growth(ch)
    growth = _growth_mask(plan, growth_names, st.growth_thresholds) if growth_names else None
    return seeds, surface, growth


def _morph_slices(mask: np.ndarray, ops: Sequence[tuple[str, int]]) -> np.ndarray:
    """Binary erosions/dilations with a disk, slice by slice in 3D (as BiaPy does)."""
    out = mask.copy()
    planes = out if out.ndim == 3 else out[np.newaxis]
    for z in range(planes.shape[0]):
        for op, radius in ops:
            fn = ndimage.binary_dilation if op == "dilate" else ndimage.binary_erosion
            planes[z] = fn(planes[z], structure=disk(int(radius)))
    return out


def _seed_morphology(seeds: np.ndarray, st: DecodeSettings) -> np.ndarray:
    if not st.seed_morph_sequence:
        return seeds
    if len(st.seed_morph_sequence) != len(st.seed_morph_radius):
        raise ConfigError(
            "PROBLEM.INSTANCE_SEG.SEED_MORPH_SEQUENCE and SEED_MORPH_RADIUS must have the same "
            f"length (got {st.seed_morph_sequence} and {st.seed_morph_radius})."
        )
    for op in st.seed_morph_sequence:
        if op not in ("dilate", "erode"):
            raise ConfigError(
                f"PROBLEM.INSTANCE_SEG.SEED_MORPH_SEQUENCE: {op!r} must be 'dilate' or 'erode'."
            )
    return _morph_slices(seeds, list(zip(st.seed_morph_sequence, st.seed_morph_radius)))


def label_components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """``ndimage.label`` of a boolean ``mask`` (``connectivity`` as scikit-image's ``label``).

    The labels are uint16 when they fit (half the memory of scipy's default int32), else int32.
    """
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    out = np.empty(mask.shape, dtype=np.uint16)
    try:
        n = ndimage.label(mask, structure=structure, output=out)
    except RuntimeError:  # more than 65535 components
        return ndimage.label(mask, structure=structure)
    return out, int(n)


def mask_components(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, ...] | None]]:
    """Connected components (full connectivity) of ``mask`` and their bounding boxes."""
    comps, _ = label_components(mask, mask.ndim)
    return comps, ndimage.find_objects(comps)


def grow_seeds(
    markers: np.ndarray, surface: np.ndarray, mask: np.ndarray | None, by_slices: bool = False
) -> np.ndarray:
    """Marker-controlled watershed of ``-surface`` restricted to ``mask``, written into ``markers``.

    ``markers`` is overwritten with the labels and returned (pass a copy to keep the seeds).
    Labels cannot cross from one connected component of the mask to another, so each component
    holding seeds is flooded on its own bounding box (the same result, much less work on sparse
    foregrounds).
    """
    if by_slices and markers.ndim == 3:
        for z in range(markers.shape[0]):
            grow_seeds(markers[z], surface[z], None if mask is None else mask[z])
        return markers
    if mask is None:
        markers[...] = watershed(-surface, markers)
        return markers
    comps, boxes = mask_components(mask)
    for k, box in enumerate(boxes, start=1):
        if box is None:
            continue
        seeds = markers[box]
        if not seeds.any():
            continue
        # watershed keeps only this component's seeds and labels nothing outside it: the labels
        # agree with the seeds and are 0 wherever another component's labels may lie.
        grown = watershed(-surface[box], seeds, mask=comps[box] == k)
        np.maximum(seeds, grown, out=seeds)
    return markers


def decode_instances(raw: np.ndarray, channels: Channels, st: DecodeSettings) -> DecodeResult:
    """Instance labels ``(*spatial)`` from a channel-first prediction ``raw``."""
    raw = np.asarray(raw, dtype=np.float32)
    plan = _Plan(raw, channels, st)
    seeds, surface, growth = _legacy_plan(plan) if channels.legacy else _list_plan(plan)
    seeds = _seed_morphology(seeds, st)
    if growth is not None and st.close_growth_mask:
        growth = _morph_slices(
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


def channel_targets(gt: np.ndarray, channels: Channels, contour_mode: str = "thick") -> dict:
    """Binary targets of the probability channels derived from a GT label image as BiaPy does.

    Legacy: ``B`` = objects without their contour, ``C`` = contours
    (``find_boundaries(mode=contour_mode)``; ``dense`` = every pixel outside ``B``), ``M`` = all
    objects, ``P`` = the voxel nearest each object's centroid. List form: ``F`` = objects,
    ``B`` = background, ``C`` and ``P`` as above.
    """
    from skimage.segmentation import find_boundaries

    fg = gt > 0
    out: dict[str, np.ndarray] = {}
    contour = None
    if "C" in channels.names or channels.legacy:
        mode = "thick" if contour_mode == "dense" else contour_mode
        contour = find_boundaries(gt, mode=mode) & (fg if mode != "outer" else True)
        if contour_mode == "dense":
            contour = ~(fg & ~contour)
    for name in channels.names:
        if name == "C":
            out["C"] = contour
        elif name == "M" or name == "F":
            out[name] = fg
        elif name == "B" and channels.legacy:
            out["B"] = fg & ~contour if "C" in channels.names else fg
        elif name == "B":
            out["B"] = ~fg
        elif name == "P":
            out["P"] = _centroid_points(gt)
    return out


def _centroid_points(gt: np.ndarray) -> np.ndarray:
    points = np.zeros(gt.shape, dtype=bool)
    ids = np.unique(gt)
    ids = ids[ids > 0]
    if ids.size:
        centers = ndimage.center_of_mass(np.ones_like(gt), gt, ids)
        for c in centers:
            points[tuple(round(float(v)) for v in c)] = True
    return points

"""From BiaPy instance channels to instance labels: marker-controlled watershed.

The 3.7 list form follows BiaPy 3.7.1's ``watershed_by_channels``: seed channels (sorted so that
good starting channels come first) are thresholded and combined with AND; the growth mask is the
AND of its thresholded channels (``auto`` = half the Otsu threshold); HoVer-Net channels add a
Sobel edge map; seeds are opened/closed slice by slice (``WATERSHED.SEED_MORPH_*``), the growth
mask closed (``WATERSHED.ERODE_AND_DILATE_GROWTH_MASK``), the seeds labelled (face connectivity),
the topographic surface smoothed (Gaussian, sigma 1, truncated at 1 sigma) and the seeds grown
with ``skimage.segmentation.watershed`` inside the growth mask (or slice by slice,
``WATERSHED.BY_2D_SLICES``). Legacy strings keep the 3.6 rules (``DATA_MW_TH_*``).
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
from biapy_runner.config.load import Config
from biapy_runner.config.schema import WATERSHED_DEFAULTS
from biapy_runner.decode.channels import (
    GROWTH_HIGH,
    GROWTH_LOW,
    HVZ,
    SEED_HIGH,
    SEED_LOW,
    SEED_ORDER,
    SURFACE_LOW,
    Channels,
)
from biapy_runner.decode.thresholds import otsu
from biapy_runner.errors import ConfigError
from biapy_runner.io.images import label_dtype

IS = "PROBLEM.INSTANCE_SEG."
WS = IS + "WATERSHED."


@dataclass
class DecodeResult:
    """Instance labels plus what the decoder used (thresholds, for the log and tests)."""

    labels: np.ndarray
    thresholds: dict[str, float]
    n_seeds: int
    #: intermediate maps by name (seed map, topographic surface, growth mask)
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def _otsu(x: np.ndarray) -> float:
    """BiaPy 3.7's automatic threshold: Otsu (``decode.thresholds.otsu``), and the value itself
    for a constant channel (nothing passes a strict comparison with it)."""
    lo = float(x.min())
    return lo if float(x.max()) <= lo else otsu(x)


def _as_threshold(value: Any, key: str) -> float | None:
    """A configured threshold: a number, or None for ``auto`` (Otsu)."""
    if isinstance(value, str) and value.lower() == "auto":
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {value!r} must be a number or 'auto'.") from exc


def _sorted_by_seed_order(names: Sequence[str], ths: Sequence[Any]) -> list[tuple[str, Any]]:
    """Channels with their thresholds in BiaPy's seed order (``SEED_ORDER``, then by name)."""
    pairs = list(zip(names, ths))
    return sorted(pairs, key=lambda p: (SEED_ORDER.get(p[0], 999), p[0]))


def _resolve(
    names: Sequence[str], ths: Sequence[Any], default: Sequence[str], what: str
) -> tuple[list[str], list[Any]]:
    """Configured channels/thresholds of one role, or BiaPy's defaults for the channel set.

    Thresholds left empty are ``auto``; thresholds given for defaulted channels are kept when
    their count matches (as BiaPy does), else replaced by ``auto``.
    """
    key = WS + what
    chosen = list(names) if names else list(default)
    if not chosen:
        return [], []
    if not ths or (not names and len(ths) != len(chosen)):
        return chosen, ["auto"] * len(chosen)
    if len(ths) != len(chosen):
        raise ConfigError(
            f"{key}_THRESH = {list(ths)} must have one value per channel of {key} ({chosen})."
        )
    return chosen, list(ths)


@dataclass
class WatershedOptions:
    """The ``PROBLEM.INSTANCE_SEG.WATERSHED`` options common to both channel spellings."""

    remove_before: bool = False
    small_before: int = 10
    seed_morph_sequence: list[str] = field(default_factory=list)
    seed_morph_radius: list[int] = field(default_factory=list)
    close_growth_mask: bool = False
    fore_erosion_radius: int = 5
    fore_dilation_radius: int = 5
    by_2d_slices: bool = False


def watershed_options(cfg: Config) -> dict[str, Any]:
    """The ``WatershedOptions`` fields read from ``cfg`` (``ConfigError`` on a bad sequence).

    Parameters
    ----------
    cfg
        The configuration.

    Returns
    -------
    dict
        Keyword arguments of ``WatershedOptions`` (and its subclasses).
    """
    g = cfg.get
    sequence = [str(op) for op in g(WS + "SEED_MORPH_SEQUENCE")]
    radius = [int(r) for r in g(WS + "SEED_MORPH_RADIUS")]
    if len(sequence) != len(radius):
        raise ConfigError(
            f"{WS}SEED_MORPH_SEQUENCE and {WS}SEED_MORPH_RADIUS must have the same length "
            f"(got {sequence} and {radius})."
        )
    return {
        "remove_before": bool(g(WS + "DATA_REMOVE_BEFORE_MW")),
        "small_before": int(g(WS + "DATA_REMOVE_SMALL_OBJ_BEFORE")),
        "seed_morph_sequence": sequence,
        "seed_morph_radius": radius,
        "close_growth_mask": bool(g(WS + "ERODE_AND_DILATE_GROWTH_MASK")),
        "fore_erosion_radius": int(g(WS + "FORE_EROSION_RADIUS")),
        "fore_dilation_radius": int(g(WS + "FORE_DILATION_RADIUS")),
        "by_2d_slices": bool(g(WS + "BY_2D_SLICES")),
    }


@dataclass
class WatershedSettings(WatershedOptions):
    """BiaPy 3.7's ``PROBLEM.INSTANCE_SEG.WATERSHED`` options, resolved for one channel set."""

    seed_channels: list[str] = field(default_factory=list)
    seed_thresholds: list[Any] = field(default_factory=list)
    surface_channel: str = ""
    growth_channels: list[str] = field(default_factory=list)
    growth_thresholds: list[Any] = field(default_factory=list)
    db_discretize: bool = False


def watershed_settings(cfg: Config, channels: Channels) -> WatershedSettings:
    """The watershed options of ``cfg`` for the list-form ``channels`` (BiaPy's defaults filled).

    Parameters
    ----------
    cfg
        The configuration (``PROBLEM.INSTANCE_SEG.WATERSHED.*``, ``DATA_CHANNELS_EXTRA_OPTS``).
    channels
        The configured channels (list form).

    Returns
    -------
    WatershedSettings
        Seed, surface and growth channels with thresholds; ``ConfigError`` when the channel set
        has no BiaPy default and the WATERSHED keys are not set, or they name absent channels.
    """
    g = cfg.get
    default = WATERSHED_DEFAULTS.get(frozenset(channels.names), ((), "", ()))
    seeds, seed_ths = _resolve(
        [str(c) for c in g(WS + "SEED_CHANNELS")],
        g(WS + "SEED_CHANNELS_THRESH"),
        default[0],
        "SEED_CHANNELS",
    )
    growth_value = g(WS + "GROWTH_MASK_CHANNELS")
    growth_names = (
        [growth_value] if isinstance(growth_value, str) and growth_value else growth_value
    )
    growth, growth_ths = _resolve(
        [str(c) for c in growth_names or []],
        g(WS + "GROWTH_MASK_CHANNELS_THRESH"),
        default[2],
        "GROWTH_MASK_CHANNELS",
    )
    surface = g(WS + "TOPOGRAPHIC_SURFACE_CHANNEL") or default[1]
    surface = str(surface[0] if isinstance(surface, (list, tuple)) and surface else surface)
    if not seeds or not surface or not growth:
        raise ConfigError(
            f"{IS}DATA_CHANNELS = {list(channels.names)} has no default watershed in BiaPy: set "
            f"{WS}SEED_CHANNELS, {WS}SEED_CHANNELS_THRESH, {WS}TOPOGRAPHIC_SURFACE_CHANNEL, "
            f"{WS}GROWTH_MASK_CHANNELS and {WS}GROWTH_MASK_CHANNELS_THRESH."
        )
    for what, names in (
        ("SEED_CHANNELS", seeds),
        ("GROWTH_MASK_CHANNELS", growth),
        ("TOPOGRAPHIC_SURFACE_CHANNEL", [surface]),
    ):
        for name in names:
            if name not in channels.names:
                raise ConfigError(
                    f"{WS}{what} names channel {name!r}, which is not in {IS}DATA_CHANNELS "
                    f"({list(channels.names)})."
                )
    if "E" in seeds:
        raise ConfigError(f"{WS}SEED_CHANNELS: BiaPy's watershed does not use embeddings ('E').")
    from biapy_runner.decode.layout import extra_opts  # layout imports this module

    return WatershedSettings(
        seed_channels=seeds,
        seed_thresholds=seed_ths,
        surface_channel=surface,
        growth_channels=growth,
        growth_thresholds=growth_ths,
        **watershed_options(cfg),
        db_discretize="Db" in channels.names
        and extra_opts(cfg, "Db").get("val_type", "norm") == "discretize",
    )


def _minmax01(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def _sobel(x: np.ndarray, axis: int, ksize: int = 21) -> np.ndarray:
    """Sobel derivative of size ``ksize`` along ``axis``, smoothed along the other in-plane axes
    (never across z), with mirrored borders: OpenCV's separable Sobel kernels."""
    from math import comb

    n = ksize - 1
    smooth = np.array([comb(n, k) for k in range(ksize)], dtype=np.float64)
    base = np.array([comb(n - 1, k) for k in range(ksize - 1)], dtype=np.float64)
    deriv = np.concatenate([[0.0], base]) - np.concatenate([base, [0.0]])  # (-1, 0, 1) for 3
    axis %= x.ndim
    out = ndimage.correlate1d(x.astype(np.float64), deriv, axis=axis, mode="mirror")
    for ax in range(x.ndim - 2, x.ndim):
        if ax != axis:
            out = ndimage.correlate1d(out, smooth, axis=ax, mode="mirror")
    return out


def hover_edges(raw: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """BiaPy's edge map of the HoVer-Net channels: ``1 - minmax(sobel(minmax(ch)))`` per axis
    (H along x, V along y, Z along z), the maximum of them; high between touching objects."""
    edges = None
    for name, axis in (("H", -1), ("V", -2), ("Z", -3)):
        if name not in names or (name == "Z" and raw.ndim < 4):
            continue
        e = 1 - _minmax01(_sobel(_minmax01(raw[names.index(name)]), axis))
        edges = e if edges is None else np.maximum(edges, e)
    if edges is None:
        raise ConfigError(f"{IS}DATA_CHANNELS: the HoVer-Net seed channels need H and V.")
    return edges


def _grey_morph(mask: np.ndarray, op: str, radius: int) -> np.ndarray:
    """scikit-image's ``dilation``/``erosion`` of a 2D binary mask with a disk (mirrored borders)."""
    fn = ndimage.grey_dilation if op == "dilate" else ndimage.grey_erosion
    return fn(mask.view(np.uint8), footprint=disk(int(radius)), mode="reflect").astype(bool)


def _morph_planes(mask: np.ndarray, ops: Sequence[tuple[str, int]]) -> np.ndarray:
    """The morphological ``ops`` applied to each z plane of ``mask`` (the mask itself in 2D)."""
    out = mask.copy()
    planes = out if out.ndim == 3 else out[np.newaxis]
    for z in range(planes.shape[0]):
        for op, radius in ops:
            planes[z] = _grey_morph(planes[z], op, radius)
    return out


@dataclass
class _Maps:
    """The three inputs of the marker-controlled watershed and the thresholds that made them."""

    seeds: np.ndarray
    surface: np.ndarray
    growth: np.ndarray
    seed_ths: list[float] = field(default_factory=list)
    growth_ths: list[float] = field(default_factory=list)


def _th(value: Any, x: np.ndarray, key: str) -> float:
    th = _as_threshold(value, key)
    return _otsu(x) if th is None else th


def _affinity_maps(raw: np.ndarray, st: WatershedSettings) -> _Maps:
    """Seeds and growth mask from the minimum of the first affinity per spatial axis (BiaPy's
    ``A``: the short-range z, y, x group)."""
    short = raw[: raw.ndim - 1]
    fg = short.min(axis=0)
    th = _th(st.seed_thresholds[0], short, WS + "SEED_CHANNELS_THRESH")
    gth = _as_threshold(st.growth_thresholds[0], WS + "GROWTH_MASK_CHANNELS_THRESH")
    gth = th / 2 if gth is None else gth
    return _Maps(fg > th, -fg, fg > gth, [th], [gth])


def _seed_map(raw: np.ndarray, names: Sequence[str], st: WatershedSettings) -> _Maps:
    """Seeds, surface and growth mask of the list form, as BiaPy 3.7.1 builds them."""
    key = WS + "SEED_CHANNELS_THRESH"
    seeds: np.ndarray | None = None
    edges: np.ndarray | None = None
    maps = _Maps(np.zeros(0, bool), np.zeros(0), np.zeros(0, bool))
    pairs = _sorted_by_seed_order(st.seed_channels, st.seed_thresholds)
    for name, value in pairs:
        x = raw[names.index(name)]
        if seeds is None:
            base = 1 - x if name in SEED_LOW else x
            th = _th(value, base, key)
            seeds = base > th
        elif name in SEED_HIGH or name in SEED_LOW:
            th = _th(value, x, key)
            seeds &= (x > th) if name in SEED_HIGH else (x < th)
        elif name in HVZ and edges is None:
            edges = hover_edges(raw, names)
            manual = [_as_threshold(v, key) for n, v in pairs if n in HVZ]
            manual = [v for v in manual if v is not None]
            th = min(manual) if manual else _otsu(edges)
            seeds &= edges < th
        else:
            continue
        maps.seed_ths.append(th)
    key = WS + "GROWTH_MASK_CHANNELS_THRESH"
    growth: np.ndarray | None = None
    for name, value in _sorted_by_seed_order(st.growth_channels, st.growth_thresholds):
        x = raw[names.index(name)]
        base = 1 - x if growth is None and name in GROWTH_LOW else x
        th = _as_threshold(value, key)
        th = _otsu(base) / 2 if th is None else th
        maps.growth_ths.append(th)
        if growth is None:
            growth = base > th
        elif name in GROWTH_HIGH:
            growth &= x > th
        elif name in GROWTH_LOW:
            growth &= x < th
    if edges is not None:
        surface = edges - 1.0
    else:
        x = raw[names.index(st.surface_channel)]
        surface = x if st.surface_channel in SURFACE_LOW else -x
    assert seeds is not None and growth is not None
    maps.seeds, maps.surface, maps.growth = seeds, surface, growth
    return maps


def watershed_by_channels(
    raw: np.ndarray, channels: Channels, st: WatershedSettings
) -> DecodeResult:
    """Instance labels from a list-form prediction ``raw`` ``(C, *spatial)`` (BiaPy 3.7.1).

    Parameters
    ----------
    raw
        Channel-first prediction, one channel per name in ``channels`` (11 softmax channels for
        a discretized ``Db``).
    channels
        The configured channels.
    st
        The resolved watershed options.

    Returns
    -------
    DecodeResult
        Labels (not relabelled: seeds outside the growth mask leave gaps, as in BiaPy), the
        thresholds used and the seed, surface and growth maps (for ``DATA_CHECK_MW``).
    """
    raw = np.asarray(raw, dtype=np.float32)
    names = list(channels.names)
    if st.db_discretize:
        raw = (np.argmax(raw, axis=0)[np.newaxis] / 10.0).astype(np.float32)
        names = ["Db"]
    elif names != ["A"] and raw.shape[0] != len(names):  # A: one channel per axis and offset
        raise ConfigError(
            f"The prediction has {raw.shape[0]} channels but {IS}DATA_CHANNELS names "
            f"{len(names)} ({', '.join(names)})."
        )
    if st.seed_channels == ["A"]:
        maps = _affinity_maps(raw, st)
    else:
        maps = _seed_map(raw, names, st)
    seeds, growth = maps.seeds, maps.growth
    if st.seed_morph_sequence:
        seeds = _morph_planes(seeds, list(zip(st.seed_morph_sequence, st.seed_morph_radius)))
    if st.close_growth_mask:
        # BiaPy dilates by FORE_EROSION_RADIUS and then erodes by FORE_DILATION_RADIUS
        growth = _morph_planes(
            growth, [("dilate", st.fore_erosion_radius), ("erode", st.fore_dilation_radius)]
        )
    markers, _ = label_components(seeds, 1)
    surface = ndimage.gaussian_filter(
        maps.surface.astype(np.float32), sigma=1.0, mode="nearest", truncate=1.0
    )
    if st.remove_before:
        sizes = np.bincount(markers.ravel())
        small = sizes <= int(st.small_before)
        small[0] = False
        markers[small[markers]] = 0
        markers, _, _ = relabel_sequential(markers)
    seed_map = markers.copy()
    n_seeds = int(markers.max())
    log.info(
        f"watershed: {n_seeds} seeds, thresholds seed {[round(t, 4) for t in maps.seed_ths]}, "
        f"growth mask {[round(t, 4) for t in maps.growth_ths]}"
    )
    markers[~growth] = 0
    labels = grow_seeds(markers, -surface, growth, st.by_2d_slices)
    used = {f"seed {n}": t for n, t in zip(st.seed_channels, maps.seed_ths)}
    used.update({f"growth {n}": t for n, t in zip(st.growth_channels, maps.growth_ths)})
    return DecodeResult(
        labels.astype(label_dtype(int(labels.max()) if labels.size else 0), copy=False),
        used,
        n_seeds,
        {"seed_map": seed_map, "topographic_surface": surface, "growth_mask": growth},
    )


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

"""Instance-segmentation training targets: BiaPy 3.7.1's channels made from a label image.

One function per channel family, following BiaPy's ``labels_into_channels`` (data/pre_processing.py)
with the per-channel options that BiaPy's ``check_configuration`` fills in
(``PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS``; :func:`channel_options`). Distances use
scipy's exact Euclidean distance transform, which measures what BiaPy's ``edt`` package measures
(the image border is not a boundary). The binary channels F, B, C and M are
``decode.channels.channel_targets``'s (shared with the evaluation of GT-derived channels).

BiaPy's one known slip is not reproduced: with ``erosion``/``dilation`` options on ``B`` BiaPy
writes the modified *instances* into the background channel; here ``B`` stays the background
(the complement of the modified instances), which is what the watershed reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from biapy_runner.config.load import Config
from biapy_runner.decode.channels import channel_targets, parse_channels
from biapy_runner.decode.layout import IS, extra_opts
from biapy_runner.errors import ConfigError

#: channels whose GT is a probability (BCE); the rest are regressed
BINARY_CHANNELS = frozenset({"F", "B", "C", "P", "T", "A", "M"})
#: channels make_instance_targets builds
SUPPORTED = ("F", "B", "C", "M", "P", "Db", "Dc", "Dn", "D", "H", "V", "Z", "T", "R", "We")


def channel_options(cfg: Config, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-channel options with BiaPy 3.7.1's defaults (``check_configuration``) filled in.

    Parameters
    ----------
    cfg : Config
        Reads ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS`` and ``PROBLEM.NDIM``.
    names : sequence of str
        The channels.

    Returns
    -------
    dict
        Channel name -> options (``erosion``/``dilation`` for F and B, ``type``/``dilation``/
        ``erosion`` for P, ``mode`` for C, ``val_type``/``act``/``mask_values`` for Db, ...).
    """
    ndim = 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2
    out: dict[str, dict[str, Any]] = {}
    hvz = next((extra_opts(cfg, c) for c in ("Z", "V", "H") if extra_opts(cfg, c)), {})
    for name in names:
        given = extra_opts(cfg, name)
        if name in ("F", "B"):
            opts = {"erosion": 0, "dilation": 0}
        elif name == "P":
            opts = {"type": "centroid", "skeleton_mode": "full", "dilation": 1, "erosion": 0}
        elif name == "C":
            contour = cfg.get(IS + "DATA_CONTOUR_MODE", "thick")
            opts = {"mode": contour or "thick"}
        elif name in ("H", "V", "Z"):
            given = hvz
            opts = {"norm": True, "act": "linear"}
        elif name == "Db":
            val_type = given.get("val_type", "norm")
            act = given.get("act", "") or ("sigmoid" if val_type == "norm" else "")
            opts = {"val_type": val_type, "act": act, "mask_values": val_type != "omnipose"}
            given = {k: v for k, v in given.items() if k not in ("val_type", "act")}
        elif name == "Dc":
            opts = {"type": "centroid", "norm": True, "mask_values": True}
        elif name == "Dn":
            opts = {"closing_size": 3, "norm": True, "mask_values": True, "decline_power": 3}
        elif name == "D":
            opts = {"act": "tanh"}
        elif name == "R":
            opts = {"nrays": 32 if ndim == 2 else 96, "mask_values": True}
            if given.get("nrays", "") == "":
                given = {k: v for k, v in given.items() if k != "nrays"}
        elif name == "T":
            opts = {"thickness": 2}
        else:
            opts = {}
        opts.update(given)
        out[name] = opts
    return out


def instance_channel_names(cfg: Config) -> list[str]:
    """The target channels BiaPy builds for this configuration, in order: DATA_CHANNELS, plus
    ``We`` (the U-Net border weights) last when ``BORDER_EXTRA_WEIGHTS`` is ``unet-like``."""
    names = [n for n in parse_channels(cfg.get(IS + "DATA_CHANNELS")).names if n not in ("I", "We")]
    unknown = [n for n in names if n not in SUPPORTED]
    if unknown:
        raise ConfigError(
            f"{IS}DATA_CHANNELS = {names}: training targets for {unknown} are not implemented "
            f"(implemented: {', '.join(n for n in SUPPORTED if n != 'We')})."
        )
    if cfg.get(IS + "BORDER_EXTRA_WEIGHTS", "") == "unet-like":
        names.append("We")
    return names


def make_instance_targets(
    labels: np.ndarray,
    names: Sequence[str],
    options: dict[str, dict[str, Any]],
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """BiaPy's instance channels of one label image, channel first.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` integer instance labels (0 = background).
    names : sequence of str
        Target channels in order (:func:`instance_channel_names`); ``R`` takes ``nrays`` channels.
    options : dict
        Per-channel options (:func:`channel_options`).
    spacing : sequence of float, optional
        Voxel size per axis for the distances (BiaPy builds its training targets with ones).

    Returns
    -------
    numpy.ndarray
        ``(C, *labels.shape)`` float32. All zeros when the image holds fewer than two distinct
        values (BiaPy's rule: only background, or only one label filling everything).
    """
    vol = np.asarray(labels)
    if np.issubdtype(vol.dtype, np.floating):
        vol = vol.astype(np.uint32)
    vol = vol.astype(np.int64, copy=False)
    sp = tuple(float(s) for s in (spacing or (1.0,) * vol.ndim))[-vol.ndim :]
    widths = [int(options.get("R", {}).get("nrays", 0)) if n == "R" else 1 for n in names]
    out = np.zeros((sum(widths), *vol.shape), dtype=np.float32)
    if np.unique(vol).size <= 1:
        return out
    ids = np.unique(vol)
    ids = ids[ids > 0]
    built: dict[str, np.ndarray] = {}
    f_labels = None
    for name in names:
        opts = options.get(name, {})
        if name == "F":
            f_labels = _modified_instances(vol, ids, opts)
            built["F"] = (f_labels > 0) if f_labels is not None else vol > 0
        elif name == "B":
            modified = _modified_instances(vol, ids, opts)
            built["B"] = (modified == 0) if modified is not None else vol == 0
        elif name in ("C", "M"):
            continue  # after the loop (M needs F and C)
        elif name == "P":
            built["P"] = central_part(vol, ids, opts)
        elif name == "Db":
            built["Db"] = distance_to_boundary(vol, ids, opts, sp)
        elif name == "Dc":
            built["Dc"] = distance_to_centre(vol, ids, opts, sp)
        elif name == "Dn":
            built["Dn"] = distance_to_neighbour(vol, ids, opts, sp)
        elif name == "D":
            built["D"] = signed_distance(vol, ids, sp)
        elif name in ("H", "V", "Z"):
            if "H" not in built:
                built.update(hover_maps(vol, ids, bool(opts.get("norm", True)), sp))
        elif name == "T":
            built["T"] = touching(vol)
        elif name == "R":
            from biapy_runner.decode.stardist import ray_distances, rays

            directions = rays(int(opts["nrays"]), vol.ndim)
            # BiaPy's radial_distances normalises the rays once more (float32): same last bits
            directions = directions / (np.linalg.norm(directions[:, ::-1], axis=1, keepdims=True) + 1e-12)
            built["R"] = ray_distances(vol, directions.astype(np.float32))
        elif name == "We":
            weights_from = vol
            if "F" in names:
                weights_from = f_labels if f_labels is not None else (vol > 0).astype(np.int64)
            built["We"] = unet_border_weights(weights_from, sp)
    binary = channel_targets(vol, parse_channels(["C"]), str(options.get("C", {}).get("mode", "thick")))
    if "C" in names or "M" in names:
        built["C"] = binary["C"]
    if "M" in names:
        built["M"] = (vol > 0) | built["C"]
    start = 0
    for name, width in zip(names, widths):
        out[start : start + width] = built[name]
        start += width
    return out


def ellipse_footprint(radii: Sequence[int]) -> np.ndarray:
    """BiaPy's ellipse footprint (``generate_ellipse_footprint``): semi-axes ``radii`` per axis."""
    shape = [int(r) for r in radii]
    center = (np.array(shape) / 2).astype(int)
    ranges = [
        np.arange(center[i] - shape[i], center[i] + shape[i] + 1) if shape[i] > 0 else np.array([center[i]])
        for i in range(len(shape))
    ]
    grids = np.meshgrid(*ranges, indexing="ij")
    scale = [1 if s == 0 else s for s in shape]
    dist = sum(((grids[d] - center[d]) ** 2) / scale[d] ** 2 for d in range(len(shape)))
    return np.asarray(dist <= 1)


def _radii(value: Any, ndim: int) -> list[int] | None:
    radii = [int(value)] * ndim if isinstance(value, (int, np.integer)) else [int(v) for v in value]
    return radii if any(r > 0 for r in radii) else None


def _dilate(mask: np.ndarray, radii: list[int]) -> np.ndarray:
    return ndimage.binary_dilation(mask, ellipse_footprint(radii), border_value=0)


def _erode(mask: np.ndarray, radii: list[int]) -> np.ndarray:
    return ndimage.binary_erosion(mask, ellipse_footprint(radii), border_value=1)


def _modified_instances(vol: np.ndarray, ids: np.ndarray, opts: dict[str, Any]) -> np.ndarray | None:
    """Each instance dilated then eroded (``dilation``/``erosion`` radii), later labels on top;
    None when neither is set."""
    dil = _radii(opts.get("dilation", 0), vol.ndim)
    ero = _radii(opts.get("erosion", 0), vol.ndim)
    if dil is None and ero is None:
        return None
    out = np.zeros_like(vol)
    for lb in ids:
        m = vol == lb
        if dil is not None:
            m = _dilate(m, dil)
        if ero is not None:
            m = _erode(m, ero)
        out[m] = lb
    return out


def _boxes(vol: np.ndarray, ids: np.ndarray, pad: int = 0) -> list[tuple[slice, ...]]:
    found = ndimage.find_objects(vol, max_label=int(ids.max()) if ids.size else 0)
    boxes = []
    for lb in ids:
        box = found[int(lb) - 1]
        boxes.append(tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, vol.shape)))
    return boxes


def _edt(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    if mask.all():  # nothing to measure against (an object filling its whole box)
        return np.zeros(mask.shape, dtype=np.float32)
    return ndimage.distance_transform_edt(mask, sampling=spacing).astype(np.float32)


def _label_edt(vol: np.ndarray, ids: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance of each object voxel to the nearest voxel of another value (``edt.edt(labels)``)."""
    out = np.zeros(vol.shape, dtype=np.float32)
    for lb, box in zip(ids, _boxes(vol, ids, pad=1)):
        m = vol[box] == lb
        out[box][m] = _edt(m, spacing)[m]
    return out


def norm_per_instance(channel: np.ndarray, vol: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Min-max normalise ``channel`` inside each instance to [0, 1] (0 where constant and outside)."""
    out = np.zeros(channel.shape, dtype=np.float32)
    for lb in ids:
        m = vol == lb
        values = channel[m]
        lo, hi = values.min(), values.max()
        out[m] = 0 if hi == lo else (values - lo) / (hi - lo)
    return out


def central_part(vol: np.ndarray, ids: np.ndarray, opts: dict[str, Any]) -> np.ndarray:
    """``P``: the voxel nearest each centroid (or the skeleton), dilated then eroded."""
    points = np.zeros(vol.shape, dtype=bool)
    if opts.get("type", "centroid") == "skeleton":
        from skimage.morphology import skeletonize

        for lb, box in zip(ids, _boxes(vol, ids)):
            points[box] |= skeletonize(vol[box] == lb)
    else:
        for c in ndimage.center_of_mass(vol > 0, labels=vol, index=ids):
            at = tuple(int(round(float(v))) for v in c)
            if all(0 <= a < n for a, n in zip(at, vol.shape)):
                points[at] = True
    dil = _radii(opts.get("dilation", 1), vol.ndim)
    if dil is not None:
        points = _dilate(points, dil)
    ero = _radii(opts.get("erosion", 0), vol.ndim)
    if ero is not None:
        points = _erode(points, ero)
    return points


def distance_to_boundary(
    vol: np.ndarray, ids: np.ndarray, opts: dict[str, Any], spacing: Sequence[float]
) -> np.ndarray:
    """``Db``: distance to the object's boundary; ``val_type`` ``norm`` (per instance, [0, 1]),
    ``raw``, ``discretize`` (bins 1..10 of the normalised value, 0 background) or ``omnipose``."""
    val_type = opts.get("val_type", "norm")
    if val_type == "omnipose":
        from biapy_runner.decode.omnipose import distance_and_flows

        dist = distance_and_flows(vol)[0].astype(np.float32)
        dist[dist <= 0] = -float(opts.get("dist_bg", 5.0))
        return dist
    dist = _label_edt(vol, ids, spacing)
    if val_type not in ("norm", "discretize"):
        return dist
    dist = norm_per_instance(dist, vol, ids)
    if val_type == "discretize":
        bins = np.clip(np.floor(np.clip(dist, 0.0, 1.0) / 0.1).astype(np.int64), 0, 9)
        dist = np.where(vol > 0, bins + 1, 0).astype(np.float32)
    return dist


def distance_to_centre(
    vol: np.ndarray, ids: np.ndarray, opts: dict[str, Any], spacing: Sequence[float]
) -> np.ndarray:
    """``Dc``: distance of each object voxel to its centroid (or skeleton), optionally normalised
    per instance."""
    out = np.zeros(vol.shape, dtype=np.float32)
    skeleton = opts.get("type", "centroid") == "skeleton"
    centres = ndimage.center_of_mass(np.ones(vol.shape), labels=vol, index=ids)
    for lb, box, c in zip(ids, _boxes(vol, ids), centres):
        sub = vol[box] == lb
        if skeleton:
            from skimage.morphology import skeletonize

            dist = _edt(~skeletonize(sub), spacing)
        else:
            grids = np.ogrid[box]
            dist = np.sqrt(sum((g - float(ci)) ** 2 for g, ci in zip(grids, c)))
        out[box][sub] = dist[sub]
    if opts.get("norm", True):
        out = norm_per_instance(out, vol, ids)
    return out


def distance_to_neighbour(
    vol: np.ndarray, ids: np.ndarray, opts: dict[str, Any], spacing: Sequence[float]
) -> np.ndarray:
    """``Dn``: inverted distance to the nearest other object (high near neighbours), grey-closed
    and raised to ``decline_power``; 0 on the background and on objects without neighbours."""
    norm = bool(opts.get("norm", True))
    power = float(opts.get("decline_power", 3.0))
    closing = int(opts.get("closing_size", 3))
    fg = vol > 0
    out = np.zeros(vol.shape, dtype=np.float32)
    has_neighbour = np.zeros(vol.shape, dtype=bool)
    for lb in ids:
        cur = vol == lb
        if not (fg & ~cur).any():
            continue
        has_neighbour |= cur
        d = _edt(~fg | cur, spacing)[cur]
        if norm:
            top = d.max()
            d = 1.0 - (d / top if top > 0 else np.zeros_like(d))
        out[cur] = d
    if not norm and has_neighbour.any():
        top = float(out[has_neighbour].max())
        if top > 0:
            out[has_neighbour] = top - out[has_neighbour]
    if closing > 0:
        out = ndimage.grey_closing(out, size=(closing,) * out.ndim)
    if power != 1.0:
        if norm:
            out = np.power(out, power, dtype=np.float32)
        elif has_neighbour.any():
            top = float(out[has_neighbour].max())
            if top > 0:
                out[has_neighbour] = np.power(out[has_neighbour] / top, power) * top
    return out.astype(np.float32)


def signed_distance(vol: np.ndarray, ids: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """``D``: per-instance distance to the boundary normalised to (0, 1] (holes filled), -1 on the
    background."""
    out = np.zeros(vol.shape, dtype=np.float32)
    for lb, box in zip(ids, _boxes(vol, ids, pad=1)):
        mask = ndimage.binary_fill_holes(vol[box] == lb)
        dist = _edt(mask, spacing)
        top = float(dist.max())
        if top < 1e-6:
            continue
        out[box] = np.maximum(out[box], (dist / (top + 1e-6)) * mask)
    out[out == 0] = -1.0
    return out


def hover_maps(
    vol: np.ndarray, ids: np.ndarray, normalise: bool, spacing: Sequence[float]
) -> dict[str, np.ndarray]:
    """``H``/``V`` (and ``Z``): HoVer-Net's signed offsets of each object voxel from its centroid,
    each side scaled to [-1, 1] per instance when ``normalise`` (else in ``spacing`` units)."""
    maps = [np.zeros(vol.shape, dtype=np.float32) for _ in range(vol.ndim)]
    centres = ndimage.center_of_mass(np.ones(vol.shape), labels=vol, index=ids)
    for lb, box, c in zip(ids, _boxes(vol, ids, pad=2), centres):
        inst = vol[box] == lb
        if min(inst.shape) < 2:
            continue
        com = [int(float(ci) - s.start + 0.5) for ci, s in zip(c, box)]
        grids = np.meshgrid(*[np.arange(1, n + 1) - k for n, k in zip(inst.shape, com)], indexing="ij")
        for axis, grid in enumerate(grids):
            g = np.where(inst, grid, 0).astype(np.float32)
            if normalise:
                if g.min() < 0:
                    g[g < 0] /= -g[g < 0].min()
                if g.max() > 0:
                    g[g > 0] /= g[g > 0].max()
            else:
                g = g * spacing[axis]
            maps[axis][box][inst] = g[inst]
    named = {"V": maps[-2], "H": maps[-1]}
    if vol.ndim == 3:
        named["Z"] = maps[0]
    return named


def touching(vol: np.ndarray) -> np.ndarray:
    """``T``: object voxels with a voxel of another object among their full-connectivity
    neighbours."""
    padded = np.pad(vol, 1)
    inner = tuple(slice(1, -1) for _ in range(vol.ndim))
    out = np.zeros(vol.shape, dtype=bool)
    for offset in np.ndindex(*(3,) * vol.ndim):
        if all(o == 1 for o in offset):
            continue
        nb = padded[tuple(slice(o, o + n) for o, n in zip(offset, vol.shape))]
        out |= (nb != 0) & (nb != vol)
    return out & (padded[inner] != 0)


def unet_border_weights(
    labels: np.ndarray, spacing: Sequence[float], w0: float = 10.0, sigma: float = 5.0
) -> np.ndarray:
    """``We``: the U-Net border weight ``w0 exp(-(d1 + d2)^2 / 2 sigma^2)`` on the background
    (d1, d2: distances to the nearest and second-nearest object; with one object, to it and to the
    background)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    denom = 2.0 * sigma**2
    if ids.size == 1:
        d_obj = _edt(labels != ids[0], spacing)
        d_bg = _edt(labels != 0, spacing)
        return (w0 * np.exp(-((d_obj + d_bg) ** 2) / denom) * (labels == 0)).astype(np.float32)
    if ids.size < 2:
        return np.zeros(labels.shape, dtype=np.float32)
    # as BiaPy: each object's distances only within its box padded by 3 sigma (+1), inf beyond
    pad = np.ceil(3.0 * sigma / np.asarray(spacing, dtype=np.float64)).astype(int) + 1
    d1 = np.full(labels.shape, np.inf, dtype=np.float32)
    d2 = np.full(labels.shape, np.inf, dtype=np.float32)
    found = ndimage.find_objects(labels.astype(np.int64))
    for lb in ids:
        box = tuple(
            slice(max(0, s.start - p), min(n, s.stop + p))
            for s, p, n in zip(found[int(lb) - 1], pad, labels.shape)
        )
        d = _edt(labels[box] != lb, spacing)
        d2[box] = np.where(d < d1[box], d1[box], np.minimum(d2[box], d))
        d1[box] = np.minimum(d1[box], d)
    return (w0 * np.exp(-((d1 + d2) ** 2) / denom) * (labels == 0)).astype(np.float32)

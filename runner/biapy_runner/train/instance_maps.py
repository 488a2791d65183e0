"""The distance and vector maps among BiaPy 3.7.1's instance training channels.

One function per map, following ``labels_into_channels`` (data/pre_processing.py): distances to
the boundary (``Db``), the centre (``Dc``), the neighbours (``Dn``), the signed distance (``D``),
HoVer-Net offsets (``H``/``V``/``Z``), Cellpose/Omnipose flows (``Gv``/``Gh``/``Gz``), the
touching areas (``T``) and the U-Net border weights (``We``). Distances use scipy's exact
Euclidean distance transform, which measures what BiaPy's ``edt`` package does (the image border
is not a boundary), object by object inside its bounding box.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

#: Cellpose/Omnipose flow channels, in array axis order (unit vectors)
FLOWS = ("Gz", "Gv", "Gh")


def flow_maps(
    vol: np.ndarray, gradient_type: str, spacing: Sequence[float]
) -> dict[str, np.ndarray]:
    """``Gv``/``Gh`` (and ``Gz``): Cellpose's unit diffusion flows
    (``decode.gradient_flow.diffusion_flows``) or Omnipose's (``gradient_type: omnipose``,
    ``decode.omnipose.distance_and_flows``), per axis."""
    if gradient_type == "omnipose":
        from biapy_runner.decode.omnipose import distance_and_flows

        flows = distance_and_flows(vol)[1]
    else:
        from biapy_runner.decode.gradient_flow import diffusion_flows

        flows = diffusion_flows(vol, spacing)
    return dict(zip(FLOWS[-vol.ndim :], flows.astype(np.float32)))


def object_boxes(vol: np.ndarray, ids: np.ndarray, pad: int = 0) -> list[tuple[slice, ...]]:
    found = ndimage.find_objects(vol, max_label=int(ids.max()) if ids.size else 0)
    boxes = []
    for lb in ids:
        box = found[int(lb) - 1]
        boxes.append(
            tuple(
                slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, vol.shape)
            )
        )
    return boxes


def _edt(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    if mask.all():  # nothing to measure against (an object filling its whole box)
        return np.zeros(mask.shape, dtype=np.float32)
    return ndimage.distance_transform_edt(mask, sampling=spacing).astype(np.float32)


def _label_edt(vol: np.ndarray, ids: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance of each object voxel to the nearest voxel of another value (``edt.edt(labels)``)."""
    out = np.zeros(vol.shape, dtype=np.float32)
    for lb, box in zip(ids, object_boxes(vol, ids, pad=1)):
        m = vol[box] == lb
        out[box][m] = _edt(m, spacing)[m]
    return out


def norm_per_instance(channel: np.ndarray, vol: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Min-max normalise ``channel`` inside each instance to [0, 1] (0 where constant and outside)."""
    out = np.zeros(channel.shape, dtype=np.float32)
    for lb, box in zip(ids, object_boxes(vol, ids)):
        m = vol[box] == lb
        values = channel[box][m]
        lo, hi = values.min(), values.max()
        out[box][m] = 0 if hi == lo else (values - lo) / (hi - lo)
    return out


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
    for lb, box, c in zip(ids, object_boxes(vol, ids), centres):
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
    for lb, box in zip(ids, object_boxes(vol, ids, pad=1)):
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
    for lb, box, c in zip(ids, object_boxes(vol, ids, pad=2), centres):
        inst = vol[box] == lb
        if min(inst.shape) < 2:
            continue
        com = [int(float(ci) - s.start + 0.5) for ci, s in zip(c, box)]
        grids = np.meshgrid(
            *[np.arange(1, n + 1) - k for n, k in zip(inst.shape, com)], indexing="ij"
        )
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

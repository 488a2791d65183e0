"""``INSTANCE_CREATION_PROCESS: stardist``: star-convex shapes from probability + ray distances.

StarDist (Schmidt et al., MICCAI 2018; Weigert et al., WACV 2020) predicts, per pixel, an object
probability and the distance from the pixel to its object's boundary along ``R`` fixed rays; an
object is the star-convex polygon (2D) or polyhedron (3D) those distances span around a centre.
BiaPy 3.7.1 trains ``Db`` (normalised distance to the boundary, the probability) and ``R`` (one
channel per ray, ``DATA_CHANNELS_EXTRA_OPTS[0]["R"]["nrays"]``, 32 in 2D and 96 in 3D) and
decodes as here:

1. candidates are the local maxima (3-pixel neighbourhood) of the probability that reach
   ``STARDIST.PROB_THRESH``, best first; with ``STARDIST.GRID`` (the output stride) a candidate
   at lattice index ``i`` sits at pixel ``i * grid``;
2. each candidate's shape has vertex ``centre + d_r * ray_r * spacing`` per ray (``spacing`` from
   ``DATA.TEST.RESOLUTION``, as BiaPy scales them); rays are evenly spaced angles in 2D and a
   Fibonacci sphere in 3D (BiaPy's ``generate_rays``, float32 like BiaPy's arithmetic);
3. greedy non-maximum suppression: a candidate is dropped when its IoU with a kept shape exceeds
   ``STARDIST.NMS_IOU_THRESH``; as in BiaPy, both shapes are rasterised in the intersection of
   their bounding boxes (padded by 2 pixels), so the union only counts pixels inside it;
4. kept shapes are painted from the lowest to the highest probability (the best wins overlaps).

Shapes are rasterised as BiaPy does: in 2D the polygon (``skimage.draw.polygon``) of the vertices
clipped to the raster; in 3D the convex hull of the vertices (``scipy.spatial.ConvexHull``; a
voxel is inside when it is on the inner side of every facet). StarDist proper renders 3D shapes as
star-convex polyhedra (tetrahedra on the ray triangulation); for convex objects the two agree up to
the facets, and the convex hull is what BiaPy's numbers come from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.draw import polygon

from biapy_runner.config.load import Config
from biapy_runner.decode.layout import IS, as_labels, channel_slices, require, spacing
from biapy_runner.errors import ConfigError


def rays(n_rays: int, ndim: int) -> np.ndarray:
    """Unit ray directions in array axis order, ``(R, ndim)``: (y, x) or (z, y, x).

    Parameters
    ----------
    n_rays : int
        Number of rays.
    ndim : int
        2 (evenly spaced angles from 0) or 3 (Fibonacci sphere, BiaPy's order).

    Returns
    -------
    numpy.ndarray
        float32 unit vectors.
    """
    if ndim == 2:
        angle = np.linspace(0, 2 * np.pi, n_rays, endpoint=False, dtype=np.float32)
        return np.stack([np.sin(angle), np.cos(angle)], axis=1)
    i = np.arange(n_rays, dtype=np.float32)
    golden = (1 + np.sqrt(5.0)) / 2
    z = 1 - 2 * (i + 0.5) / n_rays
    r = np.sqrt(np.maximum(0.0, 1 - z * z))
    theta = 2 * np.pi * i / golden
    out = np.stack([z, r * np.sin(theta), r * np.cos(theta)], axis=1).astype(np.float32)
    # the norm summed in BiaPy's (x, y, z) order: the same float32 last bits as its rays
    return out / (np.linalg.norm(out[:, ::-1], axis=1, keepdims=True) + 1e-12)


def ray_distances(
    labels: np.ndarray, directions: np.ndarray, where: np.ndarray | None = None
) -> np.ndarray:
    """Distance from every object pixel to its object's boundary along each ray (StarDist's).

    A ray marches in unit steps until it leaves the object or the image; the last step is pulled
    back so the end lies half a pixel outside the last object pixel along the ray's dominant axis.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` instance labels.
    directions : numpy.ndarray
        ``(R, ndim)`` unit rays in array axis order (:func:`rays`).
    where : numpy.ndarray, optional
        Boolean mask of the pixels to compute (default: every object pixel).

    Returns
    -------
    numpy.ndarray
        ``(R, *shape)`` float32 distances in pixels, 0 on the background (and outside ``where``).
    """
    shape = np.array(labels.shape)
    out = np.zeros((len(directions), *labels.shape), dtype=np.float32)
    pix = np.argwhere((labels > 0) if where is None else (labels > 0) & where)
    if len(pix) == 0:
        return out
    n_rays = len(directions)
    start = np.repeat(pix, n_rays, axis=0)  # (P * R, ndim): pixel-major
    step = np.tile(directions, (len(pix), 1))
    own = labels[tuple(start.T)]
    correction = 1 - 0.5 / np.abs(step).max(axis=1)
    walked = np.zeros(len(start))
    dist = np.zeros(len(start))
    idx = np.arange(len(start))
    while len(idx):
        walked[idx] += 1
        at = np.rint(start[idx] + walked[idx, None] * step[idx]).astype(np.int64)
        inside = np.all((at >= 0) & (at < shape), axis=1)
        same = np.zeros(len(idx), dtype=bool)
        same[inside] = labels[tuple(at[inside].T)] == own[idx[inside]]
        done = idx[~same]
        dist[done] = walked[done] - correction[done]
        idx = idx[same]
    out[(slice(None), *pix.T)] = dist.reshape(len(pix), n_rays).T
    return out


def _roi(verts: np.ndarray, shape: Sequence[int], pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive box around ``verts`` padded by ``pad`` and clipped to ``shape``."""
    lo = np.maximum(np.floor(verts.min(axis=0)).astype(int) - pad, 0)
    hi = np.minimum(np.ceil(verts.max(axis=0)).astype(int) + pad, np.asarray(shape) - 1)
    return lo, hi


def _raster(verts: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Pixels of the shape with ``verts`` (in the raster's coordinates) in a raster of ``size``."""
    size = tuple(int(n) for n in size)
    mask = np.zeros(size, dtype=bool)
    if len(size) == 2:
        clipped = [np.clip(verts[:, d], 0, size[d] - 1) for d in range(2)]
        rr, cc = polygon(clipped[0], clipped[1], shape=size)
        mask[rr, cc] = True
        return mask
    try:
        hull = ConvexHull(verts)
    except QhullError:  # flat: no volume
        return mask
    grid = np.indices(size, dtype=np.float64).reshape(3, 1, -1)
    eq = hull.equations[:, :, None]  # (facets, 4, 1): outward normal and offset
    signed = eq[:, 0] * grid[0] + eq[:, 1] * grid[1] + eq[:, 2] * grid[2] + eq[:, 3]
    return np.all(signed <= 1e-6, axis=0).reshape(size)


def _render(verts: np.ndarray, shape: Sequence[int]) -> tuple[tuple[slice, ...], np.ndarray]:
    """The shape painted into an image of ``shape``: its box and its mask there."""
    lo, hi = _roi(verts, shape)
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
    if np.any(lo > hi):
        return box, np.zeros((0,) * len(shape), dtype=bool)
    return box, _raster(verts - lo, hi - lo + 1)


def shape_iou(va: np.ndarray, vb: np.ndarray, shape: Sequence[int]) -> float:
    """BiaPy's IoU of two shapes, both rasterised in the intersection of their padded boxes.

    Parameters
    ----------
    va, vb : numpy.ndarray
        ``(R, ndim)`` vertices in array axis order.
    shape : sequence of int
        Image shape (boxes are clipped to it).

    Returns
    -------
    float
        Intersection over union inside that region (0 when the boxes do not meet).
    """
    (la, ha), (lb, hb) = _roi(va, shape), _roi(vb, shape)
    lo, hi = np.maximum(la, lb), np.minimum(ha, hb)
    if np.any(lo > hi):
        return 0.0
    ma, mb = _raster(va - lo, hi - lo + 1), _raster(vb - lo, hi - lo + 1)
    inter = int(np.count_nonzero(ma & mb))
    return inter / int(np.count_nonzero(ma | mb)) if inter else 0.0


def candidates(prob: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima (3-pixel neighbourhood) of ``prob`` reaching ``thresh``, best first.

    Parameters
    ----------
    prob : numpy.ndarray
        Probability map.
    thresh : float
        Lowest accepted probability.

    Returns
    -------
    tuple of numpy.ndarray
        ``(K, ndim)`` integer positions and their ``(K,)`` probabilities.
    """
    peak = (prob == ndimage.maximum_filter(prob, size=3, mode="nearest")) & (prob >= thresh)
    pts = np.argwhere(peak)
    scores = prob[tuple(pts.T)]
    order = np.argsort(-scores)  # BiaPy's order (ties as NumPy's default sort leaves them)
    return pts[order], scores[order]


def star_instances(
    prob: np.ndarray,
    dist: np.ndarray,
    *,
    prob_thresh: float = 0.4,
    nms_iou_thresh: float = 0.3,
    spacing_zyx: Sequence[float] | None = None,
    grid: Sequence[int] | None = None,
) -> np.ndarray:
    """Probability + ray distances -> labels by star-convex shapes and greedy IoU NMS.

    Parameters
    ----------
    prob : numpy.ndarray
        ``(*lattice)`` object probability.
    dist : numpy.ndarray
        ``(R, *lattice)`` distances along :func:`rays` ``(R, ndim)``.
    prob_thresh : float
        Lowest candidate probability.
    nms_iou_thresh : float
        A candidate overlapping a kept shape by more than this IoU is dropped.
    spacing_zyx : sequence of float, optional
        Factor per axis applied to the distances (BiaPy's anisotropy).
    grid : sequence of int, optional
        Output stride per axis (ones by default).

    Returns
    -------
    numpy.ndarray
        int32 labels of shape ``lattice * grid``; 1 = most probable object.
    """
    ndim = prob.ndim
    g = np.asarray(grid if grid else (1,) * ndim, dtype=np.float32)
    an = np.asarray(spacing_zyx if spacing_zyx is not None else (1.0,) * ndim, dtype=np.float32)
    shape = tuple(int(s) for s in np.asarray(prob.shape) * g.astype(int))
    directions = rays(dist.shape[0], ndim) * an
    kept: list[np.ndarray] = []
    for pt, _ in zip(*candidates(prob, prob_thresh)):
        radii = dist[(slice(None), *pt)].astype(np.float32)
        verts = pt.astype(np.float32) * g + radii[:, None] * directions
        if all(shape_iou(verts, other, shape) <= nms_iou_thresh for other in kept):
            kept.append(verts)
    labels = np.zeros(shape, dtype=np.int32)
    for k in range(len(kept) - 1, -1, -1):  # lowest probability first: the best is painted last
        box, mask = _render(kept[k], shape)
        labels[box][mask] = k + 1
    return labels


def decode(raw: np.ndarray, channels: Sequence[str], cfg: Config) -> np.ndarray:
    """StarDist channels (``Db`` probability, ``R`` rays) -> instance labels.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(C, *spatial)`` prediction after the model's postprocessing.
    channels : sequence of str
        Channel names in order, e.g. ``["Db", "R"]`` (R spans one channel per ray).
    cfg : Config
        Reads ``PROBLEM.INSTANCE_SEG.STARDIST.*`` and ``DATA.TEST.RESOLUTION``.

    Returns
    -------
    numpy.ndarray
        Integer labels of shape ``spatial * STARDIST.GRID``.
    """
    ndim = raw.ndim - 1
    sl = channel_slices(channels, raw.shape[0], ndim)
    require(sl, ("R",), "stardist")
    prob_names = [n for n in sl if n != "R"]
    if len(prob_names) != 1:
        raise ConfigError(
            f"{IS}INSTANCE_CREATION_PROCESS 'stardist' needs one probability channel (Db) and the "
            f"ray channels (R) in {IS}DATA_CHANNELS; got {list(sl)}."
        )
    grid = list(cfg.get(IS + "STARDIST.GRID", []) or [])
    if grid and (len(grid) != ndim or any(int(v) < 1 for v in grid)):
        raise ConfigError(f"{IS}STARDIST.GRID {grid} must have {ndim} positive values (zyx order).")
    labels = star_instances(
        raw[sl[prob_names[0]]][0],
        raw[sl["R"]],
        prob_thresh=float(cfg.get(IS + "STARDIST.PROB_THRESH", 0.4)),
        nms_iou_thresh=float(cfg.get(IS + "STARDIST.NMS_IOU_THRESH", 0.3)),
        spacing_zyx=spacing(cfg, ndim),
        grid=[int(v) for v in grid] or None,
    )
    return as_labels(labels)

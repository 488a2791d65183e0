"""Hand-made label images with known objects, and the check that a decoder gave them back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def blobs(
    shape: Sequence[int], centres: Sequence[Sequence[float]], radii: Sequence[Sequence[float]]
) -> np.ndarray:
    """Ellipses (2D) / ellipsoids (3D) labelled 1..N in order; later ones cover earlier ones."""
    grid = np.indices(tuple(shape), dtype=np.float64)
    labels = np.zeros(tuple(shape), dtype=np.int32)
    for k, (c, r) in enumerate(zip(centres, radii), start=1):
        inside = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r)) <= 1.0
        labels[inside] = k
    return labels


#: five ellipses in 64 x 72, two of them touching (the 2D scene of the decoder tests)
FIVE_BLOBS = blobs(
    (64, 72),
    [(15, 15), (20, 36), (45, 25), (48, 52), (30, 62)],
    [(9, 9), (8, 12), (12, 8), (10, 10), (6, 6)],
)


def normalised_distance(gt: np.ndarray) -> np.ndarray:
    """BiaPy's ``Db`` 'norm': distance to the boundary normalised per object to [0, 1]."""
    prob = np.zeros(gt.shape, dtype=np.float32)
    for k in range(1, int(gt.max()) + 1):
        obj = gt == k
        edt = ndimage.distance_transform_edt(obj)
        prob[obj] = edt[obj] / edt.max()
    return prob


def embedseg_targets(gt: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EmbedSeg offsets to each object's centroid and a seediness from 1 (centre) to 0.6 (rim).

    ``coords`` is the coordinate map (``embeddings.coordinate_map``), channels x, y[, z].
    """
    offsets = np.zeros_like(coords)
    seediness = np.zeros(gt.shape, dtype=np.float32)
    for k in range(1, int(gt.max()) + 1):
        obj = gt == k
        centre = coords[:, obj].mean(axis=1, keepdims=True)
        offsets[:, obj] = centre - coords[:, obj]
        dist = np.sqrt(((coords[:, obj] - centre) ** 2).sum(axis=0))
        seediness[obj] = 1 - 0.4 * dist / dist.max()
    return offsets, seediness


def matched_ious(gt: np.ndarray, pred: np.ndarray) -> list[float]:
    """For each GT object, the IoU with the predicted object that overlaps it most."""
    out = []
    for k in range(1, int(gt.max()) + 1):
        obj = gt == k
        ids, counts = np.unique(pred[obj], return_counts=True)
        counts = counts[ids > 0]
        ids = ids[ids > 0]
        if len(ids) == 0:
            out.append(0.0)
            continue
        best = pred == ids[np.argmax(counts)]
        out.append(float((obj & best).sum() / (obj | best).sum()))
    return out


def assert_recovered(gt: np.ndarray, pred: np.ndarray, min_iou: float = 0.9) -> list[float]:
    """Same number of objects, one-to-one, each matched with IoU >= ``min_iou``."""
    n_pred = len(np.unique(pred[pred > 0]))
    assert n_pred == int(gt.max()), f"{n_pred} objects decoded, {int(gt.max())} expected"
    ious = matched_ious(gt, pred)
    assert min(ious) >= min_iou, ious
    return ious

"""Hand-made label images with known objects, and the check that a decoder gave them back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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

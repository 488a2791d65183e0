"""Instance matching metrics accumulated block by block, for label volumes larger than memory.

``OverlapAccumulator`` adds the label co-occurrences of one block of a ground truth and a
prediction at a time (the intersection of every pair of objects and every object's size are sums
over blocks); ``overlap()`` then gives exactly the ``metrics.matching.Overlap`` that
``label_overlap`` computes on the whole arrays (same ids, same pair order, same IoU values), so
``match_overlap`` scores it with the same numbers as in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biapy_runner.errors import InputError
from biapy_runner.metrics.matching import Overlap, _check_labels


def _unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, axis=0 if 2D, return_inverse=True)``; pairs of non-negative ids (rows)
    go through one int64 key each when they fit (a flat sort, much faster)."""
    if keys.ndim == 1:
        return np.unique(keys, return_inverse=True)
    if keys.size and keys.min() >= 0:
        width = int(keys[:, 1].max()) + 1
        if int(keys[:, 0].max()) < 2**62 // width:
            flat, inverse = np.unique(keys[:, 0] * width + keys[:, 1], return_inverse=True)
            return np.stack([flat // width, flat % width], axis=1), inverse
    return np.unique(keys, axis=0, return_inverse=True)


def _reduce(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``counts`` of equal ``keys`` (rows of a 2D array or values of a 1D one); sorted."""
    if keys.size == 0:
        return keys, counts
    uniq, inverse = _unique(keys)
    return uniq, np.bincount(inverse.ravel(), weights=counts, minlength=len(uniq)).astype(np.int64)


def _sizes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero ids of ``labels`` (int64, flat) and their voxel counts: a count per value
    when the ids are small, else sorted."""
    top = int(labels.max()) if labels.size else 0
    if top > 4 * labels.size + 1024:
        return np.unique(labels[labels > 0], return_counts=True)
    counts = np.bincount(labels, minlength=top + 1)
    ids = np.flatnonzero(counts[1:]) + 1
    return ids, counts[ids]


class OverlapAccumulator:
    """Sums of label sizes and pair intersections over the blocks added so far."""

    def __init__(self) -> None:
        self.pairs = np.zeros((0, 2), dtype=np.int64)
        self.inter = np.zeros(0, dtype=np.int64)
        self.sizes = [
            (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)) for _ in range(2)
        ]

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Add one block of the ground truth and the prediction (same shape)."""
        y_true = _check_labels("ground truth", y_true).ravel().astype(np.int64)
        y_pred = _check_labels("prediction", y_pred).ravel().astype(np.int64)
        if y_true.shape != y_pred.shape:
            raise InputError(
                f"Ground truth block {y_true.shape} differs from prediction block {y_pred.shape}."
            )
        both = (y_true > 0) & (y_pred > 0)
        pairs, inter = _reduce(np.stack([y_true[both], y_pred[both]], axis=1),
                               np.ones(int(np.count_nonzero(both)), dtype=np.int64))  # fmt: skip
        self.pairs, self.inter = _reduce(
            np.concatenate([self.pairs, pairs.reshape(-1, 2)]), np.concatenate([self.inter, inter])
        )
        for side, labels in enumerate((y_true, y_pred)):
            ids, counts = _sizes(labels)
            old_ids, old_counts = self.sizes[side]
            self.sizes[side] = _reduce(
                np.concatenate([old_ids, ids]), np.concatenate([old_counts, counts])
            )

    def overlap(self) -> Overlap:
        """The overlap of everything added, as ``label_overlap`` gives it."""
        (t_ids, t_sizes), (p_ids, p_sizes) = self.sizes
        rows = np.searchsorted(t_ids, self.pairs[:, 0]).astype(np.int64)
        cols = np.searchsorted(p_ids, self.pairs[:, 1]).astype(np.int64)
        union = t_sizes[rows] + p_sizes[cols] - self.inter
        iou = self.inter / np.maximum(union, 1)
        return Overlap(t_ids, p_ids, rows, cols, iou.astype(np.float64))


def streaming_overlap(y_true: Any, y_pred: Any, block: int = 64) -> Overlap:
    """``label_overlap`` of two label volumes (numpy, Zarr, HDF5: anything that slices) read
    ``block`` planes of the first axis at a time."""
    if tuple(y_true.shape) != tuple(y_pred.shape):
        raise InputError(
            f"Ground truth shape {tuple(y_true.shape)} differs from prediction shape "
            f"{tuple(y_pred.shape)}."
        )
    acc = OverlapAccumulator()
    for start in range(0, int(y_true.shape[0]), block):
        part = slice(start, start + block)
        acc.add(np.asarray(y_true[part]), np.asarray(y_pred[part]))
    return acc.overlap()


def streaming_class_ious(
    y_true: Any, y_pred: Any, classes: Sequence[int] | None, block: int = 64
) -> list[float]:
    """``masks.binary_iou`` of each class of two label volumes read ``block`` planes of the
    first axis at a time (numpy, Zarr: anything that slices).

    Parameters
    ----------
    y_true, y_pred
        Label volumes of one shape (ground truth, prediction).
    classes
        The class numbers to score; None: the foreground (label > 0) once.
    block
        Planes read at a time.

    Returns
    -------
    list of float
        One IoU per class (0.0 when a class is in neither), as ``binary_iou`` on the whole.
    """
    if tuple(y_true.shape) != tuple(y_pred.shape):
        raise InputError(
            f"Ground truth shape {tuple(y_true.shape)} differs from prediction shape "
            f"{tuple(y_pred.shape)}."
        )
    picks = [None] if classes is None else list(classes)
    inter, union = np.zeros(len(picks), dtype=np.int64), np.zeros(len(picks), dtype=np.int64)
    for start in range(0, int(y_true.shape[0]), block):
        part = slice(start, start + block)
        true, pred = np.asarray(y_true[part]), np.asarray(y_pred[part])
        for i, k in enumerate(picks):
            a, b = (true > 0, pred > 0) if k is None else (true == k, pred == k)
            inter[i] += np.count_nonzero(a & b)
            union[i] += np.count_nonzero(a | b)
    return [float(i / u) if u else 0.0 for i, u in zip(inter, union)]

"""Scores of detected points: one-to-one matching of GT and predicted points within a tolerance.

Distances are physical: each axis is multiplied by its resolution first (BiaPy's
``DATA.TEST.RESOLUTION``, in array axis order), so tolerances are in those units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def _scaled(coords: np.ndarray, resolution: Sequence[float]) -> np.ndarray:
    return np.asarray(coords, dtype=np.float64) * np.asarray(resolution, dtype=np.float64)


@dataclass
class Matching:
    """One-to-one association of GT and predicted points.

    ``pairs`` ``(K, 2)``: (gt index, pred index) of the true positives; ``distances`` ``(K,)``;
    ``fn``: unmatched GT indices; ``fp``: unmatched prediction indices.
    """

    pairs: np.ndarray
    distances: np.ndarray
    fn: np.ndarray
    fp: np.ndarray

    def counts(self) -> dict[str, int]:
        """tp, fp, fn as ints."""
        return {"tp": len(self.pairs), "fp": len(self.fp), "fn": len(self.fn)}


def _candidates(gt: np.ndarray, pred: np.ndarray, tolerance: float) -> sparse.coo_matrix:
    """Distances of the (gt, pred) pairs strictly closer than ``tolerance``."""
    if tolerance <= 0 or not len(gt) or not len(pred):
        return sparse.coo_matrix((len(gt), len(pred)))
    found = cKDTree(gt).sparse_distance_matrix(
        cKDTree(pred), max_distance=tolerance, output_type="ndarray"
    )
    found = found[found["v"] < tolerance]
    return sparse.coo_matrix((found["v"], (found["i"], found["j"])), shape=(len(gt), len(pred)))


def _assign(rows: np.ndarray, cols: np.ndarray, dist: np.ndarray) -> list[tuple[int, int]]:
    """Optimal assignment within one connected group of candidate pairs: the most pairs, then
    the smallest total distance."""
    r_ids, r_idx = np.unique(rows, return_inverse=True)
    c_ids, c_idx = np.unique(cols, return_inverse=True)
    scale = (dist.max() if len(dist) else 1.0) * (min(len(r_ids), len(c_ids)) + 1) + 1e-12
    cost = np.zeros((len(r_ids), len(c_ids)))
    cost[r_idx, c_idx] = dist / scale - 1.0  # every pair beats any number of shorter non-pairs
    valid = np.zeros(cost.shape, dtype=bool)
    valid[r_idx, c_idx] = True
    out_r, out_c = linear_sum_assignment(cost)
    return [(int(r_ids[r]), int(c_ids[c])) for r, c in zip(out_r, out_c) if valid[r, c]]


def match_points(
    gt: np.ndarray, pred: np.ndarray, tolerance: float, resolution: Sequence[float]
) -> Matching:
    """Match GT and predicted coordinates one to one within ``tolerance`` (physical distance
    strictly below it, as BiaPy): the largest number of pairs, and among those the smallest total
    distance. Candidate pairs come from a KD-tree; each connected group of candidates is solved
    with ``linear_sum_assignment``, so large point sets stay cheap."""
    ndim = len(resolution)
    gt_s = _scaled(np.reshape(gt, (-1, ndim)), resolution)
    pred_s = _scaled(np.reshape(pred, (-1, ndim)), resolution)
    cand = _candidates(gt_s, pred_s, tolerance)
    pairs: list[tuple[int, int]] = []
    if cand.nnz:
        graph = sparse.bmat([[None, cand], [cand.T, None]]).tocsr()
        _, group = connected_components(graph, directed=False)
        pair_group = group[cand.row]
        order = np.argsort(pair_group, kind="stable")
        bounds = np.flatnonzero(np.diff(pair_group[order])) + 1
        for chunk in np.split(order, bounds):
            pairs.extend(_assign(cand.row[chunk], cand.col[chunk], cand.data[chunk]))
    pairs_arr = np.asarray(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    distances = np.linalg.norm(gt_s[pairs_arr[:, 0]] - pred_s[pairs_arr[:, 1]], axis=1)
    return Matching(
        pairs_arr,
        distances,
        np.setdiff1d(np.arange(len(gt)), pairs_arr[:, 0]),
        np.setdiff1d(np.arange(len(pred)), pairs_arr[:, 1]),
    )


def ratios(tp: int, fp: int, fn: int) -> dict[str, float]:
    """precision, recall, f1 from counts; 0 (not NaN) where a denominator is 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}

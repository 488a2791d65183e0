"""Instance matching metrics with StarDist's definitions (IoU criterion).

The IoU of every pair of overlapping objects comes from one sparse label overlap
(``np.bincount`` of label pairs). For each threshold the prediction is assigned one-to-one to the
ground truth with ``scipy.optimize.linear_sum_assignment`` using StarDist's cost (first the
number of pairs at or above the threshold, then the sum of IoUs). The assignment is solved per
connected component of the overlap graph, which gives the same optimum as one dense problem and
keeps thousands of objects fast.

Definitions (``tp``: matched pairs with IoU >= threshold): ``fp = n_pred - tp``,
``fn = n_true - tp``, ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``,
``accuracy = tp / (tp + fp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)``,
``mean_true_score = sum(IoU of tps) / n_true``, ``mean_matched_score = sum(IoU of tps) / tp``,
``panoptic_quality = sum(IoU of tps) / (tp + fp / 2 + fn / 2)``. A ratio with a zero denominator
is 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from biapy_runner.errors import InputError

#: Metric names in the order of the tables.
METRICS = (
    "fp",
    "tp",
    "fn",
    "precision",
    "recall",
    "accuracy",
    "f1",
    "n_true",
    "n_pred",
    "mean_true_score",
    "mean_matched_score",
    "panoptic_quality",
)
COUNTS = ("fp", "tp", "fn", "n_true", "n_pred")
#: Voxels per block when building the overlap keys (the temporaries stay in the CPU cache).
_CHUNK = 1 << 18
_DENSE_LIMIT = 50_000_000
#: Joint histograms up to this many bins (or the image size) are always dense.
_JOINT_MIN = 1 << 22


@dataclass
class Overlap:
    """Sparse IoU between the objects of a ground truth and a prediction.

    ``true_ids`` / ``pred_ids``: the labels present (background 0 excluded), sorted.
    ``rows`` / ``cols``: indices into those arrays of every overlapping pair; ``iou``: its IoU.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    iou: np.ndarray
    #: the threshold-independent part of the assignment, computed once (see ``_components``)
    _components: _Components | None = field(default=None, init=False, repr=False, compare=False)


def _check_labels(name: str, arr: np.ndarray) -> np.ndarray:
    """Return ``arr`` as a non-negative integer label array or raise ``InputError``."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        if not np.all(np.mod(arr, 1) == 0):
            raise InputError(
                f"The {name} label image holds non-integer values; instance matching needs "
                "integer labels (0 = background). Pass a label image, not probabilities."
            )
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind not in "ui":
        raise InputError(f"The {name} label image has unsupported dtype {arr.dtype}.")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise InputError(f"The {name} label image holds negative labels; use 0 for background.")
    return arr


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map labels to 0..n (0 = background): returns (ids, compact image, sizes incl. background)."""
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top < 4 * flat.size + 1024:
        counts = np.bincount(flat, minlength=top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, dtype=np.int32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        compact = lut[flat]
        sizes = np.concatenate([[counts[0]], counts[ids]])
    else:
        uniq, compact, sizes = np.unique(flat, return_inverse=True, return_counts=True)
        if uniq[0] != 0:
            compact = compact + 1
            sizes = np.concatenate([[0], sizes])
            uniq = np.concatenate([[0], uniq])
        ids = uniq[1:]
    return ids.astype(np.int64), compact, sizes.astype(np.int64)


def _joint_overlap(y_true: np.ndarray, y_pred: np.ndarray, t_top: int, p_top: int) -> Overlap:
    """``label_overlap`` from one dense joint histogram of the raw labels (small label ranges).

    One ``np.bincount`` of ``true * (p_top + 1) + pred`` over the voxels where either image is
    labelled gives the intersections and, through its row and column sums, the object sizes: no
    relabelling pass. The keys are built block by block, so no image-sized temporary is made.
    """
    n_p = p_top + 1
    t_flat, p_flat = y_true.reshape(-1), y_pred.reshape(-1)
    parts = [np.zeros(0, dtype=np.intp)]
    for start in range(0, t_flat.size, _CHUNK):
        t, p = t_flat[start : start + _CHUNK], p_flat[start : start + _CHUNK]
        labelled = t != 0
        labelled |= p != 0
        keys = t[labelled].astype(np.intp)
        keys *= n_p
        keys += p[labelled]
        parts.append(keys)
    joint = np.bincount(np.concatenate(parts), minlength=(t_top + 1) * n_p)
    joint = joint.reshape(t_top + 1, n_p)
    t_sizes, p_sizes = joint.sum(axis=1), joint.sum(axis=0)  # [0]: not counted, unused
    # index of label l among the present labels 1..top (l - 1 when labels are sequential)
    t_rank = np.cumsum(t_sizes[1:] > 0) - 1
    p_rank = np.cumsum(p_sizes[1:] > 0) - 1
    t, p = np.nonzero(joint[1:, 1:])
    inter = joint[t + 1, p + 1]
    union = t_sizes[t + 1] + p_sizes[p + 1] - inter
    iou = inter / np.maximum(union, 1)
    t_ids = np.flatnonzero(t_sizes[1:]).astype(np.int64) + 1
    p_ids = np.flatnonzero(p_sizes[1:]).astype(np.int64) + 1
    return Overlap(t_ids, p_ids, t_rank[t], p_rank[p], iou)


def label_overlap(y_true: np.ndarray, y_pred: np.ndarray) -> Overlap:
    """IoU of every overlapping pair of objects of two label images of the same shape."""
    y_true = _check_labels("ground truth", y_true)
    y_pred = _check_labels("prediction", y_pred)
    if y_true.shape != y_pred.shape:
        raise InputError(
            f"Ground truth shape {y_true.shape} differs from prediction shape {y_pred.shape}."
        )
    t_top = int(y_true.max()) if y_true.size else 0
    p_top = int(y_pred.max()) if y_pred.size else 0
    if (t_top + 1) * (p_top + 1) <= max(y_true.size, _JOINT_MIN):
        return _joint_overlap(y_true, y_pred, t_top, p_top)
    t_ids, t_c, t_sizes = _compact(y_true)
    p_ids, p_c, p_sizes = _compact(y_pred)
    n_p = p_ids.size + 1
    both = (t_c > 0) & (p_c > 0)
    keys = t_c[both].astype(np.int64) * n_p + p_c[both]
    if (t_ids.size + 1) * n_p <= _DENSE_LIMIT:
        counts = np.bincount(keys, minlength=(t_ids.size + 1) * n_p)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:
        keys, inter = np.unique(keys, return_counts=True)
    rows, cols = np.divmod(keys, n_p)
    union = t_sizes[rows] + p_sizes[cols] - inter
    iou = inter / np.maximum(union, 1)
    return Overlap(t_ids, p_ids, rows - 1, cols - 1, iou.astype(np.float64))


@dataclass
class _Components:
    """The overlap graph split into connected components, in the order the assignment lists them.

    Component ``g`` contributes ``min(#rows, #cols)`` assigned pairs at a fixed offset of the
    result: the single-pair components are placed once, the others hold their dense IoU matrix.
    """

    size: int
    single_at: np.ndarray
    single: tuple[np.ndarray, np.ndarray, np.ndarray]
    multi: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]


def _components(ov: Overlap) -> _Components:
    """Connected components of the overlap graph of ``ov`` (computed once per overlap)."""
    from scipy import sparse  # scipy's sparse and optimize load only when scoring
    from scipy.sparse.csgraph import connected_components

    if ov._components is not None:
        return ov._components
    n_t, n_p = ov.true_ids.size, ov.pred_ids.size
    graph = sparse.coo_matrix(
        (np.ones(ov.iou.size), (ov.rows, ov.cols + n_t)), shape=(n_t + n_p, n_t + n_p)
    )
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[ov.rows]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    single_at, single, multi = [], [], []
    size = 0
    for group in np.split(order, bounds):
        if group.size == 1:
            single_at.append(size)
            single.append(group[0])
            size += 1
            continue
        ur, ri = np.unique(ov.rows[group], return_inverse=True)
        uc, ci = np.unique(ov.cols[group], return_inverse=True)
        scores = np.zeros((ur.size, uc.size))
        scores[ri, ci] = ov.iou[group]
        multi.append((size, ur, uc, scores))
        size += min(ur.size, uc.size)
    pick = np.asarray(single, dtype=np.intp)
    ov._components = _Components(
        size,
        np.asarray(single_at, dtype=np.intp),
        (ov.rows[pick], ov.cols[pick], ov.iou[pick]),
        multi,
    )
    return ov._components


def _assign(ov: Overlap, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """StarDist's optimal one-to-one assignment; returns (rows, cols, iou) of assigned pairs.

    Solved per connected component of the overlap graph (the components listed in order).
    """
    from scipy.optimize import linear_sum_assignment

    if ov.iou.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    n_matched = min(ov.true_ids.size, ov.pred_ids.size)
    comps = _components(ov)
    rows = np.empty(comps.size, dtype=ov.rows.dtype)
    cols = np.empty(comps.size, dtype=ov.cols.dtype)
    out = np.empty(comps.size, dtype=ov.iou.dtype)
    rows[comps.single_at], cols[comps.single_at], out[comps.single_at] = comps.single
    for at, ur, uc, scores in comps.multi:
        cost = -(scores >= thresh).astype(float) - scores / (2 * n_matched)
        a, b = linear_sum_assignment(cost)
        end = at + a.size
        rows[at:end], cols[at:end], out[at:end] = ur[a], uc[b], scores[a, b]
    return rows, cols, out


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def stats_from_counts(tp: int, n_true: int, n_pred: int, sum_score: float) -> dict[str, float]:
    """All metrics from the counts and the summed IoU of the true positives."""
    fp, fn = n_pred - tp, n_true - tp
    return {
        "fp": int(fp),
        "tp": int(tp),
        "fn": int(fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "accuracy": _ratio(tp, tp + fp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "n_true": int(n_true),
        "n_pred": int(n_pred),
        "mean_true_score": _ratio(sum_score, n_true),
        "mean_matched_score": _ratio(sum_score, tp),
        "panoptic_quality": _ratio(sum_score, tp + fp / 2 + fn / 2),
    }


@dataclass
class MatchResult:
    """Matching at one threshold: the metrics plus the associations."""

    thresh: float
    stats: dict[str, float]
    #: one row per GT object and per unmatched prediction: (gt_id, pred_id, iou, status)
    associations: list[tuple[int, int, float, str]]


def match_overlap(ov: Overlap, thresh: float) -> MatchResult:
    """Match at ``thresh`` from a precomputed overlap."""
    rows, cols, scores = _assign(ov, thresh)
    ok = scores >= thresh
    tp = int(ok.sum())
    stats = stats_from_counts(tp, ov.true_ids.size, ov.pred_ids.size, float(scores[ok].sum()))
    assoc: list[tuple[int, int, float, str]] = []
    gt_to = dict(zip(rows[ok].tolist(), zip(cols[ok].tolist(), scores[ok].tolist())))
    matched_pred = set(cols[ok].tolist())
    for i, gid in enumerate(ov.true_ids.tolist()):
        if i in gt_to:
            j, s = gt_to[i]
            assoc.append((gid, int(ov.pred_ids[j]), float(s), "tp"))
        else:
            assoc.append((gid, 0, 0.0, "fn"))
    for j, pid in enumerate(ov.pred_ids.tolist()):
        if j not in matched_pred:
            assoc.append((0, pid, 0.0, "fp"))
    return MatchResult(float(thresh), stats, assoc)


def matching(
    y_true: np.ndarray, y_pred: np.ndarray, thresholds: Sequence[float] = (0.3, 0.5, 0.75)
) -> list[MatchResult]:
    """StarDist matching of two label images at each threshold (0 = background)."""
    ov = label_overlap(y_true, y_pred)
    return [match_overlap(ov, th) for th in thresholds]


def aggregate_stats(per_image: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Dataset metrics as StarDist's ``matching_dataset``: sum the counts, then the ratios.

    Each item holds ``tp``, ``n_true``, ``n_pred`` and ``mean_matched_score`` (whose product with
    ``tp`` is the summed IoU of that image's true positives).
    """
    tp = sum(int(s["tp"]) for s in per_image)
    n_true = sum(int(s["n_true"]) for s in per_image)
    n_pred = sum(int(s["n_pred"]) for s in per_image)
    total = sum(float(s["mean_matched_score"]) * int(s["tp"]) for s in per_image)
    return stats_from_counts(tp, n_true, n_pred, total)

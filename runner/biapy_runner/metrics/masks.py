"""Overlap of binary masks, with BiaPy's convention for empty masks."""

from __future__ import annotations

import numpy as np


def binary_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union (Jaccard index) of two boolean masks.

    Parameters
    ----------
    pred, target : np.ndarray
        Boolean masks of one shape.

    Returns
    -------
    float
        |pred & target| / |pred | target|; 0.0 when both masks are empty, as BiaPy's
        ``jaccard_index_numpy`` (TP + FP + FN = 0 gives 0).
    """
    union = np.count_nonzero(pred | target)
    return float(np.count_nonzero(pred & target) / union) if union else 0.0

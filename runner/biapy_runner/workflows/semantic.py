"""Semantic segmentation (PROBLEM.TYPE SEMANTIC_SEG): binary masks or class labels, IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner.decode.filters import configured_median_filter
from biapy_runner.errors import InputError
from biapy_runner.io.images import Image, class_dtype, stored_labels
from biapy_runner.metrics.masks import binary_iou
from biapy_runner.workflows.base import Decoded, Scored, Workflow, register

#: One-channel (sigmoid) outputs are binarized at this probability, as BiaPy does.
BINARY_THRESHOLD = 0.5
#: A stored semantic prediction (``evaluate``) has class labels below this.
MAX_STORED_CLASSES = 1024


def class_labels(raw: np.ndarray) -> np.ndarray:
    """Binary mask (one channel, > 0.5) or argmax class labels (several channels), uint8/16."""
    if raw.shape[0] == 1:
        return (raw[0] > BINARY_THRESHOLD).astype(np.uint8)
    return np.argmax(raw, axis=0).astype(class_dtype(raw.shape[0] - 1))


@register
class SemanticSegmentation(Workflow):
    """Binarize (0.5) or argmax the model's probabilities; score the foreground / class IoU."""

    problem_type = "SEMANTIC_SEG"

    def decode(self, raw: np.ndarray, image: Image) -> Decoded:
        """Median-filter the probabilities when configured, then binarize or argmax."""
        raw = configured_median_filter(raw, self.cfg)
        return Decoded(images={"post_proc": class_labels(raw)}, state={"classes": raw.shape[0]})

    def chunk_halo(self) -> int | None:
        """Thresholding and argmax are per pixel; the median filters (applied one after the
        other) need half of each size."""
        if not self.cfg.get("TEST.POST_PROCESSING.MEDIAN_FILTER"):
            return 0
        sizes = [int(s) for s in self.cfg.get("TEST.POST_PROCESSING.MEDIAN_FILTER_SIZE")]
        return sum(size // 2 for size in sizes)

    def decode_file(self, path: Path, image: Image) -> Decoded:
        """A stored prediction: probabilities (float) are decoded, labels are taken as they are."""
        if np.issubdtype(image.data.dtype, np.floating):
            return self.decode(image.data, image)
        labels = stored_labels(image, channels_ok=True)
        if labels.ndim == image.data.ndim:  # one 0/1 mask per class
            labels = np.argmax(labels, axis=0)
        if labels.max() >= MAX_STORED_CLASSES:
            raise InputError(
                f"The prediction {path} has the label {labels.max()}, but semantic labels are "
                f"class numbers (0 background, 1, 2, ... below {MAX_STORED_CLASSES}); for one "
                "label per object use --workflow instance."
            )
        return Decoded(images={"post_proc": labels}, state={"classes": int(labels.max()) + 1})

    def score(self, decoded: Decoded, gt: Any, image: Image) -> Scored:
        """Foreground IoU (2 classes) or mean IoU over classes plus ``iou_class_<k>``."""
        labels = decoded.images["post_proc"]
        classes = decoded.state.get("classes", int(labels.max()) + 1)
        gt = np.asarray(gt)
        if classes <= 2:
            return Scored(row={"iou": binary_iou(labels > 0, gt > 0)})
        per_class = {f"iou_class_{k}": binary_iou(labels == k, gt == k) for k in range(classes)}
        return Scored(row={"iou": float(np.mean(list(per_class.values()))), **per_class})

    def score_stored(self, labels: Any, raw: Any, gt: Any) -> Scored:
        """``score`` streamed over stored labels and GT read by blocks (same values)."""
        from biapy_runner.metrics.streaming import streaming_class_ious

        classes = int(raw.shape[0])
        if classes <= 2:
            return Scored(row={"iou": streaming_class_ious(gt, labels, None)[0]})
        ious = streaming_class_ious(gt, labels, range(classes))
        per_class = {f"iou_class_{k}": v for k, v in enumerate(ious)}
        return Scored(row={"iou": float(np.mean(ious)), **per_class})

    def summarize(self, decoded: Decoded, image: Image) -> dict[str, Any]:
        """Shape and foreground fraction (or the fraction of each class)."""
        labels = decoded.images["post_proc"]
        classes = decoded.state.get("classes", int(labels.max()) + 1)
        row: dict[str, Any] = {"shape": "x".join(str(s) for s in labels.shape)}
        if classes <= 2:
            row["foreground_fraction"] = float(np.count_nonzero(labels) / labels.size)
        else:
            counts = np.bincount(labels.ravel(), minlength=classes)
            row.update({f"class_{k}_fraction": float(c / labels.size) for k, c in enumerate(counts)})
        return row

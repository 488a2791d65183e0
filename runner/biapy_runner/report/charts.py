"""Charts of the report (matplotlib, headless): they read the metric tables, never recompute.

- instance segmentation: precision, recall, F1 and panoptic quality against the IoU threshold;
- per-image bars of the workflow's main metric (one bar per prediction set);
- classification: the confusion matrix as a heat map;
- instance segmentation: the histogram of object sizes from ``objects.tsv``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Figure resolution (dots per inch); figures are sized in inches.
DPI = 100
#: The column shown per image for each PROBLEM.TYPE (the first present).
MAIN_METRICS: dict[str, tuple[str, ...]] = {
    "SEMANTIC_SEG": ("iou",),
    "INSTANCE_SEG": ("post_f1@0.5", "f1@0.5"),
    "DETECTION": ("f1",),
    "DENOISING": ("psnr",),
    "SUPER_RESOLUTION": ("psnr",),
    "SELF_SUPERVISED": ("psnr",),
    "IMAGE_TO_IMAGE": ("psnr",),
    "CLASSIFICATION": (),
}
_CURVE = ("precision", "recall", "f1", "panoptic_quality")
_THRESHOLD_COLUMN = re.compile(r"^(post_)?(?P<metric>[a-z_]+)@(?P<th>[0-9.eE+-]+)$")


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def threshold_curves(totals: Mapping[str, pd.Series], path: Path) -> Path | None:
    """Precision, recall, F1 and PQ of the final instances against the IoU threshold, one line
    per prediction set (``totals``: name -> the ``ALL`` row). ``None`` without such columns."""
    fig, axes = plt.subplots(1, len(_CURVE), figsize=(12, 3.2), sharey=True)
    drawn = False
    for name, row in totals.items():
        post = any(str(k).startswith("post_") for k in row.index)
        for ax, metric in zip(axes, _CURVE):
            points = []
            for key, value in row.items():
                match = _THRESHOLD_COLUMN.match(str(key))
                if match and match["metric"] == metric and bool(match.group(1)) == post:
                    points.append((float(match["th"]), float(value)))
            if points:
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, marker="o", label=name or None)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax, metric in zip(axes, _CURVE):
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("IoU threshold")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    if any(totals):
        axes[-1].legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def per_image_bars(frames: Mapping[str, pd.DataFrame], column: str, path: Path) -> Path | None:
    """Bars of ``column`` per image (rows other than ``ALL``), grouped by prediction set."""
    usable = {n: f[f["image"].astype(str) != "ALL"] for n, f in frames.items() if column in f}
    if not usable or not any(len(f) for f in usable.values()):
        return None
    images = list(dict.fromkeys(s for f in usable.values() for s in f["image"].astype(str)))
    width = 0.8 / len(usable)
    fig, ax = plt.subplots(figsize=(min(14.0, 2.5 + 0.5 * len(images) * len(usable)), 3.2))
    for k, (name, frame) in enumerate(usable.items()):
        finite = frame[column].astype(float).where(np.isfinite(frame[column].astype(float)))
        values = dict(zip(frame["image"].astype(str), finite))
        xs = np.arange(len(images)) + (k - (len(usable) - 1) / 2) * width
        ax.bar(xs, [values.get(i, np.nan) for i in images], width, label=name or None)
    ax.set_xticks(np.arange(len(images)), images, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel(column)
    ax.grid(axis="y", alpha=0.3)
    if any(usable):
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def confusion_heatmap(table: pd.DataFrame, title: str, path: Path) -> Path:
    """The confusion matrix (``confusion_matrix.tsv``: rows true class, ``pred_k`` columns) as a
    heat map with the counts written in the cells."""
    pred_columns = [c for c in table.columns if str(c).startswith("pred_")]
    matrix = table[pred_columns].to_numpy(dtype=float)
    names = (
        table["class_name"].astype(str).tolist()
        if "class_name" in table
        else [str(k) for k in table["gt_class"]]
    )
    size = 1.2 + 0.5 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    shown = ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        ax.text(j, i, f"{value:g}", ha="center", va="center", color=colour)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, path)


def size_histogram(frames: Mapping[str, pd.DataFrame], path: Path) -> Path | None:
    """Histogram of object sizes (``area`` or ``volume`` of ``objects.tsv``), one per set."""
    sizes = {}
    for name, frame in frames.items():
        column = "volume" if "volume" in frame else "area" if "area" in frame else None
        if column is not None and len(frame):
            sizes[name] = (column, frame[column].to_numpy(dtype=float))
    if not sizes:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    everything = np.concatenate([v for _, v in sizes.values()])
    bins = np.histogram_bin_edges(everything, bins=min(40, max(5, everything.size // 3)))
    for name, (_, values) in sizes.items():
        ax.hist(values, bins=bins, alpha=0.6, label=name or None)
    ax.set_xlabel(next(iter(sizes.values()))[0])
    ax.set_ylabel("objects")
    ax.grid(alpha=0.3)
    if any(sizes):
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


#: ``train_log.tsv`` columns that are not curves
_LOG_BOOKKEEPING = ("epoch", "lr", "seconds")


def training_curves(log_table: pd.DataFrame, path: Path) -> Path | None:
    """The training log's curves against the epoch: the loss (training and validation), then
    one panel per metric (``train_<m>`` / ``val_<m>``), then the learning rate; 4 x 3.2 inches
    per panel. ``None`` for an empty log."""
    if log_table.empty or "epoch" not in log_table:
        return None
    names = ["loss"] + [c[len("train_"):] for c in log_table.columns
                        if c.startswith("train_") and c != "train_loss"]
    panels = [*names, "lr"] if "lr" in log_table else names
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    epochs = log_table["epoch"].to_numpy()
    for ax, name in zip(axes[0], panels):
        if name == "lr":
            ax.plot(epochs, log_table["lr"].to_numpy(), marker=".", color="tab:gray")
            ax.set_yscale("log" if (log_table["lr"] > 0).all() else "linear")
            ax.set_title("learning rate")
        else:
            for side in ("train", "val"):
                column = f"{side}_{name}"
                if column in log_table and log_table[column].notna().any():
                    ax.plot(epochs, log_table[column].to_numpy(), marker=".",
                            label="training" if side == "train" else "validation")
            ax.set_title(name)
            ax.legend(fontsize="small")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)

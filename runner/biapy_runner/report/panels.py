"""The panels of one image's preview, per workflow, read from the results written for it.

Everything here reads files: the input image, the ground truth and what the run (or
``evaluate``) wrote under a result folder (``post_proc/``, ``instances/``, ``metrics/*.tsv``);
nothing is recomputed. Several result folders (prediction sets compared by ``evaluate``) give
their panels side by side after the image's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from biapy_runner.io.images import read_image
from biapy_runner.report.previews import (
    FN_COLOUR,
    FP_COLOUR,
    TP_COLOUR,
    Palette,
    Panel,
    View,
    draw_contours,
    draw_points,
    image_tiles,
    label_colours,
    label_tiles,
    resize_nearest,
    status_colours,
    stretch_limits,
    subsample_step,
    take,
    views_of,
)

#: IoU threshold whose matches colour the instance preview (the nearest one scored).
PREVIEW_IOU = 0.5
POINT_COLOUR = (0, 200, 255)
if TYPE_CHECKING:
    from biapy_runner.io.chunked import LazyImage

RESTORATION = ("DENOISING", "SUPER_RESOLUTION", "SELF_SUPERVISED", "IMAGE_TO_IMAGE")


@dataclass
class ResultSet:
    """A folder of results (``post_proc/``, ``instances/``, ``metrics/``) and its name in the
    report (empty for a single run)."""

    name: str
    root: Path

    def title(self, what: str) -> str:
        """A panel title, prefixed by the set's name when it has one."""
        return f"{self.name}: {what}" if self.name else what

    def table(self, name: str) -> pd.DataFrame | None:
        """The TSV ``name`` (e.g. ``metrics/metrics.tsv``) of this set, ``None`` when absent."""
        path = self.root / name
        return pd.read_csv(path, sep="\t") if path.is_file() else None


@dataclass
class Item:
    """One image of the report: its stem, the input image and the GT file (either may be
    ``None``: ``evaluate`` has no input image unless given one; runs without GT)."""

    stem: str
    image: Path | None = None
    gt: Path | None = None


@dataclass
class Reader:
    """How to read the files of the report (the run's ``--axes`` / ``--dataset`` for inputs).

    ``max_voxels``: a 3D volume with more voxels (an image predicted by chunks, its Zarr
    results) is not read whole: every ``scale``-th plane is read, one at a time, keeping every
    ``scale``-th pixel, so the preview of a volume larger than memory holds about
    ``max_voxels`` voxels per volume (its projection is then over the planes read). A result
    missing as ``<stem>.tif`` is read from ``<stem>.zarr`` (results written by chunks)."""

    ndim: int
    axes: str | None = None
    dataset: str | None = None
    max_voxels: int = 1 << 26
    #: the stride of the volumes read last (1: read whole); coordinates divide by it
    scale: int = 1

    def image(self, path: Path) -> np.ndarray:
        """An input image, channel first."""
        return self._read(path, self.axes, self.dataset)

    def result(self, path: Path) -> np.ndarray | None:
        """A written result (channel first), ``None`` when the file does not exist."""
        if not path.is_file() and path.with_suffix(".zarr").is_dir():
            path = path.with_suffix(".zarr")
        return self._read(path, None, None) if path.exists() else None

    def labels(self, path: Path) -> np.ndarray | None:
        """A label image (first channel) or ``None`` when the file does not exist."""
        data = self.result(path)
        return None if data is None else data[0]

    def _read(self, path: Path, axes: str | None, dataset: str | None) -> np.ndarray:
        """The image at ``path``, thinned plane by plane when it is a large 3D volume."""
        from biapy_runner.io.chunked import is_lazy_format, open_lazy

        self.scale = 1
        if self.ndim != 3 or not is_lazy_format(path):
            return read_image(path, ndim=self.ndim, axes=axes, dataset=dataset).data
        lazy = open_lazy(path, ndim=3, axes=axes, dataset=dataset, announce=False)
        try:
            voxels = int(np.prod(lazy.spatial_shape))
            if voxels <= self.max_voxels and not path.name.lower().endswith(".zarr"):
                return read_image(path, ndim=3, axes=axes, dataset=dataset).data
            self.scale = max(1, int(np.ceil((voxels / self.max_voxels) ** (1 / 3) - 1e-9)))
            return thinned(lazy, self.scale)
        finally:
            lazy.close()


def thinned(lazy: LazyImage, step: int) -> np.ndarray:
    """Every ``step``-th plane of ``lazy`` (channel first, 3D) keeping every ``step``-th pixel,
    read one plane at a time."""
    rest = tuple(slice(0, n) for n in lazy.spatial_shape[1:])
    planes = [lazy.read((slice(z, z + 1), *rest))[:, :, ::step, ::step]
              for z in range(0, lazy.spatial_shape[0], step)]  # fmt: skip
    return np.concatenate(planes, axis=1)


@dataclass
class Canvas:
    """The geometry shared by the panels of one image: views, subsampling, backdrop tiles."""

    views: list[View]
    step: int
    backdrop: list[np.ndarray]

    def contours(self, labels: np.ndarray, palette: Palette = label_colours) -> list[np.ndarray]:
        """Backdrop tiles with the contours of ``labels`` (all views) in ``palette``'s colours."""
        planes = label_tiles(labels, self.views, self.step)
        return [draw_contours(t, p, palette) for t, p in zip(self.backdrop, planes)]


def make_canvas(
    image: np.ndarray | None, shape: Sequence[int], fallback: np.ndarray | None
) -> Canvas:
    """Views of ``shape``; the backdrop is the image (contrast-stretched), else ``fallback``
    (e.g. the GT mask, dimmed), else black."""
    views = views_of(shape)
    step = subsample_step(shape)
    if image is not None and tuple(image.shape[1:]) != tuple(shape):
        image = None
    if image is not None:
        backdrop = image_tiles(image, views, step=step)
    else:
        base = np.zeros(shape, np.uint8) if fallback is None else (fallback > 0).astype(np.uint8)
        backdrop = [
            np.repeat((take(base, v, step) * 70).astype(np.uint8)[..., None], 3, axis=2)
            for v in views
        ]
    return Canvas(views, step, backdrop)


def _rows(frame: pd.DataFrame | None, stem: str) -> pd.DataFrame | None:
    if frame is None or "image" not in frame:
        return None
    rows = frame[frame["image"].astype(str) == stem]
    return rows if len(rows) else None


def _nearest_threshold(assoc: pd.DataFrame) -> float:
    thresholds = np.unique(assoc["threshold"].to_numpy(dtype=float))
    return float(thresholds[np.argmin(np.abs(thresholds - PREVIEW_IOU))])


# ---- per workflow ----------------------------------------------------------------------------
def semantic_panels(item: Item, sets: Sequence[ResultSet], reader: Reader) -> list[Panel]:
    """The image, each prediction's class outlines and the GT's."""
    preds = [reader.labels(s.root / "post_proc" / f"{item.stem}.tif") for s in sets]
    gt = reader.labels(item.gt) if item.gt else None
    binary = all(p is None or int(p.max(initial=0)) <= 1 for p in preds)
    if gt is not None and binary:
        gt = (gt > 0).astype(np.uint8)  # scored as foreground: instance GT shown as one class
    shape = next(p.shape for p in [*preds, gt] if p is not None)
    canvas = make_canvas(reader.image(item.image) if item.image else None, shape, gt)
    panels = [Panel("image" if item.image else "ground truth (mask)", canvas.backdrop)]
    for s, labels in zip(sets, preds):
        if labels is not None:
            tiles = canvas.contours(labels)
            panels.append(Panel(s.title("prediction (class outlines)"), tiles))
    if gt is not None:
        panels.append(Panel("ground truth (class outlines)", canvas.contours(gt)))
    return panels


def _instance_status(
    labels: np.ndarray, gt: np.ndarray, assoc: pd.DataFrame, canvas: Canvas
) -> tuple[str, list[np.ndarray]]:
    """Tiles with matched objects green, false positives red and missed GT objects yellow."""
    post = assoc[assoc["stage"] == "post"] if "stage" in assoc else assoc
    th = _nearest_threshold(post)
    at = post[np.isclose(post["threshold"].to_numpy(dtype=float), th)]
    tp = at.loc[at["status"] == "tp", "pred_id"].astype(int).tolist()
    fp = at.loc[at["status"] == "fp", "pred_id"].astype(int).tolist()
    fn = at.loc[at["status"] == "fn", "gt_id"].astype(int).tolist()
    tiles = canvas.contours(labels, status_colours((tp, TP_COLOUR), (fp, FP_COLOUR)))
    missed = status_colours((fn, FN_COLOUR))
    planes = label_tiles(np.where(np.isin(gt, fn), gt, 0), canvas.views, canvas.step)
    tiles = [draw_contours(t, p, missed) for t, p in zip(tiles, planes)]
    return f"matched / false positive / missed at IoU {th:g}", tiles


def instance_panels(item: Item, sets: Sequence[ResultSet], reader: Reader) -> list[Panel]:
    """The image; per set the instances before and after post-processing in distinct colours
    and, with GT, matched (green), false positive (red) and missed (yellow) objects."""
    finals = [reader.labels(s.root / "post_proc" / f"{item.stem}.tif") for s in sets]
    gt = reader.labels(item.gt) if item.gt else None
    shape = next(p.shape for p in [*finals, gt] if p is not None)
    canvas = make_canvas(reader.image(item.image) if item.image else None, shape, gt)
    panels = [Panel("image" if item.image else "ground truth (mask)", canvas.backdrop)]
    for s, final in zip(sets, finals):
        before = reader.labels(s.root / "instances" / f"{item.stem}.tif")
        if before is not None:
            tiles = canvas.contours(before)
            panels.append(Panel(s.title("instances before post-processing"), tiles))
        if final is None:
            continue
        panels.append(Panel(s.title("final instances"), canvas.contours(final)))
        assoc = _rows(s.table("metrics/associations.tsv"), item.stem)
        if gt is not None and assoc is not None:
            title, tiles = _instance_status(final, gt, assoc, canvas)
            panels.append(Panel(s.title(title), tiles))
    if gt is not None:
        panels.append(Panel("ground truth", canvas.contours(gt)))
    return panels


def _coords(frame: pd.DataFrame, prefix: str, ndim: int) -> np.ndarray:
    columns = [f"{prefix}axis-{k}" for k in range(ndim)]
    return frame[columns].to_numpy(dtype=float) if len(frame) else np.zeros((0, ndim))


def detection_panels(item: Item, sets: Sequence[ResultSet], reader: Reader) -> list[Panel]:
    """The image; per set its points and, with GT, matched (green), false positive (red) and
    missed (yellow) points."""
    image = reader.image(item.image) if item.image else None
    tables = [s.table(f"post_proc/{item.stem}_points.tsv") for s in sets]
    masks = [reader.labels(s.root / "post_proc" / f"{item.stem}.tif") for s in sets]
    shape = image.shape[1:] if image is not None else next(m.shape for m in masks if m is not None)
    canvas = make_canvas(image, shape, None)
    panels = [Panel("image" if image is not None else "points", canvas.backdrop)]

    def dots(parts: Sequence[tuple[np.ndarray, Sequence[int]]]) -> list[np.ndarray]:
        tiles = []
        for tile, view in zip(canvas.backdrop, canvas.views):
            for coords, colour in parts:
                tile = draw_points(tile, coords, view, colour, step=canvas.step)
            tiles.append(tile)
        return tiles

    scale = reader.scale  # the stride of the volumes just read (large ones are thinned)
    for s, table in zip(sets, tables):
        if table is not None:
            points = _coords(table, "", reader.ndim) / scale
            panels.append(Panel(s.title("points"), dots([(points, POINT_COLOUR)])))
        assoc = _rows(s.table("metrics/associations.tsv"), item.stem)
        if assoc is not None:
            parts = [
                (_coords(assoc[assoc["status"] == status], side, reader.ndim) / scale, colour)
                for status, side, colour in (("tp", "pred_", TP_COLOUR),
                                             ("fp", "pred_", FP_COLOUR),
                                             ("fn", "gt_", FN_COLOUR))
            ]  # fmt: skip
            panels.append(Panel(s.title("matched / false positive / missed"), dots(parts)))
    return panels


def restoration_panels(item: Item, sets: Sequence[ResultSet], reader: Reader) -> list[Panel]:
    """Input | prediction(s) | GT side by side with one contrast (percentiles over all of
    them); the input is enlarged (nearest) to the prediction's size for super-resolution."""
    preds = [reader.result(s.root / "post_proc" / f"{item.stem}.tif") for s in sets]
    gt = reader.result(item.gt) if item.gt else None
    image = reader.image(item.image) if item.image else None
    shown = [a for a in [*preds, gt] if a is not None]
    shape = shown[0].shape[1:]
    views, step = views_of(shape), subsample_step(shape)
    sample = [a.ravel()[:: max(1, a.size // 1_000_000)] for a in [*shown, image] if a is not None]
    limits = stretch_limits(*sample)
    panels = []
    if image is not None:
        small = image_tiles(image, views_of(image.shape[1:]), limits, step=1)
        target = image_tiles(shown[0], views, limits, step)
        enlarged = [resize_nearest(t, u.shape[:2]) for t, u in zip(small, target)]
        panels.append(Panel("input", enlarged))
    for s, pred in zip(sets, preds):
        if pred is not None and pred.shape[1:] == tuple(shape):
            panels.append(Panel(s.title("prediction"), image_tiles(pred, views, limits, step)))
    if gt is not None and gt.shape[1:] == tuple(shape):
        panels.append(Panel("ground truth", image_tiles(gt, views, limits, step)))
    return panels


def classification_panels(item: Item, sets: Sequence[ResultSet], reader: Reader) -> list[Panel]:
    """A thumbnail of the image (its class is written beside it in the report)."""
    if item.image is None:
        return []
    image = reader.image(item.image)
    shape = image.shape[1:]
    views = views_of(shape)
    return [Panel("image", image_tiles(image, views, step=subsample_step(shape, 192)))]


PanelMaker = Callable[[Item, Sequence[ResultSet], Reader], list[Panel]]

#: The panels of each PROBLEM.TYPE.
PANELS: dict[str, PanelMaker] = {
    "SEMANTIC_SEG": semantic_panels,
    "INSTANCE_SEG": instance_panels,
    "DETECTION": detection_panels,
    "CLASSIFICATION": classification_panels,
    **dict.fromkeys(RESTORATION, restoration_panels),
}

#: What the colours of each PROBLEM.TYPE's previews mean (shown under the previews).
LEGENDS: dict[str, str] = {
    "SEMANTIC_SEG": "Outlines in one colour per class.",
    "INSTANCE_SEG": (
        "One colour per object; against the ground truth: green matched, red false positive, "
        "yellow missed."
    ),
    "DETECTION": (
        "Blue: detected points; against the ground truth: green matched, red false positive, "
        "yellow missed."
    ),
    "CLASSIFICATION": "",
    **dict.fromkeys(RESTORATION, "Input, prediction and ground truth with the same contrast."),
}

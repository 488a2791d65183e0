"""Point detection (PROBLEM.TYPE DETECTION): peaks of the probability map, P/R/F1 against points.

Each output channel of the model is the probability map of one class (channel ``c``: class
``c + 1``). Points are its local maxima above ``TEST.DET_MIN_TH_TO_BE_PEAK`` (or Laplacian-of-
Gaussian blobs with ``TEST.DET_POINT_CREATION_FUNCTION: blob_log``), optionally thinned with
``TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS`` and grown into instances with ``DET_WATERSHED``.
Distances use ``DATA.TEST.RESOLUTION`` (z, y, x) as BiaPy does: radii and ``TEST.DET_TOLERANCE``
are compared with coordinates multiplied by the resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from biapy_runner import log
from biapy_runner.decode.chunked import (
    ChunkGrid,
    LabelStore,
    chunk_geometry,
    detect_points_by_chunks,
    grown_box,
    pixel_centres,
    read_region,
    write_point_mask,
)
from biapy_runner.decode.filters import configured_median_filter
from biapy_runner.decode.thresholds import otsu_of_blocks
from biapy_runner.decode.points import (
    AXIS_COLUMNS,
    PointSet,
    check_inside,
    find_peaks,
    otsu_thresholds,
    per_class,
    point_mask,
    points_from_image,
    read_points_table,
    remove_close_points,
)
from biapy_runner.config.load import voxel_spacing
from biapy_runner.errors import ConfigError
from biapy_runner.io.images import Image, class_dtype, label_dtype, stem_of, stored_labels
from biapy_runner.metrics.points import Matching, match_points, ratios
from biapy_runner.workflows.base import Decoded, Scored, Workflow, register

#: Suffixes of point tables (GT or predictions); anything else is read as an image.
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
POINTS_TABLE = "post_proc/{stem}_points.tsv"
ASSOCIATIONS_TABLE = "metrics/associations.tsv"
_COUNTS = ("tp", "fp", "fn", "n_true", "n_pred")


def is_table(path: Path) -> bool:
    """Whether ``path`` names a point table rather than an image."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def grow_instances(
    prob: np.ndarray, points: PointSet, dilations: Sequence[Sequence[int]]
) -> np.ndarray:
    """Instances grown from ``points`` over the probability map ``prob`` ``(C, *spatial)``.

    Each point seeds the label of its row (1..N), first dilated with a box of the size
    ``dilations[class - 1]`` (entries <= 0 leave the seed a single pixel). A watershed on the
    inverted probability (maximum over the channels) grows the seeds inside the foreground: the
    pixels whose probability reaches the Otsu threshold of the map (the seeds are always kept).
    Returns uint16 labels (uint32 beyond 65535 points), one label per point.
    """
    from skimage.segmentation import watershed

    best = np.max(prob, axis=0).astype(np.float32)
    dtype = label_dtype(len(points))
    if not len(points):
        return np.zeros(best.shape, dtype=dtype)
    seeds = np.zeros(best.shape, dtype=np.int64)
    centres = np.clip(np.round(points.coords).astype(np.int64), 0, np.asarray(best.shape) - 1)
    seeds[tuple(centres.T)] = np.arange(1, len(points) + 1)
    seeds = _dilate_seeds(seeds, points.classes, dilations)
    foreground = (best >= otsu_thresholds(best[None])[0]) | (seeds > 0)
    return watershed(-best, markers=seeds, mask=foreground).astype(dtype)


def grow_instances_by_chunks(
    raw: Any, points: PointSet, dilations: Sequence[Sequence[int]], chunk: Sequence[int],
    halo: Sequence[int], dest: Any,
) -> None:  # fmt: skip
    """``grow_instances`` of a prediction larger than memory, written into ``dest`` chunk by
    chunk: the Otsu threshold of the whole map from passes over the chunks
    (``thresholds.otsu_of_blocks``), then each chunk's watershed over the chunk with its halo,
    seeded by the points within reach (their ids are the points' rows, the same in every
    chunk). Equal to ``grow_instances`` when each grown object and its basin fit in the halo.

    Parameters
    ----------
    raw
        The probability map ``(C, *spatial)`` (numpy, Zarr, a ``LazyImage``).
    points, dilations
        As ``grow_instances``.
    chunk, halo
        Chunk core and context per side, per spatial axis.
    dest
        A writable array of the spatial shape (``label_dtype(len(points))``).
    """
    from skimage.segmentation import watershed

    shape = tuple(int(n) for n in raw.shape[1:])
    grid = ChunkGrid(shape, tuple(map(int, chunk)), tuple(map(int, halo)))

    def best(box: tuple[slice, ...]) -> np.ndarray:
        return np.max(read_region(raw, box), axis=0).astype(np.float32)

    def cores() -> Any:
        return (best(grid.core(index)) for index in grid.indices())

    lo = min(float(b.min()) for b in cores())
    hi = max(float(b.max()) for b in cores())
    threshold = otsu_of_blocks(cores) if lo < hi else hi  # a constant map: its value
    centres = pixel_centres(points, shape)
    reach = max([max(list(d) or [0]) for d in dilations] + [0]) // 2 + 1
    ids = np.arange(1, len(points) + 1)
    for index in grid.indices():
        ext, core = grid.extended(index), grid.core(index)
        around = grown_box(ext, (reach,) * len(shape), shape)
        lo_a = np.array([a.start for a in around])
        hi_a = np.array([a.stop for a in around])
        near = np.all((centres >= lo_a) & (centres < hi_a), axis=1)
        seeds = np.zeros(tuple(hi_a - lo_a), dtype=np.int64)
        seeds[tuple((centres[near] - lo_a).T)] = ids[near]
        seeds = _dilate_seeds(seeds, points.classes, dilations)
        seeds = seeds[tuple(slice(e.start - a.start, e.stop - a.start)
                            for e, a in zip(ext, around))]  # fmt: skip
        prob = best(ext)
        labels = watershed(-prob, markers=seeds, mask=(prob >= threshold) | (seeds > 0))
        inner = tuple(slice(c.start - e.start, c.stop - e.start) for c, e in zip(core, ext))
        dest[core] = labels[inner].astype(dest.dtype)


def _dilate_seeds(
    seeds: np.ndarray, classes: np.ndarray, dilations: Sequence[Sequence[int]]
) -> np.ndarray:
    """Grow each seed to a box of its class's size, never over another seed."""
    grown = seeds.copy()
    for cls in np.unique(classes):
        size = list(dilations[min(int(cls), len(dilations)) - 1]) if int(cls) > 0 else []
        if not size or min(size) <= 0:
            continue
        labels = np.flatnonzero(classes == cls) + 1
        own = np.where(np.isin(seeds, labels), seeds, 0)
        wider = ndimage.grey_dilation(own, size=size)
        grown = np.where(grown == 0, wider, grown)
    return grown


def associations(
    stem: str, gt: PointSet, pred: PointSet, matching: Matching, cls: int | None
) -> pd.DataFrame:
    """Rows of ``metrics/associations.tsv``: one per TP pair, FN (GT) and FP (prediction).

    ``gt_id``/``pred_id`` are 1-based rows of the GT and of the points table; coordinates in
    array order; ``distance`` is physical (NaN for FN/FP).
    """
    ndim = gt.ndim
    parts = [
        (matching.pairs[:, 0], matching.pairs[:, 1], matching.distances, "tp"),
        (matching.fn, None, None, "fn"),
        (None, matching.fp, None, "fp"),
    ]
    frames = []
    for gt_idx, pred_idx, dist, status in parts:
        n = len(gt_idx if gt_idx is not None else pred_idx)
        frame = pd.DataFrame({"image": [stem] * n, "status": [status] * n})
        if cls is not None:
            frame["class"] = cls
        frame["gt_id"] = _ids(gt_idx, n)
        frame["pred_id"] = _ids(pred_idx, n)
        for axis in range(ndim):
            frame[f"gt_{AXIS_COLUMNS[axis]}"] = _column(gt.coords, gt_idx, axis, n)
        for axis in range(ndim):
            frame[f"pred_{AXIS_COLUMNS[axis]}"] = _column(pred.coords, pred_idx, axis, n)
        frame["distance"] = np.full(n, np.nan) if dist is None else dist
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _ids(index: np.ndarray | None, n: int) -> pd.Series:
    values = [pd.NA] * n if index is None else (np.asarray(index) + 1).tolist()
    return pd.Series(values, dtype="Int64")


def _column(coords: np.ndarray, index: np.ndarray | None, axis: int, n: int) -> np.ndarray:
    return np.full(n, np.nan) if index is None else coords[np.asarray(index, dtype=int), axis]


@register
class Detection(Workflow):
    """Points from probability maps; precision, recall and F1 within ``TEST.DET_TOLERANCE``."""

    problem_type = "DETECTION"

    # -- configuration -----------------------------------------------------------------------

    def _resolution(self, ndim: int) -> tuple[float, ...]:
        return voxel_spacing(self.cfg.get("DATA.TEST.RESOLUTION"), ndim)

    def _thresholds(self, prob: np.ndarray) -> list[float]:
        """Peak thresholds per channel for ``TEST.DET_TH_TYPE``: ``auto`` (Otsu), ``manual``
        (``DET_MIN_TH_TO_BE_PEAK``), ``relative`` / ``relative_by_patch`` (that fraction of the
        channel's maximum; the whole merged image is the patch here)."""
        kind = str(self.cfg.get("TEST.DET_TH_TYPE")).lower()
        if kind == "auto":
            return otsu_thresholds(prob)
        key = "TEST.DET_MIN_TH_TO_BE_PEAK"
        values = per_class(self.cfg.get(key), prob.shape[0], key)
        if kind.startswith("relative"):
            return [v * float(channel.max()) for v, channel in zip(values, prob)]
        return values

    def _dilations(self, n_classes: int, ndim: int) -> list[list[int]]:
        value = self.cfg.get("TEST.POST_PROCESSING.DET_WATERSHED_FIRST_DILATION")
        key = "TEST.POST_PROCESSING.DET_WATERSHED_FIRST_DILATION"
        nested = [list(v) for v in value] if value and isinstance(value[0], Sequence) else [value]
        if len(nested) not in (1, n_classes):
            raise ConfigError(
                f"{key} gives {len(nested)} sizes but the model predicts {n_classes} classes: "
                "give one size (e.g. [2, 2]) or one per class (e.g. [[2, 2], [3, 3]])."
            )
        for size in nested:
            if size and min(size) > 0 and len(size) != ndim:
                raise ConfigError(
                    f"{key} size {size} has {len(size)} values but the images are {ndim}D: give "
                    f"{ndim} box sides in (z, y, x) order, or -1 for no dilation."
                )
        return nested * n_classes if len(nested) == 1 else nested

    def check_model(self, out_channels: int, channel_names: Sequence[str]) -> None:
        """Per-class settings must have one value or one per output channel (class)."""
        if str(self.cfg.get("TEST.DET_TH_TYPE")).lower() != "auto":
            per_class(
                self.cfg.get("TEST.DET_MIN_TH_TO_BE_PEAK"), out_channels,
                "TEST.DET_MIN_TH_TO_BE_PEAK",
            )  # fmt: skip
        per_class(self.cfg.get("TEST.DET_TOLERANCE"), out_channels, "TEST.DET_TOLERANCE")
        if self.cfg.get("TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS"):
            key = "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS"
            per_class(self.cfg.get(key), out_channels, key)

    # -- decoding ----------------------------------------------------------------------------

    def find_points(self, prob: np.ndarray) -> PointSet:
        """Peaks (or LoG blobs) of every channel, then close-point removal when configured."""
        ndim = prob.ndim - 1
        method = str(self.cfg.get("TEST.DET_POINT_CREATION_FUNCTION"))
        if method not in ("peak_local_max", "blob_log"):
            raise ConfigError(
                f"TEST.DET_POINT_CREATION_FUNCTION is {method!r}: use 'peak_local_max' or "
                "'blob_log'."
            )
        points = find_peaks(
            prob,
            self._thresholds(prob),
            min_distance=int(self.cfg.get("TEST.DET_PEAK_LOCAL_MAX_MIN_DISTANCE")),
            exclude_border=self.cfg.get("TEST.DET_EXCLUDE_BORDER"),
            method=method,
            blob_sigmas=(
                self.cfg.get("TEST.DET_BLOB_LOG_MIN_SIGMA"),
                self.cfg.get("TEST.DET_BLOB_LOG_MAX_SIGMA"),
                self.cfg.get("TEST.DET_BLOB_LOG_NUM_SIGMA"),
            ),
        )
        if self.cfg.get("TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS"):
            key = "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS"
            before = len(points)
            radii = per_class(self.cfg.get(key), prob.shape[0], key)
            points = remove_close_points(points, radii, self._resolution(ndim))
            log.info(f"  close points removed: {before - len(points)} of {before}")
        return points

    def decode(self, raw: np.ndarray, image: Image) -> Decoded:
        """Points table and point mask (plus instances with ``DET_WATERSHED``) of ``raw``."""
        raw = configured_median_filter(raw, self.cfg)
        points = self.find_points(raw)
        log.info(f"  {len(points)} point(s) detected")
        decoded = self._wrap(points, raw.shape[1:])
        if self.cfg.get("TEST.POST_PROCESSING.DET_WATERSHED"):
            dilations = self._dilations(raw.shape[0], raw.ndim - 1)
            decoded.images["instances"] = grow_instances(raw, points, dilations)
        return decoded

    def decode_by_chunks(
        self, raw: Any, image: Image, store: LabelStore | None = None
    ) -> Decoded:
        """Points found chunk by chunk (``decode.chunked``: BiaPy's chunk_by_chunk chunk and
        halo), kept in the chunk that owns them, close points of neighbouring chunks
        deduplicated (within REMOVE_CLOSE_POINTS_RADIUS when set, else the peak spacing
        TEST.DET_PEAK_LOCAL_MAX_MIN_DISTANCE). TEST.DET_TH_TYPE auto / relative thresholds are
        computed per chunk, as BiaPy does per tile. The point mask and DET_WATERSHED's
        instances (``grow_instances_by_chunks``) are made chunk by chunk into ``store``'s arrays
        (numpy by default, Zarr out of core)."""
        ndim = len(raw.shape) - 1
        chunk, halo = chunk_geometry(self.cfg, ndim)
        if self.cfg.get("TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS"):
            key = "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS"
            radius = max(per_class(self.cfg.get(key), int(raw.shape[0]), key))
            resolution, norm = self._resolution(ndim), 2.0
        else:
            radius = float(self.cfg.get("TEST.DET_PEAK_LOCAL_MAX_MIN_DISTANCE"))
            resolution, norm = (1.0,) * ndim, np.inf
        log.info(f"  points by chunks of {chunk} with a halo of {halo}")
        points = detect_points_by_chunks(
            raw,
            lambda block: self.find_points(configured_median_filter(block, self.cfg)),
            chunk, halo, radius, resolution, norm,
        )  # fmt: skip
        log.info(f"  {len(points)} point(s) detected")
        store = LabelStore() if store is None else store
        shape = tuple(int(n) for n in raw.shape[1:])
        top = int(points.classes.max()) if len(points) else 0
        mask = store.final("post_proc", shape, np.dtype(class_dtype(top)))
        write_point_mask(points, mask, chunk)
        decoded = self._wrap(points, None)
        decoded.images["post_proc"] = mask
        if self.cfg.get("TEST.POST_PROCESSING.DET_WATERSHED"):
            dilations = self._dilations(int(raw.shape[0]), ndim)
            grown = store.final("instances", shape, np.dtype(label_dtype(len(points))))
            grow_instances_by_chunks(raw, points, dilations, chunk, halo, grown)
            decoded.images["instances"] = grown
        return decoded

    @staticmethod
    def _wrap(points: PointSet, shape: Sequence[int] | None) -> Decoded:
        images = {} if shape is None else {"post_proc": point_mask(points, shape)}
        return Decoded(
            images=images, tables={POINTS_TABLE: points.to_frame()}, state={"points": points}
        )

    def read_prediction(self, path: Path, ndim: int | None, axes: str | None) -> Image:
        """A points table stands for an image of unknown size (no point mask is written); its
        dimension count is PROBLEM.NDIM's (2D unless set)."""
        if not is_table(path):
            return super().read_prediction(path, ndim, axes)
        ndim = ndim or 2
        empty = np.zeros((1,) + (0,) * ndim, dtype=np.float32)
        return Image(path, stem_of(path), empty, "c" + "zyx"[-ndim:], "table", empty.dtype)

    def decode_file(self, path: Path, image: Image) -> Decoded:
        """A stored prediction: a points table, a probability map (float image: decoded as in
        ``run``) or a point mask / label image (centroids of its objects)."""
        if is_table(path):
            return self._wrap(read_points_table(path, len(image.spatial_shape)), None)
        if np.issubdtype(image.data.dtype, np.floating):
            return self.decode(image.data, image)
        labels = stored_labels(image, channels_ok=True)
        if labels.ndim == image.data.ndim:  # one point mask per class
            labels = np.max(labels, axis=0)
        return self._wrap(points_from_image(labels), labels.shape)

    # -- scoring -----------------------------------------------------------------------------

    def list_gt(self, folder: Path) -> list[Path]:
        """GT folders hold point tables (BiaPy's CSVs) and/or label images."""
        tables = [p for p in folder.iterdir() if is_table(p) and not p.name.startswith(".")]
        return sorted([*super().list_gt(folder), *tables], key=lambda p: p.name)

    def load_gt(self, path: Path, image: Image) -> PointSet:
        """GT points: a CSV/TSV table (BiaPy's ``axis-0``.. columns or ``z``/``y``/``x``) or a
        label / point image (the centroid of each object)."""
        from biapy_runner.io.images import read_gt_image

        if is_table(path):
            points = read_points_table(path, len(image.spatial_shape))
            if image.data.size:  # a predicted table has no image size to check against
                check_inside(points, image.spatial_shape, path)
            return points
        return points_from_image(read_gt_image(path, image))

    def score(self, decoded: Decoded, gt: PointSet, image: Image) -> Scored:
        """tp, fp, fn, precision, recall, f1 (one-to-one within the tolerance); matched class by
        class when every GT and predicted point has a class (> 0) and there are several classes;
        association rows."""
        pred: PointSet = decoded.state["points"]
        resolution = self._resolution(gt.ndim)
        n_classes = int(max(pred.classes.max(initial=1), gt.classes.max(initial=1)))
        tolerances = per_class(self.cfg.get("TEST.DET_TOLERANCE"), n_classes, "TEST.DET_TOLERANCE")
        classes = sorted(set(gt.classes.tolist()) | set(pred.classes.tolist()))
        known = bool((gt.classes > 0).all() and (pred.classes > 0).all())
        groups: list[int | None] = classes if known and len(classes) > 1 else [None]
        counts = dict.fromkeys(_COUNTS, 0)
        frames = []
        for cls in groups:
            g = gt if cls is None else gt.subset(gt.classes == cls)
            p = pred if cls is None else pred.subset(pred.classes == cls)
            tol = tolerances[0] if cls is None else tolerances[min(cls, n_classes) - 1]
            matching = match_points(g.coords, p.coords, tol, resolution)
            for name, value in matching.counts().items():
                counts[name] += value
            counts["n_true"] += len(g)
            counts["n_pred"] += len(p)
            frames.append(
                associations(image.stem, gt, pred, _with_ids(matching, gt, pred, cls), cls)
            )
        return Scored(
            row=_row(counts), tables={ASSOCIATIONS_TABLE: pd.concat(frames, ignore_index=True)}
        )

    def summarize(self, decoded: Decoded, image: Image) -> dict[str, Any]:
        """Number of points, their mean probability, and the count of each class."""
        points: PointSet = decoded.state["points"]
        row: dict[str, Any] = {
            "n_points": len(points),
            "mean_probability": float(points.probs.mean()) if len(points) else 0.0,
        }
        classes, counts = np.unique(points.classes, return_counts=True)
        if len(classes) > 1:
            row.update({f"n_class_{int(c)}": int(n) for c, n in zip(classes, counts)})
        return row

    def aggregate(self, rows: Sequence[Mapping[str, Any]]) -> Scored:
        """Sum tp, fp, fn (and the point counts) over the images, then the ratios."""
        return Scored(row=_row({name: sum(int(r[name]) for r in rows) for name in _COUNTS}))


def _row(counts: Mapping[str, int]) -> dict[str, Any]:
    return {**ratios(counts["tp"], counts["fp"], counts["fn"]), **counts}


def _with_ids(matching: Matching, gt: PointSet, pred: PointSet, cls: int | None) -> Matching:
    """Map indices within one class back to rows of the whole GT / points table."""
    if cls is None:
        return matching
    gt_rows = np.flatnonzero(gt.classes == cls)
    pred_rows = np.flatnonzero(pred.classes == cls)
    pairs = np.stack([gt_rows[matching.pairs[:, 0]], pred_rows[matching.pairs[:, 1]]], axis=1)
    return Matching(pairs, matching.distances, gt_rows[matching.fn], pred_rows[matching.fp])

"""Point detection: peaks from probability maps, close-point removal, point tables and masks.

Coordinates are ``(z, y, x)`` in 3D and ``(y, x)`` in 2D, in pixels of the array they come from.
Distances are physical: each axis is multiplied by its resolution first (BiaPy's
``DATA.TEST.RESOLUTION``, in the same axis order), so radii and tolerances are in those units
(pixels along x/y when the resolution is given relative to x, as BiaPy usually does).

Classes are numbered from 1: the channel ``c`` of a probability map holds class ``c + 1``;
class 0 means unknown (a GT table without a ``class`` column, a label image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from biapy_runner.decode.thresholds import otsu
from biapy_runner.errors import InputError
from biapy_runner.io.images import class_dtype

#: Coordinate column names of BiaPy's (napari's) point tables, in array axis order.
AXIS_COLUMNS = ("axis-0", "axis-1", "axis-2")
_NAMED_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}


@dataclass
class PointSet:
    """Points of one image: ``coords`` ``(N, ndim)`` float, ``probs`` ``(N,)``, ``classes`` ``(N,)``."""

    coords: np.ndarray
    probs: np.ndarray
    classes: np.ndarray

    @classmethod
    def empty(cls, ndim: int) -> PointSet:
        """A set without points in ``ndim`` dimensions."""
        return cls(np.zeros((0, ndim)), np.zeros(0), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return self.coords.shape[1]

    def subset(self, keep: np.ndarray) -> PointSet:
        """The points selected by the index or boolean array ``keep``, in that order."""
        return PointSet(self.coords[keep], self.probs[keep], self.classes[keep])

    def to_frame(self) -> pd.DataFrame:
        """BiaPy's point table: ``pred_id``, ``axis-0``.. in array order, ``probability``,
        ``class``."""
        frame = pd.DataFrame({"pred_id": np.arange(1, len(self) + 1)})
        for axis in range(self.ndim):
            frame[AXIS_COLUMNS[axis]] = self.coords[:, axis]
        frame["probability"] = self.probs.astype(np.float64)
        frame["class"] = self.classes.astype(np.int64)
        return frame


def _concat(sets: Sequence[PointSet], ndim: int) -> PointSet:
    if not sets:
        return PointSet.empty(ndim)
    return PointSet(
        np.concatenate([s.coords for s in sets]).reshape(-1, ndim),
        np.concatenate([s.probs for s in sets]),
        np.concatenate([s.classes for s in sets]).astype(np.int64),
    )


def per_class(value: float | Sequence[float], n_classes: int, key: str) -> list[float]:
    """Expand a BiaPy setting given once or once per class to one value per class."""
    from biapy_runner.errors import ConfigError

    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        return [float(values[0])] * n_classes
    if len(values) != n_classes:
        raise ConfigError(
            f"{key} has {len(values)} values but the model predicts {n_classes} classes "
            "(channels): give one value, or one per class."
        )
    return [float(v) for v in values]


# --------------------------------------------------------------------------- peak finding


def find_peaks(
    prob: np.ndarray,
    thresholds: Sequence[float],
    *,
    min_distance: int = 1,
    exclude_border: bool | int = False,
    method: str = "peak_local_max",
    blob_sigmas: tuple[float, float, int] = (5.0, 10.0, 2),
) -> PointSet:
    """Points of a probability map ``prob`` ``(C, *spatial)``, channel ``c`` giving class ``c+1``.

    ``method`` ``"peak_local_max"``: local maxima at least ``min_distance`` apart with a
    probability of at least the class threshold; ``"blob_log"``: Laplacian-of-Gaussian blobs of
    the map scaled to 0..255 (``blob_sigmas`` = min sigma, max sigma, number of sigmas) with the
    threshold as LoG threshold, as BiaPy calls it. Each point carries the probability at it.
    """
    from skimage.feature import blob_log, peak_local_max

    ndim = prob.ndim - 1
    found = []
    for channel, threshold in zip(range(prob.shape[0]), thresholds):
        data = np.asarray(prob[channel], dtype=np.float32)
        if method == "peak_local_max":
            coords = peak_local_max(
                data,
                min_distance=max(int(min_distance), 1),
                threshold_abs=threshold,
                exclude_border=exclude_border,
            )
        else:
            low, high, num = blob_sigmas
            blobs = blob_log(
                data * 255,
                min_sigma=low,
                max_sigma=high,
                num_sigma=int(num),
                threshold=threshold,
                exclude_border=exclude_border,
            )
            coords = np.round(blobs[:, :ndim]).astype(np.int64)
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, ndim)
        found.append(
            PointSet(
                coords.astype(np.float64),
                data[tuple(coords.T)].astype(np.float64),
                np.full(len(coords), channel + 1, dtype=np.int64),
            )
        )
    return sort_points(_concat(found, ndim))


def sort_points(points: PointSet) -> PointSet:
    """Points in a stable order: by class, then coordinates (z, y, x)."""
    keys = [points.coords[:, axis] for axis in reversed(range(points.ndim))] + [points.classes]
    return points.subset(np.lexsort(keys)) if len(points) else points


def otsu_thresholds(prob: np.ndarray) -> list[float]:
    """One Otsu threshold per channel (BiaPy's ``TEST.DET_TH_TYPE: auto``); a constant channel's
    own value (no peak rises above it)."""
    out = []
    for channel in prob:
        flat = np.asarray(channel, dtype=np.float32)
        out.append(otsu(flat) if flat.min() < flat.max() else float(flat.max()))
    return out


# --------------------------------------------------------------------------- close points


def _scaled(coords: np.ndarray, resolution: Sequence[float]) -> np.ndarray:
    return np.asarray(coords, dtype=np.float64) * np.asarray(resolution, dtype=np.float64)


def remove_close_points(
    points: PointSet, radii: Sequence[float], resolution: Sequence[float]
) -> PointSet:
    """Within each class, drop every point at ``radius`` or less (physical units) from a point of
    higher probability; ``radii`` has one radius per class (class ``k`` uses ``radii[k-1]``).

    Points are visited from the most to the least probable (ties: table order); a visited point
    that was not dropped drops all its neighbours. A radius of 0 or less keeps every point.
    """
    keep: list[int] = []
    for cls in np.unique(points.classes):
        members = np.flatnonzero(points.classes == cls)
        radius = radii[min(int(cls), len(radii)) - 1]
        if radius <= 0 or len(members) < 2:
            keep.extend(members.tolist())
            continue
        order = members[np.argsort(-points.probs[members], kind="stable")]
        tree = cKDTree(_scaled(points.coords[order], resolution))
        neighbours = tree.query_ball_point(tree.data, r=radius)
        dropped = np.zeros(len(order), dtype=bool)
        for rank, near in enumerate(neighbours):
            if dropped[rank]:
                continue
            keep.append(int(order[rank]))
            dropped[near] = True
    return points.subset(np.sort(np.asarray(keep, dtype=np.int64)))


# --------------------------------------------------------------------------- point mask


def point_mask(points: PointSet, shape: Sequence[int], radius: int = 1) -> np.ndarray:
    """An image of ``shape`` with a small square mark (side ``2*radius+1`` in y and x, one plane
    in z) of value class id at each point; uint8 (uint16 beyond 255 classes)."""
    top = int(points.classes.max()) if len(points) else 0
    mask = np.zeros(tuple(shape), dtype=class_dtype(top))
    if not len(points):
        return mask
    centres = np.clip(np.round(points.coords).astype(np.int64), 0, np.asarray(shape) - 1)
    mask[tuple(centres.T)] = points.classes
    size = [1] * (len(shape) - 2) + [2 * radius + 1] * 2
    return ndimage.grey_dilation(mask, size=size)


def points_from_image(image: np.ndarray) -> PointSet:
    """Points of a label or point-mask image: the centroid of each object.

    An object is a connected region of one value (touching labels stay apart). When some value
    is shared by several objects the image is read as a class mask (class = value, e.g. this
    runner's point masks); otherwise as a label image (one object per label, class 0: unknown).
    """
    image = np.asarray(image)
    if not image.any():
        return PointSet.empty(image.ndim)
    values = np.unique(image[image != 0])
    components, _ = ndimage.label(image != 0)
    key = components.astype(np.int64) * (int(values.max()) + 1) + image.astype(np.int64)
    key[image == 0] = 0
    keys, objects = np.unique(key, return_inverse=True)
    objects = objects.reshape(image.shape)
    n = len(keys) - 1
    centroids = np.asarray(ndimage.center_of_mass(np.ones(image.shape), objects, range(1, n + 1)))
    value_of = (keys[1:] % (int(values.max()) + 1)).astype(np.int64)
    classes = value_of if n > len(values) else np.zeros(n, dtype=np.int64)
    return sort_points(PointSet(centroids.reshape(n, image.ndim), np.ones(n), classes))


# --------------------------------------------------------------------------- point tables


def _coordinate_columns(frame: pd.DataFrame, ndim: int, path: Path) -> list[str]:
    lower = {c.lower(): c for c in frame.columns}
    axis_cols = [c for c in AXIS_COLUMNS if c in lower]
    if axis_cols:
        if len(axis_cols) != ndim:
            raise InputError(
                f"The point table {path} has {len(axis_cols)} coordinate columns "
                f"({', '.join(axis_cols)}) but the images are {ndim}D: give one column per "
                f"axis ({', '.join(AXIS_COLUMNS[:ndim])}, in z, y, x order)."
            )
        return [lower[c] for c in axis_cols]
    named = _NAMED_AXES[ndim]
    if all(n in lower for n in named):
        return [lower[n] for n in named]
    raise InputError(
        f"The point table {path} has no coordinate columns for {ndim}D images: expected BiaPy's "
        f"{', '.join(AXIS_COLUMNS[:ndim])} (array order) or {', '.join(named)}; found columns "
        f"{', '.join(map(str, frame.columns))}."
    )


def _separator(header: str) -> str:
    for sep in ("\t", ",", ";"):
        if sep in header:
            return sep
    return r"\s+"


def read_points_table(path: Path, ndim: int) -> PointSet:
    """Read a CSV/TSV of points: BiaPy's format (``axis-0``, ``axis-1``[, ``axis-2``] in array
    order, other columns such as ``index`` ignored) or ``z``/``y``/``x`` columns; optional
    ``class`` (default 0: unknown) and ``probability`` (default 1) columns; separator detected."""
    path = Path(path)
    try:
        header = next((line for line in path.open(encoding="utf-8") if line.strip()), "")
        if not header:
            return PointSet.empty(ndim)
        frame = pd.read_csv(path, sep=_separator(header))
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"Cannot read the point table {path}: {err}") from err
    frame = frame.rename(columns=lambda c: str(c).strip())
    columns = _coordinate_columns(frame, ndim, path)
    lower = {c.lower(): c for c in frame.columns}
    try:
        coords = frame[columns].to_numpy(dtype=np.float64).reshape(-1, ndim)
        probs = frame[lower["probability"]].to_numpy(np.float64) if "probability" in lower else None
        classes = frame[lower["class"]].to_numpy(np.int64) if "class" in lower else None
    except (ValueError, TypeError) as err:
        raise InputError(f"The point table {path} has non-numeric values: {err}") from err
    if not np.isfinite(coords).all():
        raise InputError(f"The point table {path} has empty or non-finite coordinates.")
    n = len(coords)
    return PointSet(
        coords,
        np.ones(n) if probs is None else probs,
        np.zeros(n, dtype=np.int64) if classes is None else classes,
    )


def check_inside(points: PointSet, shape: Sequence[int], path: Path) -> None:
    """Raise ``InputError`` if a point lies outside an image of spatial ``shape``."""
    upper = np.asarray(shape) - 0.5
    outside = np.flatnonzero(((points.coords < -0.5) | (points.coords > upper)).any(axis=1))
    if len(outside):
        first = points.coords[outside[0]]
        raise InputError(
            f"{len(outside)} point(s) of {path} lie outside the image of shape {tuple(shape)}, "
            f"e.g. row {outside[0] + 1} at {tuple(float(v) for v in first)}: check that the "
            "columns are in z, y, x (array) order and that the table belongs to this image."
        )

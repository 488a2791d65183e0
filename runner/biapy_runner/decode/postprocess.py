"""Post-processing and measurement of instance label images (BiaPy's TEST.POST_PROCESSING).

- ``voronoi_on_mask``: every unlabelled voxel of the (thresholded, hole-filled) foreground mask
  takes the label of the nearest labelled voxel (anisotropic distances from the resolution).
- ``clear_border``: drop objects touching the image border.
- ``fill_holes``: fill the holes of each object.
- ``repair_large_blobs``: objects of at least ``size`` voxels absorb the neighbours lying wholly
  inside their bounding box, and their holes are filled.
- ``measure_objects`` / ``remove_by_properties``: per-object properties (area or volume,
  diameter, perimeter or surface area, circularity or sphericity, elongation) and removal of the
  objects satisfying every condition of any condition group (``PROPS`` / ``VALUES`` / ``SIGNS``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import marching_cubes, mesh_surface_area
from skimage.segmentation import clear_border as _sk_clear_border
from skimage.segmentation import relabel_sequential

from biapy_runner.config.load import voxel_spacing
from biapy_runner.decode.thresholds import otsu
from biapy_runner.errors import ConfigError

PROPERTIES = (
    "circularity",
    "sphericity",
    "npixels",
    "area",
    "volume",
    "diameter",
    "perimeter",
    "elongation",
)
_SIGNS = {
    "gt": np.greater,
    "ge": np.greater_equal,
    "lt": np.less,
    "le": np.less_equal,
}


def voronoi_on_mask(
    labels: np.ndarray,
    mask_prob: np.ndarray,
    threshold: float = 0.0,
    resolution: Sequence[float] | None = None,
) -> np.ndarray:
    """Grow ``labels`` into the foreground mask ``mask_prob > threshold`` (0 = Otsu).

    Voxels outside the mask keep label 0 (labels there are removed); unlabelled voxels inside
    take the label of the nearest labelled voxel of the same mask component (anisotropic
    distances). Each connected component of the mask is hole-filled and processed on its own
    bounding box, which keeps sparse volumes fast.
    """
    from biapy_runner.decode.watershed import mask_components

    spacing = voxel_spacing(resolution, labels.ndim)
    th = float(threshold) if float(threshold) != 0 else otsu(mask_prob)
    comps, boxes = mask_components(mask_prob > th)
    out = np.zeros_like(labels)
    faces = ndimage.generate_binary_structure(labels.ndim, 1)
    for k, box in enumerate(boxes, start=1):
        if box is None:
            continue
        inside = _fill_holes(comps[box] == k, faces)
        crop = np.where(inside, labels[box], 0)
        background = crop == 0
        unknown = inside & background
        if not unknown.any():
            out[box][inside] = crop[inside]
            continue
        if background.all():
            continue
        idx = ndimage.distance_transform_edt(
            background, sampling=spacing, return_distances=False, return_indices=True
        )
        crop[unknown] = crop[tuple(i[unknown] for i in idx)]
        out[box][inside] = crop[inside]
    return out


def _fill_holes(obj: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(obj)``: background not connected to the array border.

    ``faces`` is ``generate_binary_structure(obj.ndim, 1)`` (fill_holes' default connectivity).
    Labels the background once (a single pass, faster than the iterated dilation) and returns
    ``obj`` itself when it has no hole.
    """
    background, n = ndimage.label(~obj, structure=faces)
    if n == 0:
        return obj
    outside = np.zeros(n + 1, dtype=bool)
    for axis in range(obj.ndim):
        outside[np.take(background, 0, axis=axis)] = True
        outside[np.take(background, -1, axis=axis)] = True
    if outside[1:].all():
        return obj
    outside[0] = False
    return ~outside[background]


def clear_border(labels: np.ndarray) -> np.ndarray:
    """Remove the objects touching the image border."""
    return _sk_clear_border(labels)


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill the holes of each object (background enclosed by one object takes its label)."""
    out = labels.copy()
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        obj = labels[sl] == i
        filled = ndimage.binary_fill_holes(obj)
        out[sl][filled & (labels[sl] == 0)] = i
    return out


def repair_large_blobs(labels: np.ndarray, size: int) -> np.ndarray:
    """Merge into each object of at least ``size`` voxels the touching objects inside its bbox."""
    out = labels.copy()
    boxes = ndimage.find_objects(labels)
    sizes = np.bincount(labels.ravel(), minlength=len(boxes) + 1)
    footprint = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    for big, box in enumerate(boxes, start=1):
        if box is None or sizes[big] < size:
            continue
        crop = out[box]
        near = ndimage.binary_dilation(crop == big, structure=footprint)
        for other in np.unique(crop[near]):
            other_box = boxes[other - 1] if other > 0 else None
            if other in (0, big) or other_box is None or not _inside(other_box, box):
                continue
            out[out == other] = big
        crop = out[box]
        crop[ndimage.binary_fill_holes(crop == big) & (crop == 0)] = big
    return out


def _inside(inner: tuple[slice, ...], outer: tuple[slice, ...]) -> bool:
    return all(i.start >= o.start and i.stop <= o.stop for i, o in zip(inner, outer))


def _surface_area(obj: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Surface area of a 3D binary object from a marching-cubes mesh."""
    padded = np.zeros(tuple(n + 2 for n in obj.shape), dtype=np.float32)
    padded[(slice(1, -1),) * obj.ndim] = obj
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=spacing)
    return float(mesh_surface_area(verts, faces))


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` renumbered 1..n in order (0 stays 0) and the original id of each new one
    (index 0: 0): sparse ids (e.g. 2**32 - 2) cost their count, not their value, and looking
    one up costs nothing (skimage's ``ArrayMap`` maps the whole table for every scalar lookup).

    >>> compact, ids = compact_labels(np.array([0, 70000, 5, 5]))
    >>> compact.tolist(), ids.tolist()
    ([0, 2, 1, 1], [0, 5, 70000])
    >>> compact_labels(np.array([[7]]))[1].tolist()  # no background
    [0, 7]
    """
    compact, _, inverse = relabel_sequential(labels)
    original = np.asarray(inverse.out_values)
    ids = np.zeros(int(compact.max(initial=0)) + 1, dtype=original.dtype)
    ids[np.asarray(inverse.in_values)] = original  # (no 0 among them without background)
    return compact, ids


def measure_objects(
    labels: np.ndarray,
    resolution: Sequence[float] | None = None,
    probability: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per object: label, npixels, area/volume (physical), centroid, bbox, properties.

    2D: ``perimeter`` (skimage, 4-connectivity), ``circularity = 4 pi area / perimeter^2``,
    ``elongation = perimeter^2 / (4 pi area)``. 3D: ``surface_area`` (marching cubes),
    ``sphericity = 36 pi volume^2 / surface^3``, ``elongation = surface^1.5 / (6 sqrt(pi) volume)``.
    ``diameter`` is the largest bounding-box side (physical units). ``mean_probability`` is the
    mean of ``probability`` (e.g. the foreground channel) over the object when given.

    Each object is measured on its bounding box only (``ndimage.find_objects``), with the
    same arithmetic as scikit-image's ``regionprops`` (same values, bit for bit).
    """
    ndim = labels.ndim
    spacing = voxel_spacing(resolution, ndim)
    scaled = np.asarray(spacing, dtype=np.float64)
    voxel = float(np.prod(spacing))
    axes = "zyx"[-ndim:]
    rows = []
    compact, original = compact_labels(labels)
    for index, box in enumerate(ndimage.find_objects(compact), start=1):
        if box is None:
            continue
        obj = compact[box] == index
        npix = int(np.sum(obj))
        size = npix * voxel
        start = np.array([s.start for s in box])
        row: dict[str, float | int] = {"label": int(original[index]), "npixels": npix}
        row["volume" if ndim == 3 else "area"] = size
        centroid = np.array(tuple(((start + np.argwhere(obj)) * scaled).mean(axis=0)))
        for a, c in zip(axes, centroid / np.array(spacing)):
            row[f"centroid_{a}"] = float(c)
        for k, a in enumerate(axes):
            row[f"bbox_{a}_min"] = int(box[k].start)
            row[f"bbox_{a}_max"] = int(box[k].stop)
        row["diameter"] = float(max((s.stop - s.start) * spacing[k] for k, s in enumerate(box)))
        if probability is not None:
            row["mean_probability"] = float(np.mean(probability[box][obj], axis=0))
        row.update(_shape_props(obj, spacing, size))
        rows.append(row)
    return pd.DataFrame(rows)


def _shape_props(obj: np.ndarray, spacing: tuple[float, ...], size: float) -> dict[str, float]:
    if obj.ndim == 2:
        from skimage.measure import perimeter

        per = float(perimeter(obj, neighborhood=4)) * float(np.sqrt(spacing[0] * spacing[1]))
        return _shape_from(per, size, 2)
    return _shape_from(_surface_area(obj, spacing), size, 3)


def _shape_from(boundary: float, size: float, ndim: int) -> dict[str, float]:
    """Perimeter (2D) or surface area (3D) and the shape factors of an object of ``size``."""
    if ndim == 2:
        circ = 4 * math.pi * size / boundary**2 if boundary > 0 else 0.0
        elong = boundary**2 / (4 * math.pi * size) if size > 0 else 0.0
        return {"perimeter": boundary, "circularity": circ, "elongation": elong}
    sph = 36 * math.pi * size**2 / boundary**3 if boundary > 0 else 0.0
    elong = boundary**1.5 / (6 * math.sqrt(math.pi) * size) if size > 0 else 0.0
    return {"perimeter": boundary, "sphericity": sph, "elongation": elong}


#: scikit-image's perimeter estimator (``skimage.measure.perimeter``, 4-neighbourhood; Benkrid
#: and Crookes): each border pixel's code (the border image convolved with the kernel) has a
#: weight, and the perimeter is their sum.
_CROSS = ndimage.generate_binary_structure(2, 1)
_PERIMETER_KERNEL = np.array([[10, 2, 10], [2, 1, 2], [10, 2, 10]])
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


def _perimeter_rows(obj: np.ndarray) -> np.ndarray:
    """Each row's share of ``skimage.measure.perimeter(obj, neighborhood=4)`` (a row's pixels
    depend on the two rows either side)."""
    image = obj.astype(np.uint8)
    border = image - ndimage.binary_erosion(image, _CROSS, border_value=0)
    codes = ndimage.convolve(border, _PERIMETER_KERNEL, mode="constant", cval=0)
    return _PERIMETER_WEIGHTS[codes].sum(axis=1)


class ObjectTable:
    """``measure_objects``'s table of a label volume read by windows of planes along its first
    axis (``add``), whatever the objects' sizes: each object's voxel count, coordinate sums,
    bounding box and its share of the perimeter (2D: the border pixels of the window's rows) or
    of the marching-cubes surface (3D: the cells between a window's planes and the previous
    plane; the last window closes the volume) are added window by window. The values equal
    ``measure_objects`` on the whole volume up to the order of float sums."""

    def __init__(self, shape: Sequence[int], resolution: Sequence[float] | None = None) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        self.spacing = voxel_spacing(resolution, self.ndim)
        #: label -> [voxels, coordinate sums, box start, box stop, boundary]
        self.parts: dict[int, list[Any]] = {}

    @property
    def context(self) -> tuple[int, int]:
        """Planes a window needs before and after the planes it measures: one before in 3D
        (the surface's cells between them), two either side in 2D (the perimeter's codes)."""
        return (1, 0) if self.ndim == 3 else (2, 2)

    def add(self, labels: np.ndarray, start: int, part: slice) -> None:
        """Measure the planes ``part`` of the volume: ``labels`` holds the planes from ``start``
        on, ``part`` with its ``context`` (clipped at the volume's ends)."""
        compact, original = compact_labels(labels)
        core = (part.start - start, part.stop - start)
        for index, box in enumerate(ndimage.find_objects(compact), start=1):
            if box is not None:
                crop = compact[box] == index
                entry = self.parts.setdefault(int(original[index]), [
                    0, np.zeros(self.ndim, np.int64), np.full(self.ndim, np.iinfo(np.int64).max),
                    np.zeros(self.ndim, np.int64), 0.0])  # fmt: skip
                self._add_voxels(entry, crop, box, start, core)
                entry[4] += self._boundary(crop, box, start, part)

    def _add_voxels(self, entry: list[Any], crop: np.ndarray, box: tuple[slice, ...],
                    start: int, core: tuple[int, int]) -> None:  # fmt: skip
        """Count, coordinate sums and box of the object's voxels in the core."""
        a, b = max(core[0], box[0].start), min(core[1], box[0].stop)
        if b <= a:
            return
        where = np.nonzero(crop[a - box[0].start : b - box[0].start])
        count = int(where[0].size)
        if not count:
            return
        origin = np.array([start + a] + [s.start for s in box[1:]], dtype=np.int64)
        entry[0] += count
        entry[1] += np.array([int(w.sum()) for w in where], dtype=np.int64) + count * origin
        entry[2] = np.minimum(entry[2], origin + [int(w.min()) for w in where])
        entry[3] = np.maximum(entry[3], origin + [int(w.max()) + 1 for w in where])

    def _boundary(self, crop: np.ndarray, box: tuple[slice, ...], start: int,
                  part: slice) -> float:  # fmt: skip
        """The object's share of the perimeter (2D) or surface area (3D) from this window."""
        first = start + box[0].start  # the object's planes in the window: first .. last - 1
        last = start + box[0].stop
        if self.ndim == 2:
            shares = _perimeter_rows(np.pad(crop, 2))[2:-2]
            rows = np.arange(first, last)
            inside = (rows >= part.start) & (rows < part.stop)
            return float(shares[inside].sum()) * float(np.sqrt(self.spacing[0] * self.spacing[1]))
        # cells (c, c + 1) for c in [part.start - 1, part.stop - 1), and the last one closing
        # the volume; those touching the object's planes
        end = part.stop if part.stop >= self.shape[0] else part.stop - 1
        c0, c1 = max(part.start - 1, first - 1), min(end, last)
        if c1 <= c0:
            return 0.0
        padded = np.zeros((c1 + 1 - c0, *(n + 2 for n in crop.shape[1:])), dtype=np.float32)
        lo, hi = max(c0, first), min(c1 + 1, last)
        padded[lo - c0 : hi - c0, 1:-1, 1:-1] = crop[lo - first : hi - first]
        verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=self.spacing)
        return float(mesh_surface_area(verts, faces))

    def table(self, sums: np.ndarray | None = None) -> pd.DataFrame:
        """One row per object, sorted by label, with ``measure_objects``'s columns;
        ``mean_probability`` from ``sums`` (each label's probability sum, indexed by label)."""
        spacing = np.asarray(self.spacing, dtype=np.float64)
        voxel = float(np.prod(self.spacing))
        axes = "zyx"[-self.ndim :]
        rows = []
        for label in sorted(self.parts):
            count, coords, lo, hi, boundary = self.parts[label]
            size = count * voxel
            row: dict[str, float | int] = {"label": label, "npixels": count}
            row["volume" if self.ndim == 3 else "area"] = size
            for a, c in zip(axes, coords * spacing / count / spacing):
                row[f"centroid_{a}"] = float(c)
            for k, a in enumerate(axes):
                row[f"bbox_{a}_min"] = int(lo[k])
                row[f"bbox_{a}_max"] = int(hi[k])
            row["diameter"] = float(max((hi - lo) * spacing))
            if sums is not None:
                row["mean_probability"] = float(sums[label]) / count
            row.update(_shape_from(boundary, size, self.ndim))
            rows.append(row)
        return pd.DataFrame(rows)


def _prop_column(prop: str, table: pd.DataFrame) -> np.ndarray:
    if prop in ("circularity", "sphericity"):
        name = "sphericity" if "sphericity" in table else "circularity"
    elif prop in ("area", "volume"):
        name = "volume" if "volume" in table else "area"
    else:
        name = prop
    return table[name].to_numpy(dtype=float)


def removal_mask(
    table: pd.DataFrame,
    props: Sequence[Sequence[str]],
    values: Sequence[Sequence[float]],
    signs: Sequence[Sequence[str]],
) -> np.ndarray:
    """Rows to remove: those meeting every condition of at least one condition group."""
    key = "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES"
    if not (len(props) == len(values) == len(signs)):
        raise ConfigError(f"{key}.PROPS, VALUES and SIGNS must have the same number of groups.")
    remove = np.zeros(len(table), dtype=bool)
    for group, vals, sgs in zip(props, values, signs):
        if isinstance(group, str):
            group, vals, sgs = [group], [vals], [sgs]
        if not (len(group) == len(vals) == len(sgs)):
            raise ConfigError(f"{key}: group {list(group)} needs one value and one sign each.")
        cond = np.ones(len(table), dtype=bool)
        for prop, val, sign in zip(group, vals, sgs):
            if prop not in PROPERTIES:
                raise ConfigError(f"{key}.PROPS: {prop!r} must be one of {', '.join(PROPERTIES)}.")
            if sign not in _SIGNS:
                raise ConfigError(f"{key}.SIGNS: {sign!r} must be one of gt, ge, lt, le.")
            cond &= _SIGNS[sign](_prop_column(prop, table), float(val))
        remove |= cond
    return remove


def remove_labels(labels: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """Set the given labels to background."""
    if len(ids) == 0:
        return labels
    lut = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    lut[np.asarray(ids, dtype=np.int64)] = 0
    return lut[labels]


def refine_instances(
    labels: np.ndarray, operations: Sequence[str], values: Sequence[Any]
) -> np.ndarray:
    """BiaPy's ``TEST.POST_PROCESSING.INSTANCE_REFINEMENT``: the operations in order.

    Parameters
    ----------
    labels
        Instance labels ``(*spatial)``.
    operations
        ``fill_holes``, ``clear_border``, ``erosion`` / ``dilation`` (grey erosion/dilation of
        the labels with a box of the value's size, an int or one per axis),
        ``remove_small_objects`` (objects of at most the value's voxels go) and
        ``remove_big_objects`` (objects of more than the value's voxels go).
    values
        One value per operation (``none`` where it takes none).

    Returns
    -------
    np.ndarray
        The refined labels.
    """
    key = "TEST.POST_PROCESSING.INSTANCE_REFINEMENT"
    if len(operations) != len(values):
        raise ConfigError(
            f"{key}.OPERATIONS ({list(operations)}) and {key}.VALUES ({list(values)}) must have "
            "the same length ('none' for operations that take no value)."
        )
    out = labels
    for op, value in zip(operations, values):
        if op == "fill_holes":
            out = fill_holes(out)
        elif op == "clear_border":
            out = clear_border(out)
        elif op in ("erosion", "dilation"):
            size = [int(v) for v in value] if isinstance(value, (list, tuple)) else int(value)
            fn = ndimage.grey_erosion if op == "erosion" else ndimage.grey_dilation
            out = fn(out, size=size)
        elif op in ("remove_small_objects", "remove_big_objects"):
            sizes = np.bincount(out.ravel())
            small = sizes <= int(value)
            drop = small if op == "remove_small_objects" else ~small
            drop[0] = False
            out = np.where(drop[out], 0, out).astype(out.dtype)
        else:
            raise ConfigError(f"{key}.OPERATIONS: unknown operation {op!r}.")
    return out

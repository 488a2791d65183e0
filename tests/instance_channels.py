"""BiaPy 3.7's instance channels made from a known label image (BiaPy's definitions, targets only).

Used by the known-answer tests: channels made from labels must decode back to those labels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries


def balls(shape: tuple[int, ...], centers: list[tuple[int, ...]], radius: float) -> np.ndarray:
    """A label image of balls (1..n) of the given radius (later balls win where they overlap)."""
    grid = np.indices(shape)
    out = np.zeros(shape, dtype=np.uint16)
    for i, c in enumerate(centers, start=1):
        d2 = sum((g - ci) ** 2 for g, ci in zip(grid, c))
        out[d2 <= radius**2] = i
    return out


def _per_instance(labels: np.ndarray, fn) -> np.ndarray:
    out = np.zeros(labels.shape, dtype=np.float32)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        obj = labels[sl] == i
        out[sl][obj] = fn(obj, sl)[obj]
    return out


def _norm(values: np.ndarray, obj: np.ndarray) -> np.ndarray:
    top = values[obj].max()
    return values / top if top > 0 else values


def boundary_distance(labels: np.ndarray) -> np.ndarray:
    """``Db``: distance to the instance's boundary, normalized per instance to [0, 1]."""
    return _per_instance(
        labels,
        lambda obj, sl: _norm(
            ndimage.distance_transform_edt(np.pad(obj, 1))[tuple(slice(1, -1) for _ in obj.shape)],
            obj,
        ),
    )


def centre_distance(labels: np.ndarray) -> np.ndarray:
    """``Dc``: distance to the instance's centroid, normalized per instance to [0, 1]."""

    def fn(obj: np.ndarray, sl: tuple[slice, ...]) -> np.ndarray:
        centre = ndimage.center_of_mass(obj)
        grid = np.indices(obj.shape)
        d = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
        return _norm(d, obj)

    return _per_instance(labels, fn)


def displacement(labels: np.ndarray, axis: int) -> np.ndarray:
    """``H`` (axis -1), ``V`` (-2), ``Z`` (-3): signed offset to the centroid in [-1, 1]."""

    def fn(obj: np.ndarray, sl: tuple[slice, ...]) -> np.ndarray:
        centre = ndimage.center_of_mass(obj)
        grid = np.indices(obj.shape)[axis].astype(np.float32)
        d = grid - centre[axis]
        top = np.abs(d[obj]).max()
        return d / top if top > 0 else d

    return _per_instance(labels, fn)


def neighbour_distance(labels: np.ndarray, reach: float = 6.0) -> np.ndarray:
    """``Dn``: closeness to the nearest other instance, ``(1 - d / reach)^3`` (0 beyond reach)."""
    out = np.zeros(labels.shape, dtype=np.float32)
    for i in range(1, int(labels.max()) + 1):
        others = (labels > 0) & (labels != i)
        if not others.any():
            continue
        d = ndimage.distance_transform_edt(~others)
        near = np.clip(1 - d / reach, 0, 1) ** 3
        out[labels == i] = near[labels == i]
    return out


def touching(labels: np.ndarray, thickness: int = 2) -> np.ndarray:
    """``T``: instance voxels within ``thickness`` of another instance."""
    out = np.zeros(labels.shape, dtype=bool)
    for i in range(1, int(labels.max()) + 1):
        grown = ndimage.binary_dilation(labels == i, iterations=thickness)
        out |= grown & (labels > 0) & (labels != i)
    return out


def affinities(labels: np.ndarray) -> np.ndarray:
    """``A``: per axis, 1 where a voxel and its predecessor belong to the same instance."""
    out = []
    for axis in range(labels.ndim):
        prev = np.roll(labels, 1, axis=axis)
        same = (labels == prev) & (labels > 0)
        idx = [slice(None)] * labels.ndim
        idx[axis] = 0
        same[tuple(idx)] = labels[tuple(idx)] > 0
        out.append(same.astype(np.float32))
    return np.stack(out)


def centres(labels: np.ndarray, radius: int = 2) -> np.ndarray:
    """``P``: each instance's centroid voxel, dilated by ``radius``."""
    points = np.zeros(labels.shape, dtype=bool)
    ids = [i for i in range(1, int(labels.max()) + 1) if (labels == i).any()]
    for c in ndimage.center_of_mass(labels > 0, labels, ids):
        points[tuple(round(float(v)) for v in c)] = True
    return ndimage.binary_dilation(points, iterations=radius) & (labels > 0)


def make_channels(labels: np.ndarray, names: list[str]) -> np.ndarray:
    """The prediction ``(C, *spatial)`` a perfect model of channels ``names`` would give."""
    fg = labels > 0
    maps = {
        "F": fg,
        "M": fg,
        "B": ~fg,
        "C": find_boundaries(labels, mode="thick"),
        "P": lambda: centres(labels),
        "Db": lambda: boundary_distance(labels),
        "D": lambda: np.where(fg, boundary_distance(labels), -1.0),
        "Dc": lambda: centre_distance(labels),
        "Dn": lambda: neighbour_distance(labels),
        "T": lambda: touching(labels),
        "H": lambda: displacement(labels, -1),
        "V": lambda: displacement(labels, -2),
        "Z": lambda: displacement(labels, -3),
    }
    out = []
    for name in names:
        value = maps[name]
        out.append(np.asarray(value() if callable(value) else value, dtype=np.float32))
    return np.stack(out)

"""Preview pictures: contrast-stretched views with contours, points and side-by-side panels.

A preview is a grid of RGB tiles: one column per panel (the image, a prediction, the ground
truth...) and one row per view. A 2D image has one view; a 3D volume has four: the maximum
intensity projection along z and the middle slice across each axis (z, y, x). Views larger than
``MAX_SIDE`` pixels are subsampled, so a preview costs at most one view of the image in memory on
top of what was read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from skimage.color import hsv2rgb

#: Longest side (pixels) of a view in a preview; larger views are subsampled.
MAX_SIDE = 512
#: Pixels between the tiles of a preview.
GAP = 4
#: Percentiles of the contrast stretch.
PERCENTILES = (1.0, 99.8)
#: Colours (RGB) of matched, false positive and missed objects or points.
TP_COLOUR = (0, 220, 0)
FP_COLOUR = (255, 40, 40)
FN_COLOUR = (255, 210, 0)
GAP_COLOUR = (255, 255, 255)
#: Colours of label ids: ``(n,)`` ids -> ``(n, 3)`` uint8 RGB.
Palette = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class View:
    """A 2D view of an array: ``axis`` (index among the spatial axes) is dropped, either by a
    maximum projection (``index is None``) or by taking the slice ``index``; ``axis = None`` is
    the whole 2D image."""

    name: str
    axis: int | None = None
    index: int | None = None


@dataclass
class Panel:
    """One column of a preview: a title and one RGB tile (``(H, W, 3)`` uint8) per view."""

    title: str
    tiles: list[np.ndarray]


def views_of(spatial_shape: Sequence[int]) -> list[View]:
    """The views of an array of ``spatial_shape``: the image itself in 2D; in 3D the z maximum
    projection and the middle slice across z, y and x."""
    if len(spatial_shape) == 2:
        return [View("image")]
    z, y, x = (int(s) // 2 for s in spatial_shape)
    return [
        View("max projection along z", 0, None),
        View("middle z slice", 0, z),
        View("middle y slice (z vertical)", 1, y),
        View("middle x slice (z vertical)", 2, x),
    ]


def take(array: np.ndarray, view: View, step: int = 1) -> np.ndarray:
    """The 2D view of a spatial array (labels or one channel): projection or slice, keeping
    every ``step``-th pixel."""
    if view.axis is None:
        plane = array
    elif view.index is None:
        plane = array.max(axis=view.axis)
    else:
        plane = np.take(array, view.index, axis=view.axis)
    return plane[::step, ::step]


def subsample_step(shape: Sequence[int], max_side: int = MAX_SIDE) -> int:
    """The stride that brings the longest side of ``shape`` to at most ``max_side``."""
    return max(1, int(np.ceil(max(shape) / max_side)))


def resize_nearest(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes of ``array`` to ``shape``."""
    rows = (np.arange(shape[0]) * array.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * array.shape[1] / shape[1]).astype(int)
    return array[np.ix_(rows, cols)]


def stretch_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """Low and high percentiles (``PERCENTILES``) over the finite values of all ``arrays``."""
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, PERCENTILES)
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def stretch(array: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """``array`` mapped to 0..255 (uint8) between ``limits`` (default: its own percentiles)."""
    low, high = limits or stretch_limits(array)
    scaled = (np.asarray(array, dtype=np.float64) - low) / (high - low)
    return (np.clip(np.nan_to_num(scaled), 0.0, 1.0) * 255).astype(np.uint8)


def gray_tile(view: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """A 2D view (or ``(C, H, W)`` with 2 or 3 channels, shown as RGB) as an RGB tile."""
    if view.ndim == 2:
        return np.repeat(stretch(view, limits)[..., None], 3, axis=2)
    rgb = np.zeros((*view.shape[1:], 3), dtype=np.uint8)
    for c in range(min(3, view.shape[0])):
        rgb[..., c] = stretch(view[c], None if limits is None else limits)
    return rgb


def image_tiles(
    data: np.ndarray,
    views: Sequence[View],
    limits: tuple[float, float] | None = None,
    step: int = 1,
) -> list[np.ndarray]:
    """RGB tiles of a channel-first image (``(C, *spatial)``) for each view; one channel is
    shown in grey, two or three as RGB, more by their first three."""
    channels = data[:3] if data.shape[0] in (2, 3) else data[:1]
    tiles = []
    for view in views:
        planes = np.stack([take(c, view, step) for c in channels])
        tiles.append(gray_tile(planes[0] if planes.shape[0] == 1 else planes, limits))
    return tiles


def label_tiles(labels: np.ndarray, views: Sequence[View], step: int = 1) -> list[np.ndarray]:
    """2D label views (projection = maximum label) for each view."""
    return [take(labels, view, step) for view in views]


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of an object (label > 0) with a 4-neighbour of another label or outside the image
    (the inner boundary of every object)."""
    padded = np.pad(labels, 1, mode="constant", constant_values=0)
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(labels.shape, dtype=bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
        edge |= centre != neighbour
    return edge & (labels > 0)


def label_colours(ids: np.ndarray) -> np.ndarray:
    """``(n, 3)`` uint8 colours of the label ids ``ids`` ``(n,)``: label k gets a distinct
    saturated hue (golden-ratio steps around the colour wheel, label 1 orange); label 0 is black.
    Computed from the ids themselves, so any id (a label image numbered up to 2**32) costs only
    its pixels.

    >>> label_colours(np.array([0, 1, 2])).tolist()
    [[0, 0, 0], [255, 191, 38], [128, 38, 255]]
    """
    ids = np.asarray(ids).ravel()
    hue = (0.5 + ids.astype(np.float64) * 0.618033988749895) % 1.0
    hsv = np.stack([hue, np.full_like(hue, 0.85), np.ones_like(hue)], axis=-1)
    colours = (hsv2rgb(hsv[None])[0] * 255).astype(np.uint8)
    colours[ids == 0] = 0
    return colours


def draw_contours(
    tile: np.ndarray, labels: np.ndarray, palette: Palette = label_colours
) -> np.ndarray:
    """A copy of the RGB ``tile`` with the boundary of every object of ``labels`` (same 2D size)
    in its colour (``palette(ids)``)."""
    out = tile.copy()
    edge = boundaries(labels)
    out[edge] = palette(np.asarray(labels)[edge])
    return out


def status_colours(*groups: tuple[Sequence[int], Sequence[int]]) -> Palette:
    """A palette giving the ids of each ``(ids, colour)`` group that colour (a later group wins)
    and every other id black (not drawn differently from the background).

    >>> status_colours(([1, 3], TP_COLOUR), ([2], FP_COLOUR))(np.array([3, 2, 7])).tolist()
    [[0, 220, 0], [255, 40, 40], [0, 0, 0]]
    """

    def palette(ids: np.ndarray) -> np.ndarray:
        colours = np.zeros((np.size(ids), 3), dtype=np.uint8)
        for members, colour in groups:
            colours[np.isin(np.ravel(ids), np.asarray(members, dtype=np.int64))] = colour
        return colours

    return palette


def draw_points(
    tile: np.ndarray,
    coords: np.ndarray,
    view: View,
    colour: Sequence[int],
    radius: int = 3,
    step: int = 1,
) -> np.ndarray:
    """A copy of ``tile`` with a ring at each point of ``coords`` (``(N, ndim)`` array order,
    full-resolution pixels) that is visible in ``view`` (within ``radius`` of a slice); ``step``
    is the subsampling of the tile."""
    out = tile.copy()
    coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), 2 + (view.axis is not None))
    if view.axis is not None:
        keep = np.ones(len(coords), dtype=bool)
        if view.index is not None:
            keep = np.abs(coords[:, view.axis] - view.index) <= radius * step
        coords = np.delete(coords[keep], view.axis, axis=1)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    ring = (np.hypot(yy, xx) <= radius) & (np.hypot(yy, xx) > radius - 1.5)
    dy, dx = yy[ring], xx[ring]
    for y, x in np.round(coords / step).astype(int):
        ys, xs = y + dy, x + dx
        inside = (ys >= 0) & (ys < tile.shape[0]) & (xs >= 0) & (xs < tile.shape[1])
        out[ys[inside], xs[inside]] = colour
    return out


def compose(panels: Sequence[Panel], gap: int = GAP) -> np.ndarray:
    """The preview grid: panels as columns, views as rows, tiles centred in their cell (cells
    as wide as the widest tile of the column and as high as the highest of the row)."""
    n_rows = len(panels[0].tiles)
    widths = [max(t.shape[1] for t in p.tiles) for p in panels]
    heights = [max(p.tiles[r].shape[0] for p in panels) for r in range(n_rows)]
    grid = np.empty(
        (sum(heights) + gap * (n_rows - 1), sum(widths) + gap * (len(panels) - 1), 3), np.uint8
    )
    grid[...] = GAP_COLOUR
    top = 0
    for r, height in enumerate(heights):
        left = 0
        for panel, width in zip(panels, widths):
            tile = panel.tiles[r]
            y0 = top + (height - tile.shape[0]) // 2
            x0 = left + (width - tile.shape[1]) // 2
            grid[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]] = tile
            left += width + gap
        top += height + gap
    return grid


def save_png(path: os.PathLike[str] | str, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as a PNG."""
    PILImage.fromarray(rgb, mode="RGB").save(path, optimize=True)

"""One slab of a volume along z, predicted as the whole volume's tiled prediction predicts it.

``biapy-runner run --z-range START:END`` (BiaPy's ``TEST.BY_CHUNKS.Z_START`` / ``Z_END``: the
first z slice, inclusive, and the last, exclusive; -1 for the volume's start / end) predicts the
slices ``START..END-1`` of one volume, so that several jobs can share a volume and
``biapy-runner merge`` can stitch their slabs.

The slab is cut from the *whole volume's* tile grid: the tiles whose cores overlap the slab (a
sub-grid of the volume's grid, anchored at z = 0 as BiaPy anchors its chunk grid), read from the
volume with the context they need (``DATA.TEST.PADDING`` rows on either side, reflected at the
volume's borders as the whole-volume padding reflects them), and blended with the same windows
in the same order. Every slice of the slab gets the contributions of exactly the tiles that
cover it in the whole-volume prediction, so the slab equals that prediction's slices (up to the
model's own batch-size noise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from biapy_runner.errors import InputError
from biapy_runner.inference.tiling import TileGrid, TilePlan, predict_grid, tile_grid


def parse_z_range(text: str) -> tuple[int, int]:
    """``"START:END"`` as two integers (-1 or an empty side: the volume's start / end)."""
    parts = str(text).split(":")
    try:
        if len(parts) != 2:
            raise ValueError(text)
        return tuple(int(p) if p.strip() else -1 for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise InputError(
            f"--z-range {text!r}: give START:END, the first z slice (inclusive) and the last "
            "(exclusive), e.g. 0:64; -1 or nothing means the volume's start or end, as BiaPy's "
            "TEST.BY_CHUNKS.Z_START / Z_END."
        ) from None


def resolve_z_range(start: int, end: int, depth: int) -> tuple[int, int]:
    """The slab ``[start, end)`` within a volume of ``depth`` slices (BiaPy's checks)."""
    lo = 0 if start == -1 else start
    hi = depth if end == -1 else end
    if lo < 0 or hi <= 0 or lo >= hi or hi > depth:
        raise InputError(
            f"--z-range {start}:{end} does not select slices of a volume of {depth} z slices: "
            f"START must be -1 or 0..{depth - 1}, END -1 or 1..{depth}, and START < END."
        )
    return lo, hi


@dataclass(frozen=True)
class SlabPlan:
    """How a slab is predicted: the sub-grid of tiles, the input rows read, the output crop.

    ``rows``: the volume's z slices read (the slab plus the tiles' context); ``reflect``: slices
    added by reflection before / after them at the volume's borders; ``crop``: the slab's output
    slices within the sub-grid's output.
    """

    grid: TileGrid
    rows: tuple[int, int]
    reflect: tuple[int, int]
    crop: slice


def plan_slab(
    spatial_shape: Sequence[int], plan: TilePlan, start: int, end: int
) -> SlabPlan | None:
    """The sub-grid of the volume's tiles that covers z slices ``[start, end)``; None when the
    volume has one tile along z (then the whole volume is predicted and cropped)."""
    grid = tile_grid(spatial_shape, plan)
    axis = grid.axes[0]
    if axis.offset or len(axis.starts) == 1:
        return None
    chosen = [s for s in axis.starts if s < end and s + axis.core > start]
    lo, hi = chosen[0], chosen[-1] + axis.core
    sub_axis = dataclasses.replace(
        axis, length=hi - lo, extent=hi - lo, starts=tuple(s - lo for s in chosen)
    )
    pad = plan.padding[0]
    depth = int(spatial_shape[0])
    rows = (max(0, lo - pad), min(depth, hi + pad))
    reflect = (rows[0] - (lo - pad), hi + pad - rows[1])
    scale = plan.scale[0]
    crop = slice((start - lo) * scale, (end - lo) * scale)
    return SlabPlan(TileGrid(plan, (sub_axis, *grid.axes[1:])), rows, reflect, crop)


def slab_input(rows: np.ndarray, slab: SlabPlan) -> np.ndarray:
    """The padded input of the slab's sub-grid from the volume's slices ``slab.rows``
    ``(C, z, y, x)``: y and x completed and padded as the whole volume is, z reflected only
    at the volume's borders (the context inside the volume is real slices)."""
    grid = slab.grid
    rows = np.asarray(rows, dtype=np.float32)
    completion = [(0, 0), (0, 0)] + [(a.offset, a.pad_after) for a in grid.axes[1:]]
    if any(b or e for b, e in completion):
        rows = np.pad(rows, completion, mode="reflect" if grid.plan.reflect else "constant")
    context = [(0, 0), slab.reflect] + [(d, d) for d in grid.plan.padding[1:]]
    if any(b or e for b, e in context):
        rows = np.pad(rows, context, mode="reflect")
    return rows


def predict_slab(
    read_rows: Callable[[int, int], np.ndarray],
    spatial_shape: Sequence[int],
    forward: Any,
    plan: TilePlan,
    start: int,
    end: int,
    **options: Any,
) -> tuple[np.ndarray, tuple[int, int]]:
    """The prediction of z slices ``[start, end)`` of a preprocessed volume of ``spatial_shape``
    (output slices ``start * scale .. end * scale``), and the input slices read for it (the slab
    with its context). ``read_rows(a, b)`` returns the preprocessed slices ``a..b-1``
    ``(C, b - a, Y, X)`` (from memory, or read from the file and preprocessed with the whole
    volume's statistics). ``options``: those of ``tiling.predict_grid``."""
    slab = plan_slab(spatial_shape, plan, start, end)
    scale = plan.scale[0]
    if slab is None:
        depth = int(spatial_shape[0])
        grid = tile_grid(spatial_shape, plan)
        padded = grid.pad(np.asarray(read_rows(0, depth), dtype=np.float32))
        whole = predict_grid(padded, grid, forward, **options)
        return whole[:, start * scale : end * scale], (0, depth)
    padded = slab_input(read_rows(*slab.rows), slab)
    out = predict_grid(padded, slab.grid, forward, **options)
    return np.ascontiguousarray(out[:, slab.crop]), slab.rows

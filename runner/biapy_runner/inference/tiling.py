"""Tiled, batched, blended prediction over a whole image, and test-time augmentation.

The module is model-agnostic: it gets a channel-first float32 image ``(C, *spatial)``, a
``forward`` callable mapping a torch batch ``(B, C, *patch)`` to ``(B, C_out, *patch * scale)``
and a :class:`TilePlan`.

Geometry (BiaPy's meaning of the keys): every tile is ``patch`` input pixels wide
(``DATA.PATCH_SIZE``); ``padding`` pixels on each side of a tile (``DATA.TEST.PADDING``) are context
whose prediction is discarded, so each tile contributes its *core* of ``patch - 2 * padding``
pixels. Neighbouring cores overlap by the fraction ``overlap`` (``DATA.TEST.OVERLAP``; 0 means the
minimum overlap needed to cover the image: the last tile is shifted inward). Overlapping cores are
blended with a separable raised-cosine window. The image is padded at its borders (reflection or
zeros) so border pixels get the same context as inner ones; an image smaller than a core is padded
up to one tile and cropped back.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from biapy_runner.errors import ConfigError, InputError, ModelError

#: Maps a torch batch ``(B, C, *patch)`` to ``(B, C_out, *patch * scale)``.
Forward = Callable[[torch.Tensor], torch.Tensor]
#: The model's size constraint: requested spatial shape -> nearest accepted spatial shape.
ValidSize = Callable[[tuple[int, ...]], tuple[int, ...]]
#: Progress callback: ``(tiles done, tiles in total)``, called after each batch.
OnBatch = Callable[[int, int], None]

TTA_MODES = ("mean", "min", "max")
CPU = torch.device("cpu")


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut into tiles; all tuples have one entry per spatial axis (z, y, x).

    ``patch``: input tile size, context included. ``padding``: context per side of each tile whose
    output is discarded (input pixels). ``overlap``: fraction in [0, 1) by which neighbouring kept
    cores overlap. ``scale``: output pixels per input pixel. ``reflect``: pad image borders by
    reflection, else with zeros. ``notes``: what the plan changed from the configuration and why,
    for the caller to log (once, not once per test-time-augmentation transform).
    """

    patch: tuple[int, ...]
    padding: tuple[int, ...]
    overlap: tuple[float, ...]
    scale: tuple[int, ...]
    reflect: bool = True
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        n = len(self.patch)
        for name, value in (
            ("padding", self.padding),
            ("overlap", self.overlap),
            ("scale", self.scale),
        ):
            if len(value) != n:
                raise ConfigError(
                    f"Tile {name} {tuple(value)} has {len(value)} axes but the patch "
                    f"{tuple(self.patch)} has {n}; give one value per spatial axis."
                )
        if any(s < 1 for s in self.scale):
            raise ModelError(f"The model's output scale {self.scale} must be positive integers.")
        _check_core(self.patch, self.padding)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.patch)

    @property
    def core(self) -> tuple[int, ...]:
        """Size of the kept part of each tile, in input pixels."""
        return tuple(p - 2 * d for p, d in zip(self.patch, self.padding))


def _check_core(patch: Sequence[int], padding: Sequence[int]) -> None:
    """Raise ``ConfigError`` when the padding leaves no core in a tile."""
    if any(p < 1 for p in patch):
        raise ConfigError(f"DATA.PATCH_SIZE {tuple(patch)} must be positive on every axis.")
    if any(d < 0 for d in padding):
        raise ConfigError(f"DATA.TEST.PADDING {tuple(padding)} must not be negative.")
    if any(2 * d >= p for p, d in zip(patch, padding)):
        raise ConfigError(
            f"DATA.TEST.PADDING {tuple(padding)} removes the whole tile of size {tuple(patch)} "
            "(twice the padding must be smaller than the tile on every axis, and the tile may be "
            "changed to a size the model accepts); lower DATA.TEST.PADDING or raise "
            "DATA.PATCH_SIZE."
        )


def make_valid_size(min_shape: Sequence[int], step: Sequence[int]) -> ValidSize:
    """The size constraint of a model: ``min_shape + n * step`` (smallest such shape not below the
    request), or exactly ``min_shape`` on axes whose step is 0 (fixed size)."""
    mins, steps = tuple(int(m) for m in min_shape), tuple(int(s) for s in step)

    def valid(requested: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            m if s == 0 else m + s * max(0, math.ceil((r - m) / s))
            for r, m, s in zip(requested, mins, steps)
        )

    return valid


def plan_tiles(
    image_shape: Sequence[int],
    *,
    patch: Sequence[int],
    padding: Sequence[int],
    overlap: Sequence[float],
    scale: Sequence[int] | None = None,
    reflect: bool = True,
    valid_size: ValidSize | None = None,
    size_rule: str = "",
    full_image: bool = False,
) -> TilePlan:
    """Plan the tiles for an image of spatial shape ``image_shape`` (a leading channel axis, one
    more than ``patch`` has, is ignored).

    ``patch`` is the spatial part of DATA.PATCH_SIZE in (z, y, x) order, ``padding`` and
    ``overlap`` are DATA.TEST.PADDING / OVERLAP, ``reflect`` is DATA.REFLECT_TO_COMPLETE_SHAPE.
    Tiles never exceed what the image needs (image plus context), and are then changed to the
    nearest size ``valid_size`` accepts (a fixed-size model gets its size: smaller images are
    padded, larger ones tiled); ``size_rule`` says in words which sizes those are, for the plan's
    notes. ``full_image`` (TEST.FULL_IMG) makes one tile of the whole image, padded to the nearest
    valid size; if the model cannot take it whole, it is tiled (with a note saying so). An image
    whose spatial shape equals ``patch`` (and that the model accepts) is one tile without padding
    or overlap, as BiaPy predicts it.
    """
    patch = tuple(int(p) for p in patch)
    ndim = len(patch)
    shape = _spatial_shape(image_shape, ndim)
    padding = _per_axis(padding, ndim, "DATA.TEST.PADDING", int)
    overlap = _per_axis(overlap, ndim, "DATA.TEST.OVERLAP", float)
    scale = (1,) * ndim if scale is None else _integer_scale(scale, ndim)
    if any(not 0.0 <= o < 1.0 for o in overlap):
        raise ConfigError(f"DATA.TEST.OVERLAP {overlap} must be fractions in [0, 1) on every axis.")
    _check_core(patch, padding)
    valid = valid_size or (lambda requested: requested)
    notes = []
    if full_image:
        whole = _checked_valid(valid, shape)
        if all(w >= n for w, n in zip(whole, shape)):
            return TilePlan(whole, (0,) * ndim, (0.0,) * ndim, scale, reflect)
        notes.append(
            f"TEST.FULL_IMG: the model accepts at most {whole} pixels, the image has {shape}; "
            "predicting it in tiles instead"
        )
    if shape == patch and _checked_valid(valid, shape) == shape:
        # BiaPy's rule: an image of exactly DATA.PATCH_SIZE is predicted as it is, in one
        # forward pass, without context padding or overlap
        note = (
            f"the image is exactly DATA.PATCH_SIZE {patch}: one forward pass without "
            f"DATA.TEST.PADDING {padding}, as BiaPy predicts it"
        )
        return TilePlan(patch, (0,) * ndim, (0.0,) * ndim, scale, reflect, (note,) * any(padding))
    wanted = tuple(min(p, n + 2 * d) for p, n, d in zip(patch, shape, padding))
    tile = _checked_valid(valid, wanted)
    if tile != wanted:
        asked = (
            f"DATA.PATCH_SIZE {patch}" if wanted == patch else
            f"the image {shape} plus DATA.TEST.PADDING {padding} per side, within "
            f"DATA.PATCH_SIZE {patch}"
        )  # fmt: skip
        why = size_rule or "the nearest size the model accepts"
        notes.append(f"tiles of {tile} pixels, not {wanted} ({asked}): {why}")
    return TilePlan(tile, padding, overlap, scale, reflect, tuple(notes))


def _spatial_shape(image_shape: Sequence[int], ndim: int) -> tuple[int, ...]:
    shape = tuple(int(n) for n in image_shape)
    if len(shape) == ndim + 1:
        shape = shape[1:]
    if len(shape) != ndim or any(n < 1 for n in shape):
        raise InputError(
            f"The image has shape {shape} but the tiles have {ndim} spatial axes "
            "(DATA.PATCH_SIZE); check PROBLEM.NDIM and the image's axes."
        )
    return shape


def _per_axis(values: Sequence, ndim: int, key: str, kind: type) -> tuple:
    values = tuple(kind(v) for v in values)
    if len(values) != ndim:
        raise ConfigError(
            f"{key} {values} has {len(values)} values but the data has {ndim} spatial axes; "
            f"give one value per axis in (z, y, x) order."
        )
    return values


def _integer_scale(scale: Sequence[float], ndim: int) -> tuple[int, ...]:
    """The model's output/input size ratio per axis, which must be a whole number."""
    values = tuple(float(s) for s in scale)
    if len(values) != ndim or any(v < 1 or v != round(v) for v in values):
        raise ModelError(
            f"The model's output scale {values} is not a whole number >= 1 on each of the {ndim} "
            "spatial axes; tiled prediction supports same-size and integer super-resolution "
            "outputs only."
        )
    return tuple(int(v) for v in values)


def _checked_valid(valid: ValidSize, requested: tuple[int, ...]) -> tuple[int, ...]:
    tile = tuple(int(t) for t in valid(requested))
    if len(tile) != len(requested) or any(t < 1 for t in tile):
        raise ModelError(f"The model's size rule turned {requested} into an invalid size {tile}.")
    return tile


@dataclass(frozen=True)
class _Axis:
    """Tile layout along one spatial axis.

    Coordinates of the *extent* (the span the cores cover: the image, or one core when the image
    is smaller) start at the first core; the image starts at ``offset`` in it, and the padded input
    has ``padding`` more pixels before the extent.
    """

    length: int
    offset: int
    extent: int
    core: int
    starts: tuple[int, ...]
    overlap_px: int

    @property
    def pad_after(self) -> int:
        """Pixels added after the image in the padded input, context excluded."""
        return self.extent - self.length - self.offset


def _layout(length: int, core: int, overlap: float) -> _Axis:
    if length <= core:
        return _Axis(length, (core - length) // 2, core, core, (0,), 0)
    step = max(1, min(core, math.floor(core * (1.0 - overlap) + 1e-9)))
    count = math.ceil((length - core) / step) + 1
    starts = tuple(min(i * step, length - core) for i in range(count))
    return _Axis(length, 0, length, core, starts, core - step if overlap > 0 else 0)


def _ramp_window(size: int, ramp: int) -> np.ndarray:
    """1 in the middle, raised-cosine ramps of ``ramp`` pixels (values in (0, 1)) at both ends."""
    window = np.ones(size, dtype=np.float64)
    ramp = min(ramp, size)
    if ramp > 0:
        up = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, ramp + 1) / (ramp + 1))
        window[:ramp] = up
        window[size - ramp :] = np.minimum(window[size - ramp :], up[::-1])
    return window


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one image under a plan (positions generated lazily)."""

    plan: TilePlan
    axes: tuple[_Axis, ...]

    @property
    def count(self) -> int:
        """Number of tiles."""
        return math.prod(len(a.starts) for a in self.axes)

    def starts(self) -> Iterator[tuple[int, ...]]:
        """Core start of each tile in extent coordinates (= tile start in the padded input)."""
        return itertools.product(*(a.starts for a in self.axes))

    def input_slices(self, start: tuple[int, ...]) -> tuple[slice, ...]:
        """Where the tile starting at ``start`` lies in the padded input (channel axis included)."""
        return (slice(None),) + tuple(slice(s, s + p) for s, p in zip(start, self.plan.patch))

    def pad(self, image: np.ndarray) -> np.ndarray:
        """The ``(C, *spatial)`` image padded for tiling (itself when no padding is needed).

        An image smaller than a tile is first completed to the tile's core, by reflection when
        ``plan.reflect`` (DATA.REFLECT_TO_COMPLETE_SHAPE) else with zeros; then every border gets
        ``plan.padding`` pixels of context by reflection, as BiaPy pads its test patches.
        """
        completion = [(0, 0)] + [(a.offset, a.pad_after) for a in self.axes]
        if any(b or e for b, e in completion):
            mode = "reflect" if self.plan.reflect else "constant"
            image = np.pad(image, completion, mode=mode)
        if any(self.plan.padding):
            image = np.pad(image, [(0, 0)] + [(d, d) for d in self.plan.padding], mode="reflect")
        return image

    def windows(self) -> list[np.ndarray]:
        """Per-axis blending windows over a core, in output pixels."""
        return [
            _ramp_window(a.core * s, a.overlap_px * s) for a, s in zip(self.axes, self.plan.scale)
        ]

    def weight_sums(self) -> list[np.ndarray]:
        """Per-axis sums of the windows of all tiles over the extent, in output pixels; the
        grid and windows are separable, so the total weight is their outer product."""
        sums = []
        for axis, scale, window in zip(self.axes, self.plan.scale, self.windows()):
            total = np.zeros(axis.extent * scale, dtype=np.float64)
            for s in axis.starts:
                total[s * scale : (s + axis.core) * scale] += window
            sums.append(total)
        return sums


def tile_grid(spatial_shape: Sequence[int], plan: TilePlan) -> TileGrid:
    """The tile layout of an image of ``spatial_shape`` under ``plan``."""
    shape = _spatial_shape(spatial_shape, plan.ndim)
    axes = tuple(_layout(n, c, o) for n, c, o in zip(shape, plan.core, plan.overlap))
    return TileGrid(plan, axes)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA when ``amp`` (the backend choice is probed outside it)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


class _HostBuffers:
    """Two reusable host buffers for batches, page-locked when they go to a GPU; a buffer is
    handed out again only once its non-blocking copy to the device has completed."""

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.device = device
        pinned = device.type == "cuda" and torch.cuda.is_available()
        self.buffers = [torch.empty(shape, dtype=torch.float32, pin_memory=pinned) for _ in "ab"]
        self.events: list[Any] = [None, None]
        self.turn = 0

    def next(self) -> torch.Tensor:
        """The next free buffer (waits for its previous copy to the device)."""
        self.turn ^= 1
        if self.events[self.turn] is not None:
            self.events[self.turn].synchronize()
        return self.buffers[self.turn]

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` (a view of the current buffer) on the device, copied without blocking."""
        if self.device.type == "cpu":
            return batch
        moved = batch.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            self.events[self.turn] = event
        return moved


def _run_forward(
    forward: Forward, tensor: torch.Tensor, expected: tuple[int, ...], on_host: bool
) -> Any:
    """Run one batch; return its float32 output ``(B, C_out, *expected)``: a writable numpy
    array of its own when blending on the host, else a torch tensor on the device."""
    try:
        out = forward(tensor)
    except RuntimeError as exc:
        raise ModelError(
            f"The model failed on a batch of tiles of shape {tuple(tensor.shape)}: {exc}. If "
            "memory ran out, lower --batch-size or DATA.PATCH_SIZE."
        ) from exc
    if not on_host:
        out = out.detach().float()
    else:
        out = out.detach().to("cpu", torch.float32).numpy() if torch.is_tensor(out) else out
        out = np.asarray(out, dtype=np.float32)
        # blended in place, possibly while the next batch is cut into the input buffer
        aliased = tensor.device.type == "cpu" and np.shares_memory(out, tensor.numpy())
        if not out.flags.writeable or aliased:
            out = out.copy()
    if out.ndim != tensor.ndim or out.shape[0] != tensor.shape[0] or out.shape[2:] != expected:
        raise ModelError(
            f"The model turned tiles of shape {tuple(tensor.shape)} into {tuple(out.shape)}; "
            f"expected (batch, channels, *{expected}). Check the model's output axes and scale."
        )
    return out


def first_tile(image: np.ndarray, plan: TilePlan) -> np.ndarray:
    """The first tile ``predict_tiled`` runs for ``image`` ``(C, *spatial)`` under ``plan``
    (float32, context included): what a backend is chosen on."""
    grid = tile_grid(image.shape[1:], plan)
    padded = grid.pad(np.asarray(image, dtype=np.float32))
    return np.ascontiguousarray(padded[grid.input_slices(next(grid.starts()))])


def predict_tiled(
    image: np.ndarray, forward: Forward, plan: TilePlan, **options: Any
) -> np.ndarray:
    """Predict ``image`` ``(C, *spatial)`` tile by tile; returns float32 ``(C_out, *spatial *
    scale)``. Tiles are cut from the border-padded image (``TileGrid.pad``); ``options`` are
    those of :func:`predict_grid`."""
    if image.ndim != plan.ndim + 1:
        raise InputError(
            f"The image has shape {image.shape}, expected channels plus {plan.ndim} spatial axes."
        )
    grid = tile_grid(image.shape[1:], plan)
    return predict_grid(grid.pad(np.asarray(image, dtype=np.float32)), grid, forward, **options)


def predict_grid(
    padded: np.ndarray,
    grid: TileGrid,
    forward: Forward,
    *,
    out_channels: int | None = None,
    batch_size: int = 1,
    device: torch.device = CPU,
    amp: bool = False,
    on_batch: OnBatch | None = None,
    blend_on: torch.device | None = None,
) -> np.ndarray:
    """Predict the tiles of ``grid`` from ``padded``, its input already padded (``grid.pad``, or
    the part of a larger image's padded input that a sub-grid of its tiles covers:
    ``inference/slab.py``); returns float32 ``(C_out, *extent * scale)`` cropped to the image.

    Tiles run in batches of ``batch_size`` under ``torch.inference_mode`` (with float16 autocast
    on CUDA when ``amp``), stripped of their padding and blended into the output with the plan's
    window. Blending runs beside the forward: on the host in a worker thread, one batch behind
    (same order, so the same sums), or on the device itself (``blend_on``; default: the device
    when it is a GPU), where it is queued behind the forward. ``out_channels``, when given, is
    checked against the model's output. ``on_batch(done, total)`` is called after each batch.
    """
    if batch_size < 1:
        raise ConfigError(f"The batch size must be at least 1, got {batch_size}.")
    plan = grid.plan
    blend_on = blend_on if blend_on is not None else (device if device.type == "cuda" else None)
    blender = _Blender(grid, out_channels, blend_on)
    out_patch = tuple(p * s for p, s in zip(plan.patch, plan.scale))
    buffers = _HostBuffers((min(batch_size, grid.count), padded.shape[0], *plan.patch), device)
    done = 0
    with torch.inference_mode(), _autocast(device, amp), blender:
        for starts in _batches(grid.starts(), batch_size):
            batch = buffers.next()[: len(starts)]
            host = batch.numpy()
            for i, start in enumerate(starts):
                np.copyto(host[i], padded[grid.input_slices(start)])
            out = _run_forward(forward, buffers.to_device(batch), out_patch, blend_on is None)
            blender.add(out, starts)
            done += len(starts)
            if on_batch is not None:
                on_batch(done, grid.count)
    del padded, buffers
    return blender.result()


class _Blender:
    """Adds window-weighted tile cores into the output: numpy arrays in a worker thread (the
    consumer of a producer/consumer pair with the forward), or torch tensors on ``device``."""

    #: Batches the host worker may lag behind the forward (bounds the memory held by outputs).
    LAG = 2

    def __init__(self, grid: TileGrid, expected: int | None, device: torch.device | None) -> None:
        self.grid = grid
        self.expected = expected
        self.device = device
        plan = grid.plan
        self.core_out = (slice(None),) + tuple(
            slice(d * s, (d + c) * s) for d, c, s in zip(plan.padding, plan.core, plan.scale)
        )
        window = _outer(grid.windows())
        if window is not None and device is not None:
            window = torch.from_numpy(window).to(device)
        self.window = window
        self.acc: Any = None
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.pending: collections.deque = collections.deque()

    def __enter__(self) -> _Blender:
        if self.device is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(1, "biapy-blend")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        if exc[0] is None:
            self._drain(0)

    def _drain(self, keep: int) -> None:
        while len(self.pending) > keep:
            self.pending.popleft().result()  # re-raises a worker's error here

    def add(self, out: Any, starts: Sequence[tuple[int, ...]]) -> None:
        """Blend one batch's output ``(B, C_out, *patch_out)`` (now or in the worker)."""
        if self.acc is None:
            self.acc = self._accumulator(out.shape[1])
        if self.pool is None:
            self._accumulate(out, starts)
            return
        self._drain(self.LAG - 1)
        self.pending.append(self.pool.submit(self._accumulate, out, starts))

    def _accumulator(self, channels: int) -> Any:
        if self.expected is not None and channels != self.expected:
            raise ModelError(f"The model returned {channels} channels, expected {self.expected}.")
        grid = self.grid
        shape = (channels, *(a.extent * s for a, s in zip(grid.axes, grid.plan.scale)))
        if self.device is None:
            return np.zeros(shape, dtype=np.float32)
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def _accumulate(self, out: Any, starts: Sequence[tuple[int, ...]]) -> None:
        """Add the window-weighted cores of one batch's output into the accumulator."""
        plan = self.grid.plan
        for tile, start in zip(out, starts):
            core = tile[self.core_out]
            if self.window is not None:
                core *= self.window
            target = (slice(None),) + tuple(
                slice(b * s, (b + c) * s) for b, c, s in zip(start, plan.core, plan.scale)
            )
            self.acc[target] += core

    def result(self) -> np.ndarray:
        """The blended output, divided by the total weight and cropped to the image."""
        acc = self.acc
        if torch.is_tensor(acc):
            acc = acc.cpu().numpy()
        return _finish(acc, self.grid)


def _outer(windows: Sequence[np.ndarray]) -> np.ndarray | None:
    """The full window over a core (float32), or None when it is 1 everywhere."""
    if all(np.all(w == 1.0) for w in windows):
        return None
    full = np.ones((), dtype=np.float64)
    for w in windows:
        full = np.multiply.outer(full, w)
    return full.astype(np.float32)


def _finish(acc: np.ndarray | None, grid: TileGrid) -> np.ndarray:
    """Divide by the total window weight and crop the extent back to the image."""
    if acc is None:
        raise InputError("The image produced no tiles to predict.")
    for axis_index, total in enumerate(grid.weight_sums()):
        if not np.all(total == 1.0):
            shape = [1] * acc.ndim
            shape[axis_index + 1] = total.size
            acc *= (1.0 / total).astype(np.float32).reshape(shape)
    crop = (slice(None),) + tuple(
        slice(a.offset * s, (a.offset + a.length) * s) for a, s in zip(grid.axes, grid.plan.scale)
    )
    result = acc[crop]
    return result if result.shape == acc.shape else np.ascontiguousarray(result)


def _tta_transforms(ndim: int) -> list[tuple[int, bool, bool]]:
    """(quarter turns in YX, flip X, flip Z) for the 8 (2D) or 16 (3D) transforms."""
    z_flips = (False, True) if ndim == 3 else (False,)
    return [(k, fx, fz) for fz in z_flips for fx in (False, True) for k in range(4)]


def _transform(array: np.ndarray, k: int, flip_x: bool, flip_z: bool) -> np.ndarray:
    if flip_x:
        array = np.flip(array, -1)
    array = np.rot90(array, k, axes=(-2, -1))
    return np.flip(array, -3) if flip_z else array


def _untransform(array: np.ndarray, k: int, flip_x: bool, flip_z: bool) -> np.ndarray:
    if flip_z:
        array = np.flip(array, -3)
    array = np.rot90(array, -k, axes=(-2, -1))
    return np.flip(array, -1) if flip_x else array


def predict_tta(
    image: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    ndim: int,
    *,
    mode: str = "mean",
) -> np.ndarray:
    """Test-time augmentation (TEST.AUGMENTATION): predict the 8 (2D) flips and quarter turns of
    ``image`` ``(C, *spatial)`` in the YX plane, or those 8 with and without a Z flip (3D: 16),
    undo each transform on its output and merge them by ``mode`` (TEST.AUGMENTATION_MODE: "mean",
    "min" or "max"). ``predict`` maps a contiguous ``(C, *spatial)`` array to ``(C_out,
    *spatial')``; the merged result is float32.
    """
    if mode not in TTA_MODES:
        raise ConfigError(
            f"TEST.AUGMENTATION_MODE {mode!r} is not supported; use one of {', '.join(TTA_MODES)}."
        )
    if ndim not in (2, 3) or image.ndim != ndim + 1:
        raise InputError(
            f"Test-time augmentation needs a (C, *spatial) image with 2 or 3 spatial axes; got "
            f"shape {image.shape} for {ndim} spatial axes."
        )
    merged: np.ndarray | None = None
    transforms = _tta_transforms(ndim)
    for k, flip_x, flip_z in transforms:
        source = np.ascontiguousarray(_transform(image, k, flip_x, flip_z))
        output = _untransform(np.asarray(predict(source), dtype=np.float32), k, flip_x, flip_z)
        if merged is None:
            merged = np.array(output, dtype=np.float32)
            continue
        if output.shape != merged.shape:
            raise ModelError(
                f"Test-time augmentation: the prediction of a rotated or flipped image has shape "
                f"{output.shape} once turned back, not {merged.shape}; the model's output does "
                "not rotate with its input (different Y and X scales?). Disable TEST.AUGMENTATION."
            )
        _merge(merged, output, mode)
    assert merged is not None
    if mode == "mean":
        merged /= len(transforms)
    return merged


def _merge(merged: np.ndarray, output: np.ndarray, mode: str) -> None:
    if mode == "mean":
        np.add(merged, output, out=merged)
    elif mode == "min":
        np.minimum(merged, output, out=merged)
    else:
        np.maximum(merged, output, out=merged)

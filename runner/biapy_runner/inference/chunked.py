"""Out-of-core prediction: images larger than memory, predicted by groups of tiles into a Zarr.

The tile plan is the in-memory one (``inference/tiling.py``): same tiles, same context padding,
same blending windows, so the result equals ``predict_tiled``'s up to float rounding of the sums
(a few 1e-7). What changes is where the data lives:

1. the whole image's statistics (DATA.NORMALIZATION's, the rdf's preprocessing measures) are
   computed in a pass over slabs of the image: mean and standard deviation exactly (float64,
   Chan's merge of per-slab moments), minimum and maximum exactly, percentiles exactly from a
   histogram for 8/16-bit integer images and from a regular subsample of at most
   ``QUANTILE_SAMPLE`` values otherwise (the one departure from in-memory statistics);
2. tiles are taken in groups (a block of the tile grid sized to the memory budget); a group reads
   only its input region (tiles plus context; border context by the same reflection or zeros as
   ``TileGrid.pad``), normalises it with the whole image's statistics, runs its tiles and adds
   the window-weighted cores into a float32 Zarr accumulator chunked like the tiles' cores;
3. a last pass, block by block (one chunk deep, sized to the budget), divides the accumulator
   by the window weights, crops it to the image, applies the model's postprocessing and leaves
   the raw prediction in the Zarr (``complete`` set).

The budget is the whole process's memory: what the runner holds (Python, torch, the model and
its backend) plus one group's buffers plus a batch of tiles, bounded by it, not by the image.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner import log
from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError, InputError, ModelError
from biapy_runner.inference.normalization import statistics_needed
from biapy_runner.inference.tiling import TileGrid, TilePlan, _outer, _run_forward, tile_grid
from biapy_runner.io.chunked import LazyImage, Region, chunk_shape, create_zarr

#: Environment variable with the memory budget (same syntax as ``--memory-budget``).
BUDGET_ENV = "BIAPY_RUNNER_MEMORY_BUDGET"
#: Share of the available memory used as the budget when none is given.
DEFAULT_FRACTION = 0.5
#: Largest subsample percentiles of float (or wide integer) images are computed from.
QUANTILE_SAMPLE = 20_000_000
#: Share of the room left in the budget for one group's buffers (the rest: a batch of tiles,
#: codecs, slack).
GROUP_SHARE = 0.5
#: Least room for buffers, whatever the budget (a budget below the runner's own memory).
MIN_ROOM = 2**20
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str, what: str) -> int:
    """Bytes from ``"1.5G"``, ``"300M"``, ``"2GiB"``, ``"512MB"`` or a plain byte count.

    Raises
    ------
    InputError
        Naming ``what`` (the option or variable) and the syntax.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
    if not match or float(match.group(1)) <= 0:
        raise InputError(
            f"{what} {text!r} is not a memory size: give a positive number of bytes with an "
            "optional unit K, M, G or T (powers of 1024), e.g. 1.5G or 800M."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def available_memory() -> int:
    """Bytes of RAM available to this process: ``MemAvailable``, or less under a cgroup (v2)
    memory limit (a container, a Slurm or Kubernetes job)."""
    import torch

    from biapy_runner.inference.batching import free_memory

    free = int(free_memory(torch.device("cpu")))
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return free
    return min(free, int(limit) - used) if limit.isdigit() else free


def memory_budget(option: str | None) -> tuple[int, str]:
    """The memory budget in bytes and where it comes from: ``--memory-budget``, else
    ``$BIAPY_RUNNER_MEMORY_BUDGET``, else ``DEFAULT_FRACTION`` of the job's memory in Galaxy
    (``$GALAXY_MEMORY_MB``), else of the available memory."""
    if option:
        return parse_size(option, "--memory-budget"), "--memory-budget"
    env = os.environ.get(BUDGET_ENV, "").strip()
    if env:
        return parse_size(env, f"${BUDGET_ENV}"), f"${BUDGET_ENV}"
    galaxy = os.environ.get("GALAXY_MEMORY_MB", "").strip()
    if galaxy.isdigit() and int(galaxy) > 0:
        job = int(galaxy) * 2**20
        return int(job * DEFAULT_FRACTION), f"{DEFAULT_FRACTION:.0%} of $GALAXY_MEMORY_MB"
    free = available_memory()
    return int(free * DEFAULT_FRACTION), f"{DEFAULT_FRACTION:.0%} of {_gib(free)} available"


def current_rss() -> int:
    """Resident memory of this process now, in bytes (0 when unknown)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def room(budget: int) -> int:
    """What the budget leaves for image buffers beside what the process holds now (Python,
    torch, the model and its backend), at least ``MIN_ROOM``."""
    return max(budget - current_rss(), MIN_ROOM)


def _gib(n: float) -> str:
    """A byte count in GiB, or in MiB below one GiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def in_memory_bytes(
    shape: Sequence[int], itemsize: int, out_channels: int, scale: Sequence[int]
) -> int:
    """What an in-memory prediction of a ``(C, *spatial)`` image holds at its peak: the image,
    its float32 normalised and padded copies, the float32 accumulator and the cropped result."""
    voxels = math.prod(int(n) for n in shape[1:])
    channels = int(shape[0])
    out_voxels = voxels * math.prod(int(s) for s in scale)
    return voxels * channels * (itemsize + 2 * 4) + 2 * out_voxels * out_channels * 4


def decide(
    enabled: bool, image: LazyImage, out_channels: int, scale: Sequence[int], budget: int,
    origin: str,
) -> bool:
    """Whether ``image`` is predicted by chunks (TEST.BY_CHUNKS.ENABLE, or because the
    in-memory prediction would not fit ``budget``); the decision is logged with its numbers."""
    needed = in_memory_bytes(image.shape, image.dtype.itemsize, out_channels, scale)
    held = current_rss()
    numbers = (
        f"image {image.shape} {image.dtype} = {_gib(image.nbytes)}, in-memory prediction needs "
        f"~{_gib(needed)} beside the {_gib(held)} the runner holds, memory budget {_gib(budget)} "
        f"({origin})"
    )
    return by_chunks(enabled, needed + held > budget, numbers, "  ")


def by_chunks(enabled: bool, too_big: bool, numbers: str, prefix: str = "") -> bool:
    """The one rule for working by chunks (prediction in ``run``, decoding in ``merge``):
    TEST.BY_CHUNKS.ENABLE, or automatically when the whole does not fit the memory budget
    (``too_big``); the decision is logged with its ``numbers``.

    Parameters
    ----------
    enabled
        TEST.BY_CHUNKS.ENABLE.
    too_big
        Whether the in-memory work would exceed the memory budget.
    numbers, prefix
        The sizes behind the decision, and what starts the log line.

    Returns
    -------
    bool
        True to work by chunks.
    """
    if enabled:
        log.info(f"{prefix}by chunks (TEST.BY_CHUNKS.ENABLE): {numbers}")
        return True
    if too_big:
        log.info(f"{prefix}by chunks (automatic: it does not fit the memory budget): {numbers}")
        return True
    log.info(f"{prefix}in memory (fits the memory budget): {numbers}")
    return False


# --------------------------------------------------------------------------- statistics


class _Moments:
    """Per-channel count, mean, M2 (Chan et al.'s parallel merge), min and max, in float64, and
    whether the channel holds only 0 and 1."""

    def __init__(self, channels: int) -> None:
        self.n_c = np.zeros(channels, dtype=np.int64)
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.binary = np.ones(channels, dtype=bool)

    def add(self, block: np.ndarray) -> None:
        for c, piece in _pieces(block):
            self.binary[c] &= bool(((piece == 0) | (piece == 1)).all())
            values = piece.astype(np.float64)
            n, mean = values.size, float(values.mean())
            m2 = float(((values - mean) ** 2).sum())
            total = self.n_c[c] + n
            delta = mean - self.mean[c]
            self.mean[c] += delta * n / total
            self.m2[c] += m2 + delta**2 * self.n_c[c] * n / total
            self.n_c[c] = total
            self.min[c] = min(self.min[c], float(values.min()))
            self.max[c] = max(self.max[c], float(values.max()))

    @property
    def n(self) -> int:
        """Values seen per channel."""
        return int(self.n_c[0])

    def std(self) -> np.ndarray:
        """Per-channel population standard deviation (numpy's ``std``)."""
        return np.sqrt(self.m2 / np.maximum(self.n_c, 1))


#: Values handled at once by the statistics (bounds their float64 temporaries to 32 MiB).
_PIECE = 2**22


def _pieces(block: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(channel, values)`` pieces of at most ``_PIECE`` values of a ``(C, ...)`` block."""
    for c in range(block.shape[0]):
        flat = block[c].reshape(-1)
        for start in range(0, flat.size, _PIECE):
            yield c, flat[start : start + _PIECE]


class _Quantiles:
    """Exact quantiles (numpy's "linear" method) from a histogram of 8/16-bit integers, else
    from a regular subsample; per channel and over all channels."""

    def __init__(self, dtype: np.dtype, channels: int, voxels: int) -> None:
        self.exact = dtype.kind in "bu" and dtype.itemsize <= 2 or (
            dtype.kind == "i" and dtype.itemsize <= 2
        )
        self.offset = -int(np.iinfo(dtype).min) if dtype.kind == "i" else 0
        bins = 2 ** (8 * dtype.itemsize) if self.exact else 0
        self.hist = np.zeros((channels, bins), dtype=np.int64)
        self.stride = max(1, math.ceil(voxels * channels / QUANTILE_SAMPLE))
        self.samples: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        if self.exact:
            for c, piece in _pieces(block):
                values = piece.astype(np.int64) + self.offset
                self.hist[c] += np.bincount(values, minlength=self.hist.shape[1])
        else:
            self.samples.append(block.reshape(block.shape[0], -1)[:, :: self.stride].copy())

    def quantile(self, q: float, channel: int | None) -> float:
        """The ``q`` (0..1) quantile of one channel, or of all channels (``None``)."""
        if not self.exact:
            data = np.concatenate(self.samples, axis=1)
            data = data.ravel() if channel is None else data[channel]
            return float(np.quantile(data.astype(np.float64), q))
        hist = self.hist.sum(axis=0) if channel is None else self.hist[channel]
        cumulative = np.cumsum(hist)
        position = (cumulative[-1] - 1) * q
        below = math.floor(position)
        low = int(np.searchsorted(cumulative, below, side="right"))
        high = int(np.searchsorted(cumulative, min(below + 1, cumulative[-1] - 1), side="right"))
        value = low + (position - below) * (high - low)
        return float(value - self.offset)


@dataclass
class InputStatistics:
    """The whole image's statistics for region-by-region preprocessing."""

    normalization: dict[str, Any] | None
    model_stat: dict[Any, Any] | None


def input_statistics(
    image: LazyImage, cfg: Config, model: Any, normalizes: bool, budget: int
) -> InputStatistics:
    """Compute, in passes over slabs of ``image`` of an eighth of the ``budget``'s room, what
    DATA.NORMALIZATION (when ``normalizes``) and the model's input preprocessing take from the
    whole image."""
    clip, wanted = statistics_needed(cfg) if normalizes else (None, set())
    measures = model.input_measures()
    if not wanted and clip is None and not measures:
        return InputStatistics({} if normalizes else None, None)
    channels = image.shape[0]
    voxels = math.prod(image.spatial_shape)
    needs_quantiles = clip is not None or any(kind == "quantile" for _, kind, _ in measures)
    moments, quantiles = _Moments(channels), _Quantiles(image.dtype, channels, voxels)
    slab = room(budget) // 8
    for region in image.blocks(slab):
        block = image.read(region)
        moments.add(block)
        if needs_quantiles:
            quantiles.add(block)
    if needs_quantiles and not quantiles.exact:
        log.info(
            f"  percentiles from a regular subsample of {voxels * channels // quantiles.stride} "
            f"values (every {quantiles.stride}th): the image is read by chunks"
        )
    norm: dict[str, Any] | None = None
    if normalizes:
        norm = {}
        if clip is not None:
            norm["clip"] = [tuple(quantiles.quantile(p / 100.0, c) for p in clip)
                            for c in range(channels)]  # per channel, as BiaPy clips
            low, high = (np.asarray(v, np.float32).reshape(-1, *[1] * len(image.spatial_shape))
                         for v in zip(*norm["clip"]))
            binary = moments.binary
            moments = _Moments(channels)  # the statistics of the clipped image
            for region in image.blocks(slab):
                moments.add(np.clip(image.read(region).astype(np.float32), low, high))
            moments.binary = binary
        norm.update(
            binary_c=moments.binary.copy(), min_c=moments.min.astype(np.float32),
            max_c=moments.max.astype(np.float32), mean_c=moments.mean.astype(np.float32),
            std_c=moments.std().astype(np.float32),
        )  # fmt: skip
    stat = {}
    for measure, kind, reduced in measures:
        per_channel = "c" not in reduced
        if kind == "quantile":
            values = [
                quantiles.quantile(float(measure.q), c if per_channel else None)
                for c in (range(channels) if per_channel else [None])
            ]
        else:
            source = moments.mean if kind == "mean" else moments.std()
            values = list(source) if per_channel else [_pooled(moments, kind)]
        stat[measure] = model.measure_value(measure, np.asarray(values))
    return InputStatistics(norm, stat or None)


def _pooled(moments: _Moments, kind: str) -> float:
    """The mean or standard deviation over all channels from the per-channel moments."""
    mean = float(moments.mean.mean())
    if kind == "mean":
        return mean
    m2 = moments.m2.sum() + moments.n * ((moments.mean - mean) ** 2).sum()
    return float(np.sqrt(m2 / (moments.n * moments.mean.size)))


# --------------------------------------------------------------------------- reading regions


def _source_index(axis: Any, padding: int, reflect: bool) -> np.ndarray:
    """For each position of the padded input along one axis, the image index it copies
    (-1: a zero), built with the very ``np.pad`` calls ``TileGrid.pad`` makes."""
    index = np.arange(axis.length)
    if axis.offset or axis.pad_after:
        if reflect:
            index = np.pad(index, (axis.offset, axis.pad_after), mode="reflect")
        else:
            index = np.pad(index, (axis.offset, axis.pad_after), constant_values=-1)
    if padding:
        index = np.pad(index, (padding, padding), mode="reflect")
    return index


class _RegionReader:
    """Regions of the padded, normalised input of a grid, read from a lazy image."""

    def __init__(
        self, image: LazyImage, grid: TileGrid, prepare: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        self.image = image
        self.prepare = prepare
        self.index = [
            _source_index(a, d, grid.plan.reflect) for a, d in zip(grid.axes, grid.plan.padding)
        ]

    def read(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        """The padded input ``[lo, hi)`` (padded coordinates), float32, prepared."""
        wanted = [ix[a:b] for ix, a, b in zip(self.index, lo, hi)]
        valid = [w[w >= 0] for w in wanted]
        if any(v.size == 0 for v in valid):
            shape = (self.image.shape[0], *(b - a for a, b in zip(lo, hi)))
            return np.zeros(shape, dtype=np.float32)
        region: Region = tuple(slice(int(v.min()), int(v.max()) + 1) for v in valid)
        block = self.prepare(self.image.read(region))
        take = [np.where(w >= 0, w - r.start, 0) for w, r in zip(wanted, region)]
        if not all(_is_range(t, n) for t, n in zip(take, block.shape[1:])):
            block = block[(slice(None), *np.ix_(*take))]
        zeros = [w < 0 for w in wanted]
        for axis, mask in enumerate(zeros):
            if mask.any():
                index = [slice(None)] * block.ndim
                index[axis + 1] = mask
                block[tuple(index)] = 0.0
        return np.ascontiguousarray(block, dtype=np.float32)


def _is_range(take: np.ndarray, size: int) -> bool:
    return take.size == size and bool(np.array_equal(take, np.arange(size)))


# --------------------------------------------------------------------------- groups of tiles


def _group_sizes(grid: TileGrid, channels: int, out_channels: int, share: int) -> list[int]:
    """Tiles per axis in a group: the whole grid, halved on its largest axis until one group's
    input (raw + float copies) and output buffers fit ``share`` bytes."""
    counts = [len(a.starts) for a in grid.axes]
    sizes = list(counts)
    plan = grid.plan

    def cost(sizes: list[int]) -> int:
        span_in = [
            (a.starts[min(g, len(a.starts)) - 1] - a.starts[0]) + p
            for a, g, p in zip(grid.axes, sizes, plan.patch)
        ]
        span_out = [(s - 2 * d) * k for s, d, k in zip(span_in, plan.padding, plan.scale)]
        # raw region, the float32 copies preprocessing makes, the gathered padded block; the
        # group's sums, the accumulator region read back
        return 24 * channels * math.prod(span_in) + 12 * out_channels * math.prod(span_out)

    while cost(sizes) > share and max(sizes) > 1:
        axis = max(range(len(sizes)), key=lambda i: (sizes[i], -i))
        sizes[axis] = math.ceil(sizes[axis] / 2)
    return sizes


def _groups(grid: TileGrid, sizes: Sequence[int]) -> Iterator[list[tuple[int, ...]]]:
    """The tile starts of each group, groups in grid order, tiles in grid order within."""
    ranges = [
        [a.starts[i : i + g] for i in range(0, len(a.starts), g)] for a, g in zip(grid.axes, sizes)
    ]
    for parts in itertools.product(*ranges):
        yield list(itertools.product(*parts))


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class ChunkedModel:
    """What the chunked prediction needs of the model and the run."""

    forward: Callable[[Any], Any]
    prepare: Callable[[np.ndarray], np.ndarray]
    postprocess: Callable[[np.ndarray], np.ndarray]
    select_backend: Callable[[np.ndarray], Any]
    out_channels: int
    device: Any
    batch_size: Callable[[int, int], int]
    amp: bool = False


def predict_chunked(
    image: LazyImage, model: ChunkedModel, plan: TilePlan, out: Path, *, budget: int,
    attrs: dict[str, Any] | None = None, on_batch: Callable[[int, int], None] | None = None,
    on_slab: Callable[[Region, np.ndarray], None] | None = None,
) -> Any:
    """Predict ``image`` tile group by tile group into the Zarr array ``out`` (created;
    float32 ``(C_out, *spatial * scale)``, chunked like the tiles' cores) and return it.

    ``model.prepare`` normalises a raw region with the whole image's statistics;
    ``model.batch_size(tile_bytes, tiles)`` picks the batch; ``on_slab(region, data)`` gets each
    finished block of the prediction (e.g. to decode it without reading it back). ``budget`` is
    the whole process's: the backend is chosen on the first tile, then what the process holds
    is subtracted, and one group's buffers get ``GROUP_SHARE`` of the rest, a batch of tiles
    the other part.
    """
    import torch

    from biapy_runner.inference.tiling import _autocast

    grid = tile_grid(image.spatial_shape, plan)
    extent = tuple(a.extent * s for a, s in zip(grid.axes, plan.scale))
    shape = tuple(a.length * s for a, s in zip(grid.axes, plan.scale))
    cores = tuple(c * s for c, s in zip(plan.core, plan.scale))
    in_place = extent == shape
    acc_path = out if in_place else out.with_name(f".{out.name}.accumulator")
    chunks = chunk_shape((model.out_channels, *extent), cores)
    acc = create_zarr(acc_path, (model.out_channels, *extent), np.float32, chunks)
    reader = _RegionReader(image, grid, model.prepare)
    first = next(grid.starts())
    choice = model.select_backend(reader.read(first, [s + p for s, p in zip(first, plan.patch)]))
    space = room(budget)
    tile_cost = max(int(choice.peak_bytes), 1)
    batch = max(1, min(model.batch_size(tile_cost, grid.count),
                       int(space * (1 - GROUP_SHARE)) // tile_cost))  # fmt: skip
    sizes = _group_sizes(grid, image.shape[0], model.out_channels, int(space * GROUP_SHARE))
    if space == MIN_ROOM or sizes == [1] * len(sizes) and grid.count > 1:
        held = current_rss()
        left = (
            f"is below what the runner itself holds ({_gib(held)})" if budget - held < MIN_ROOM
            else f"leaves {_gib(budget - held)} beside what the runner holds ({_gib(held)})"
        )  # fmt: skip
        log.warn(
            f"the memory budget {_gib(budget)} {left}: groups of one tile, slower; give a "
            "larger --memory-budget"
        )
    groups = math.prod(math.ceil(len(a.starts) / g) for a, g in zip(grid.axes, sizes))
    log.info(
        f"  {grid.count} tile(s) {plan.patch} in {groups} group(s) of up to {tuple(sizes)} "
        f"tiles, accumulated in {acc_path.name} (chunks {chunks[1:]})"
    )
    window = _outer(grid.windows())
    core_out = (slice(None),) + tuple(
        slice(d * s, (d + c) * s) for d, c, s in zip(plan.padding, plan.core, plan.scale)
    )
    out_patch = tuple(p * s for p, s in zip(plan.patch, plan.scale))
    done = 0
    with torch.inference_mode(), _autocast(model.device, model.amp):
        for starts in _groups(grid, sizes):
            lo = [min(s[i] for s in starts) for i in range(grid.plan.ndim)]
            hi = [max(s[i] for s in starts) + p for i, p in enumerate(plan.patch)]
            block = reader.read(lo, hi)
            out_lo = [b * k for b, k in zip(lo, plan.scale)]
            out_hi = [(h - 2 * d) * k for h, d, k in zip(hi, plan.padding, plan.scale)]
            group_acc = np.zeros(
                (model.out_channels, *(b - a for a, b in zip(out_lo, out_hi))), dtype=np.float32
            )
            for part in _batches(starts, batch):
                tiles = np.stack([
                    block[(slice(None), *(slice(s - a, s - a + p)
                                          for s, a, p in zip(start, lo, plan.patch)))]
                    for start in part
                ])  # fmt: skip
                tensor = torch.from_numpy(tiles).to(model.device)
                result = _run_forward(model.forward, tensor, out_patch, True)
                for tile, start in zip(result, part):
                    core = tile[core_out]
                    if window is not None:
                        core *= window
                    target = (slice(None),) + tuple(
                        slice(s * k - a, (s + c) * k - a)
                        for s, c, k, a in zip(start, plan.core, plan.scale, out_lo)
                    )
                    group_acc[target] += core
                done += len(part)
                if on_batch is not None:
                    on_batch(done, grid.count)
            del block
            where = (slice(None), *(slice(a, b) for a, b in zip(out_lo, out_hi)))
            group_acc += acc[where]
            acc[where] = group_acc
            del group_acc
    result = _finish(acc, grid, out, model, space, attrs, in_place, on_slab)
    if not in_place:
        shutil.rmtree(acc_path, ignore_errors=True)
    return result


def _finish(
    acc: Any, grid: TileGrid, out: Path, model: ChunkedModel, space: int,
    attrs: dict[str, Any] | None, in_place: bool,
    on_slab: Callable[[Region, np.ndarray], None] | None,
) -> Any:
    """Divide by the window weights, crop to the image and postprocess, block by block; the
    prediction is ``out`` (the accumulator itself when no crop is needed)."""
    plan = grid.plan
    weights = [(1.0 / w).astype(np.float32) for w in grid.weight_sums()]
    offsets = [a.offset * s for a, s in zip(grid.axes, plan.scale)]
    shape = tuple(a.length * s for a, s in zip(grid.axes, plan.scale))
    target = acc if in_place else create_zarr(out, (acc.shape[0], *shape), np.float32,
                                              acc.chunks)  # fmt: skip
    for region in _finish_blocks(shape, acc.shape[0], acc.chunks[1:], space):
        source = tuple(slice(r.start + o, r.stop + o) for r, o in zip(region, offsets))
        data = np.asarray(acc[(slice(None), *source)], dtype=np.float32)
        for axis, (w, s) in enumerate(zip(weights, source)):
            if not np.all(w == 1.0):
                view = [1] * data.ndim
                view[axis + 1] = s.stop - s.start
                data *= w[s].reshape(view)
        data = np.asarray(model.postprocess(data), dtype=np.float32)
        if data.shape[0] != target.shape[0]:
            raise ModelError(
                f"The model's postprocessing turned {target.shape[0]} channels into "
                f"{data.shape[0]}; it cannot be applied by chunks."
            )
        target[(slice(None), *region)] = data
        if on_slab is not None:
            on_slab(region, data)
    target.attrs.update({**(attrs or {}), "complete": True})
    return target


def _finish_blocks(
    shape: Sequence[int], channels: int, chunks: Sequence[int], space: int
) -> Iterator[Region]:
    """Regions of the output aligned to its chunks, one chunk deep along the first axis and as
    wide along the others as ``GROUP_SHARE`` of ``space`` allows five float32 copies of."""
    block = [min(int(c), int(n)) for c, n in zip(chunks, shape)]
    limit = max(1, int(space * GROUP_SHARE) // (5 * 4 * channels))
    for axis in range(len(shape) - 1, 0, -1):  # widen the last axes first, whole chunks
        rest = math.prod(block) // block[axis]
        block[axis] = min(int(shape[axis]),
                          max(block[axis], limit // rest // chunks[axis] * chunks[axis]))  # fmt: skip
    ranges = [range(0, int(n), b) for n, b in zip(shape, block)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(a, min(a + b, int(n))) for a, b, n in zip(starts, block, shape))


def check_chunkable(cfg: Config, model: Any) -> None:
    """Refuse what a prediction by chunks cannot do as the in-memory one does.

    Raises
    ------
    ConfigError
        TEST.AUGMENTATION or TEST.FULL_IMG (whole-image operations), a postprocessing that
        needs statistics of the whole output.
    """
    problems = []
    if cfg.get("TEST.AUGMENTATION"):
        problems.append("TEST.AUGMENTATION (test-time augmentation of the whole image)")
    if cfg.get("TEST.FULL_IMG"):
        problems.append("TEST.FULL_IMG (the whole image in one forward pass)")
    if not model.postprocess_is_pointwise:
        problems.append(f"the model {model.name!r}'s postprocessing (whole-output statistics)")
    if problems:
        raise ConfigError(
            "The image is predicted by chunks (TEST.BY_CHUNKS.ENABLE, or it does not fit the "
            f"memory budget), which cannot be combined with {'; '.join(problems)}. Turn these "
            "off, or give a larger --memory-budget and leave TEST.BY_CHUNKS.ENABLE off."
        )


def check_region_input(image: LazyImage, in_channels: int) -> None:
    """The image's channel count must be the model's (checked before any pixel is read)."""
    if image.shape[0] != in_channels:
        raise InputError(
            f"The model expects {in_channels} input channel(s), but the image {image.path} has "
            f"{image.shape[0]} (axes {image.source_axes}); check the axes "
            "(DATA.TEST.INPUT_IMG_AXES_ORDER or --axes)."
        )

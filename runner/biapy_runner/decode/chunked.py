"""Decoding a prediction chunk by chunk, with halos, into results that agree across chunk borders.

A raw prediction ``(C, *spatial)`` (a numpy array, any array that slices like one: a Zarr or
HDF5 dataset, a memory map; or an ``io.chunked.LazyImage``) is cut into a grid of chunk *cores*.
Each core is decoded together with a *halo* of context on every side (clipped at the volume's
borders) by the workflow's own decoder, and only the core's result is kept, as BiaPy's ``TEST.BY_CHUNKS.WORKFLOW_PROCESS.TYPE:
chunk_by_chunk`` post-processes each tile with the ``DATA.TEST.PADDING`` of its border patches as
context.

Instances (``decode_instances_by_chunks``): the labels of each chunk get ids of their own (an
offset per chunk). Chunks are decoded in raster order; the halo of a chunk overlaps the cores of
the chunks already written, and a label of the chunk is joined (union-find) with a written object
(the pieces earlier chunks wrote, as joined so far) when their IoU *within that overlap* exceeds
``merge_iou`` (BiaPy's
``TEST.BY_CHUNKS.WORKFLOW_PROCESS.INSTANCE_SEG_MERGE_IOU_TH``, "minimum normalised IoU required to
merge two instances across a chunk boundary", default 0.3, compared with ``>`` as BiaPy does). A
last pass rewrites every core with consecutive final ids (1..N, in the order of each object's first
voxel in chunk order). When every object and the context its decoder looks at fit in the halo, the
result equals the in-memory decoding up to a relabelling.

Points (``detect_points_by_chunks``): each chunk's points are found with its halo and kept when
they lie in its core, so no point is reported twice; two points of neighbouring chunks closer than
``radius`` (the peak finder's own spacing, which the in-memory search would have enforced across
the border) are deduplicated, keeping the more probable one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from biapy_runner import log
from biapy_runner.decode.points import PointSet, sort_points

#: Box of a chunk: one slice per spatial axis.
Box = tuple[slice, ...]
#: Decodes one block ``(C, *spatial)`` into named label images of the block's spatial shape.
InstanceDecoder = Callable[[np.ndarray], Mapping[str, np.ndarray]]
#: Finds the points of one block ``(C, *spatial)``, coordinates in the block.
PointFinder = Callable[[np.ndarray], PointSet]


@dataclass(frozen=True)
class ChunkGrid:
    """A grid of chunk cores over a volume of ``shape`` with ``halo`` voxels of context per side."""

    shape: tuple[int, ...]
    chunk: tuple[int, ...]
    halo: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.shape) == len(self.chunk) == len(self.halo)):
            raise ValueError(f"chunk {self.chunk} / halo {self.halo} do not fit shape {self.shape}")
        if any(c < 1 for c in self.chunk) or any(h < 0 for h in self.halo):
            raise ValueError(f"chunk {self.chunk} must be positive and halo {self.halo} >= 0")

    @property
    def counts(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(-(-n // c) for n, c in zip(self.shape, self.chunk))

    @property
    def size(self) -> int:
        """Number of chunks."""
        return int(np.prod(self.counts))

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Chunk indices in raster order (last axis fastest)."""
        return itertools.product(*(range(n) for n in self.counts))

    def core(self, index: Sequence[int]) -> Box:
        """The core of chunk ``index``."""
        return tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, self.chunk, self.shape)
        )

    def extended(self, index: Sequence[int]) -> Box:
        """The core of chunk ``index`` with its halo, clipped to the volume."""
        return grown_box(self.core(index), self.halo, self.shape)

    def earlier(self, index: Sequence[int]) -> list[Box]:
        """The parts of chunk ``index``'s extended box whose voxels belong to chunks before it
        in raster order (disjoint boxes, volume coordinates): along each axis in turn, the halo
        before the core, the earlier axes kept to the core."""
        ext, core = self.extended(index), self.core(index)
        boxes = []
        for axis in range(len(core)):
            if ext[axis].start < core[axis].start:
                boxes.append((*core[:axis], slice(ext[axis].start, core[axis].start),
                              *ext[axis + 1 :]))  # fmt: skip
        return boxes


def grown_box(box: Box, reach: Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` grown by ``reach`` voxels per side (per axis), clipped to ``shape``."""
    return tuple(slice(max(0, s.start - r), min(int(n), s.stop + r))
                 for s, r, n in zip(box, reach, shape))  # fmt: skip


def pixel_centres(points: PointSet, shape: Sequence[int]) -> np.ndarray:
    """The points' pixels (rounded coordinates clipped to ``shape``), ``(N, ndim)`` int64."""
    if not len(points):
        return np.zeros((0, len(shape)), dtype=np.int64)
    return np.clip(np.round(points.coords).astype(np.int64), 0, np.asarray(shape) - 1)


def read_region(raw: Any, box: Box, channels: slice | None = None) -> np.ndarray:
    """All channels (or ``channels``) of ``raw`` over the spatial ``box``: a
    ``io.chunked.LazyImage`` (its ``read``) or any array that slices like numpy (numpy, Zarr,
    HDF5)."""
    channels = slice(None) if channels is None else channels
    if hasattr(raw, "read"):
        return np.asarray(raw.read(box, channels))
    return np.asarray(raw[(channels, *box)])


def _relative(inner: Box, outer: Box) -> Box:
    """``inner`` in the coordinates of ``outer``."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


class _UnionFind:
    """Union-find over integer ids 1..n (grown on demand), root = smallest id of the set."""

    def __init__(self) -> None:
        self.parent = np.zeros(1, dtype=np.int64)

    def grow(self, n: int) -> None:
        """Make room for ids up to ``n`` (each its own set)."""
        if n + 1 > self.parent.size:
            old = self.parent.size
            more = max(n + 1, 2 * old) - old  # doubling: amortised growth
            self.parent = np.concatenate([self.parent, np.arange(old, old + more, dtype=np.int64)])

    def find(self, ids: np.ndarray) -> np.ndarray:
        """The roots of ``ids`` (any shape), the paths compressed."""
        parent = self.parent
        roots = parent[ids]
        while True:
            up = parent[roots]
            if np.array_equal(up, roots):
                break
            roots = up
        parent[ids] = roots
        return roots

    def union(self, a: int, b: int) -> None:
        """Join the sets of ``a`` and ``b``."""
        ra, rb = (int(r) for r in self.find(np.array([a, b], dtype=np.int64)))
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        """The root of every id (pointer jumping: a parent is never above its child)."""
        parent = self.parent.copy()
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                return parent
            parent = jumped


def _ranks(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """``labels``' non-zero values replaced by their rank 1..n among the values present (0
    kept), int64, and n: ``np.unique``'s inverse, by a lookup table when the values are
    small (a block's labels), else sorted."""
    top = int(labels.max()) if labels.size else 0
    if top <= 4 * labels.size + 1024:
        present = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=top + 1) > 0
        present[0] = False
        table = np.cumsum(present, dtype=np.int64)
        table[~present] = 0
        return table[labels], int(table[-1]) if top else 0
    ids, inverse = np.unique(labels, return_inverse=True)
    ranks = inverse.reshape(labels.shape).astype(np.int64) + (ids[0] != 0)
    ranks[labels == 0] = 0
    return ranks, int(ids.size - (ids[0] == 0))


def overlap_pairs(mine: np.ndarray, theirs: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Label pairs ``(a, b)`` of two label arrays over one region whose IoU within the region
    exceeds ``threshold`` (``intersection / (size_a + size_b - intersection) > threshold``)."""
    mine, theirs = mine.ravel().astype(np.int64), theirs.ravel().astype(np.int64)
    both = (mine > 0) & (theirs > 0)
    if not both.any():
        return []
    a, b = mine[both], theirs[both]
    width = int(b.max()) + 1
    if int(a.max()) < 2**62 // width:  # one int64 key per pair: a flat, fast unique
        keys, inter = np.unique(a * width + b, return_counts=True)
        pairs = np.stack([keys // width, keys % width])
    else:
        pairs, inter = np.unique(np.stack([a, b]), axis=1, return_counts=True)
    ids_a, size_a = np.unique(mine[mine > 0], return_counts=True)
    ids_b, size_b = np.unique(theirs[theirs > 0], return_counts=True)
    sa = size_a[np.searchsorted(ids_a, pairs[0])]
    sb = size_b[np.searchsorted(ids_b, pairs[1])]
    iou = inter / (sa + sb - inter)
    keep = iou > threshold
    return list(zip(pairs[0][keep].tolist(), pairs[1][keep].tolist()))


class _LabelMerger:
    """One named label output being assembled: chunk ids, union-find, ids present in cores."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.next_id = 0
        self.links = _UnionFind()
        self.present: list[np.ndarray] = []
        self.sums: list[np.ndarray] = []
        self.totals = np.zeros(1)

    def add(
        self, grid: ChunkGrid, index: tuple[int, ...], labels: np.ndarray, threshold: float,
        weights: np.ndarray | None = None,
    ) -> None:
        """Give the block's labels ids of their own, link them to the written neighbours by
        overlap in the halo (the parts of the block earlier chunks wrote, read back alone),
        and write the core; with ``weights`` (a map of the block), sum it over each label's
        part of the core."""
        ext, core = grid.extended(index), grid.core(index)
        ranks, count = _ranks(labels)
        # labels 1..count of this block become next_id + 1 .. next_id + count
        glob = np.where(ranks > 0, ranks + self.next_id, 0)
        self.links.grow(self.next_id + count)
        earlier = grid.earlier(index)
        if earlier:
            mine = np.concatenate([glob[_relative(box, ext)].ravel() for box in earlier])
            written = np.concatenate([np.asarray(self.out[box]).ravel() for box in earlier])
            for a, b in overlap_pairs(mine, self._resolved(written), threshold):
                self.links.union(a, b)
        kept = glob[_relative(core, ext)]
        self.out[core] = kept
        ranks = ranks[_relative(core, ext)].ravel()
        inside = np.bincount(ranks, minlength=count + 1)[1:] > 0
        self.present.append(np.flatnonzero(inside) + self.next_id + 1)
        if weights is not None:
            inner = np.asarray(weights)[_relative(core, ext)].astype(np.float64).ravel()
            sums = np.bincount(ranks, weights=inner, minlength=count + 1)
            self.sums.append(sums[1:])
        self.next_id += count

    def _resolved(self, written: np.ndarray) -> np.ndarray:
        """Written ids replaced by their set's root: pieces of one object written by several
        earlier chunks, already joined, count as one object in the IoU."""
        return self.links.find(written.astype(np.int64))

    def finish(self, grid: ChunkGrid, targets: Sequence[Callable[[int], Any]] = ()) -> int:
        """Write every core with the final consecutive ids into each ``target(count)``
        (default: the chunk ids' own array, rewritten); the number of objects. ``totals``:
        the weights' sums by final id, when ``add`` had weights."""
        roots = self.links.roots()
        present = np.concatenate([np.zeros(0, dtype=np.int64), *self.present])
        kept_roots = np.unique(roots[present]) if present.size else np.zeros(0, dtype=np.int64)
        final = np.zeros(roots.size, dtype=np.int64)
        rank = np.zeros(roots.size, dtype=np.int64)
        rank[kept_roots] = np.arange(1, kept_roots.size + 1)
        final[:] = rank[roots]
        final[0] = 0
        count = int(kept_roots.size)
        if self.sums:
            chunk_sums = np.concatenate([np.zeros(1), *self.sums])
            self.totals = np.bincount(final[: chunk_sums.size], weights=chunk_sums,
                                      minlength=count + 1)  # fmt: skip
        dests = [target(count) for target in targets] or [self.out]
        for index in grid.indices():
            core = grid.core(index)
            ids = final[np.asarray(self.out[core])]
            for dest in dests:
                dest[core] = ids.astype(np.dtype(dest.dtype), copy=False)
        return count


class LabelStore:
    """Where decoding by chunks keeps its label volumes: numpy arrays here; the application
    gives chunked Zarr arrays instead (out of core). ``planes``: how many planes of the first
    axis one pass over a label volume may hold (object measurements, streamed scores)."""

    def __init__(self, planes: int = 64) -> None:
        self.planes = max(1, int(planes))

    def scratch(self, name: str, shape: tuple[int, ...], chunk: tuple[int, ...]) -> Any:
        """The chunk ids of output ``name`` before the final relabelling (uint32), written
        ``chunk`` by ``chunk``."""
        return np.zeros(shape, dtype=np.uint32)

    def final(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """Output ``name`` with its final ids (``dtype`` wide enough for them)."""
        return np.zeros(shape, dtype=dtype)

    def close(self) -> None:
        """Drop the scratch arrays (nothing to do in memory)."""


def decode_instances_by_chunks(
    raw: Any,
    decode: InstanceDecoder,
    chunk: Sequence[int],
    halo: Sequence[int],
    merge_iou: float = 0.3,
    out: MutableMapping[str, Any] | None = None,
    store: LabelStore | None = None,
    dtype: Callable[[int], np.dtype] | None = None,
    same: Mapping[str, str] | None = None,
    weights: Callable[[np.ndarray], np.ndarray] | None = None,
    totals: MutableMapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Instance labels of ``raw`` ``(C, *spatial)`` decoded chunk by chunk.

    Parameters
    ----------
    raw
        The raw prediction, channel first; numpy or any array that slices like one.
    decode
        The workflow's decoder for one block (its channels with the halo): named label images.
    chunk, halo
        Core size and context per side, per spatial axis (z, y, x).
    merge_iou
        Labels of neighbouring chunks are the same object when their IoU within the overlap of
        their halos exceeds this (BiaPy's ``INSTANCE_SEG_MERGE_IOU_TH``).
    out
        Where each named output goes (writable arrays of the spatial shape, integer dtype wide
        enough for the ids before the final relabelling, e.g. uint32 Zarr arrays); missing names
        get ``store.scratch`` arrays.
    store, dtype
        With ``dtype`` (the label dtype for a number of objects), the final ids go to
        ``store.final`` arrays of that dtype instead of being rewritten in place (``store``
        default: numpy). Nothing larger than a chunk with its halo is read or held at a time.
    same
        Outputs equal to another one, ``{name: decoded name}`` (e.g. post-processed labels when
        no post-processing is configured): merged once, written twice (needs ``dtype``).
    weights, totals
        ``weights(block)``: a map of each block read (e.g. the foreground probability), summed
        over each object into ``totals[name]`` (float64, indexed by final id; 0: background).

    Returns
    -------
    dict, dict
        The label arrays by name (ids 1..N, the same object keeping one id across chunks) and
        the number of objects of each.
    """
    grid = ChunkGrid(tuple(int(n) for n in raw.shape[1:]), tuple(map(int, chunk)),
                     tuple(map(int, halo)))  # fmt: skip
    out = {} if out is None else out
    store = LabelStore() if store is None else store
    same = dict(same or {})
    if same and dtype is None:
        raise ValueError("outputs equal to another need final arrays (dtype)")
    mergers: dict[str, _LabelMerger] = {}
    progress, shown = log.Progress("chunks", grid.size), set()
    for index in grid.indices():
        block = read_region(raw, grid.extended(index))
        weight = None if weights is None else weights(block)
        with log.quiet(shown):  # a decoder's lines per chunk would be thousands of lines
            decoded = decode(block)
        for name, labels in decoded.items():
            if name not in mergers:
                if name not in out:
                    out[name] = store.scratch(name, grid.shape, grid.chunk)
                mergers[name] = _LabelMerger(out[name])
            mergers[name].add(grid, index, np.asarray(labels), merge_iou, weight)
        del block, weight, decoded
        progress.step()
    counts, results = {}, {}
    for name, merger in mergers.items():
        if dtype is None:
            counts[name] = merger.finish(grid)
            results[name] = out[name]
            continue

        def target(count: int, name: str) -> Any:
            results[name] = store.final(name, grid.shape, np.dtype(dtype(count)))
            return results[name]

        names = [name, *(copy for copy, source in same.items() if source == name)]
        counts[name] = merger.finish(grid, [lambda n, k=k: target(n, k) for k in names])
        counts.update(dict.fromkeys(names, counts[name]))
    if totals is not None and weights is not None:
        for name, merger in mergers.items():
            totals[name] = merger.totals
            totals.update({copy: merger.totals for copy, source in same.items() if source == name})
    return results, counts


def plane_blocks(depth: int, planes: int) -> Iterator[slice]:
    """Slices of at most ``planes`` planes covering ``range(depth)`` in order."""
    for start in range(0, int(depth), max(1, int(planes))):
        yield slice(start, min(start + max(1, int(planes)), int(depth)))


def measure_by_slabs(
    labels: Any, planes: int, resolution: Sequence[float] | None = None,
    sums: np.ndarray | None = None,
) -> pd.DataFrame:
    """``measure_objects``'s table of a label volume too large to hold, read ``planes`` planes
    (plus the one or two planes of context ``ObjectTable`` needs) at a time: every object's
    measurements are summed window by window (``decode.postprocess.ObjectTable``), so the memory
    is the window's whatever the objects' sizes; rows sorted by label as on the whole volume.
    ``sums``: each label's probability sum (``decode_instances_by_chunks``'s ``totals``),
    indexed by label, for ``mean_probability``."""
    from biapy_runner.decode.postprocess import ObjectTable

    depth = int(labels.shape[0])
    table = ObjectTable(labels.shape, resolution)
    before, after = table.context
    for part in plane_blocks(depth, planes):
        start = max(0, part.start - before)
        window = np.asarray(labels[start : min(depth, part.stop + after)])
        table.add(window, start, part)
        del window
    return table.table(sums)


def detect_points_by_chunks(
    raw: Any,
    find: PointFinder,
    chunk: Sequence[int],
    halo: Sequence[int],
    radius: float,
    resolution: Sequence[float] | None = None,
    norm: float = np.inf,
) -> PointSet:
    """Points of ``raw`` ``(C, *spatial)`` found chunk by chunk (one table for the volume).

    Each chunk's points are searched with its halo and kept in its core; then points of
    different chunks at ``radius`` or less (``norm``: the Minkowski p of the distance, infinity
    for Chebyshev as the peak finder's spacing, 2 for close-point removal; physical units,
    ``resolution`` per axis) are deduplicated within each class, the more probable one kept
    (ties: chunk order).
    Returns the points sorted as ``find_peaks`` sorts them.
    """
    grid = ChunkGrid(tuple(int(n) for n in raw.shape[1:]), tuple(map(int, chunk)),
                     tuple(map(int, halo)))  # fmt: skip
    sets, owners = [], []
    progress, shown = log.Progress("chunks", grid.size), set()
    for number, index in enumerate(grid.indices()):
        ext, core = grid.extended(index), grid.core(index)
        with log.quiet(shown):
            found = find(read_region(raw, ext))
        progress.step()
        coords = found.coords + np.array([s.start for s in ext], dtype=np.float64)
        centre = np.round(coords)
        inside = np.all(
            (centre >= [s.start for s in core]) & (centre < [s.stop for s in core]), axis=1
        ) if len(found) else np.zeros(0, dtype=bool)  # fmt: skip
        sets.append(PointSet(coords[inside], found.probs[inside], found.classes[inside]))
        owners.append(np.full(int(inside.sum()), number, dtype=np.int64))
    ndim = len(grid.shape)
    points = PointSet(
        np.concatenate([s.coords for s in sets]).reshape(-1, ndim),
        np.concatenate([s.probs for s in sets]),
        np.concatenate([s.classes for s in sets]).astype(np.int64),
    )
    resolution = tuple(resolution) if resolution is not None else (1.0,) * ndim
    keep = _dedupe(points, np.concatenate(owners), radius, resolution, norm)
    return sort_points(points.subset(keep))


def _dedupe(
    points: PointSet, owners: np.ndarray, radius: float, resolution: Sequence[float], norm: float
) -> np.ndarray:
    """Indices of the points kept: of two points of different chunks (same class) within
    ``radius``, the more probable one."""
    if len(points) < 2 or radius <= 0:
        return np.arange(len(points))
    scaled = points.coords * np.asarray(resolution, dtype=np.float64)
    order = np.argsort(-points.probs, kind="stable")
    tree = cKDTree(scaled)
    dropped = np.zeros(len(points), dtype=bool)
    for i in order:
        if dropped[i]:
            continue
        for j in tree.query_ball_point(scaled[i], r=radius, p=norm):
            if j != i and owners[j] != owners[i] and points.classes[j] == points.classes[i]:
                dropped[j] = True
    return np.flatnonzero(~dropped)


def chunk_geometry(cfg: Any, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk core and halo of BiaPy's chunk-by-chunk workflow process for ``ndim`` spatial axes.

    The core is ``TEST.BY_CHUNKS.WORKFLOW_PROCESS.PATCHES_PER_TILE * (DATA.PATCH_SIZE - 2 *
    DATA.TEST.PADDING)`` per axis (BiaPy's tile of the workflow process) and the halo is
    ``DATA.TEST.PADDING`` (the context BiaPy post-processes a tile with).
    """
    patch = tuple(int(p) for p in cfg.get("DATA.PATCH_SIZE"))[:ndim]
    padding = tuple(int(p) for p in cfg.get("DATA.TEST.PADDING"))[:ndim]
    per_tile = tuple(int(n) for n in cfg.get("TEST.BY_CHUNKS.WORKFLOW_PROCESS.PATCHES_PER_TILE"))
    per_tile = per_tile[-ndim:]
    chunk = tuple(max(1, n * (p - 2 * d)) for n, p, d in zip(per_tile, patch, padding))
    return chunk, padding


def write_point_mask(
    points: PointSet, dest: Any, chunk: Sequence[int], radius: int = 1
) -> None:
    """``decode.points.point_mask(points, dest.shape, radius)`` written into ``dest`` chunk by
    chunk (each core drawn with the points within ``radius`` of it): never the whole mask."""
    from biapy_runner.decode.points import point_mask

    shape = tuple(int(n) for n in dest.shape)
    grid = ChunkGrid(shape, tuple(map(int, chunk)), (0,) * len(shape))
    centres = pixel_centres(points, shape)
    reach = (0,) * (len(shape) - 2) + (radius, radius)
    for index in grid.indices():
        core = grid.core(index)
        grown = grown_box(core, reach, shape)
        lo, hi = np.array([g.start for g in grown]), np.array([g.stop for g in grown])
        near = np.all((centres >= lo) & (centres < hi), axis=1)
        local = PointSet((centres[near] - lo).astype(np.float64), points.probs[near],
                         points.classes[near])  # fmt: skip
        mask = point_mask(local, tuple(hi - lo), radius)
        dest[core] = mask[_relative(core, grown)].astype(dest.dtype)

"""``INSTANCE_CREATION_PROCESS: agglomeration``: affinities -> fragments -> merged instances.

BiaPy 3.7.1's ``agglomeration`` (after waterz, Funke et al., TPAMI 2019) decodes the affinity
channel ``A``: per offset (``DATA_CHANNELS_EXTRA_OPTS[0]["A"]``: ``z_affinities``,
``y_affinities``, ``x_affinities`` paired by index, channels interleaved z, y, x per offset) the
probability that a voxel and its neighbour at that offset belong to the same object, stored at the
neighbour's (higher-index) voxel. Only the first, short-range (z, y, x) / (y, x) group is used:

1. fragments: the boundary map is the minimum of those affinities; seeds are its connected parts
   (face connectivity) above ``AGGLOMERATION.FRAGMENT_SEED_TH``; they grow by marker-controlled
   watershed on its negation (Gaussian, sigma 1, truncated at 1 sigma) inside the region above
   ``FRAGMENT_GROWTH_TH`` (slice by slice with ``WATERSHED.BY_2D_SLICES``);
2. region graph: for every pair of touching fragments, a 256-bin histogram of the affinities of
   the voxel pairs that straddle them;
3. greedy merging: the pair whose ``MERGE_QUANTILE`` percentile (bin centre) is highest merges
   while that score is at least ``MERGE_TH`` and the pair has at least ``MIN_EDGE_VOXELS``
   supporting voxel pairs; merged histograms add up.

BiaPy accepts this process for 3D only; the same definitions are applied to 2D here.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.decode.channels import Channels
from biapy_runner.decode.layout import IS, as_labels, channel_slices, extra_opts, require
from biapy_runner.decode.watershed import WatershedSettings, watershed_by_channels
from biapy_runner.errors import ConfigError

BINS = 256


def affinity_offsets(opts: dict, ndim: int) -> list[tuple[int, ...]]:
    """One offset per affinity channel, in BiaPy's interleaved order.

    Parameters
    ----------
    opts : dict
        ``DATA_CHANNELS_EXTRA_OPTS[0]["A"]`` (``z/y/x_affinities``, default ``[1]`` each).
    ndim : int
        Number of spatial axes.

    Returns
    -------
    list of tuple of int
        ``[(z, 0, 0), (0, y, 0), (0, 0, x), ...]`` in 3D, ``[(y, 0), (0, x), ...]`` in 2D.
    """
    lists = [list(opts.get(f"{a}_affinities", [1])) for a in "zyx"[-ndim:]]
    out: list[tuple[int, ...]] = []
    for group in zip(*lists):
        for axis, step in enumerate(group):
            out.append(tuple(int(step) if d == axis else 0 for d in range(ndim)))
    return out


def fragments(
    affinities: np.ndarray,
    *,
    seed_th: float = 0.9,
    growth_th: float = 0.1,
    by_2d_slices: bool = False,
) -> np.ndarray:
    """Over-segment the short-range affinities into fragments.

    As BiaPy does, this is the watershed of the ``A``-only seed channel
    (:func:`~biapy_runner.decode.watershed.watershed_by_channels`) with fragment thresholds.

    Parameters
    ----------
    affinities : numpy.ndarray
        ``(ndim, *shape)`` short-range affinities (one per axis), in [0, 1].
    seed_th : float
        Seeds are the connected parts of ``min(affinities) > seed_th``.
    growth_th : float
        Fragments grow inside ``min(affinities) > growth_th``.
    by_2d_slices : bool
        Grow each z slice on its own (3D).

    Returns
    -------
    numpy.ndarray
        Integer fragment labels, 0 = background.
    """
    settings = WatershedSettings(
        seed_channels=["A"],
        seed_thresholds=[seed_th],
        growth_channels=["A"],
        growth_thresholds=[growth_th],
        by_2d_slices=by_2d_slices,
    )
    return watershed_by_channels(affinities, Channels(("A",)), settings).labels


def _pair_slices(
    offset: Sequence[int],
) -> tuple[tuple[slice, ...], tuple[slice, ...], tuple[slice, ...]]:
    lo, hi, val = [], [], []
    for d in offset:
        a = abs(d)
        if d == 0:
            lo.append(slice(None)), hi.append(slice(None)), val.append(slice(None))
            continue
        lo.append(slice(0, -a))
        hi.append(slice(a, None))
        val.append(slice(a, None) if d > 0 else slice(0, -a))
    return tuple(lo), tuple(hi), tuple(val)


def region_graph(
    frags: np.ndarray, affinities: np.ndarray, offsets: Sequence[Sequence[int]]
) -> dict[tuple[int, int], np.ndarray]:
    """Affinity histograms (``BINS`` bins over [0, 1]) of every pair of touching fragments.

    Parameters
    ----------
    frags : numpy.ndarray
        Fragment labels, 0 = background.
    affinities : numpy.ndarray
        ``(C, *shape)`` affinities, one per offset.
    offsets : sequence of sequence of int
        Offset of each affinity channel (value stored at the pair's higher-index voxel for a
        positive offset).

    Returns
    -------
    dict
        ``{(a, b): counts}`` with ``a < b``.
    """
    edges: dict[tuple[int, int], np.ndarray] = {}
    for channel, offset in zip(affinities, offsets):
        if not any(offset):
            continue
        lo, hi, val = _pair_slices(offset)
        a, b, v = frags[lo], frags[hi], channel[val]
        straddle = (a != b) & (a > 0) & (b > 0)
        if not straddle.any():
            continue
        a, b, v = a[straddle].astype(np.int64), b[straddle].astype(np.int64), v[straddle]
        pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        bins = np.clip((v * BINS).astype(np.int64), 0, BINS - 1)
        hist = np.bincount(inv.ravel() * BINS + bins, minlength=len(uniq) * BINS)
        for (p, q), h in zip(uniq.tolist(), hist.reshape(len(uniq), BINS)):
            edges[(p, q)] = edges.get((p, q), 0) + h
    return edges


def edge_score(hist: np.ndarray, quantile: float) -> float:
    """Centre of the histogram bin holding the ``quantile`` percentile (0 when empty).

    Parameters
    ----------
    hist : numpy.ndarray
        ``(BINS,)`` counts.
    quantile : float
        Percentile in [0, 100].

    Returns
    -------
    float
        Score in [0, 1].
    """
    total = int(hist.sum())
    if total == 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(hist), quantile / 100.0 * total, side="left"))
    return (min(k, BINS - 1) + 0.5) / BINS


def merge(
    ids: Sequence[int],
    edges: dict[tuple[int, int], np.ndarray],
    *,
    threshold: float = 0.5,
    quantile: float = 50.0,
    min_edge_voxels: int = 5,
) -> dict[int, int]:
    """Greedy merging by descending edge score (lazy max-heap, union by size).

    Parameters
    ----------
    ids : sequence of int
        Fragment ids.
    edges : dict
        :func:`region_graph` output.
    threshold : float
        Lowest score that merges.
    quantile : float
        Percentile of an edge's histogram used as its score.
    min_edge_voxels : int
        Fewest supporting voxel pairs an edge needs to merge.

    Returns
    -------
    dict of int to int
        Fragment id -> id of its merged group's root.
    """
    parent = {i: i for i in ids}
    size = {i: 1 for i in ids}
    nbrs: dict[int, dict[int, np.ndarray]] = {i: {} for i in ids}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    heap: list[tuple[float, int, int]] = []
    for (a, b), hist in edges.items():
        nbrs[a][b] = nbrs[b][a] = hist
        heapq.heappush(heap, (-edge_score(hist, quantile), a, b))
    while heap:
        neg, a, b = heapq.heappop(heap)
        ra, rb = find(a), find(b)
        hist = nbrs[ra].get(rb) if ra != rb else None
        if hist is None or int(hist.sum()) < min_edge_voxels:
            continue
        score = edge_score(hist, quantile)
        if abs(score + neg) > 1e-9:
            heapq.heappush(heap, (-score, ra, rb))
            continue
        if score < threshold:
            break
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        size[ra] += size[rb]
        for nb, h in nbrs.pop(rb).items():
            nbrs[nb].pop(rb, None)
            if nb == ra:
                continue
            merged = nbrs[ra][nb] + h if nb in nbrs[ra] else h
            nbrs[ra][nb] = nbrs[nb][ra] = merged
            heapq.heappush(heap, (-edge_score(merged, quantile), ra, nb))
        nbrs[ra].pop(rb, None)
    return {i: find(i) for i in ids}


def agglomerate(
    frags: np.ndarray,
    affinities: np.ndarray,
    offsets: Sequence[Sequence[int]],
    *,
    threshold: float = 0.5,
    quantile: float = 50.0,
    min_edge_voxels: int = 5,
) -> np.ndarray:
    """Merge fragments whose boundary affinities are high; labels 1..K in root order.

    Parameters
    ----------
    frags : numpy.ndarray
        Fragment labels (an over-segmentation), 0 = background.
    affinities : numpy.ndarray
        ``(C, *shape)`` affinities; only the first ``ndim`` (short-range) channels are scored.
    offsets : sequence of sequence of int
        Offset of each affinity channel.
    threshold, quantile, min_edge_voxels
        As in :func:`merge`.

    Returns
    -------
    numpy.ndarray
        int32 instance labels.
    """
    ndim = frags.ndim
    ids = [int(i) for i in np.unique(frags) if i > 0]
    if len(ids) <= 1:
        return (frags > 0).astype(np.int32)
    edges = region_graph(frags, affinities[:ndim], list(offsets)[:ndim])
    root = merge(
        ids, edges, threshold=threshold, quantile=quantile, min_edge_voxels=min_edge_voxels
    )
    number = {r: k + 1 for k, r in enumerate(sorted(set(root.values())))}
    lut = np.zeros(int(frags.max()) + 1, dtype=np.int32)
    for i, r in root.items():
        lut[i] = number[r]
    return lut[frags]


def decode(raw: np.ndarray, channels: Sequence[str], cfg: Config) -> np.ndarray:
    """Affinity channels ``A`` -> instance labels.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(C, *spatial)`` affinities after the model's postprocessing.
    channels : sequence of str
        Channel names in order (``["A"]``; A spans one channel per offset).
    cfg : Config
        Reads ``PROBLEM.INSTANCE_SEG.AGGLOMERATION.*``, ``WATERSHED.BY_2D_SLICES`` and
        ``DATA_CHANNELS_EXTRA_OPTS[0]["A"]``.

    Returns
    -------
    numpy.ndarray
        Integer labels of the spatial shape.
    """
    ndim = raw.ndim - 1
    sl = channel_slices(channels, raw.shape[0], ndim)
    require(sl, ("A",), "agglomeration")
    aff = raw[sl["A"]]
    offsets = affinity_offsets(extra_opts(cfg, "A"), ndim)
    if len(offsets) != aff.shape[0]:
        raise ConfigError(
            f"{IS}DATA_CHANNELS_EXTRA_OPTS A describes {len(offsets)} affinity channel(s) (one per "
            f"axis and offset) but the model gives {aff.shape[0]}; set z/y/x_affinities to the "
            "offsets the model was trained with."
        )
    g = IS + "AGGLOMERATION."
    frags = fragments(
        aff[:ndim],
        seed_th=float(cfg.get(g + "FRAGMENT_SEED_TH", 0.9)),
        growth_th=float(cfg.get(g + "FRAGMENT_GROWTH_TH", 0.1)),
        by_2d_slices=bool(cfg.get(IS + "WATERSHED.BY_2D_SLICES", False)),
    )
    labels = agglomerate(
        frags,
        aff,
        offsets,
        threshold=float(cfg.get(g + "MERGE_TH", 0.5)),
        quantile=float(cfg.get(g + "MERGE_QUANTILE", 50.0)),
        min_edge_voxels=int(cfg.get(g + "MIN_EDGE_VOXELS", 5)),
    )
    return as_labels(labels)

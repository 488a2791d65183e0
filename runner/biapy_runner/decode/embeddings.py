"""``INSTANCE_CREATION_PROCESS: embeddings``: EmbedSeg's spatial-embedding clustering.

EmbedSeg (Lalit et al., Medical Image Analysis 2022) predicts, per pixel, an offset ``o(x)`` that
moves the pixel's coordinate onto its object's centre (the embedding ``e(x) = x + o(x)``), a
per-axis clustering bandwidth ``sigma(x)`` and a seediness ``s(x)`` (how close the pixel's
embedding is to the centre). Clustering, as EmbedSeg's ``Cluster.cluster`` (fast path) and
BiaPy 3.7.1 define it: among the foreground pixels (``s > FG_THRESH``) the unclustered pixel of
highest seediness seeds an object while its seediness is at least ``SEED_THRESH``; the object is
every foreground pixel whose embedding lies within the seed's Gaussian,
``exp(-sum_d (e_d - c_d)^2 * exp(10 * sigma_d)) > 0.5``, kept when more than half of it was still
unclustered.

Channels (BiaPy's layout): ``E_offset`` one per axis in the order x, y[, z], ``E_sigma`` the same,
``E_seediness`` one. Coordinates are BiaPy's canonical grid: pixel ``i`` along an axis sits at
``i * ratio / (GRID_SIZE - 1)``, with ``ratio`` the axis' voxel size over the y voxel size
(``DATA.TEST.RESOLUTION``). Keys: ``PROBLEM.INSTANCE_SEG.EMBEDSEG.*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biapy_runner import log
from biapy_runner.config.load import Config
from biapy_runner.decode.layout import IS, as_labels, channel_slices, require, spacing

CHANNELS = ("E_offset", "E_sigma", "E_seediness")


def grid_size_for(shape: Sequence[int], configured: int) -> int:
    """``EMBEDSEG.GRID_SIZE``, or BiaPy's automatic value from the image when it is unset.

    BiaPy's automatic value (``-1``) is the largest image side of the training/test data rounded
    up to a multiple of 8; at inference only the image is known, so its largest side is used.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the image.
    configured : int
        The configured ``GRID_SIZE`` (``<= 0``: automatic).

    Returns
    -------
    int
        The grid size.
    """
    if int(configured) > 0:
        return int(configured)
    return (int(max(shape)) + 7) // 8 * 8


def coordinate_map(
    shape: Sequence[int], grid_size: int, spacing_zyx: Sequence[float]
) -> np.ndarray:
    """EmbedSeg's coordinate of every pixel, channels in the order x, y[, z].

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(Y, X)`` or ``(Z, Y, X)``.
    grid_size : int
        Canonical grid size; one pixel step is ``ratio / (grid_size - 1)``.
    spacing_zyx : sequence of float
        Voxel size per axis in array order.

    Returns
    -------
    numpy.ndarray
        ``(ndim, *shape)`` float32 coordinates.
    """
    norm = float(grid_size - 1)
    sp = [float(s) for s in spacing_zyx]
    ratios = [s / sp[-2] for s in sp]  # y carries ratio 1
    axes = [np.arange(n, dtype=np.float32) * (r / norm) for n, r in zip(shape, ratios)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack(mesh[::-1]).astype(np.float32)


def cluster(
    offsets: np.ndarray,
    sigma: np.ndarray,
    seediness: np.ndarray,
    coords: np.ndarray,
    *,
    fg_thresh: float = 0.5,
    seed_thresh: float = 0.9,
    min_mask_sum: int = 0,
    min_unclustered_sum: int = 0,
) -> np.ndarray:
    """Cluster spatial embeddings into instances (EmbedSeg's ``Cluster.cluster``).

    Parameters
    ----------
    offsets, sigma : numpy.ndarray
        ``(ndim, *spatial)``, axis order x, y[, z] (as ``coords``).
    seediness : numpy.ndarray
        ``(*spatial)`` seediness in [0, 1].
    coords : numpy.ndarray
        ``(ndim, *spatial)`` pixel coordinates (:func:`coordinate_map`).
    fg_thresh : float
        Seediness above which a pixel is clustered.
    seed_thresh : float
        Seediness a pixel needs to seed an object.
    min_mask_sum : int
        Cluster only when more foreground pixels than this.
    min_unclustered_sum : int
        Stop when this many or fewer foreground pixels are left unclustered.

    Returns
    -------
    numpy.ndarray
        ``(*spatial)`` int32 labels, 0 = background.
    """
    labels = np.zeros(seediness.shape, dtype=np.int32)
    fg = seediness > fg_thresh
    n = int(fg.sum())
    if n <= min_mask_sum:
        return labels
    emb = (offsets[:, fg] + coords[:, fg]).astype(np.float64)  # (ndim, N)
    bandwidth = np.exp(10.0 * sigma[:, fg].astype(np.float64))  # (ndim, N)
    seed = seediness[fg].astype(np.float64)
    unclustered = np.ones(n, dtype=bool)
    out = np.zeros(n, dtype=np.int32)
    count = 1
    while unclustered.sum() > min_unclustered_sum:
        scores = np.where(unclustered, seed, 0.0)
        k = int(np.argmax(scores))
        if scores[k] < seed_thresh:
            break
        unclustered[k] = False
        d2 = ((emb - emb[:, k : k + 1]) ** 2 * bandwidth[:, k : k + 1]).sum(axis=0)
        proposal = np.exp(-d2) > 0.5
        size = int(proposal.sum())
        if size > 0 and unclustered[proposal].sum() / size > 0.5:
            out[proposal] = count
            count += 1
        unclustered[proposal] = False
    labels[fg] = out
    return labels


def decode(raw: np.ndarray, channels: Sequence[str], cfg: Config) -> np.ndarray:
    """EmbedSeg channels -> instance labels.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(C, *spatial)`` prediction after the model's postprocessing.
    channels : sequence of str
        Channel names in order (``E_offset``, ``E_sigma``, ``E_seediness``).
    cfg : Config
        Reads ``PROBLEM.INSTANCE_SEG.EMBEDSEG.*`` and ``DATA.TEST.RESOLUTION``.

    Returns
    -------
    numpy.ndarray
        Integer labels of the spatial shape.
    """
    ndim = raw.ndim - 1
    sl = channel_slices(channels, raw.shape[0], ndim)
    require(sl, CHANNELS, "embeddings")
    configured = int(cfg.get(IS + "EMBEDSEG.GRID_SIZE", -1))
    grid = grid_size_for(raw.shape[1:], configured)
    if configured <= 0:
        log.warn(
            f"{IS}EMBEDSEG.GRID_SIZE is -1: using {grid} (the image's largest side rounded up to "
            "a multiple of 8); set the value the model was trained with if it differs."
        )
    coords = coordinate_map(raw.shape[1:], grid, spacing(cfg, ndim))
    labels = cluster(
        raw[sl["E_offset"]],
        raw[sl["E_sigma"]],
        raw[sl["E_seediness"]][0],
        coords,
        fg_thresh=float(cfg.get(IS + "EMBEDSEG.FG_THRESH", 0.5)),
        seed_thresh=float(cfg.get(IS + "EMBEDSEG.SEED_THRESH", 0.9)),
        min_mask_sum=int(cfg.get(IS + "EMBEDSEG.MIN_MASK_SUM", 0)),
        min_unclustered_sum=int(cfg.get(IS + "EMBEDSEG.MIN_UNCLUSTERED_SUM", 0)),
    )
    return as_labels(labels)

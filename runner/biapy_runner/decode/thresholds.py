"""Otsu's threshold, one implementation for every decoder (watershed seeds and growth masks,
Voronoi masks, detection peaks).

The result is scikit-image's ``threshold_otsu`` (256-bin histogram over the value range, bin
centres), with the histogram built block by block as an exact ``np.bincount`` of the quantized
values: several times faster than scikit-image on large volumes and with bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

#: values per block of the histogram pass (the temporaries stay in the CPU cache)
CHUNK = 1 << 18
#: the threshold of a constant channel (nothing to separate; BiaPy's probability midpoint)
CONSTANT_THRESHOLD = 0.5


def otsu(x: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of ``x`` over a ``bins``-bin histogram (scikit-image's definition).

    Parameters
    ----------
    x : np.ndarray
        Values of any shape (one channel).
    bins : int
        Number of histogram bins.

    Returns
    -------
    float
        The centre of the bin that maximises the between-class variance;
        ``CONSTANT_THRESHOLD`` for a constant channel (the value itself when it is that).
    """
    return otsu_of_blocks(lambda: [x], bins)


def otsu_of_blocks(blocks: Callable[[], Iterable[np.ndarray]], bins: int = 256) -> float:
    """``otsu`` of the values of several blocks together (e.g. the chunks of a volume larger
    than memory), read in two passes (value range, then histogram): the same number as ``otsu``
    on their concatenation, without ever holding it.

    Parameters
    ----------
    blocks : callable
        Returns a fresh iterable of the blocks (called once per pass).
    bins : int
        Number of histogram bins.

    Returns
    -------
    float
        As ``otsu``.
    """
    lo, hi = np.inf, -np.inf
    for block in blocks():
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if hi <= lo:
        return CONSTANT_THRESHOLD if lo != CONSTANT_THRESHOLD else lo
    width = (hi - lo) / bins
    hist = np.zeros(bins, dtype=np.int64)
    for block in blocks():
        flat = block.reshape(-1)
        for start in range(0, flat.size, CHUNK):
            q = flat[start : start + CHUNK].astype(np.float64) - lo
            q /= width
            np.minimum(q, bins - 1, out=q)
            hist += np.bincount(q.astype(np.intp), minlength=bins)
    counts = hist.astype(np.float64)
    centers = lo + width * (np.arange(bins) + 0.5)
    w1 = np.cumsum(counts)
    w2 = np.cumsum(counts[::-1])[::-1]
    m1 = np.cumsum(counts * centers) / np.maximum(w1, 1)
    m2 = (np.cumsum((counts * centers)[::-1]) / np.maximum(w2[::-1], 1))[::-1]
    between = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return float(centers[int(np.argmax(between))])

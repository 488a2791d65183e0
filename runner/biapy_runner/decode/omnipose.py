"""Omnipose flows to instances (``gradient-flow`` with ``gradient_type: omnipose``).

Omnipose (Cutler et al., Nature Methods 2022) replaces Cellpose's diffusion potential by a smooth
distance field ``T`` solved per cell by Eikonal relaxation, and its flow by ``T``'s smoothed
gradient; the network predicts the flow (``Gv``, ``Gh``[, ``Gz``]) and the distance (``Db``,
background negative). Reconstruction, as Omnipose's ``compute_masks`` and BiaPy 3.7.1 define it:

1. foreground: hysteresis of the distance between ``OMNIPOSE.MASK_THRESHOLD - 1`` and
   ``MASK_THRESHOLD``;
2. the flow is normalised to unit length and multiplied by its (percentile-normalised)
   divergence, which vanishes in the cell interiors and peaks at the sinks;
3. every foreground pixel follows that flow for ``OMNIPOSE.NITER`` steps (0: ``2 (ndim + 1)``
   times the mean positive distance) with damped steps: the sampled flow (nearest pixel) is
   averaged with the previous step and divided by ``1 + t``;
4. end points: when the mean cell diameter ``2 (ndim + 1) mean|T|`` is above 12 pixels, the
   rounded end points are labelled by connectivity; otherwise they are clustered by DBSCAN
   (``eps = sqrt(2)``, 5 samples) and noise points join a cluster closer than ``eps``;
5. masks whose regenerated Omnipose flow differs from the network's (divided by 5) by a mean
   squared error above ``OMNIPOSE.FLOW_THRESHOLD`` are removed.

DBSCAN runs on the end points rounded to 1/100 pixel (weighted by multiplicity), with SciPy's
k-d tree: no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.filters import apply_hysteresis_threshold
from skimage.measure import label

FLOW_SCALE = 5.0


class _Stencil:
    """The 3^ndim neighbour steps grouped by how many axes they move along (1, 2, ...)."""

    def __init__(self, ndim: int) -> None:
        self.steps = np.array(list(product((-1, 0, 1), repeat=ndim)))
        level = np.abs(self.steps).sum(axis=1)
        self.centre = int(np.flatnonzero(level == 0)[0])
        #: per level >= 1: indices of the steps, in product order (step k and its mirror pair up)
        self.groups = [np.flatnonzero(level == n) for n in range(1, ndim + 1)]
        self.lengths = [np.sqrt(n) for n in range(1, ndim + 1)]


def _neighbours(labels: np.ndarray, stencil: _Stencil) -> tuple[np.ndarray, np.ndarray]:
    """For each object pixel and step: the neighbour's index in the pixel list and whether it
    belongs to the same object (steps leaving the image stay on the pixel and count as same)."""
    coords = np.nonzero(labels)
    shape = labels.shape
    index = -np.ones(shape, dtype=np.int64)
    index[coords] = np.arange(len(coords[0]))
    near = [
        tuple(np.clip(c + s, 0, n - 1) for c, s, n in zip(coords, step, shape))
        for step in stencil.steps
    ]
    own = labels[coords]
    same = np.stack([labels[p] == own for p in near])
    same[stencil.centre] = False
    return np.stack([index[p] for p in near]), same


def _eikonal_step(tn: np.ndarray, stencil: _Stencil) -> np.ndarray:
    """Geometric mean over the neighbour levels of the two-sided Eikonal update."""
    phi = np.ones(tn.shape[1])
    for group, f in zip(stencil.groups, stencil.lengths):
        half = len(group) // 2
        pair = np.minimum(tn[group[:half]], tn[group[::-1][:half]])
        lo, hi = np.minimum(pair[0], pair[1]), np.maximum(pair[0], pair[1])
        s = lo + hi
        phi *= 0.5 * (s + np.sqrt(np.clip(s * s - 2 * (lo * lo + hi * hi - f * f), 0, None)))
    return phi ** (1.0 / len(stencil.groups))


def distance_and_flows(labels: np.ndarray, n_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Omnipose's smooth distance field and flow field of a label image (BiaPy's targets).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` instance labels.
    n_iter : int
        Most relaxation iterations (stops earlier once the field settles).

    Returns
    -------
    tuple of numpy.ndarray
        The distance ``T`` (0 outside the objects) and the flow ``(ndim, *shape)`` in array axis
        order (not unit length: it fades towards the skeleton).
    """
    ndim = labels.ndim
    dist = np.zeros(labels.shape, dtype=np.float32)
    flows = np.zeros((ndim, *labels.shape), dtype=np.float32)
    coords = np.nonzero(labels)
    if len(coords[0]) == 0:
        return dist, flows
    st = _Stencil(ndim)
    nb, same = _neighbours(labels, st)
    t = np.ones(len(coords[0]))
    previous = t.copy()
    for it in range(n_iter):
        t = _eikonal_step(t[nb] * same, st)
        if it == 0:
            t = (t[nb] * same).mean(axis=0)
        change = float(np.mean((t - previous) ** 2))
        previous = t
        if it % 10 == 9 and change < 1e-3:
            break
    dist[coords] = t
    mu = _smoothed_gradient(t, nb, same, st)
    for d in range(ndim):
        flows[d][coords] = mu[d]
    return dist, flows


def _smoothed_gradient(t: np.ndarray, nb: np.ndarray, same: np.ndarray, st: _Stencil) -> np.ndarray:
    """Central differences averaged over the neighbour levels, then averaged over the neighbours
    weighted by how well their gradient agrees with the pixel's."""
    per_level = []
    for group, f in zip(st.groups, st.lengths):
        vals = np.where(same[group], t[nb[group]], 0.0)
        half = len(group) // 2
        fwd, back = group[::-1][:half], group[:half]
        axes = (st.steps[fwd] - st.steps[back]).T.astype(float)  # (ndim, half)
        per_level.append(axes @ (vals[::-1][:half] - vals[:half]) / (2 * f) ** 2)
    mu = np.mean(per_level, axis=0)  # (ndim, npix)
    around = mu[:, nb]  # (ndim, nsteps, npix)
    weight = np.abs((around * mu[:, None, :]).sum(axis=0)) * same
    total = weight.sum(axis=0)
    return np.where(total != 0, (around * weight).sum(axis=1) / np.where(total == 0, 1, total), 0.0)


def _normalise99(x: np.ndarray) -> np.ndarray:
    lo, hi = np.quantile(x, [0.0001, 0.9999])
    return np.clip((x - lo) / ((hi - lo) or 1.0), 0, 1)


def divergence_rescaled(flows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit flows inside ``mask`` times their normalised divergence (Omnipose's ``div_rescale``).

    Parameters
    ----------
    flows : numpy.ndarray
        ``(ndim, *shape)`` flows, any scale.
    mask : numpy.ndarray
        Foreground.

    Returns
    -------
    numpy.ndarray
        The rescaled flows.
    """
    f = flows * mask
    mag = np.sqrt((f**2).sum(axis=0))
    f = np.where(mag > 0, f / np.where(mag > 0, mag, 1), f)
    if any(n < 2 for n in f.shape[1:]):
        return f * 0
    div = sum(np.gradient(f[d], axis=d) for d in range(len(f)))
    return f * _normalise99(div)


def follow_damped(flows: np.ndarray, starts: np.ndarray, n_steps: int) -> np.ndarray:
    """Damped Euler integration with nearest-pixel sampling (Omnipose's suppressed steps).

    Parameters
    ----------
    flows : numpy.ndarray
        ``(ndim, *shape)`` flows (pixels per step).
    starts : numpy.ndarray
        ``(N, ndim)`` start pixels.
    n_steps : int
        Number of steps.

    Returns
    -------
    numpy.ndarray
        ``(N, ndim)`` end points.
    """
    top = np.asarray(flows.shape[1:], dtype=np.float64) - 1
    pos = starts.astype(np.float64)

    def sample(p: np.ndarray) -> np.ndarray:
        at = tuple(np.rint(p).astype(np.int64).T)
        return np.stack([f[at] for f in flows], axis=1)

    last = sample(pos)
    for t in range(n_steps):
        step = (sample(pos) + last) / 2.0
        last = step
        pos = np.clip(pos + step / (1.0 + t), 0.0, top)
    return pos


def dbscan(points: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN cluster ids (-1 = noise) of ``points``, computed on positions rounded to 0.01.

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, ndim)`` coordinates.
    eps : float
        Neighbourhood radius.
    min_samples : int
        Points (itself included) within ``eps`` that make a point a core point.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` cluster ids 0..K-1 or -1.
    """
    uniq, inverse, weight = np.unique(
        np.round(points, 2), axis=0, return_inverse=True, return_counts=True
    )
    tree = cKDTree(uniq)
    counts = np.array([weight[n].sum() for n in tree.query_ball_point(uniq, eps)])
    core = counts >= min_samples
    pairs = tree.query_pairs(eps, output_type="ndarray")
    both = pairs[core[pairs[:, 0]] & core[pairs[:, 1]]]
    n = len(uniq)
    graph = coo_matrix((np.ones(len(both)), (both[:, 0], both[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    ids = -np.ones(n, dtype=np.int64)
    _, ids[core] = np.unique(comp[core], return_inverse=True)
    border = np.flatnonzero(~core)
    if core.any() and len(border):
        core_idx = np.flatnonzero(core)
        dist, nearest = cKDTree(uniq[core_idx]).query(uniq[border])
        close = dist <= eps
        ids[border[close]] = ids[core_idx[nearest[close]]]
    return ids[inverse.ravel()]


def _cluster_ends(ends: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    ids = dbscan(ends, eps, min_samples)
    noise = np.flatnonzero(ids == -1)
    if len(noise) and (ids >= 0).any():
        dist, idx = cKDTree(ends).query(ends[noise], k=min(5, len(ends)))
        dist, idx = dist.reshape(len(noise), -1), idx.reshape(len(noise), -1)
        for row, (d, i) in enumerate(zip(dist, idx)):
            hit = np.flatnonzero(ids[i] >= 0)
            if len(hit) and d[hit[0]] < eps:
                ids[noise[row]] = ids[i[hit[0]]]
    return ids + 1


def flow_errors(labels: np.ndarray, net_flows: np.ndarray) -> np.ndarray:
    """Per-label mean squared difference between regenerated and network flows (divided by 5).

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels 1..K.
    net_flows : numpy.ndarray
        ``(ndim, *shape)`` network flows at training scale (5x).

    Returns
    -------
    numpy.ndarray
        ``(K,)`` errors, entry ``k - 1`` for label ``k``.
    """
    _, own = distance_and_flows(labels)
    ids = np.arange(1, int(labels.max()) + 1)
    return sum(
        np.asarray(ndimage.mean((own[d] - net_flows[d] / FLOW_SCALE) ** 2, labels, ids))
        for d in range(labels.ndim)
    )


def omnipose_instances(
    flows: np.ndarray,
    dist: np.ndarray,
    *,
    mask_threshold: float = 0.0,
    flow_threshold: float = 0.4,
    niter: int = 0,
) -> np.ndarray:
    """Omnipose flows and distance -> instance labels.

    Parameters
    ----------
    flows : numpy.ndarray
        ``(ndim, *shape)`` predicted flows in array axis order.
    dist : numpy.ndarray
        Predicted distance field (background negative).
    mask_threshold : float
        Foreground threshold on ``dist`` (hysteresis from ``mask_threshold - 1``).
    flow_threshold : float
        Flow-error threshold (``<= 0`` disables the check).
    niter : int
        Integration steps (``<= 0``: from the distance field).

    Returns
    -------
    numpy.ndarray
        int32 labels numbered 1..K in label order.
    """
    ndim = dist.ndim
    fg = apply_hysteresis_threshold(dist, mask_threshold - 1, mask_threshold)
    if not fg.any():
        return np.zeros(dist.shape, dtype=np.int32)
    if niter <= 0:
        positive = np.abs(dist[dist > 0])
        niter = int(2 * (ndim + 1) * positive.mean()) if positive.size else 0
    starts = np.argwhere(fg)
    ends = follow_damped(divergence_rescaled(flows, fg), starts, max(1, int(niter)))
    out = np.zeros(dist.shape, dtype=np.int64)
    diameter = 2 * (ndim + 1) * float(np.abs(dist[fg]).mean())
    if diameter <= 12.0:
        out[tuple(starts.T)] = _cluster_ends(ends, np.sqrt(2.0), 5)
    else:
        rounded = tuple(np.rint(ends).astype(np.int64).T)
        sinks = np.zeros(dist.shape, dtype=bool)
        sinks[rounded] = True
        out[tuple(starts.T)] = label(sinks, connectivity=ndim)[rounded]
    if out.max() > 0 and flow_threshold > 0:
        out = np.unique(out, return_inverse=True)[1].reshape(out.shape)
        bad = 1 + np.flatnonzero(flow_errors(out, flows) > flow_threshold)
        out[np.isin(out, bad)] = 0
    out = out * fg
    return np.unique(out, return_inverse=True)[1].reshape(out.shape).astype(np.int32)


def decode_channels(
    raw: np.ndarray, flow_slices: Sequence[slice], dist_slice: slice, settings: dict
) -> np.ndarray:
    """Run :func:`omnipose_instances` on the named slices of ``raw`` (see ``gradient_flow``)."""
    flows = np.stack([raw[s][0] for s in flow_slices]).astype(np.float32)
    return omnipose_instances(flows, raw[dist_slice][0].astype(np.float32), **settings)

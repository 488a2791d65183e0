"""``INSTANCE_CREATION_PROCESS: gradient-flow``: Cellpose flows to instances.

Cellpose (Stringer et al., Nature Methods 2021) predicts, inside every cell, the unit gradient of a
heat-diffusion potential whose source is the cell's centre: following that flow from any pixel of
the cell ends at the centre. BiaPy 3.7.1 trains ``Gv`` (y), ``Gh`` (x) and, in 3D, ``Gz`` (z)
on five times those unit flows, next to a foreground channel (``F``, ``M`` or ``B``; without one
the foreground is where the flow is not zero). Decoding, as Cellpose's ``compute_masks`` and BiaPy
define it:

1. foreground = ``F``/``M`` above ``CELLPOSE.FG_THRESH`` (``B`` below it);
2. diameter: ``CELLPOSE.DIAMETER`` (``<= 0``: the median equivalent diameter of the foreground's
   connected components, ``DIAM_MEAN`` when fewer than three); the flows are resized by
   ``DIAM_MEAN / diameter`` so cells have the size the model was trained at, and 200 Euler steps
   are taken (Cellpose's ``niter``; ``CELLPOSE.N_STEPS`` is overridden, as in BiaPy);
3. every foreground pixel follows the flow (divided by 5, bilinear, one pixel per unit, divided by
   the voxel size of ``DATA.TEST.RESOLUTION``);
4. the end points are binned into a one-pixel histogram; bins that are the maximum of their 5-bin
   neighbourhood and hold more than 10 end points are sinks; each sink grows 5 times into its
   3x3(x3) neighbours holding more than 2 end points; a pixel takes the label of its end bin;
5. bad flows: each mask's own diffusion flow is regenerated and compared with the network's
   (mean squared error, z term weighted 0.5); masks above ``CELLPOSE.FLOW_THRESHOLD`` are removed
   (0 disables);
6. labels are resized back (nearest).

Omnipose flows (``DATA_CHANNELS_EXTRA_OPTS[0]["Gv"]["gradient_type"] == "omnipose"``, with the
distance channel ``Db``) are reconstructed by :mod:`biapy_runner.decode.omnipose`
(``OMNIPOSE.*`` keys).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential
from skimage.transform import resize

from biapy_runner.config.load import Config
from biapy_runner.decode.layout import IS, as_labels, channel_slices, extra_opts, require, spacing
from biapy_runner.decode.omnipose import decode_channels
from biapy_runner.errors import ConfigError

#: flow channels in array axis order (z, y, x)
FLOW_CHANNELS = ("Gz", "Gv", "Gh")
#: channels that give the foreground, in BiaPy's order of preference (B is inverted)
FOREGROUND_CHANNELS = ("F", "M", "B")
#: the network predicts flows 5x the unit targets (Cellpose's convention, kept by BiaPy)
FLOW_SCALE = 5.0


def _cell_potential(mask: np.ndarray) -> np.ndarray:
    """Cellpose's heat diffusion inside one cell (``mask`` padded by one pixel of background).

    The source is the cell pixel nearest to the cell's mean coordinate; each iteration adds one
    unit of heat there and replaces every cell pixel by the mean of its 3x3(x3) neighbourhood
    (background stays 0), ``2 * (h + w + 4)`` times in 2D and ``6 * (d + h + w + 3)`` in 3D (the
    unpadded box's sides).
    """
    coords = np.nonzero(mask)
    pts = np.stack(coords, axis=1)
    centre = tuple(pts[np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1))])
    box = sum(s - 2 for s in mask.shape)
    n_iter = 2 * (box + 4) if mask.ndim == 2 else 6 * (box + 3)
    heat = np.zeros(mask.shape, dtype=np.float64)
    for _ in range(n_iter):
        heat[centre] += 1.0
        heat = ndimage.uniform_filter(heat, size=3, mode="constant") * mask
    return heat


def _cell_flow(mask: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Unit diffusion flow ``(ndim, N)`` at the pixels of one cell (``np.nonzero`` order)."""
    padded = np.pad(mask, 1)
    grads = np.gradient(_cell_potential(padded), *spacing_zyx)
    inside = np.nonzero(padded)
    vec = np.stack([g[inside] for g in grads])
    return vec / (np.sqrt((vec**2).sum(axis=0)) + 1e-60)


def diffusion_flows(labels: np.ndarray, spacing_zyx: Sequence[float] | None = None) -> np.ndarray:
    """Cellpose's unit flows of a label image (the targets BiaPy trains ``Gz/Gv/Gh`` on, /5).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` instance labels, 0 = background.
    spacing_zyx : sequence of float, optional
        Voxel size per axis (ones by default).

    Returns
    -------
    numpy.ndarray
        ``(ndim, *shape)`` float32 flows in array axis order (y, x) / (z, y, x); 0 outside cells.
    """
    sp = tuple(spacing_zyx) if spacing_zyx is not None else (1.0,) * labels.ndim
    flows = np.zeros((labels.ndim, *labels.shape), dtype=np.float32)
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        mask = labels[box] == i + 1
        vec = _cell_flow(mask, sp)
        for d in range(labels.ndim):
            flows[d][box][mask] = vec[d]
    return flows


def follow_flows(
    flows: np.ndarray, starts: np.ndarray, n_steps: int, spacing_zyx: Sequence[float]
) -> np.ndarray:
    """Euler integration of the flow field from ``starts`` (Cellpose's ``steps``).

    Parameters
    ----------
    flows : numpy.ndarray
        ``(ndim, *shape)`` flows, about one pixel per step.
    starts : numpy.ndarray
        ``(N, ndim)`` start coordinates.
    n_steps : int
        Number of steps.
    spacing_zyx : sequence of float
        Voxel size per axis: a step moves ``flow / spacing`` pixels.

    Returns
    -------
    numpy.ndarray
        ``(N, ndim)`` end points, kept inside the image.
    """
    shape = np.asarray(flows.shape[1:], dtype=np.float32)
    res = np.asarray(spacing_zyx, dtype=np.float32)
    pos = starts.astype(np.float32).copy()
    for _ in range(n_steps):
        step = np.stack(
            [ndimage.map_coordinates(f, pos.T, order=1, mode="nearest") for f in flows], axis=1
        )
        pos = np.clip(pos + step / res, 0.0, shape - 1.0)
    return pos


def sink_labels(ends: np.ndarray, starts: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Cluster flow end points into masks (Cellpose's ``get_masks``: histogram sinks, 5 growths).

    Parameters
    ----------
    ends : numpy.ndarray
        ``(N, ndim)`` end points of :func:`follow_flows`.
    starts : numpy.ndarray
        ``(N, ndim)`` integer pixels they started from.
    shape : sequence of int
        Spatial shape.

    Returns
    -------
    numpy.ndarray
        int32 labels, 1..K, 0 = background.
    """
    ndim = len(shape)
    pad = 20
    bins = ends.astype(np.int32) + pad
    hist_shape = tuple(int(s) + 2 * pad for s in shape)
    hist = np.zeros(hist_shape, dtype=np.float64)
    np.add.at(hist, tuple(bins.T), 1.0)
    hmax = hist
    for d in range(ndim):
        hmax = ndimage.maximum_filter1d(hmax, 5, axis=d)
    peaks = np.nonzero((hist - hmax > -1e-6) & (hist > 10))
    out = np.zeros(tuple(shape), dtype=np.int32)
    if len(peaks[0]) == 0:
        return out
    order = np.argsort(hist[peaks], kind="stable")  # weakest first: the strongest wins overlaps
    seeds = np.stack(peaks, axis=1)[order]
    offsets = np.stack(np.meshgrid(*[[-1, 0, 1]] * ndim, indexing="ij"), -1).reshape(-1, ndim)
    grown = np.zeros(hist_shape, dtype=np.int32)
    for k, seed in enumerate(seeds):
        region = seed[None, :]
        for _ in range(5):
            near = (region[:, None, :] + offsets[None]).reshape(-1, ndim)
            near = near[np.all((near >= 0) & (near < hist_shape), axis=1)]
            near = near[hist[tuple(near.T)] > 2]
            region = np.unique(near, axis=0)
            if len(region) == 0:
                break
        if len(region):
            grown[tuple(region.T)] = k + 1
    out[tuple(starts.T)] = grown[tuple(np.clip(bins, 0, np.array(hist_shape) - 1).T)]
    return relabel_sequential(out)[0].astype(np.int32)


def flow_errors(
    flows: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float]
) -> dict[int, float]:
    """Mean squared error between each mask's own diffusion flow and the network flow.

    Parameters
    ----------
    flows : numpy.ndarray
        ``(ndim, *shape)`` network flows at unit scale (already divided by 5).
    labels : numpy.ndarray
        Instance labels.
    spacing_zyx : sequence of float
        Voxel size per axis.

    Returns
    -------
    dict of int to float
        ``{label: error}``; the z term counts half (Cellpose); masks one pixel thin give 0.
    """
    weights = np.ones(labels.ndim)
    if labels.ndim == 3:
        weights[0] = 0.5
    errors: dict[int, float] = {}
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        mask = labels[box] == i + 1
        if mask.sum() < 2 or min(mask.shape) < 2:
            errors[i + 1] = 0.0
            continue
        own = _cell_flow(mask, spacing_zyx)
        net = np.stack([f[box][mask] for f in flows])
        errors[i + 1] = float((weights[:, None] * (own - net) ** 2).sum(axis=0).mean())
    return errors


def remove_bad_flow_masks(
    labels: np.ndarray, flows: np.ndarray, threshold: float, spacing_zyx: Sequence[float]
) -> np.ndarray:
    """Drop the masks whose flow error exceeds ``threshold`` and renumber (Cellpose's check).

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels.
    flows : numpy.ndarray
        ``(ndim, *shape)`` network flows at unit scale.
    threshold : float
        Largest accepted error.
    spacing_zyx : sequence of float
        Voxel size per axis.

    Returns
    -------
    numpy.ndarray
        The kept masks, renumbered 1..K.
    """
    bad = [lab for lab, err in flow_errors(flows, labels, spacing_zyx).items() if err > threshold]
    if not bad:
        return labels
    out = np.where(np.isin(labels, bad), 0, labels)
    return relabel_sequential(out)[0].astype(np.int32)


def estimate_diameter(foreground: np.ndarray) -> float | None:
    """Median equivalent diameter of the foreground's components (full connectivity; None with
    fewer than three).

    Parameters
    ----------
    foreground : numpy.ndarray
        Boolean mask.

    Returns
    -------
    float or None
        Diameter in pixels (disc in 2D, ball in 3D).
    """
    comps, n = ndimage.label(foreground, structure=np.ones((3,) * foreground.ndim))
    sizes = np.bincount(comps.ravel())[1:]
    sizes = sizes[sizes > 0].astype(np.float64)
    if n < 3 or len(sizes) < 3:
        return None
    radii = (
        (3.0 * sizes / (4.0 * np.pi)) ** (1 / 3) if foreground.ndim == 3 else np.sqrt(sizes / np.pi)
    )
    return 2.0 * float(np.percentile(radii, 50))


def cellpose_instances(
    flows: np.ndarray,
    foreground: np.ndarray,
    *,
    flow_threshold: float = 0.4,
    diameter: float = 0.0,
    diam_mean: float = 30.0,
    spacing_zyx: Sequence[float] | None = None,
) -> np.ndarray:
    """Network flows (5x unit scale) and a foreground mask -> instance labels.

    Parameters
    ----------
    flows : numpy.ndarray
        ``(ndim, *shape)`` predicted flows in axis order (y, x) / (z, y, x), 5x unit scale.
    foreground : numpy.ndarray
        Boolean mask of the pixels to follow.
    flow_threshold : float
        Flow-error threshold (``<= 0`` disables the check).
    diameter : float
        Cell diameter in pixels (``<= 0``: estimated from the foreground).
    diam_mean : float
        Diameter the model was trained at.
    spacing_zyx : sequence of float, optional
        Voxel size per axis (ones by default).

    Returns
    -------
    numpy.ndarray
        int32 labels, 0 = background.
    """
    shape = foreground.shape
    sp = tuple(spacing_zyx) if spacing_zyx is not None else (1.0,) * len(shape)
    empty = np.zeros(shape, dtype=np.int32)
    if not foreground.any():
        return empty
    if diameter <= 0:
        diameter = estimate_diameter(foreground) or diam_mean
    scale = float(diam_mean) / float(diameter)
    rescaled = abs(scale - 1.0) > 1e-3
    if rescaled:
        work = tuple(max(1, round(s * scale)) for s in shape)
        flows = np.stack([_resize(f, work, 1).astype(np.float32) for f in flows])
        foreground = _resize(foreground.astype(np.float32), work, 1) > 0.5
        if not foreground.any():
            return empty
    n_steps = 200 if rescaled else max(1, round(200 / scale))
    unit = (flows * foreground / FLOW_SCALE).astype(np.float32)
    starts = np.stack(np.nonzero(foreground), axis=1)
    ends = follow_flows(unit, starts, n_steps, sp)
    labels = sink_labels(ends, starts, foreground.shape)
    if flow_threshold > 0 and labels.max() > 0:
        labels = remove_bad_flow_masks(labels, unit, flow_threshold, sp)
    if rescaled:
        labels = _resize(labels, shape, 0).astype(np.int32)
    return labels


def _resize(arr: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    return resize(
        arr, tuple(shape), order=order, preserve_range=True, anti_aliasing=False, mode="edge"
    )


def _foreground(
    raw: np.ndarray, sl: dict[str, slice], flows: np.ndarray, thresh: float
) -> np.ndarray:
    for name in FOREGROUND_CHANNELS:
        if name in sl:
            prob = raw[sl[name]][0]
            return prob < thresh if name == "B" else prob > thresh
    return np.sqrt((flows**2).sum(axis=0)) > 0


def decode(raw: np.ndarray, channels: Sequence[str], cfg: Config) -> np.ndarray:
    """Cellpose flow channels (+ foreground) -> instance labels.

    Parameters
    ----------
    raw : numpy.ndarray
        ``(C, *spatial)`` prediction after the model's postprocessing.
    channels : sequence of str
        Channel names in order, e.g. ``["F", "Gv", "Gh"]`` or ``["F", "Gv", "Gh", "Gz"]``.
    cfg : Config
        Reads ``PROBLEM.INSTANCE_SEG.CELLPOSE.*``, ``DATA_CHANNELS_EXTRA_OPTS`` and
        ``DATA.TEST.RESOLUTION``.

    Returns
    -------
    numpy.ndarray
        Integer labels of the spatial shape.
    """
    ndim = raw.ndim - 1
    sl = channel_slices(channels, raw.shape[0], ndim)
    needed = FLOW_CHANNELS[-ndim:]
    require(sl, needed, "gradient-flow")
    gradient_type = extra_opts(cfg, "Gv").get("gradient_type", "cellpose")
    if gradient_type == "omnipose":
        require(sl, ("Db",), "gradient-flow (Omnipose)")
        settings = {
            "mask_threshold": float(cfg.get(IS + "OMNIPOSE.MASK_THRESHOLD", 0.0)),
            "flow_threshold": float(cfg.get(IS + "OMNIPOSE.FLOW_THRESHOLD", 0.4)),
            "niter": int(cfg.get(IS + "OMNIPOSE.NITER", 0)),
        }
        labels = decode_channels(raw, [sl[n] for n in needed], sl["Db"], settings)
        return as_labels(labels)
    if gradient_type != "cellpose":
        raise ConfigError(
            f"{IS}DATA_CHANNELS_EXTRA_OPTS Gv gradient_type {gradient_type!r} must be 'cellpose' "
            "or 'omnipose'."
        )
    flows = np.stack([raw[sl[name]][0] for name in needed]).astype(np.float32)
    fg = _foreground(raw, sl, flows, float(cfg.get(IS + "CELLPOSE.FG_THRESH", 0.5)))
    labels = cellpose_instances(
        flows,
        fg,
        flow_threshold=float(cfg.get(IS + "CELLPOSE.FLOW_THRESHOLD", 0.4)),
        diameter=float(cfg.get(IS + "CELLPOSE.DIAMETER", 0.0)),
        diam_mean=float(cfg.get(IS + "CELLPOSE.DIAM_MEAN", 30.0)),
        spacing_zyx=spacing(cfg, ndim),
    )
    return as_labels(labels)

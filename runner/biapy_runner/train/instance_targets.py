"""Instance-segmentation training targets: BiaPy 3.7.1's channels made from a label image.

Following BiaPy's ``labels_into_channels`` (data/pre_processing.py) with the per-channel options
that BiaPy's ``check_configuration`` fills in (``PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS``;
:func:`channel_options`): the channel list and layout (``We`` and the labels ``I`` appended as
BiaPy appends them), the binary channels (F, B, C and M are ``decode.channels.channel_targets``'s,
shared with the evaluation of GT-derived channels; P here) and the recomputation of the
geometry-dependent channels after augmentation (:func:`refresh_from_labels`). The distance and
vector maps are ``train.instance_maps``'.

BiaPy's one known slip is not reproduced: with ``erosion``/``dilation`` options on ``B`` BiaPy
writes the modified *instances* into the background channel; here ``B`` stays the background
(the complement of the modified instances), which is what the watershed reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from biapy_runner.config.load import Config
from biapy_runner.config.schema import TRAINABLE_INSTANCE_CHANNELS
from biapy_runner.decode.channels import channel_targets, parse_channels
from biapy_runner.decode.layout import IS, extra_opts
from biapy_runner.errors import ConfigError
from biapy_runner.train.instance_maps import (
    FLOWS,
    distance_to_boundary,
    distance_to_centre,
    distance_to_neighbour,
    flow_maps,
    hover_maps,
    object_boxes,
    signed_distance,
    touching,
    unet_border_weights,
)

#: channels whose GT is a probability (BCE); the rest are regressed
BINARY_CHANNELS = frozenset({"F", "B", "C", "P", "T", "A", "M"})
#: channels whose values depend on the geometry's directions (BiaPy recomputes them from the
#: augmented labels instead of warping them)
DIRECTIONAL = frozenset({"Gv", "Gh", "Gz", "H", "V", "Z", "R", "A"})
#: channels make_instance_targets builds (the runner's one list: config.schema's)
SUPPORTED = tuple(c for c in TRAINABLE_INSTANCE_CHANNELS if c != "I")


def channel_options(cfg: Config, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-channel options with BiaPy 3.7.1's defaults (``check_configuration``) filled in.

    Parameters
    ----------
    cfg : Config
        Reads ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS`` and ``PROBLEM.NDIM``.
    names : sequence of str
        The channels.

    Returns
    -------
    dict
        Channel name -> options (``erosion``/``dilation`` for F and B, ``type``/``dilation``/
        ``erosion`` for P, ``mode`` for C, ``val_type``/``act``/``mask_values`` for Db, ...).
    """
    ndim = 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2
    out: dict[str, dict[str, Any]] = {}
    hvz = next((extra_opts(cfg, c) for c in ("Z", "V", "H") if extra_opts(cfg, c)), {})
    flows = next((extra_opts(cfg, c) for c in FLOWS if extra_opts(cfg, c)), {})
    for name in names:
        given = extra_opts(cfg, name)
        if name in ("F", "B"):
            opts = {"erosion": 0, "dilation": 0}
        elif name == "P":
            opts = {"type": "centroid", "skeleton_mode": "full", "dilation": 1, "erosion": 0}
        elif name == "C":
            contour = cfg.get(IS + "DATA_CONTOUR_MODE", "thick")
            opts = {"mode": contour or "thick"}
        elif name in ("H", "V", "Z"):
            given = hvz
            opts = {"norm": True, "act": "linear"}
        elif name in FLOWS:
            given = flows
            opts = {"gradient_type": "cellpose"}
        elif name == "Db":
            val_type = given.get("val_type", "norm")
            act = given.get("act", "") or ("sigmoid" if val_type == "norm" else "")
            opts = {"val_type": val_type, "act": act, "mask_values": val_type != "omnipose"}
            given = {k: v for k, v in given.items() if k not in ("val_type", "act")}
        elif name == "Dc":
            opts = {"type": "centroid", "norm": True, "mask_values": True}
        elif name == "Dn":
            opts = {"closing_size": 3, "norm": True, "mask_values": True, "decline_power": 3}
        elif name == "D":
            opts = {"act": "tanh"}
        elif name == "R":
            opts = {"nrays": 32 if ndim == 2 else 96, "mask_values": True}
            if given.get("nrays", "") == "":
                given = {k: v for k, v in given.items() if k != "nrays"}
        elif name == "T":
            opts = {"thickness": 2}
        else:
            opts = {}
        opts.update(given)
        out[name] = opts
    return out


def instance_channel_names(cfg: Config) -> list[str]:
    """The target channels BiaPy builds for this configuration, in order: DATA_CHANNELS, then
    ``We`` (the U-Net border weights) when ``BORDER_EXTRA_WEIGHTS`` is ``unet-like``, then ``I``
    (the instance labels, from which :func:`refresh_from_labels` recomputes the
    :func:`regenerated_channels` after a geometric augmentation; no loss reads it)."""
    names = [n for n in parse_channels(cfg.get(IS + "DATA_CHANNELS")).names if n not in ("I", "We")]
    unknown = [n for n in names if n not in SUPPORTED]
    if unknown:
        raise ConfigError(
            f"{IS}DATA_CHANNELS = {names}: training targets for {unknown} are not implemented "
            f"(implemented: {', '.join(n for n in SUPPORTED if n != 'We')})."
        )
    if cfg.get(IS + "BORDER_EXTRA_WEIGHTS", "") == "unet-like":
        names.append("We")
    if regenerated_channels(names, channel_options(cfg, names)):
        names.append("I")
    return names


def channel_slices(names: Sequence[str], options: dict[str, dict[str, Any]]) -> dict[str, slice]:
    """Where each target channel lies on the target's channel axis (``R`` takes ``nrays``)."""
    out, start = {}, 0
    for name in names:
        width = int(options.get("R", {}).get("nrays", 0)) if name == "R" else 1
        out[name] = slice(start, start + width)
        start += width
    return out


def make_instance_targets(
    labels: np.ndarray,
    names: Sequence[str],
    options: dict[str, dict[str, Any]],
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """BiaPy's instance channels of one label image, channel first.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` integer instance labels (0 = background).
    names : sequence of str
        Target channels in order (:func:`instance_channel_names`); ``R`` takes ``nrays`` channels.
    options : dict
        Per-channel options (:func:`channel_options`).
    spacing : sequence of float, optional
        Voxel size per axis for the distances (BiaPy builds its training targets with ones).

    Returns
    -------
    numpy.ndarray
        ``(C, *labels.shape)`` float32. All zeros when the image holds fewer than two distinct
        values (BiaPy's rule: only background, or only one label filling everything).
    """
    vol = np.asarray(labels)
    if np.issubdtype(vol.dtype, np.floating):
        vol = vol.astype(np.uint32)
    vol = vol.astype(np.int64, copy=False)
    sp = tuple(float(s) for s in (spacing or (1.0,) * vol.ndim))[-vol.ndim :]
    slices = channel_slices(names, options)
    out = np.zeros(
        (max((s.stop for s in slices.values()), default=0), *vol.shape), dtype=np.float32
    )
    if "I" in slices:
        out[slices["I"]] = vol
    if np.unique(vol).size <= 1:
        return out
    ids = np.unique(vol)
    ids = ids[ids > 0]
    built: dict[str, np.ndarray] = {}
    f_labels = None
    for name in names:
        opts = options.get(name, {})
        if name == "F":
            f_labels = _modified_instances(vol, ids, opts)
            built["F"] = (f_labels > 0) if f_labels is not None else vol > 0
        elif name == "B":
            modified = _modified_instances(vol, ids, opts)
            built["B"] = (modified == 0) if modified is not None else vol == 0
        elif name in ("C", "M", "I"):
            continue  # after the loop (M needs F and C); I written above
        elif name == "P":
            built["P"] = central_part(vol, ids, opts)
        elif name == "Db":
            built["Db"] = distance_to_boundary(vol, ids, opts, sp)
        elif name == "Dc":
            built["Dc"] = distance_to_centre(vol, ids, opts, sp)
        elif name == "Dn":
            built["Dn"] = distance_to_neighbour(vol, ids, opts, sp)
        elif name == "D":
            built["D"] = signed_distance(vol, ids, sp)
        elif name in ("H", "V", "Z"):
            if "H" not in built:
                built.update(hover_maps(vol, ids, bool(opts.get("norm", True)), sp))
        elif name in FLOWS:
            if name not in built:
                built.update(flow_maps(vol, str(opts.get("gradient_type", "cellpose")), sp))
        elif name == "T":
            built["T"] = touching(vol)
        elif name == "R":
            from biapy_runner.decode.stardist import ray_distances, rays

            directions = rays(int(opts["nrays"]), vol.ndim)
            # BiaPy's radial_distances normalises the rays once more (float32): same last bits
            directions = directions / (
                np.linalg.norm(directions[:, ::-1], axis=1, keepdims=True) + 1e-12
            )
            built["R"] = ray_distances(vol, directions.astype(np.float32))
        elif name == "We":
            weights_from = vol
            if "F" in names:
                weights_from = f_labels if f_labels is not None else (vol > 0).astype(np.int64)
            built["We"] = unet_border_weights(weights_from, sp)
    binary = channel_targets(
        vol, parse_channels(["C"]), str(options.get("C", {}).get("mode", "thick"))
    )
    if "C" in names or "M" in names:
        built["C"] = binary["C"]
    if "M" in names:
        built["M"] = (vol > 0) | built["C"]
    for name, where in slices.items():
        if name != "I":
            out[where] = built[name]
    return out


def refresh_from_labels(
    target: np.ndarray, names: Sequence[str], options: dict[str, dict[str, Any]]
) -> np.ndarray:
    """``target`` with its :func:`regenerated_channels` recomputed from its ``I`` channel (the
    augmented labels), as BiaPy does after a geometric augmentation; unchanged without ``I``."""
    slices = channel_slices(names, options)
    if "I" not in slices:
        return target
    labels = np.rint(target[slices["I"]][0]).astype(np.int64)
    redo = regenerated_channels([n for n in names if n != "I"], options)
    fresh = make_instance_targets(labels, redo, options)
    out = np.array(target, dtype=np.float32)
    for name, where in channel_slices(redo, options).items():
        out[slices[name]] = fresh[where]
    return out


def regenerated_channels(names: Sequence[str], options: dict[str, dict[str, Any]]) -> list[str]:
    """The channels BiaPy recomputes from the augmented labels rather than warping them
    (``instance_channel_needs_regen``): directional ones, and distances in absolute units (``Db``
    raw or omnipose, ``Dc``/``Dn`` without ``norm``)."""
    out = []
    for name in names:
        opts = options.get(name, {})
        if (
            name in DIRECTIONAL
            or name == "Db"
            and opts.get("val_type", "norm") in ("raw", "omnipose")
            or name in ("Dc", "Dn")
            and not opts.get("norm", True)
        ):
            out.append(name)
    return out


def ellipse_footprint(radii: Sequence[int]) -> np.ndarray:
    """BiaPy's ellipse footprint (``generate_ellipse_footprint``): semi-axes ``radii`` per axis."""
    shape = [int(r) for r in radii]
    center = (np.array(shape) / 2).astype(int)
    ranges = [
        np.arange(center[i] - shape[i], center[i] + shape[i] + 1)
        if shape[i] > 0
        else np.array([center[i]])
        for i in range(len(shape))
    ]
    grids = np.meshgrid(*ranges, indexing="ij")
    scale = [1 if s == 0 else s for s in shape]
    dist = sum(((grids[d] - center[d]) ** 2) / scale[d] ** 2 for d in range(len(shape)))
    return np.asarray(dist <= 1)


def _radii(value: Any, ndim: int) -> list[int] | None:
    radii = [int(value)] * ndim if isinstance(value, (int, np.integer)) else [int(v) for v in value]
    return radii if any(r > 0 for r in radii) else None


def _dilate(mask: np.ndarray, radii: list[int]) -> np.ndarray:
    return ndimage.binary_dilation(mask, ellipse_footprint(radii), border_value=0)


def _erode(mask: np.ndarray, radii: list[int]) -> np.ndarray:
    return ndimage.binary_erosion(mask, ellipse_footprint(radii), border_value=1)


def _modified_instances(
    vol: np.ndarray, ids: np.ndarray, opts: dict[str, Any]
) -> np.ndarray | None:
    """Each instance dilated then eroded (``dilation``/``erosion`` radii), later labels on top;
    None when neither is set."""
    dil = _radii(opts.get("dilation", 0), vol.ndim)
    ero = _radii(opts.get("erosion", 0), vol.ndim)
    if dil is None and ero is None:
        return None
    out = np.zeros_like(vol)
    pad = max(dil or [0]) + max(ero or [0]) + 1  # the crop's own edge never touches the object
    for lb, box in zip(ids, object_boxes(vol, ids, pad=pad)):
        m = vol[box] == lb
        if dil is not None:
            m = _dilate(m, dil)
        if ero is not None:
            m = _erode(m, ero)
        out[box][m] = lb
    return out


def central_part(vol: np.ndarray, ids: np.ndarray, opts: dict[str, Any]) -> np.ndarray:
    """``P``: the voxel nearest each centroid (or the skeleton), dilated then eroded."""
    points = np.zeros(vol.shape, dtype=bool)
    if opts.get("type", "centroid") == "skeleton":
        from skimage.morphology import skeletonize

        for lb, box in zip(ids, object_boxes(vol, ids)):
            points[box] |= skeletonize(vol[box] == lb)
    else:
        for c in ndimage.center_of_mass(vol > 0, labels=vol, index=ids):
            at = tuple(round(float(v)) for v in c)  # Python's round, as BiaPy
            if all(0 <= a < n for a, n in zip(at, vol.shape)):
                points[at] = True
    dil = _radii(opts.get("dilation", 1), vol.ndim)
    if dil is not None:
        points = _dilate(points, dil)
    ero = _radii(opts.get("erosion", 0), vol.ndim)
    if ero is not None:
        points = _erode(points, ero)
    return points

"""Training targets per workflow (``PROBLEM.TYPE``), as BiaPy 3.7.1 builds them from the GT.

``make_targets(cfg, gt, image)`` turns one GT sample into what the loss compares with the net's
output, channel first: semantic class maps, instance channels (``train.instance_targets``),
detection point masks, the target image of the restoration workflows and the class index of
classification. The random parts of a sample's preparation (Noise2Void masking per crop after
augmentation, the crappified input of self-supervision) are ``train.inputs``'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from biapy_runner.config.load import Config
from biapy_runner.decode.points import PointSet
from biapy_runner.errors import InputError
from biapy_runner.train.instance_targets import (
    channel_options,
    ellipse_footprint,
    instance_channel_names,
    make_instance_targets,
)


def _ndim(cfg: Config) -> int:
    return 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2


def _spatial(arr: np.ndarray, ndim: int, what: str) -> np.ndarray:
    """``arr`` without a leading channel axis of size 1."""
    arr = np.asarray(arr)
    if arr.ndim == ndim + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != ndim:
        raise InputError(f"The {what} has shape {arr.shape}; a {ndim}D label image was expected.")
    return arr


def _channel_first(arr: np.ndarray, ndim: int) -> np.ndarray:
    arr = np.asarray(arr)
    return arr[None] if arr.ndim == ndim else arr


def semantic_target(gt: np.ndarray, n_classes: int, ignore_index: int = -1) -> np.ndarray:
    """Class map ``(1, *spatial)`` float32; masks stored as 0/255 are divided by 255 as BiaPy
    does when their maximum exceeds ``max(N_CLASSES, IGNORE_INDEX)``."""
    target = np.asarray(gt).astype(np.float32)
    if target.max(initial=0) > max(n_classes, ignore_index):
        target = target / 255.0
    return target


def detection_target(
    points: PointSet | np.ndarray,
    shape: Sequence[int],
    dilation: Sequence[int],
    n_classes: int = 2,
) -> np.ndarray:
    """BiaPy's detection mask: each point (coordinates truncated to int, outside ones skipped)
    grown by the ellipse of ``CENTRAL_POINT_DILATION``; channel 0 occupancy, and with more than
    two classes a channel 1 holding the class of the first point painted there.

    Parameters
    ----------
    points : PointSet or numpy.ndarray
        The points (``(N, ndim)`` coordinates in array order when an array, class 1).
    shape : sequence of int
        Spatial shape of the image.
    dilation : sequence of int
        Ellipse semi-axes per spatial axis (one value is used for every axis).
    n_classes : int
        ``DATA.N_CLASSES``.

    Returns
    -------
    numpy.ndarray
        ``(1 or 2, *shape)`` float32.
    """
    if isinstance(points, PointSet):
        coords, classes = points.coords, points.classes
    else:
        coords = np.asarray(points, dtype=np.float64).reshape(-1, len(shape))
        classes = np.ones(len(coords), dtype=np.int64)
    radii = list(dilation) * len(shape) if len(dilation) == 1 else list(dilation)
    footprint = ellipse_footprint(radii)
    occupancy = np.zeros(tuple(shape), dtype=bool)
    class_map = np.zeros(tuple(shape), dtype=np.float32)
    for c, cls in zip(coords.astype(np.int64), classes):
        if np.any(c < 0) or np.any(c >= np.asarray(shape)):
            continue
        seed = np.zeros(tuple(shape), dtype=bool)
        seed[tuple(c)] = True
        grown = ndimage.binary_dilation(seed, footprint)
        fresh = grown & ~occupancy
        occupancy |= grown
        class_map[fresh] = cls
    channels = [occupancy.astype(np.float32)]
    if n_classes > 2:
        channels.append(class_map)
    return np.stack(channels)


def super_resolution_target(lr: np.ndarray, hr: np.ndarray, upscaling: Sequence[int]) -> np.ndarray:
    """The HR image, checked to be the LR image's shape times ``PROBLEM.SUPER_RESOLUTION.UPSCALING``
    per spatial axis (both channel first)."""
    expected = tuple(int(s) * int(f) for s, f in zip(lr.shape[1:], upscaling))
    if tuple(hr.shape[1:]) != expected:
        raise InputError(
            f"The high-resolution target has spatial shape {tuple(hr.shape[1:])} but the input "
            f"{tuple(lr.shape[1:])} times PROBLEM.SUPER_RESOLUTION.UPSCALING {tuple(upscaling)} "
            f"is {expected}."
        )
    return hr.astype(np.float32)


def make_targets(cfg: Config, gt: Any, image: np.ndarray | None = None) -> np.ndarray:
    """The training target of one GT sample for ``cfg``'s workflow, channel first.

    Parameters
    ----------
    cfg : Config
        ``PROBLEM.TYPE``, ``PROBLEM.NDIM``, ``DATA.N_CLASSES`` and the workflow's keys.
    gt : array, PointSet or int
        SEMANTIC_SEG: class labels ``(*spatial)`` or ``(1, *spatial)``. INSTANCE_SEG: instance
        labels (with ``DATA.N_CLASSES > 2``: ``(2, *spatial)``, instances then classes).
        DETECTION: a :class:`PointSet` or ``(N, ndim)`` coordinates. SUPER_RESOLUTION,
        IMAGE_TO_IMAGE: the target image (channel first or not). DENOISING, SELF_SUPERVISED:
        ignored (the image is its own target). CLASSIFICATION: the class index.
    image : numpy.ndarray, optional
        The input image ``(C, *spatial)``: needed for DETECTION (its shape), DENOISING and
        SELF_SUPERVISED (the target) and SUPER_RESOLUTION (the shape check).

    Returns
    -------
    numpy.ndarray
        float32 ``(C_target, *spatial)``; for CLASSIFICATION an int64 scalar array.
    """
    problem = cfg.get("PROBLEM.TYPE")
    ndim = _ndim(cfg)
    n_classes = int(cfg.get("DATA.N_CLASSES"))
    if problem == "SEMANTIC_SEG":
        labels = _spatial(gt, ndim, "semantic GT")
        return semantic_target(labels, n_classes, int(cfg.get("LOSS.IGNORE_INDEX")))[None]
    if problem == "INSTANCE_SEG":
        arr = np.asarray(gt)
        classes = None
        if n_classes > 2:
            if arr.ndim != ndim + 1 or arr.shape[0] != 2:
                raise InputError(
                    f"With DATA.N_CLASSES = {n_classes} an instance GT needs two channels "
                    f"(instances, classes); got shape {arr.shape}."
                )
            arr, classes = arr[0], arr[1:].astype(np.float32)
        labels = _spatial(arr, ndim, "instance GT")
        names = instance_channel_names(cfg)
        out = make_instance_targets(labels, names, channel_options(cfg, names))
        return out if classes is None else np.concatenate([out, classes])
    if problem == "DETECTION":
        if image is None:
            raise ValueError("DETECTION targets need the image (its shape).")
        return detection_target(
            gt, image.shape[1:], cfg.get("PROBLEM.DETECTION.CENTRAL_POINT_DILATION"), n_classes
        )
    if problem in ("DENOISING", "SELF_SUPERVISED"):
        if image is None:
            raise ValueError(f"{problem} targets are the image itself: pass it.")
        source = gt if problem == "DENOISING" and gt is not None else image
        return _channel_first(source, ndim).astype(np.float32)
    if problem == "SUPER_RESOLUTION":
        hr = _channel_first(gt, ndim)
        if image is None:
            return hr.astype(np.float32)
        return super_resolution_target(image, hr, cfg.get("PROBLEM.SUPER_RESOLUTION.UPSCALING"))
    if problem == "IMAGE_TO_IMAGE":
        return _channel_first(gt, ndim).astype(np.float32)
    if problem == "CLASSIFICATION":
        return np.asarray(int(gt), dtype=np.int64)
    raise ValueError(f"PROBLEM.TYPE {problem!r} has no training targets.")

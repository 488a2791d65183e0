"""BiaPy's instance channels: parsing ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS``, what each channel
means to the watershed (BiaPy 3.7's defaults per channel set are ``config.schema.WATERSHED_DEFAULTS``)
and GT-derived targets.

The names are those of ``config.schema`` (``INSTANCE_CHANNELS``); older strings (``BC``, ``BCM``,
``BCDv2``, ...) are converted to the list form when the configuration is read. For the watershed:
``F`` foreground, ``B`` background, ``P`` central part, ``C`` contour, ``T`` touching area, ``Db``
distance to the boundary (high inside), ``Dc`` distance to the centre (low inside), ``Dn``
distance to the neighbour, ``D`` signed distance, ``H``/``V``/``Z`` HoVer-Net displacements (their
Sobel edges separate touching objects), ``A`` affinities, ``M`` CartoCell's legacy mask (model
output only: the watershed reads F and C).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from biapy_runner.config.schema import (
    INSTANCE_CHANNELS,
    LEGACY_CHANNEL_SETS,
    legacy_channels_as_list,
)
from biapy_runner.errors import ConfigError

KEY = "PROBLEM.INSTANCE_SEG.DATA_CHANNELS"

#: BiaPy 3.7's seed order: channels that make good starting seeds first (others after, by name).
SEED_ORDER = {
    name: i
    for i, name in enumerate(
        (
            "F",
            "B",
            "P",
            "C",
            "H",
            "V",
            "Z",
            "Db",
            "Dc",
            "Dn",
            "D",
            "T",
            "A",
            "E",
            "E_offset",
            "E_sigma",
            "E_seediness",
            "M",
        )
    )
}
SEED_ORDER["R"] = 999
#: Channels that are low inside the objects, as BiaPy 3.7's watershed reads them: as the first
#: seed channel they are inverted (``1 - x > th``), later ones keep ``x < th``.
SEED_LOW = frozenset({"C", "B", "T", "Dn", "Dc"})
#: Seed channels thresholded ``x > th`` when they are not the first.
SEED_HIGH = frozenset({"F", "P", "Db", "D"})
#: HoVer-Net displacement channels (combined into one Sobel edge map).
HVZ = ("H", "V", "Z")
#: Growth-mask channels that are low inside the objects (inverted when first, ``x < th`` later).
GROWTH_LOW = frozenset({"C", "B", "Dn", "Dc"})
#: Growth-mask channels thresholded ``x > th`` when they are not the first.
GROWTH_HIGH = frozenset({"F", "Db", "D"})
#: Topographic-surface channels used as they are (low inside); the others are negated.
SURFACE_LOW = frozenset({"C", "B", "Dn", "Dc"})


@dataclass(frozen=True)
class Channels:
    """The configured channels: one name per model output channel (a name may cover several)."""

    names: tuple[str, ...]

    def index(self, name: str) -> int:
        """Position of channel ``name`` in the model output."""
        return self.names.index(name)

    @property
    def foreground_channel(self) -> str | None:
        """The channel giving the probability of being inside an object (None if there is none)."""
        for name in ("F", "M", "P"):
            if name in self.names:
                return name
        return None


def parse_channels(value: Any) -> Channels:
    """Read ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS`` in either spelling; ``ConfigError`` if unknown.

    Parameters
    ----------
    value
        The configured value: a list such as ``["F", "C"]`` (an older string such as ``"BC"`` is
        read as BiaPy's converter reads it).

    Returns
    -------
    Channels
        The channel names in model-output order.
    """
    if isinstance(value, str) and value in LEGACY_CHANNEL_SETS:
        value = legacy_channels_as_list(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{KEY} must be a list of channel names such as ['F', 'C'].")
    names = tuple(str(v) for v in value)
    for name in names:
        if name not in INSTANCE_CHANNELS:
            raise ConfigError(
                f"{KEY} contains unknown channel {name!r}; BiaPy's channels are "
                f"{', '.join(INSTANCE_CHANNELS)}."
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{KEY} = {list(names)} repeats a channel.")
    return Channels(names)


def channel_targets(gt: np.ndarray, channels: Channels, contour_mode: str = "thick") -> dict:
    """Binary targets of the probability channels derived from a GT label image as BiaPy does.

    Parameters
    ----------
    gt
        Label image ``(*spatial)``.
    channels
        The configured channels.
    contour_mode
        ``find_boundaries`` mode of the contours (``dense``: the background rim of the objects).

    Returns
    -------
    dict
        Channel name -> boolean target: ``F`` and ``M`` the objects, ``B`` the background, ``C``
        the contours, ``P`` the voxel nearest each object's centroid.
    """
    from skimage.segmentation import find_boundaries

    fg = gt > 0
    out: dict[str, np.ndarray] = {}
    for name in channels.names:
        if name == "C" and contour_mode == "dense":  # the rim outside, plane by plane
            structure = ndimage.generate_binary_structure(gt.ndim, 1)
            if gt.ndim == 3:
                structure[[0, 2]] = False
            out["C"] = ndimage.binary_dilation(fg, structure) & ~fg
        elif name == "C":
            out["C"] = find_boundaries(gt, mode=contour_mode)
        elif name in ("F", "M"):
            out[name] = fg
        elif name == "B":
            out["B"] = ~fg
        elif name == "P":
            out["P"] = _centroid_points(gt)
    return out


def _centroid_points(gt: np.ndarray) -> np.ndarray:
    points = np.zeros(gt.shape, dtype=bool)
    ids = np.unique(gt)
    ids = ids[ids > 0]
    if ids.size:
        centers = ndimage.center_of_mass(np.ones_like(gt), gt, ids)
        for c in centers:
            points[_voxel(c)] = True
    return points


def _voxel(centre: Any) -> tuple[int, ...]:
    """The voxel of a centroid: each coordinate rounded as Python rounds (half to even)."""
    return tuple(round(float(v)) for v in centre)


def centroid_voxels(gt: Any, planes: int) -> np.ndarray:
    """The voxels the ``P`` target of ``channel_targets`` marks (each object's centroid,
    rounded), for a label volume read ``planes`` planes (first axis) at a time: numpy, Zarr or
    a GT read by planes; the same voxels as on the whole volume (the sums behind the centroids
    are exact integers). Returns ``(N, ndim)`` int64, one row per object."""
    from biapy_runner.decode.chunked import plane_blocks

    ndim = len(gt.shape)
    parts: list[tuple[np.ndarray, np.ndarray]] = []  # per window: ids, [count, sum per axis]
    for part in plane_blocks(int(gt.shape[0]), planes):
        window = np.asarray(gt[part])
        ids, inverse = np.unique(window, return_inverse=True)
        inverse = inverse.ravel()
        sums = [np.bincount(inverse, minlength=ids.size)]
        for axis in range(ndim):
            shape = [1] * ndim
            shape[axis] = window.shape[axis]
            start = part.start if axis == 0 else 0
            coord = np.broadcast_to(np.arange(start, start + window.shape[axis]).reshape(shape),
                                    window.shape)  # fmt: skip
            sums.append(np.bincount(inverse, weights=coord.ravel(), minlength=ids.size))
        keep = ids > 0
        parts.append((ids[keep], np.rint(np.stack(sums)[:, keep]).astype(np.int64)))
    if not parts:
        return np.zeros((0, ndim), dtype=np.int64)
    ids, inverse = np.unique(np.concatenate([i for i, _ in parts]), return_inverse=True)
    totals = np.zeros((ndim + 1, ids.size), dtype=np.int64)
    np.add.at(totals.T, inverse.ravel(), np.concatenate([s for _, s in parts], axis=1).T)
    centres = totals[1:] / totals[0]
    return np.array([_voxel(c) for c in centres.T], dtype=np.int64).reshape(-1, ndim)


def centroid_target(voxels: np.ndarray, planes: slice, shape: tuple[int, ...]) -> np.ndarray:
    """The ``P`` target over the planes ``planes`` of a volume of ``shape`` marked at the
    ``voxels`` of ``centroid_voxels``."""
    target = np.zeros((planes.stop - planes.start, *shape[1:]), dtype=bool)
    inside = voxels[(voxels[:, 0] >= planes.start) & (voxels[:, 0] < planes.stop)]
    target[(inside[:, 0] - planes.start, *inside[:, 1:].T)] = True
    return target

"""BiaPy's instance channels: parsing ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS``, what each channel
means to the watershed (BiaPy 3.7's defaults per channel set are ``config.schema.WATERSHED_DEFAULTS``)
and GT-derived targets.

Two spellings exist:

- legacy strings (BiaPy < 3.7): ``B`` binary mask of each instance without its contour, ``C``
  contour, ``M`` whole foreground mask, ``D`` distance to the contour, ``Dv2`` distance that also
  covers the background, ``P`` central points; combined as ``BC``, ``BCM``, ``BCD``, ``BCDv2``,
  ``BD``, ``BDv2``, ``BP``, ``BCP``, ``Dv2``.
- the 3.7 list form, e.g. ``["F", "C", "M"]``; the names are those of ``config.schema``
  (``INSTANCE_CHANNELS``). For the watershed: ``F`` foreground, ``B`` background, ``P`` central
  part, ``C`` contour, ``T`` touching area, ``Db`` distance to the boundary (high inside), ``Dc``
  distance to the centre (low inside), ``Dn`` distance to the neighbour, ``D`` signed distance,
  ``H``/``V``/``Z`` HoVer-Net displacements (their Sobel edges separate touching objects), ``A``
  affinities, ``M`` CartoCell's legacy mask (model output only: the watershed reads F and C).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from biapy_runner.config.schema import BINARY_CHANNELS as LIST_BINARY_CHANNELS
from biapy_runner.config.schema import (
    INSTANCE_CHANNELS,
    LEGACY_BINARY_CHANNELS,
    LEGACY_CHANNEL_SETS,
)
from biapy_runner.errors import ConfigError

KEY = "PROBLEM.INSTANCE_SEG.DATA_CHANNELS"

#: legacy channel strings the legacy watershed decodes (the vocabulary is config/schema.py's)
LEGACY_CHANNELS = {
    name: tokens
    for name, tokens in LEGACY_CHANNEL_SETS.items()
    if set(tokens) <= {"B", "C", "M", "D", "Dv2", "P"}
}

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

#: Channels whose model output is a probability (per-channel IoU against GT-derived targets).
BINARY_CHANNELS = set(LIST_BINARY_CHANNELS) | set(LEGACY_BINARY_CHANNELS)


@dataclass(frozen=True)
class Channels:
    """The configured channels: one name per model output channel, and the spelling used."""

    names: tuple[str, ...]
    legacy: bool

    def index(self, name: str) -> int:
        """Position of channel ``name`` in the model output."""
        return self.names.index(name)

    @property
    def foreground_channel(self) -> str | None:
        """The channel giving the probability of being inside an object (None if there is none)."""
        for name in ("B", "M") if self.legacy else ("F", "M", "P"):
            if name in self.names:
                return name
        return None


def parse_channels(value: Any) -> Channels:
    """Read ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS`` in either spelling; ``ConfigError`` if unknown.

    Parameters
    ----------
    value
        The configured value: a legacy string such as ``"BC"`` or a list such as ``["F", "C"]``.

    Returns
    -------
    Channels
        The channel names in model-output order.
    """
    if isinstance(value, str):
        if value in LEGACY_CHANNELS:
            return Channels(LEGACY_CHANNELS[value], legacy=True)
        raise ConfigError(
            f"{KEY} = {value!r} is not a channel set this runner can decode; use one of "
            f"{', '.join(LEGACY_CHANNELS)} or a list such as ['F', 'C']."
        )
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{KEY} must be a string such as 'BC' or a list such as ['F', 'C'].")
    names = tuple(str(v) for v in value)
    for name in names:
        if name not in INSTANCE_CHANNELS:
            raise ConfigError(
                f"{KEY} contains unknown channel {name!r}; BiaPy's channels are "
                f"{', '.join(INSTANCE_CHANNELS)}."
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{KEY} = {list(names)} repeats a channel.")
    return Channels(names, legacy=False)


def channel_targets(gt: np.ndarray, channels: Channels, contour_mode: str = "thick") -> dict:
    """Binary targets of the probability channels derived from a GT label image as BiaPy does.

    Parameters
    ----------
    gt
        Label image ``(*spatial)``.
    channels
        The configured channels.
    contour_mode
        ``find_boundaries`` mode of the contours (``dense`` = every pixel outside ``B``).

    Returns
    -------
    dict
        Channel name -> boolean target. Legacy: ``B`` = objects without their contour, ``C`` =
        contours, ``M`` = all objects, ``P`` = the voxel nearest each object's centroid. List
        form: ``F`` and ``M`` = objects, ``B`` = background, ``C`` and ``P`` as above.
    """
    from skimage.segmentation import find_boundaries

    fg = gt > 0
    out: dict[str, np.ndarray] = {}
    contour = None
    if "C" in channels.names or channels.legacy:
        mode = "thick" if contour_mode == "dense" else contour_mode
        contour = find_boundaries(gt, mode=mode) & (fg if mode != "outer" else True)
        if contour_mode == "dense":
            contour = ~(fg & ~contour)
    for name in channels.names:
        if name == "C":
            out["C"] = contour
        elif name == "M" or name == "F":
            out[name] = fg
        elif name == "B" and channels.legacy:
            out["B"] = fg & ~contour if "C" in channels.names else fg
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
            points[tuple(round(float(v)) for v in c)] = True
    return points

"""The corrupted inputs of self-supervised training, as BiaPy 3.7.1 makes them.

- :func:`n2v_mask` (DENOISING, Noise2Void; engine/denoising.py and the generator's
  ``prepare_n2v``): a stratified sample of pixels (one per box of side
  ``round(sqrt(100 / N2V_PERC_PIX))``, per channel) gets a value drawn by ``N2V_MANIPULATOR``
  from its ``N2V_NEIGHBORHOOD_RADIUS`` neighbourhood; the target holds the original values there
  and the mask (``2C`` channels), which ``train.losses.n2v_loss`` reads. With ``N2V_STRUCTMASK``
  the horizontal neighbours (4 each side) of each masked pixel get uniform values in [-2, 2)
  (structN2V; in 3D within the pixel's own plane).
- :func:`crappify` (SELF_SUPERVISED ``PRETEXT_TASK: crappify``; data/pre_processing.py):
  Gaussian noise of ``NOISE`` times the maximum, then a linear down- and up-scaling by
  ``sqrt(RESIZING_FACTOR)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError

#: a per-crop preparation: (image, target, rng) -> (image, target)
Prepare = Callable[
    [np.ndarray, "np.ndarray | None", np.random.Generator], "tuple[np.ndarray, np.ndarray]"
]

MANIPULATORS = (
    "uniform_withCP",
    "uniform_withoutCP",
    "normal_withoutCP",
    "mean",
    "median",
    "normal_additive",
    "normal_fitted",
    "identity",
)


def stratified_coords(
    shape: tuple[int, ...], box: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """One random point per box of side ``box`` tiling ``shape`` (points past the edge dropped, as
    BiaPy does; one point anywhere when none is left, where BiaPy would mask nothing)."""
    counts = [int(np.ceil(s / box)) for s in shape]
    corners = np.stack(
        np.meshgrid(*[np.arange(c) * box for c in counts], indexing="ij"), -1
    ).reshape(-1, len(shape))
    points = (corners + rng.uniform(size=corners.shape) * box).astype(np.int64)
    points = points[np.all(points < np.asarray(shape), axis=1)]
    if not len(points):  # a crop smaller than one box: one pixel anyway, so the loss is defined
        points = (rng.uniform(size=(1, len(shape))) * np.asarray(shape)).astype(np.int64)
    return tuple(points.T)


def _window(
    plane: np.ndarray, at: tuple[int, ...], radius: int
) -> tuple[np.ndarray, tuple[int, ...]]:
    """The neighbourhood of ``at`` cropped at the borders, and ``at``'s position inside it."""
    lo = [max(0, a - radius) for a in at]
    hi = [min(n, a + radius + 1) for a, n in zip(at, plane.shape)]
    return plane[tuple(slice(a, b) for a, b in zip(lo, hi))], tuple(a - b for a, b in zip(at, lo))


def _manipulated(
    plane: np.ndarray, at: tuple[int, ...], kind: str, radius: int, rng: np.random.Generator
) -> float:
    if kind == "identity":
        return float(plane[at])
    if kind == "normal_additive":
        return float(rng.normal(plane[at], radius))
    if kind == "normal_withoutCP":
        while True:
            pick = [
                int(np.clip(np.round(rng.normal(a, 4)), 0, n - 1)) for a, n in zip(at, plane.shape)
            ]
            if not any(p == a for p, a in zip(pick, at)):
                return float(plane[tuple(pick)])
    sub, centre = _window(plane, at, radius)
    if kind == "uniform_withCP":
        return float(sub[tuple(int(rng.integers(0, n)) for n in sub.shape)])
    if kind == "normal_fitted":
        return float(rng.normal(sub.mean(), sub.std()))
    others = np.ones(sub.shape, dtype=bool)
    others[centre] = False
    values = sub[others]
    if kind == "uniform_withoutCP":
        return float(values[int(rng.integers(0, values.size))])
    if kind == "mean":
        return float(values.mean())
    if kind == "median":
        return float(np.median(values))
    raise ConfigError(
        f"PROBLEM.DENOISING.N2V_MANIPULATOR {kind!r}: use one of {', '.join(MANIPULATORS)}."
    )


def n2v_mask(
    image: np.ndarray,
    rng: np.random.Generator,
    perc_pix: float = 0.198,
    manipulator: str = "uniform_withCP",
    radius: int = 5,
    structmask: bool = False,
    values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise2Void's masked input and target for one image.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, *spatial)``.
    rng : numpy.random.Generator
        The source of randomness.
    perc_pix : float
        ``N2V_PERC_PIX``: percentage of pixels masked (per 2D box: BiaPy uses the same box side
        in 3D).
    manipulator : str
        ``N2V_MANIPULATOR``.
    radius : int
        ``N2V_NEIGHBORHOOD_RADIUS``.
    structmask : bool
        ``N2V_STRUCTMASK``.
    values : numpy.ndarray, optional
        Where the target values come from (a clean GT of the image's shape, BiaPy's
        ``LOAD_GT_DATA``); the image itself by default.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The input with the masked pixels replaced ``(C, *spatial)`` float32, and the target
        ``(2C, *spatial)`` float32: original values at the masked pixels (0 elsewhere), then the
        mask.
    """
    if manipulator not in MANIPULATORS:
        raise ConfigError(
            f"PROBLEM.DENOISING.N2V_MANIPULATOR {manipulator!r}: use one of {', '.join(MANIPULATORS)}."
        )
    x = np.array(image, dtype=np.float32)
    n_channels, shape = x.shape[0], x.shape[1:]
    target = np.zeros((2 * n_channels, *shape), dtype=np.float32)
    box = int(np.round(np.sqrt(100 / perc_pix)))
    for c in range(n_channels):
        coords = stratified_coords(shape, box, rng)
        original = x[c].copy()
        replaced = [
            _manipulated(original, tuple(int(v) for v in p), manipulator, radius, rng)
            for p in zip(*coords)
        ]
        target[(c, *coords)] = original[coords] if values is None else np.asarray(values)[c][coords]
        target[(n_channels + c, *coords)] = 1.0
        x[(c, *coords)] = replaced
        if structmask:
            _struct_mask(x[c], coords, rng)
    return x, target


def _struct_mask(
    plane: np.ndarray, coords: tuple[np.ndarray, ...], rng: np.random.Generator
) -> None:
    """structN2V's horizontal mask: x offsets -4..4 (not 0) of each point get U[-2, 2)."""
    offsets = np.array([d for d in range(-4, 5) if d != 0])
    pts = np.stack(coords, -1)
    hit = np.repeat(pts, len(offsets), axis=0)
    hit[:, -1] = np.clip(hit[:, -1] + np.tile(offsets, len(pts)), 0, plane.shape[-1] - 1)
    plane[tuple(hit.T)] = rng.uniform(size=len(hit)) * 4 - 2


def n2v_from_config(
    cfg: Config, image: np.ndarray, rng: np.random.Generator, values: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`n2v_mask` with ``PROBLEM.DENOISING.N2V_*``."""
    key = "PROBLEM.DENOISING."
    return n2v_mask(
        image,
        rng,
        float(cfg.get(key + "N2V_PERC_PIX")),
        str(cfg.get(key + "N2V_MANIPULATOR")),
        int(cfg.get(key + "N2V_NEIGHBORHOOD_RADIUS")),
        bool(cfg.get(key + "N2V_STRUCTMASK")),
        values,
    )


def crappify(
    image: np.ndarray, rng: np.random.Generator, resizing_factor: float, noise: float
) -> np.ndarray:
    """BiaPy's crappify of a channel-first image: Gaussian noise (std ``noise`` times the maximum,
    clipped to [0, max]; none when ``noise`` is 0), then a linear resize to ``1/sqrt(factor)`` of
    each spatial side and back; the input's dtype.
    """
    from skimage.transform import resize

    x = np.asarray(image)
    out = x.astype(np.float64)
    if noise > 0:
        top = float(x.max())
        out = (
            np.clip(out + rng.normal(0, noise * top, x.shape), 0, top)
            .astype(x.dtype)
            .astype(np.float64)
        )
    small = (x.shape[0], *(int(s / np.sqrt(resizing_factor)) for s in x.shape[1:]))
    kw = {
        "order": 1,
        "mode": "reflect",
        "clip": True,
        "preserve_range": True,
        "anti_aliasing": False,
    }
    out = resize(resize(out, small, **kw), x.shape, **kw)
    return out.astype(x.dtype)


def ssl_input(cfg: Config, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The input of SELF_SUPERVISED training: crappified (``PRETEXT_TASK: crappify``) or the image
    itself (``masking``: the masked autoencoder masks inside the model)."""
    key = "PROBLEM.SELF_SUPERVISED."
    if cfg.get(key + "PRETEXT_TASK") == "crappify":
        return crappify(
            image, rng, float(cfg.get(key + "RESIZING_FACTOR")), float(cfg.get(key + "NOISE"))
        )
    return np.asarray(image)


def prepare_for(cfg: Config) -> Prepare | None:
    """The per-crop preparation after augmentation, ``(image, target, rng) -> (image, target)``:
    Noise2Void masking for DENOISING (the target rebuilt: the augmented image's values, or the
    GT's with ``PROBLEM.DENOISING.LOAD_GT_DATA``, then the mask); None for the other workflows (SELF_SUPERVISED's crappified input is made once per raw
    image with :func:`ssl_input`, before normalisation, as BiaPy does)."""
    if cfg.get("PROBLEM.TYPE") != "DENOISING":
        return None

    use_gt = bool(cfg.get("PROBLEM.DENOISING.LOAD_GT_DATA"))

    def n2v(
        image: np.ndarray, target: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return n2v_from_config(cfg, image, rng, values=target if use_gt else None)

    return n2v

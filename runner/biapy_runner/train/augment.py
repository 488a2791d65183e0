"""Training-time data augmentation with BiaPy 3.7.1's ``AUGMENTOR.*`` keys.

``Augmenter.from_config(cfg)`` reads the keys; ``augmenter(image, target, rng)`` transforms one
channel-first sample ``(C, *spatial)`` (normalised, as BiaPy augments after normalising) and its
target the same way: geometric transforms move both (the image interpolated linearly, the target
nearest-neighbour so label and class values survive), intensity transforms touch the image only.
Each enabled transform is rolled against its own ``*_PROB`` with ``rng`` (a
``numpy.random.Generator``) in BiaPy's order (data/generators/pair_base_data_generator.py), so a
seed fixes the result. A target on another grid (super-resolution's HR image) follows the
geometric transforms on its own grid; a target without spatial axes (a class index) is left alone.

Where BiaPy 3.7.1 slips, the intent is implemented: the elastic field is the same for image and
target (BiaPy draws a second one for the mask), ROT90 is an exact quarter turn (BiaPy folds it
into the interpolating rotation), Gaussian blur does not mix channels.

Which keys are implemented is ``config.schema.IMPLEMENTED_AUGMENTOR`` (``config.support``
refuses the others when training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from scipy import ndimage

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError

Array = np.ndarray
Pair = tuple[Array, "Array | None"]
#: a transform: (image, target, rng) -> (image, target)
Transform = Callable[[Array, "Array | None", np.random.Generator], Pair]
#: BiaPy's AFFINE_MODE -> scipy.ndimage mode (its affine warp maps "symmetric" to "mirror")
AFFINE_MODES = {"constant": "constant", "reflect": "reflect", "wrap": "wrap", "symmetric": "mirror"}
#: BiaPy's E_MODE (OpenCV border modes) -> scipy.ndimage mode
ELASTIC_MODES = {
    "constant": "constant",
    "reflect": "mirror",
    "symmetric": "reflect",
    "wrap": "grid-wrap",
    "edge": "nearest",
    "nearest": "nearest",
}


def _moves_with(image: Array, target: Array | None) -> bool:
    """Whether ``target`` has the image's spatial axes (possibly on another grid)."""
    return target is not None and target.ndim == image.ndim


# --------------------------------------------------------------------------- geometric


def flip(axis: int) -> Transform:
    """Flip along spatial axis ``axis`` counted from the end (-1 x, -2 y, -3 z)."""

    def apply(image: Array, target: Array | None, rng: np.random.Generator) -> Pair:
        image = np.flip(image, axis=axis)
        if _moves_with(image, target):
            target = np.flip(target, axis=axis)
        return image, target

    return apply


def rot90(image: Array, target: Array | None, rng: np.random.Generator) -> Pair:
    """Rotate the (y, x) plane by 90, 180 or 270 degrees (180 only when the plane is not square)."""
    k = int(rng.integers(1, 4)) if image.shape[-1] == image.shape[-2] else 2
    image = np.rot90(image, k, axes=(-2, -1))
    if _moves_with(image, target):
        target = np.rot90(target, k, axes=(-2, -1))
    return image, target


def _affine(arr: Array, angle: float, scale_xy: float, scale_z: float, order: int, mode: str) -> Array:
    """BiaPy's ``affine_transform``: in-plane rotation by ``angle`` degrees and scaling about the
    centre, output on the same grid; integer arrays are clipped to their range."""
    ndim = arr.ndim - 1
    th = np.deg2rad(angle)
    c, s = np.cos(th), np.sin(th)
    if ndim == 3:
        rinv = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
        sinv = np.diag([1.0 / scale_z, 1.0 / scale_xy, 1.0 / scale_xy])
    else:
        rinv = np.array([[c, s], [-s, c]])
        sinv = np.diag([1.0 / scale_xy, 1.0 / scale_xy])
    matrix = sinv @ rinv
    centre = (np.asarray(arr.shape[1:], dtype=np.float64) - 1.0) / 2.0
    offset = centre - matrix @ centre
    out = np.stack(
        [
            ndimage.affine_transform(
                ch.astype(np.float32), matrix, offset=offset, order=order, mode=mode, cval=0.0, prefilter=False
            )
            for ch in arr
        ]
    )
    if not np.issubdtype(arr.dtype, np.floating):
        out = np.clip(out, arr.min(), arr.max())
    return out.astype(arr.dtype)


@dataclass(frozen=True)
class AffineStep:
    """Zoom and random rotation rolled separately and applied in one warp, as BiaPy does."""

    zoom: tuple[float, float] | None
    zoom_prob: float
    zoom_in_z: bool
    rotation: tuple[float, float] | None
    rotation_prob: float
    mode: str

    def __call__(self, image: Array, target: Array | None, rng: np.random.Generator) -> Pair:
        """Apply the rolled zoom/rotation (nothing when neither is rolled)."""
        scale, angle = 1.0, 0.0
        if self.zoom is not None and rng.uniform() < self.zoom_prob:
            scale = float(rng.uniform(*self.zoom))
        if self.rotation is not None and rng.uniform() < self.rotation_prob:
            angle = float(rng.uniform(*self.rotation))
        if abs(scale - 1.0) <= 1e-3 and angle % 360.0 == 0.0:
            return image, target
        scale_z = scale if self.zoom_in_z else 1.0
        image = _affine(image, angle, scale, scale_z, 1, self.mode)
        if _moves_with(image, target):
            target = _affine(target, angle, scale, scale_z, 0, self.mode)
        return image, target


def elastic(
    image: Array,
    target: Array | None,
    rng: np.random.Generator,
    alpha: tuple[float, float],
    sigma: float,
    mode: str,
) -> Pair:
    """Elastic deformation: one smoothed random (y, x) displacement field (alpha drawn in
    ``E_ALPHA``, smoothing ``E_SIGMA``), shared by every z plane, channel and the target."""
    h, w = image.shape[-2:]
    if sigma < 3.0:
        ksize = 3.3 * sigma
    elif sigma < 5.0:
        ksize = 2.9 * sigma
    else:
        ksize = 2.6 * sigma
    pad = int(max(ksize, 5))
    pad += 1 - pad % 2
    a = float(rng.uniform(*alpha)) if isinstance(alpha, (tuple, list)) else float(alpha)
    field_ = rng.uniform(-1, 1, size=(2, h + 2 * pad, w + 2 * pad)).astype(np.float32)
    dx, dy = (ndimage.gaussian_filter(f, sigma, mode="nearest")[pad:-pad, pad:-pad] * a for f in field_)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    coords = np.stack([yy - dy, xx - dx])

    def warp(arr: Array, order: int) -> Array:
        planes = arr.reshape(-1, h, w)
        out = np.stack(
            [ndimage.map_coordinates(p.astype(np.float32), coords, order=order, mode=mode, cval=0.0) for p in planes]
        )
        return out.reshape(arr.shape).astype(arr.dtype)

    image = warp(image, 1)
    if target is not None and target.shape[1:] == image.shape[1:]:
        target = warp(target, 0)
    return image, target


def shift(image: Array, target: Array | None, rng: np.random.Generator, span: tuple[float, float], mode: str) -> Pair:
    """Translate (y, x) by a fraction drawn in ``SHIFT_RANGE`` of each side (whole pixels)."""
    frac = float(rng.uniform(*span))

    def move(arr: Array, order: int) -> Array:
        h, w = arr.shape[-2:]
        offsets = (0,) * (arr.ndim - 2) + (int(round(frac * h)), int(round(frac * w)))
        return ndimage.shift(arr, offsets, order=order, mode=mode, cval=0.0, prefilter=False).astype(arr.dtype)

    image = move(image, 1)
    if _moves_with(image, target):
        target = move(target, 0)
    return image, target


# --------------------------------------------------------------------------- intensity


def _image_only(fn: Callable[[Array, np.random.Generator], Array]) -> Transform:
    def apply(image: Array, target: Array | None, rng: np.random.Generator) -> Pair:
        return fn(image, rng), target

    return apply


def brightness(image: Array, rng: np.random.Generator, span: tuple[float, float]) -> Array:
    """Add a value drawn in ``BRIGHTNESS_FACTOR``."""
    lo, hi = sorted(float(v) for v in span)
    return image if lo == hi == 0.0 else image + np.float32(rng.uniform(lo, hi))


def contrast(image: Array, rng: np.random.Generator, span: tuple[float, float]) -> Array:
    """Multiply by ``1 + f``, ``f`` drawn in ``CONTRAST_FACTOR``."""
    lo, hi = sorted(float(v) for v in span)
    return image if lo == hi == 0.0 else image * np.float32(1.0 + rng.uniform(lo, hi))


def gamma_contrast(image: Array, rng: np.random.Generator, span: tuple[float, float]) -> Array:
    """``clip(x, 0, 1) ** g``, ``g`` drawn in ``GC_GAMMA``."""
    return np.clip(image, 0, 1) ** np.float32(rng.uniform(*span))


def _noise_range(image: Array) -> tuple[float, float]:
    """scikit-image's ``random_noise`` clipping range: [-1, 1] for signed data, else [0, 1]."""
    return (-1.0, 1.0) if image.min() < 0 else (0.0, 1.0)


def gaussian_noise(
    image: Array, rng: np.random.Generator, mean: float, var: float, from_image: bool
) -> Array:
    """Additive Gaussian noise (``GAUSSIAN_NOISE_MEAN``/``_VAR``, or the image's own mean and
    variance times U(0.9, 1.1)), clipped as scikit-image's ``random_noise``."""
    if from_image:
        mean, var = float(image.mean()), float(image.var()) * float(rng.uniform(0.9, 1.1))
    lo, hi = _noise_range(image)
    noisy = image + rng.normal(mean, np.sqrt(var), image.shape).astype(np.float32)
    return np.clip(noisy, lo, hi).astype(np.float32)


def poisson_noise(image: Array, rng: np.random.Generator) -> Array:
    """Poisson noise with scikit-image's ``random_noise`` scaling (distinct values rounded up to a
    power of two)."""
    lo, hi = _noise_range(image)
    shifted = image + 1.0 if lo < 0 else image
    vals = 2 ** np.ceil(np.log2(max(len(np.unique(image)), 1)))
    out = rng.poisson(np.clip(shifted, 0, None) * vals) / float(vals)
    out = out - 1.0 if lo < 0 else out
    return np.clip(out, lo, hi).astype(np.float32)


def salt_and_pepper(image: Array, rng: np.random.Generator, amount: float, salt_fraction: float) -> Array:
    """Set a fraction ``amount`` of the values to the high (salt, with probability
    ``salt_fraction``) or low value (pepper) of scikit-image's range."""
    lo, hi = _noise_range(image)
    out = image.copy()
    hit = rng.uniform(size=image.shape) < amount
    salt = rng.uniform(size=image.shape) < salt_fraction
    out[hit & salt] = hi
    out[hit & ~salt] = lo
    return out


def missing_sections(
    image: Array, rng: np.random.Generator, iterations: tuple[int, int], channel_prob: float
) -> Array:
    """Blank thick random lines (set to the plane's mean): per channel in 2D, per z plane of each
    channel in 3D, never in two consecutive planes."""
    from skimage.draw import line

    it = int(rng.integers(iterations[0], iterations[1]))
    out = image.copy()
    h, w = out.shape[-2:]
    if h < 3 or w < 3:
        return out
    groups = [out] if out.ndim == 3 else list(out)  # (planes, H, W): the channels, or z per channel
    for group in groups:
        i = 0
        while i < len(group):
            if rng.uniform() < channel_prob:
                if rng.uniform() < 0.5:
                    r0, c0, r1, c1 = 0, int(rng.integers(1, w - 1)), h - 1, int(rng.integers(1, w - 1))
                else:
                    r0, c0, r1, c1 = int(rng.integers(1, h - 1)), 0, int(rng.integers(1, h - 1)), w - 1
                mask = np.zeros((h, w), dtype=bool)
                mask[line(r0, c0, r1, c1)] = True
                mask = ndimage.binary_dilation(mask, iterations=it)
                group[i][mask] = group[i].mean()
                i += 2
            i += 1
    return out


def gaussian_blur(image: Array, rng: np.random.Generator, span: tuple[float, float]) -> Array:
    """Gaussian blur of the spatial axes, sigma drawn in ``G_SIGMA``."""
    sigma = float(rng.uniform(*span))
    return ndimage.gaussian_filter(image, sigma=(0,) + (sigma,) * (image.ndim - 1)).astype(np.float32)


def median_blur(image: Array, rng: np.random.Generator, span: tuple[int, int]) -> Array:
    """Median filter of odd size ``k`` drawn in ``MB_KERNEL`` over (y, x) (not z, not channels)."""
    k = int(rng.integers(span[0], span[1] + 1))
    k += 1 - k % 2
    if k <= 1:
        return image
    return ndimage.median_filter(image, size=(1,) * (image.ndim - 2) + (k, k))


def dropout(image: Array, rng: np.random.Generator, span: tuple[float, float]) -> Array:
    """Zero a fraction, drawn in ``DROP_RANGE``, of the pixels (all channels of a pixel)."""
    p = float(rng.uniform(*span))
    keep = rng.binomial(1, 1.0 - p, size=image.shape[1:]).astype(image.dtype)
    return image * keep[None]


def grayscale(image: Array, rng: np.random.Generator) -> Array:
    """Replace the 3 channels by their mean."""
    if image.shape[0] != 3:
        raise ValueError(f"AUGMENTOR.GRAYSCALE needs 3-channel (RGB) images, got {image.shape[0]} channel(s).")
    return np.repeat(image.mean(axis=0, keepdims=True), 3, axis=0)


def channel_shuffle(image: Array, rng: np.random.Generator) -> Array:
    """Permute the channels."""
    return image[rng.permutation(image.shape[0])]


# --------------------------------------------------------------------------- the augmenter


@dataclass
class Augmenter:
    """The configured transforms, each with its probability, in BiaPy's order."""

    steps: list[tuple[str, float, Transform]] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: Config) -> Augmenter:
        """Transforms enabled by ``AUGMENTOR.*`` (none when ``AUGMENTOR.ENABLE`` is false).

        Parameters
        ----------
        cfg : Config
            The configuration.

        Returns
        -------
        Augmenter
        """
        if not cfg.get("AUGMENTOR.ENABLE"):
            return cls([])
        ndim = 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2
        get: Callable[[str], Any] = lambda key: cfg.get("AUGMENTOR." + key)  # noqa: E731
        steps: list[tuple[str, float, Transform]] = []

        def add(flag: str, prob_key: str | None, transform: Transform) -> None:
            if get(flag):
                steps.append((flag, 1.0 if prob_key is None else float(get(prob_key)), transform))

        def intensity(flag: str, fn: Callable[..., Array], **kw: Any) -> None:
            add(flag, flag + "_PROB", _image_only(partial(fn, **kw)))

        affine_mode = _mode(get("AFFINE_MODE"), AFFINE_MODES, "AUGMENTOR.AFFINE_MODE")
        if cfg.get("PROBLEM.TYPE") == "SUPER_RESOLUTION" and get("ELASTIC"):
            raise ConfigError(
                "AUGMENTOR.ELASTIC is not implemented for SUPER_RESOLUTION training (the target is "
                "on another grid); set it to False."
            )
        if ndim == 3:
            add("ZFLIP", "ZFLIP_PROB", flip(-3))
        if get("ZOOM") or get("RANDOM_ROT"):
            steps.append(
                (
                    "ZOOM/RANDOM_ROT",
                    1.0,
                    AffineStep(
                        tuple(get("ZOOM_RANGE")) if get("ZOOM") else None,
                        float(get("ZOOM_PROB")),
                        bool(get("ZOOM_IN_Z")),
                        tuple(get("RANDOM_ROT_RANGE")) if get("RANDOM_ROT") else None,
                        float(get("RANDOM_ROT_PROB")),
                        affine_mode,
                    ),
                )
            )
        add("ROT90", "ROT90_PROB", rot90)
        intensity("GRAYSCALE", grayscale)
        intensity("CHANNEL_SHUFFLE", channel_shuffle)
        intensity("BRIGHTNESS", brightness, span=tuple(get("BRIGHTNESS_FACTOR")))
        intensity("CONTRAST", contrast, span=tuple(get("CONTRAST_FACTOR")))
        intensity("GAMMA_CONTRAST", gamma_contrast, span=tuple(get("GC_GAMMA")))
        intensity(
            "GAUSSIAN_NOISE",
            gaussian_noise,
            mean=float(get("GAUSSIAN_NOISE_MEAN")),
            var=float(get("GAUSSIAN_NOISE_VAR")),
            from_image=bool(get("GAUSSIAN_NOISE_USE_INPUT_IMG_MEAN_AND_VAR")),
        )
        intensity("POISSON_NOISE", poisson_noise)
        intensity("SALT", salt_and_pepper, amount=float(get("SALT_AMOUNT")), salt_fraction=1.0)
        intensity("PEPPER", salt_and_pepper, amount=float(get("PEPPER_AMOUNT")), salt_fraction=0.0)
        intensity(
            "SALT_AND_PEPPER",
            salt_and_pepper,
            amount=float(get("SALT_AND_PEPPER_AMOUNT")),
            salt_fraction=float(get("SALT_AND_PEPPER_PROP")),
        )
        intensity(
            "MISSING_SECTIONS",
            missing_sections,
            iterations=tuple(get("MISSP_ITERATIONS")),
            channel_prob=float(get("MISSP_CHANNEL_PB")),
        )
        add(
            "ELASTIC",
            "ELASTIC_PROB",
            partial(
                elastic,
                alpha=tuple(get("E_ALPHA")),
                sigma=float(get("E_SIGMA")),
                mode=_mode(get("E_MODE"), ELASTIC_MODES, "AUGMENTOR.E_MODE"),
            ),
        )
        add("SHIFT", "SHIFT_PROB", partial(shift, span=tuple(get("SHIFT_RANGE")), mode=affine_mode))
        add("VFLIP", "VFLIP_PROB", flip(-2))
        add("HFLIP", "HFLIP_PROB", flip(-1))
        intensity("G_BLUR", gaussian_blur, span=_pair(get("G_SIGMA")))
        intensity("MEDIAN_BLUR", median_blur, span=tuple(get("MB_KERNEL")))
        intensity("DROPOUT", dropout, span=tuple(get("DROP_RANGE")))
        return cls(steps)

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def names(self) -> list[str]:
        """The enabled transforms, in the order they are tried."""
        return [name for name, _, _ in self.steps]

    def __call__(self, image: Array, target: Array | None, rng: np.random.Generator) -> Pair:
        """Augment one sample.

        Parameters
        ----------
        image : numpy.ndarray
            ``(C, *spatial)``, normalised; computed as float32.
        target : numpy.ndarray or None
            ``(C_t, *spatial)`` (or on a finer grid); a target without spatial axes is returned
            as it is.
        rng : numpy.random.Generator
            The source of randomness.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None)
            Contiguous arrays; the image float32, the target in its own dtype.
        """
        image = np.asarray(image, dtype=np.float32)
        for _, prob, transform in self.steps:
            if prob >= 1.0 or rng.uniform() < prob:
                image, target = transform(image, target, rng)
        image = np.ascontiguousarray(image, dtype=np.float32)
        if target is not None:
            target = np.ascontiguousarray(target)
        return image, target


def _mode(value: str, table: dict[str, str], key: str) -> str:
    if value not in table:
        raise ConfigError(f"{key} = {value!r}: use one of {', '.join(table)}.")
    return table[value]


def _pair(value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    return float(value[0]), float(value[1])

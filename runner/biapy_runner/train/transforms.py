"""The transforms of training-time augmentation (``train.augment.Augmenter`` chains them).

Channel-first arrays ``(C, *spatial)``. Geometric transforms ``(image, target, rng) -> (image,
target)`` move the image (linear interpolation) and a target with spatial axes (nearest
neighbour; on its own grid when it is finer, as super-resolution's); intensity transforms
``(image, rng) -> image`` follow BiaPy 3.7.1's definitions (data/generators/augmentors.py), drawing
from ``rng``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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


def _affine(
    arr: Array, angle: float, scale_xy: float, scale_z: float, order: int, mode: str
) -> Array:
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
                ch.astype(np.float32),
                matrix,
                offset=offset,
                order=order,
                mode=mode,
                cval=0.0,
                prefilter=False,
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
    dx, dy = (
        ndimage.gaussian_filter(f, sigma, mode="nearest")[pad:-pad, pad:-pad] * a for f in field_
    )
    yy, xx = np.meshgrid(
        np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij"
    )
    coords = np.stack([yy - dy, xx - dx])

    def warp(arr: Array, order: int) -> Array:
        planes = arr.reshape(-1, h, w)
        out = np.stack(
            [
                ndimage.map_coordinates(
                    p.astype(np.float32), coords, order=order, mode=mode, cval=0.0
                )
                for p in planes
            ]
        )
        return out.reshape(arr.shape).astype(arr.dtype)

    image = warp(image, 1)
    if target is not None and target.shape[1:] == image.shape[1:]:
        target = warp(target, 0)
    return image, target


def shift(
    image: Array,
    target: Array | None,
    rng: np.random.Generator,
    span: tuple[float, float],
    mode: str,
) -> Pair:
    """Translate (y, x) by a fraction drawn in ``SHIFT_RANGE`` of each side (whole pixels)."""
    frac = float(rng.uniform(*span))

    def move(arr: Array, order: int) -> Array:
        h, w = arr.shape[-2:]
        offsets = (0,) * (arr.ndim - 2) + (round(frac * h), round(frac * w))
        return ndimage.shift(
            arr, offsets, order=order, mode=mode, cval=0.0, prefilter=False
        ).astype(arr.dtype)

    image = move(image, 1)
    if _moves_with(image, target):
        target = move(target, 0)
    return image, target


# --------------------------------------------------------------------------- intensity


def image_only(fn: Callable[[Array, np.random.Generator], Array]) -> Transform:
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


def salt_and_pepper(
    image: Array, rng: np.random.Generator, amount: float, salt_fraction: float
) -> Array:
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
                    r0, c0, r1, c1 = (
                        0,
                        int(rng.integers(1, w - 1)),
                        h - 1,
                        int(rng.integers(1, w - 1)),
                    )
                else:
                    r0, c0, r1, c1 = (
                        int(rng.integers(1, h - 1)),
                        0,
                        int(rng.integers(1, h - 1)),
                        w - 1,
                    )
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
    return ndimage.gaussian_filter(image, sigma=(0,) + (sigma,) * (image.ndim - 1)).astype(
        np.float32
    )


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
        raise ValueError(
            f"AUGMENTOR.GRAYSCALE needs 3-channel (RGB) images, got {image.shape[0]} channel(s)."
        )
    return np.repeat(image.mean(axis=0, keepdims=True), 3, axis=0)


def channel_shuffle(image: Array, rng: np.random.Generator) -> Array:
    """Permute the channels."""
    return image[rng.permutation(image.shape[0])]


# --------------------------------------------------------------------------- the augmenter

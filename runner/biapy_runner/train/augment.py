"""Training-time data augmentation with BiaPy 3.7.1's ``AUGMENTOR.*`` keys.

``Augmenter.from_config(cfg)`` reads the keys; ``augmenter(image, target, rng)`` transforms one
channel-first sample ``(C, *spatial)`` and its target the same way: geometric transforms move
both (image linearly interpolated, target nearest-neighbour so label values survive), intensity
transforms touch the image only. Each enabled transform is rolled against its own ``*_PROB`` with
``rng`` (a ``numpy.random.Generator``), in BiaPy's order, so a seed fixes the result.

Which keys are implemented is ``config.schema.IMPLEMENTED_AUGMENTOR`` (``config.support`` refuses
the others when training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biapy_runner.config.load import Config

Array = np.ndarray
#: a transform: (image, target, rng) -> (image, target)
Transform = Callable[[Array, "Array | None", np.random.Generator], "tuple[Array, Array | None]"]


def _spatial_axes(image: Array) -> tuple[int, ...]:
    return tuple(range(1, image.ndim))


def _same_grid(image: Array, target: Array | None) -> bool:
    return target is not None and target.ndim == image.ndim and target.shape[1:] == image.shape[1:]


def flip(axis: int) -> Transform:
    """Flip along spatial axis ``axis`` counted from the end (-1 x, -2 y, -3 z)."""

    def apply(image: Array, target: Array | None, rng: np.random.Generator) -> tuple[Array, Array | None]:
        image = np.flip(image, axis=axis)
        if target is not None and target.ndim == image.ndim:
            target = np.flip(target, axis=axis)
        return image, target

    return apply


def rot90(image: Array, target: Array | None, rng: np.random.Generator) -> tuple[Array, Array | None]:
    """Rotate the (y, x) plane by 90, 180 or 270 degrees (180 only when the plane is not square)."""
    square = image.shape[-1] == image.shape[-2]
    k = int(rng.integers(1, 4)) if square else 2
    image = np.rot90(image, k, axes=(-2, -1))
    if target is not None and target.ndim == image.ndim:
        target = np.rot90(target, k, axes=(-2, -1))
    return image, target


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

        def add(flag: str, prob_key: str, transform: Transform) -> None:
            if get(flag):
                steps.append((flag, float(get(prob_key)), transform))

        add("ROT90", "ROT90_PROB", rot90)
        add("VFLIP", "VFLIP_PROB", flip(-2))
        add("HFLIP", "HFLIP_PROB", flip(-1))
        if ndim == 3:
            add("ZFLIP", "ZFLIP_PROB", flip(-3))
        return cls(steps)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(
        self, image: Array, target: Array | None, rng: np.random.Generator
    ) -> tuple[Array, Array | None]:
        """Augment one sample.

        Parameters
        ----------
        image : numpy.ndarray
            ``(C, *spatial)``.
        target : numpy.ndarray or None
            ``(C_t, *spatial)`` (a target without spatial axes, e.g. a class index, is returned as
            it is).
        rng : numpy.random.Generator
            The source of randomness.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None)
            Contiguous copies.
        """
        for _, prob, transform in self.steps:
            if rng.uniform() < prob:
                image, target = transform(image, target, rng)
        image = np.ascontiguousarray(image)
        if target is not None:
            target = np.ascontiguousarray(target)
        return image, target

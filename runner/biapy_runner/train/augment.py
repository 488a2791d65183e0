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

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError
from biapy_runner.train.transforms import (
    AFFINE_MODES,
    ELASTIC_MODES,
    AffineStep,
    Array,
    Pair,
    Transform,
    brightness,
    channel_shuffle,
    contrast,
    dropout,
    elastic,
    flip,
    gamma_contrast,
    gaussian_blur,
    gaussian_noise,
    grayscale,
    image_only,
    median_blur,
    missing_sections,
    poisson_noise,
    rot90,
    salt_and_pepper,
    shift,
)

#: the transforms that move pixels (after which BiaPy recomputes directional instance channels)
GEOMETRIC = frozenset({"ZFLIP", "ZOOM/RANDOM_ROT", "ROT90", "ELASTIC", "SHIFT", "VFLIP", "HFLIP"})


@dataclass
class Augmenter:
    """The configured transforms, each with its probability, in BiaPy's order; ``regenerate``
    recomputes a target's geometry-dependent channels after a geometric transform (instance
    targets carrying their labels, ``train.instance_targets.refresh_from_labels``)."""

    steps: list[tuple[str, float, Transform]] = field(default_factory=list)
    regenerate: Callable[[Array], Array] | None = None

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
        get: Callable[[str], Any] = lambda key: cfg.get("AUGMENTOR." + key)
        steps: list[tuple[str, float, Transform]] = []

        def add(flag: str, prob_key: str | None, transform: Transform) -> None:
            if get(flag):
                steps.append((flag, 1.0 if prob_key is None else float(get(prob_key)), transform))

        def intensity(flag: str, fn: Callable[..., Array], **kw: Any) -> None:
            add(flag, flag + "_PROB", image_only(partial(fn, **kw)))

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
        return cls(steps, _regeneration(cfg))

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
        moved = False
        for name, prob, transform in self.steps:
            if prob >= 1.0 or rng.uniform() < prob:
                before = image
                image, target = transform(image, target, rng)
                moved = moved or (name in GEOMETRIC and image is not before)
        if moved and self.regenerate is not None and target is not None:
            target = self.regenerate(target)
        image = np.ascontiguousarray(image, dtype=np.float32)
        if target is not None:
            target = np.ascontiguousarray(target)
        return image, target


def _regeneration(cfg: Config) -> Callable[[Array], Array] | None:
    """For instance targets carrying their labels (channel ``I``): recompute the directional and
    absolute-distance channels from the moved labels, as BiaPy does."""
    if cfg.get("PROBLEM.TYPE") != "INSTANCE_SEG":
        return None
    from biapy_runner.train.instance_targets import (
        channel_options,
        instance_channel_names,
        refresh_from_labels,
    )

    names = instance_channel_names(cfg)
    if "I" not in names:
        return None
    return partial(refresh_from_labels, names=names, options=channel_options(cfg, names))


def _mode(value: str, table: dict[str, str], key: str) -> str:
    if value not in table:
        raise ConfigError(f"{key} = {value!r}: use one of {', '.join(table)}.")
    return table[value]


def _pair(value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    return float(value[0]), float(value[1])

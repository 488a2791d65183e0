"""Training data: normalised images with their targets, patches, the validation split, batches.

BiaPy's DATA.TRAIN / DATA.VAL keys: every training image is normalised once by the caller
(``DATA.NORMALIZATION``, whole-image statistics as in inference) and paired with its target (made
by the caller from the GT). An epoch either visits the grid of ``DATA.PATCH_SIZE`` crops of every
image (``DATA.TRAIN.OVERLAP`` / ``PADDING``; BiaPy's default) or draws one random crop per image
(``DATA.TRAIN.EXTRACT_RANDOM_PATCH``, optionally centred on foreground with
``DATA.TRAIN.PROBABILITY_MAP``), ``DATA.TRAIN.REPLICATE`` times over. Validation comes from
``DATA.VAL.*`` images or is split from the training crops (``DATA.VAL.FROM_TRAIN`` +
``SPLIT_TRAIN``, shuffled with ``SYSTEM.SEED`` when ``DATA.VAL.RANDOM``: scikit-learn's
``train_test_split`` permutation, as BiaPy does). Validation crops are a grid, never augmented.

Targets may be larger than their image by an integer factor (super-resolution): crops are then
taken at the matching place of the target. A target without spatial axes (a class) goes with
every crop of its image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError, InputError

#: ``(image patch, target patch, rng) -> (image patch, target patch)``: augmentation of one crop
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass
class Sample:
    """One training image, normalised, channel first ``(C, *spatial)`` float32, with its
    target (channel first, spatial shape an integer multiple of the image's, or no spatial
    axes for a class) and its name stem for messages."""

    stem: str
    image: np.ndarray
    target: np.ndarray

    @property
    def spatial(self) -> tuple[int, ...]:
        """The image's spatial shape."""
        return tuple(self.image.shape[1:])

    @property
    def scale(self) -> tuple[int, ...] | None:
        """Target size / image size per spatial axis (None for a target without spatial axes)."""
        if self.target.ndim <= 1:
            return None
        return tuple(t // i for t, i in zip(self.target.shape[1:], self.spatial))


@dataclass(frozen=True)
class Crop:
    """One crop of one sample: its index and the patch's origin (None: drawn at random)."""

    sample: int
    origin: tuple[int, ...] | None = None


def patch_shape(cfg: Config) -> tuple[int, ...]:
    """DATA.PATCH_SIZE's spatial part (its last entry is the channel count)."""
    return tuple(int(v) for v in cfg.get("DATA.PATCH_SIZE"))[:-1]


def make_sample(stem: str, image: np.ndarray, target: np.ndarray, cfg: Config) -> Sample:
    """A sample from an image (channel first, already normalised as DATA.NORMALIZATION says:
    normalising twice would divide twice with ``div``) and its target, the shapes checked
    against each other and DATA.PATCH_SIZE.

    Raises
    ------
    InputError
        The target's spatial shape is not the image's times an integer factor, or the image is
        smaller than the patch (and DATA.REFLECT_TO_COMPLETE_SHAPE is off).
    """
    sample = Sample(stem, np.asarray(image, dtype=np.float32),
                    np.asarray(target, dtype=np.float32))
    _check_target(sample)
    patch = patch_shape(cfg)
    if any(s < p for s, p in zip(sample.spatial, patch)):
        if not cfg.get("DATA.REFLECT_TO_COMPLETE_SHAPE"):
            raise InputError(
                f"The training image {stem} is {sample.spatial} (spatial), smaller than "
                f"DATA.PATCH_SIZE {patch} along some axis: choose a smaller DATA.PATCH_SIZE, "
                "or set DATA.REFLECT_TO_COMPLETE_SHAPE: True to pad small images by reflection."
            )
        sample = _reflect_to(sample, patch)
    return sample


def _check_target(sample: Sample) -> None:
    if sample.scale is None:
        return
    shape = sample.target.shape[1:]
    fits = len(shape) == len(sample.spatial) and all(
        t % i == 0 and t >= i for t, i in zip(shape, sample.spatial)
    )
    if not fits:
        raise InputError(
            f"The ground truth of {sample.stem} has spatial shape {tuple(shape)}, which does "
            f"not match its image {sample.spatial} (the same size, or an integer multiple for "
            "super-resolution): check that each GT file pairs with the right image."
        )


def _reflect_to(sample: Sample, patch: Sequence[int]) -> Sample:
    """Pad image and target by reflection up to ``patch`` (DATA.REFLECT_TO_COMPLETE_SHAPE)."""
    grow = [max(p - s, 0) for p, s in zip(patch, sample.spatial)]
    image = np.pad(sample.image, [(0, 0)] + [(0, g) for g in grow], mode="reflect")
    target = sample.target
    if sample.scale is not None:
        target = np.pad(target, [(0, 0)] + [(0, g * f) for g, f in zip(grow, sample.scale)],
                        mode="reflect")
    return Sample(sample.stem, image, target)


def grid_origins(
    shape: Sequence[int], patch: Sequence[int], overlap: Sequence[float] = ()
) -> list[tuple[int, ...]]:
    """The origins of a grid of ``patch`` crops covering ``shape``: steps of
    ``patch * (1 - overlap)`` (at least one pixel), the last crop of each axis flush with the
    image's end (as BiaPy's crops with the minimum overlap).

    Parameters
    ----------
    shape, patch : sequence of int
        Spatial shape of the image and of the crops (``patch <= shape`` per axis).
    overlap : sequence of float
        Overlap fraction per axis in [0, 1) (empty: none).

    Returns
    -------
    list of tuple of int
        Crop origins in C order.
    """
    axes = []
    for axis, (size, p) in enumerate(zip(shape, patch)):
        frac = float(overlap[axis]) if axis < len(overlap) else 0.0
        step = max(1, int(p * (1 - frac)))
        count = 1 if size <= p else math.ceil((size - p) / step) + 1
        axes.append(sorted({min(i * step, size - p) for i in range(count)}))
    return [tuple(int(v) for v in o) for o in np.stack(np.meshgrid(*axes, indexing="ij"), -1)
            .reshape(-1, len(axes))]


def grid_crops(samples: Sequence[Sample], patch: Sequence[int], overlap: Sequence[float]) -> list[Crop]:
    """Every grid crop of every sample, in order."""
    return [
        Crop(index, origin)
        for index, sample in enumerate(samples)
        for origin in grid_origins(sample.spatial, patch, overlap)
    ]


def split_indices(count: int, fraction: float, shuffle: bool, seed: int) -> tuple[list[int], list[int]]:
    """Training and validation indices of ``count`` items, as scikit-learn's
    ``train_test_split(test_size=fraction, shuffle=shuffle, random_state=seed)`` chooses them
    (BiaPy's split): ``ceil(fraction * count)`` for validation.

    Raises
    ------
    InputError
        Too few items to leave at least one on each side.
    """
    n_val = math.ceil(fraction * count)
    n_train = count - n_val
    if n_val < 1 or n_train < 1:
        raise InputError(
            f"DATA.VAL.SPLIT_TRAIN {fraction} of {count} training crop(s) leaves "
            f"{n_train} for training and {n_val} for validation: give more training data, a "
            "SPLIT_TRAIN between 0 and 1 that leaves both sides non-empty, or validation images "
            "(--val-images / DATA.VAL.FROM_TRAIN: False with DATA.VAL.PATH)."
        )
    if not shuffle:
        return list(range(n_train)), list(range(n_train, count))
    order = np.random.RandomState(seed).permutation(count)
    return [int(i) for i in order[n_val:]], [int(i) for i in order[:n_val]]


def foreground_weights(target: np.ndarray, w_foreground: float, w_background: float) -> np.ndarray:
    """DATA.TRAIN.PROBABILITY_MAP: the probability of each pixel to be a random crop's centre,
    ``w_foreground`` shared by the foreground pixels (any target channel > 0) and
    ``w_background`` by the others (one class alone takes everything); flat, sums to 1."""
    foreground = (target > 0).any(axis=0).ravel()
    n_fg = int(foreground.sum())
    n_bg = foreground.size - n_fg
    if n_fg == 0 or n_bg == 0:
        return np.full(foreground.size, 1.0 / foreground.size)
    return np.where(foreground, w_foreground / n_fg, w_background / n_bg) / (
        w_foreground + w_background
    )


class PatchSet:
    """Batches of crops: the training epochs (shuffled, random crops drawn, augmented) and the
    validation pass (in order, as they are).

    Parameters
    ----------
    samples : sequence of Sample
        The images and targets the crops come from.
    crops : sequence of Crop
        What one pass visits (``Crop.origin`` None: a random crop of that sample).
    patch : sequence of int
        Spatial patch shape.
    batch_size : int
        Crops per batch (the last batch of a pass may be smaller).
    transform : Transform or None
        Augmentation applied to every training crop.
    prepare : Transform or None
        Applied to every crop after augmentation, validation crops included (Noise2Void
        masking); validation draws from a generator seeded with ``seed``.
    seed : int
        SYSTEM.SEED (validation's ``prepare``).
    shuffle : bool
        Visit the training crops in a new random order every epoch
        (AUGMENTOR.SHUFFLE_TRAIN_DATA_EACH_EPOCH), else in their order.
    centre_weights : list of numpy.ndarray or None
        Per sample, the probability of each pixel to be a random crop's centre.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        crops: Sequence[Crop],
        patch: Sequence[int],
        batch_size: int,
        transform: Transform | None = None,
        prepare: Transform | None = None,
        seed: int = 0,
        shuffle: bool = True,
        centre_weights: list[np.ndarray] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.crops = list(crops)
        self.patch = tuple(patch)
        self.batch_size = batch_size
        self.transform = transform
        self.prepare = prepare
        self.seed = seed
        self.shuffle = shuffle
        self.centre_weights = centre_weights

    def __len__(self) -> int:
        """Batches per pass."""
        return math.ceil(len(self.crops) / self.batch_size)

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One training pass: crops in a random order (unless ``shuffle`` is off), random
        origins drawn, augmented."""
        order = rng.permutation(len(self.crops)) if self.shuffle else np.arange(len(self.crops))
        for start in range(0, len(order), self.batch_size):
            pairs = []
            for i in order[start:start + self.batch_size]:
                crop = self.crops[int(i)]
                origin = crop.origin or self._random_origin(crop.sample, rng)
                image, target = self._cut(crop.sample, origin)
                if self.transform is not None:
                    image, target = self.transform(image, target, rng)
                if self.prepare is not None:
                    image, target = self.prepare(image, target, rng)
                pairs.append((image, target))
            yield _stack(pairs)

    def ordered(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One validation pass: every crop in order, not augmented (``prepare`` drawing from a
        generator seeded with ``seed``: the same pass every epoch)."""
        rng = np.random.default_rng([self.seed, 1])
        for start in range(0, len(self.crops), self.batch_size):
            pairs = []
            for crop in self.crops[start:start + self.batch_size]:
                image, target = self._cut(crop.sample, crop.origin or (0,) * len(self.patch))
                if self.prepare is not None:
                    image, target = self.prepare(image, target, rng)
                pairs.append((image, target))
            yield _stack(pairs)

    def _random_origin(self, index: int, rng: np.random.Generator) -> tuple[int, ...]:
        shape = self.samples[index].spatial
        room = [s - p for s, p in zip(shape, self.patch)]
        if self.centre_weights is None:
            return tuple(int(rng.integers(0, r + 1)) for r in room)
        centre = np.unravel_index(int(rng.choice(len(self.centre_weights[index]),
                                                 p=self.centre_weights[index])), shape)
        return tuple(int(min(max(c - p // 2, 0), r)) for c, p, r in zip(centre, self.patch, room))

    def _cut(self, index: int, origin: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index]
        box = tuple(slice(o, o + p) for o, p in zip(origin, self.patch))
        image = sample.image[(slice(None), *box)]
        if sample.scale is None:
            return image, sample.target
        tbox = tuple(slice(o * f, (o + p) * f) for o, p, f in zip(origin, self.patch, sample.scale))
        return image, sample.target[(slice(None), *tbox)]


def _stack(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.ascontiguousarray(p[0], dtype=np.float32) for p in pairs])
    targets = np.stack([np.ascontiguousarray(p[1], dtype=np.float32) for p in pairs])
    return images, targets


@dataclass
class TrainingData:
    """The training and (optional) validation batches of a training run."""

    train: PatchSet
    val: PatchSet | None

    def describe(self) -> str:
        """One log line: crops and batches of each side."""
        val = "no validation"
        if self.val is not None:
            val = f"validation {len(self.val.crops)} crop(s) in {len(self.val)} batch(es)"
        return (
            f"training {len(self.train.crops)} crop(s) {self.train.patch} per epoch in "
            f"{len(self.train)} batch(es) of {self.train.batch_size}; {val}"
        )


def build_training_data(
    cfg: Config,
    train: Sequence[Sample],
    val: Sequence[Sample] = (),
    transform: Transform | None = None,
    prepare: Transform | None = None,
) -> TrainingData:
    """The training and validation batches as the configuration's DATA.TRAIN / DATA.VAL /
    TRAIN.BATCH_SIZE say.

    Parameters
    ----------
    cfg : Config
        The configuration.
    train : sequence of Sample
        Training images with their targets.
    val : sequence of Sample
        Validation images with their targets (empty: split from ``train`` when
        DATA.VAL.FROM_TRAIN, else no validation).
    transform : Transform or None
        Augmentation of the training crops.
    prepare : Transform or None
        Applied to every crop after augmentation (training and validation).

    Returns
    -------
    TrainingData
    """
    patch = patch_shape(cfg)
    batch = int(cfg.get("TRAIN.BATCH_SIZE"))
    if batch < 1:
        raise ConfigError(f"TRAIN.BATCH_SIZE is {batch}: give at least 1.")
    overlap = tuple(cfg.get("DATA.TRAIN.OVERLAP"))
    random = bool(cfg.get("DATA.TRAIN.EXTRACT_RANDOM_PATCH"))
    if random:
        crops = [Crop(i) for i in range(len(train))]
    else:
        crops = grid_crops(train, patch, overlap)
    train_samples, val_samples, val_crops = list(train), list(val), None
    if val_samples:
        val_crops = grid_crops(val_samples, patch, tuple(cfg.get("DATA.VAL.OVERLAP")))
    elif cfg.get("DATA.VAL.FROM_TRAIN") and float(cfg.get("DATA.VAL.SPLIT_TRAIN")) > 0:
        keep, held = split_indices(
            len(crops), float(cfg.get("DATA.VAL.SPLIT_TRAIN")), bool(cfg.get("DATA.VAL.RANDOM")),
            int(cfg.get("SYSTEM.SEED")),
        )
        if random:  # whole images go to validation, as a grid of crops
            val_samples = [train_samples[i] for i in held]
            val_crops = grid_crops(val_samples, patch, tuple(cfg.get("DATA.VAL.OVERLAP")))
            train_samples = [train_samples[i] for i in keep]
            crops = [Crop(i) for i in range(len(train_samples))]
        else:
            val_samples = train_samples
            val_crops = [crops[i] for i in held]
            crops = [crops[i] for i in keep]
    crops = crops * max(1, int(cfg.get("DATA.TRAIN.REPLICATE")))
    weights = None
    if random and cfg.get("DATA.TRAIN.PROBABILITY_MAP"):
        w_fg, w_bg = float(cfg.get("DATA.TRAIN.W_FOREGROUND")), float(cfg.get("DATA.TRAIN.W_BACKGROUND"))
        weights = [_centre_weights(s, w_fg, w_bg) for s in train_samples]
    seed = int(cfg.get("SYSTEM.SEED"))
    shuffle = bool(cfg.get("AUGMENTOR.SHUFFLE_TRAIN_DATA_EACH_EPOCH"))
    train_set = PatchSet(train_samples, crops, patch, batch, transform, prepare, seed, shuffle,
                         weights)
    val_set = PatchSet(val_samples, val_crops, patch, batch, None, prepare, seed) if val_crops else None
    return TrainingData(train_set, val_set)


def _centre_weights(sample: Sample, w_fg: float, w_bg: float) -> np.ndarray:
    if sample.scale is None or sample.scale != (1,) * len(sample.spatial):
        raise ConfigError(
            f"DATA.TRAIN.PROBABILITY_MAP needs a target of the image's size ({sample.stem} has "
            f"{sample.target.shape}); it serves segmentation and detection: set it to False."
        )
    return foreground_weights(sample.target, w_fg, w_bg)

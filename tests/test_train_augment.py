"""Training augmentation (train/augment.py) and the refusal of AUGMENTOR keys it lacks."""

from __future__ import annotations

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.config.schema import IMPLEMENTED_AUGMENTATIONS
from biapy_runner.config.support import augmentor_problems, check_implemented, training_problems
from biapy_runner.errors import ConfigError
from biapy_runner.train.augment import Augmenter

GEOMETRIC = ("VFLIP", "HFLIP", "ZFLIP", "ROT90", "RANDOM_ROT", "ZOOM", "SHIFT", "ELASTIC")


def augmenter(ndim: str = "2D", **flags: float) -> Augmenter:
    """An augmenter with ``flags`` enabled at the given probabilities."""
    overrides = ["AUGMENTOR.ENABLE=True", f"PROBLEM.NDIM={ndim}"]
    for flag, prob in flags.items():
        overrides += [f"AUGMENTOR.{flag}=True", f"AUGMENTOR.{flag}_PROB={prob}"]
    return Augmenter.from_config(load_config(None, overrides))


def sample(ndim: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (24, 24) if ndim == 2 else (6, 24, 24)
    image = rng.uniform(size=(2, *shape)).astype(np.float32)
    labels = np.zeros((1, *shape), dtype=np.uint16)
    labels[..., 3:10, 4:12] = 5
    labels[..., 14:22, 9:20] = 9
    return image, labels


def test_disabled_augmenter_does_nothing() -> None:
    a = Augmenter.from_config(load_config(None, ["AUGMENTOR.VFLIP=True"]))
    assert not a
    image, labels = sample()
    out, tgt = a(image, labels, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(tgt, labels)


@pytest.mark.parametrize("flag, axis", [("VFLIP", -2), ("HFLIP", -1)])
def test_flips_are_exact(flag: str, axis: int) -> None:
    image, labels = sample()
    out, tgt = augmenter(**{flag: 1.0})(image, labels, np.random.default_rng(0))
    np.testing.assert_array_equal(out, np.flip(image, axis))
    np.testing.assert_array_equal(tgt, np.flip(labels, axis))


def test_zflip_in_3d_is_exact() -> None:
    image, labels = sample(3)
    out, tgt = augmenter("3D", ZFLIP=1.0)(image, labels, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image[:, ::-1])
    np.testing.assert_array_equal(tgt, labels[:, ::-1])


def test_rot90_is_an_exact_quarter_turn_of_image_and_target() -> None:
    image, labels = sample(3)
    out, tgt = augmenter("3D", ROT90=1.0)(image, labels, np.random.default_rng(4))
    matches = [k for k in (1, 2, 3) if np.array_equal(out, np.rot90(image, k, axes=(-2, -1)))]
    assert len(matches) == 1
    np.testing.assert_array_equal(tgt, np.rot90(labels, matches[0], axes=(-2, -1)))


@pytest.mark.parametrize("ndim", [2, 3])
def test_geometric_transforms_keep_label_values_and_move_image_and_target_together(
    ndim: int,
) -> None:
    flags = {f: 1.0 for f in GEOMETRIC if ndim == 3 or f != "ZFLIP"}
    a = augmenter(f"{ndim}D", **flags)
    for seed in range(4):
        _, labels = sample(ndim, seed)
        out, tgt = a(labels.astype(np.float32), labels, np.random.default_rng(seed))
        assert out.shape == labels.shape and tgt.shape == labels.shape and tgt.dtype == labels.dtype
        assert set(np.unique(tgt)) <= {0, 5, 9}
        # the image (here the labels themselves, linearly interpolated) agrees with the target
        # wherever it is not an interpolated boundary value
        exact = np.isin(out, (0, 5, 9))
        assert exact.mean() > 0.6
        np.testing.assert_array_equal(out[exact], tgt[exact])


def test_same_seed_same_result_and_different_seeds_differ() -> None:
    every = {f: 0.5 for f in IMPLEMENTED_AUGMENTATIONS if f not in ("ZFLIP", "GRAYSCALE")}
    a = augmenter(**every)
    image, labels = sample()
    first = a(image, labels, np.random.default_rng(7))
    again = a(image, labels, np.random.default_rng(7))
    other = a(image, labels, np.random.default_rng(8))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_probabilities_are_honoured() -> None:
    a = augmenter(HFLIP=0.3)
    image, labels = sample()
    rng = np.random.default_rng(0)
    flipped = sum(not np.array_equal(a(image, labels, rng)[0], image) for _ in range(2000))
    assert abs(flipped / 2000 - 0.3) < 0.03  # 3 standard deviations: 0.03
    never = augmenter(VFLIP=0.0)
    assert all(np.array_equal(never(image, labels, rng)[0], image) for _ in range(50))


def test_intensity_transforms_leave_the_target_alone() -> None:
    flags = (
        "BRIGHTNESS",
        "CONTRAST",
        "GAMMA_CONTRAST",
        "GAUSSIAN_NOISE",
        "POISSON_NOISE",
        "SALT",
        "PEPPER",
        "SALT_AND_PEPPER",
        "MISSING_SECTIONS",
        "G_BLUR",
        "MEDIAN_BLUR",
        "DROPOUT",
        "CHANNEL_SHUFFLE",
    )
    a = augmenter(**{f: 1.0 for f in flags})
    assert a.names == ["CHANNEL_SHUFFLE", *flags[:-1]]  # BiaPy's order
    image, labels = sample()
    out, tgt = a(image, labels, np.random.default_rng(0))
    np.testing.assert_array_equal(tgt, labels)
    assert out.dtype == np.float32 and not np.allclose(out, image)


def test_brightness_contrast_gamma_known_values() -> None:
    image = np.full((1, 4, 4), 0.25, dtype=np.float32)
    cfg = [
        "AUGMENTOR.ENABLE=True",
        "AUGMENTOR.BRIGHTNESS=True",
        "AUGMENTOR.BRIGHTNESS_PROB=1.0",
        "AUGMENTOR.BRIGHTNESS_FACTOR=(0.2, 0.2)",
        "AUGMENTOR.GAMMA_CONTRAST=True",
        "AUGMENTOR.GAMMA_CONTRAST_PROB=1.0",
        "AUGMENTOR.GC_GAMMA=(2, 2)",
    ]
    out, _ = Augmenter.from_config(load_config(None, cfg))(image, None, np.random.default_rng(3))
    np.testing.assert_allclose(out, (0.25 + 0.2) ** 2, rtol=1e-6)


def test_super_resolution_target_follows_on_its_own_grid() -> None:
    a = augmenter(VFLIP=1.0, ROT90=1.0, ZOOM=1.0)
    image = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
    hr = np.kron(image, np.ones((2, 2), dtype=np.float32))  # the image upscaled by 2
    out, tgt = a(image, hr, np.random.default_rng(1))
    assert tgt.shape == (1, 16, 16)
    np.testing.assert_allclose(tgt[:, ::2, ::2], out, atol=8)  # same transform (zoom interpolates)


def test_unimplemented_augmentor_keys_are_refused_when_training() -> None:
    base = [
        "AUGMENTOR.ENABLE=True",
        "AUGMENTOR.CUTOUT=True",
        "AUGMENTOR.SHEAR_RANGE=(-5, 5)",
        "AUGMENTOR.VFLIP=True",
    ]
    check_implemented(load_config(None, base))  # inference ignores AUGMENTOR
    problems = training_problems(load_config(None, ["TRAIN.ENABLE=True", *base]))
    assert problems == [
        "AUGMENTOR.SHEAR_RANGE = (-5, 5) (data augmentation)",
        "AUGMENTOR.CUTOUT = True (data augmentation)",
    ]
    assert augmentor_problems(load_config(None, ["TRAIN.ENABLE=True", *base[1:]])) == []
    with pytest.raises(ConfigError, match="AUGMENTOR.CUTOUT = True"):
        check_implemented(load_config(None, ["TRAIN.ENABLE=True", *base]))


def test_untrainable_targets_and_losses_are_refused_when_training() -> None:
    from biapy_runner.config.support import target_problems

    inst = [
        "TRAIN.ENABLE=True",
        "PROBLEM.TYPE=INSTANCE_SEG",
        "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=['E']",
    ]
    assert target_problems(load_config(None, inst)) == [
        "PROBLEM.INSTANCE_SEG.DATA_CHANNELS = ['E'] (training targets for ['E'])"
    ]
    assert target_problems(load_config(None, ["PROBLEM.TYPE=DETECTION", "DATA.N_CLASSES=4"])) == [
        "DATA.N_CLASSES = 4 (training the class head)"
    ]
    sr = load_config(None, ["PROBLEM.TYPE=SUPER_RESOLUTION", "LOSS.TYPE=['MAE', 'SSIM']"])
    assert target_problems(sr) == [
        "LOSS.TYPE = ['MAE', 'SSIM'] (implemented for SUPER_RESOLUTION: ['MAE', 'MSE', 'CHARBONNIER', 'PCC'])"
    ]
    assert training_problems(sr) == []  # not training
    saved = [
        "PROBLEM.TYPE=INSTANCE_SEG",
        "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=['F','C','We','I']",
        "LOSS.TYPE=['CE']",
    ]
    assert target_problems(load_config(None, saved)) == []


def test_every_implemented_flag_builds_a_step() -> None:
    flags = {f: 1.0 for f in IMPLEMENTED_AUGMENTATIONS}
    names = augmenter("3D", **flags).names
    expected = {f for f in IMPLEMENTED_AUGMENTATIONS if f not in ("ZOOM", "RANDOM_ROT")} | {
        "ZOOM/RANDOM_ROT"
    }
    assert set(names) == expected


@pytest.mark.parametrize("channels", ["['F','H','V']", "['Db','R']", "['F','Gv','Gh']"])
def test_directional_instance_channels_are_recomputed_after_moving(channels: str) -> None:
    from biapy_runner.train.targets import make_targets

    cfg = load_config(
        None,
        [
            "PROBLEM.TYPE=INSTANCE_SEG",
            f"PROBLEM.INSTANCE_SEG.DATA_CHANNELS={channels}",
            "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS=[{R: {nrays: 8}}]",
            "AUGMENTOR.ENABLE=True",
            "AUGMENTOR.HFLIP=True",
            "AUGMENTOR.HFLIP_PROB=1.0",
        ],
    )
    _, labels = sample()
    target = make_targets(cfg, labels[0])
    assert target[-1].tolist() == labels[0].tolist()  # the labels ride along as the last channel
    image = np.zeros((1, 24, 24), dtype=np.float32)
    _, moved = Augmenter.from_config(cfg)(image, target, np.random.default_rng(0))
    np.testing.assert_allclose(moved, make_targets(cfg, labels[0][:, ::-1]), atol=1e-6)
    # warping alone would keep H's sign: the flipped H differs from the recomputed one
    assert channels != "['F','H','V']" or not np.allclose(np.flip(target, -1), moved)

"""Training targets per workflow (train/targets.py, train/instance_targets.py): known answers."""

from __future__ import annotations

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.train.targets import make_targets

IS = "PROBLEM.INSTANCE_SEG."


def two_squares() -> np.ndarray:
    gt = np.zeros((8, 8), dtype=np.uint16)
    gt[1:4, 1:4] = 1
    gt[4:7, 3:7] = 2
    return gt


def instance_cfg(channels: str, *extra: str):
    return load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", f"{IS}DATA_CHANNELS={channels}", *extra])


def test_semantic_target_is_the_class_map_and_255_masks_become_ones() -> None:
    cfg = load_config(None, ["PROBLEM.TYPE=SEMANTIC_SEG"])
    gt = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    out = make_targets(cfg, gt)
    assert out.shape == (1, 2, 2) and out.dtype == np.float32
    assert out[0].tolist() == [[0, 1], [1, 0]]
    cfg3 = load_config(None, ["PROBLEM.TYPE=SEMANTIC_SEG", "DATA.N_CLASSES=3"])
    assert make_targets(cfg3, np.array([[0, 2], [1, 0]]))[0].tolist() == [[0, 2], [1, 0]]


def test_instance_foreground_background_contour_and_distance() -> None:
    gt = two_squares()
    out = make_targets(instance_cfg("['F','B','C','D']"), gt)
    assert out.shape == (4, 8, 8)
    np.testing.assert_array_equal(out[0], gt > 0)
    np.testing.assert_array_equal(out[1], gt == 0)
    from skimage.segmentation import find_boundaries

    np.testing.assert_array_equal(out[2], find_boundaries(gt, mode="thick"))
    d = out[3]
    assert (d[gt == 0] == -1).all()
    # square 1 (3x3): distance 1 on the rim, 2 at the centre, divided by (2 + 1e-6)
    np.testing.assert_allclose(
        d[1:4, 1:4], np.array([[1, 1, 1], [1, 2, 1], [1, 1, 1]]) / (2 + 1e-6), rtol=1e-6
    )


def test_instance_options_take_biapy_defaults() -> None:
    from biapy_runner.train.instance_targets import channel_options

    cfg = instance_cfg(
        "['F','P','C','Db','Dc','Dn','D','H','V','R']",
        f"{IS}DATA_CHANNELS_EXTRA_OPTS=[{{H: {{norm: false}}, Db: {{val_type: raw}}}}]",
    )
    opts = channel_options(cfg, ["F", "P", "C", "Db", "Dc", "Dn", "D", "H", "V", "R"])
    assert opts["F"] == {"erosion": 0, "dilation": 0}
    assert opts["P"] == {"type": "centroid", "skeleton_mode": "full", "dilation": 1, "erosion": 0}
    assert opts["C"] == {"mode": "thick"}
    assert opts["Db"] == {"val_type": "raw", "act": "", "mask_values": True}
    assert opts["Dc"] == {"type": "centroid", "norm": True, "mask_values": True}
    assert opts["Dn"] == {"closing_size": 3, "norm": True, "mask_values": True, "decline_power": 3}
    assert opts["D"] == {"act": "tanh"}
    assert opts["H"] == opts["V"] == {"norm": False, "act": "linear"}  # the group shares options
    assert opts["R"] == {"nrays": 32, "mask_values": True}
    assert channel_options(load_config(None, ["PROBLEM.NDIM=3D"]), ["R"])["R"]["nrays"] == 96
    assert channel_options(cfg, ["Db"])["Db"]["act"] == ""
    norm = channel_options(instance_cfg("['Db']"), ["Db"])["Db"]
    assert norm == {"val_type": "norm", "act": "sigmoid", "mask_values": True}


def test_instance_central_point_is_the_centroid_grown_by_a_cross() -> None:
    gt = np.zeros((7, 7), dtype=np.int32)
    gt[1:6, 1:6] = 4
    p = make_targets(instance_cfg("['P']"), gt)[0]
    expected = np.zeros((7, 7))
    expected[3, 2:5] = expected[2:5, 3] = 1
    np.testing.assert_array_equal(p, expected)


def test_instance_targets_are_zero_without_two_values_and_refuse_unknown_channels() -> None:
    from biapy_runner.errors import ConfigError

    assert not make_targets(instance_cfg("['F','C']"), np.zeros((5, 5), int)).any()
    with pytest.raises(ConfigError, match="'A'"):
        make_targets(instance_cfg("['A']"), two_squares())


def test_instance_class_channel_is_appended_with_more_than_two_classes() -> None:
    gt = np.stack([two_squares(), (two_squares() > 0) * 2])
    out = make_targets(instance_cfg("['F','C']", "DATA.N_CLASSES=3"), gt)
    assert out.shape == (3, 8, 8)
    np.testing.assert_array_equal(out[2], gt[1])


def test_border_weights_channel_comes_last() -> None:
    out = make_targets(
        instance_cfg("['F','C']", f"{IS}BORDER_EXTRA_WEIGHTS=unet-like"), two_squares()
    )
    assert out.shape == (3, 8, 8)
    we = out[2]
    assert (we[two_squares() > 0] == 0).all() and we.max() > 5  # background between the squares


def test_detection_mask_grows_each_point_by_the_ellipse() -> None:
    from biapy_runner.decode.points import PointSet

    cfg = load_config(
        None, ["PROBLEM.TYPE=DETECTION", "PROBLEM.DETECTION.CENTRAL_POINT_DILATION=[1]"]
    )
    image = np.zeros((1, 6, 7), dtype=np.float32)
    out = make_targets(cfg, np.array([[2.7, 3.2], [9, 1]]), image)  # truncated; the second outside
    expected = np.zeros((6, 7))
    expected[2, 2:5] = expected[1:4, 3] = 1
    assert out.shape == (1, 6, 7)
    np.testing.assert_array_equal(out[0], expected)
    cfg3 = load_config(
        None,
        [
            "PROBLEM.TYPE=DETECTION",
            "DATA.N_CLASSES=3",
            "PROBLEM.DETECTION.CENTRAL_POINT_DILATION=[0]",
        ],
    )
    pts = PointSet(np.array([[1.0, 1.0], [4.0, 5.0]]), np.ones(2), np.array([2, 1]))
    out3 = make_targets(cfg3, pts, image)
    assert out3.shape == (2, 6, 7)
    assert out3[0].sum() == 2 and out3[1][1, 1] == 2 and out3[1][4, 5] == 1


def test_detection_3d_ellipse_uses_one_semi_axis_per_axis() -> None:
    cfg = load_config(
        None,
        [
            "PROBLEM.TYPE=DETECTION",
            "PROBLEM.NDIM=3D",
            "PROBLEM.DETECTION.CENTRAL_POINT_DILATION=[0, 2, 2]",
        ],
    )
    out = make_targets(cfg, np.array([[2, 4, 4]]), np.zeros((1, 5, 9, 9)))
    assert out[0, 2].sum() == 13 and out[0, 1].sum() == 0 and out[0, 3].sum() == 0


def test_restoration_and_classification_targets() -> None:
    sr = load_config(
        None, ["PROBLEM.TYPE=SUPER_RESOLUTION", "PROBLEM.SUPER_RESOLUTION.UPSCALING=(2, 2)"]
    )
    lr = np.zeros((1, 4, 5), dtype=np.uint8)
    hr = np.arange(80, dtype=np.uint16).reshape(8, 10)
    out = make_targets(sr, hr, lr)
    assert out.shape == (1, 8, 10) and out.dtype == np.float32 and out[0, 7, 9] == 79
    from biapy_runner.errors import InputError

    with pytest.raises(InputError, match="UPSCALING"):
        make_targets(sr, hr[:6], lr)
    dn = load_config(None, ["PROBLEM.TYPE=DENOISING"])
    image = np.ones((2, 4, 4), dtype=np.uint8)
    assert make_targets(dn, None, image).shape == (2, 4, 4)
    i2i = load_config(None, ["PROBLEM.TYPE=IMAGE_TO_IMAGE"])
    assert make_targets(i2i, np.ones((4, 4))).shape == (1, 4, 4)
    cl = load_config(None, ["PROBLEM.TYPE=CLASSIFICATION"])
    target = make_targets(cl, 3)
    assert target.dtype == np.int64 and int(target) == 3


def test_n2v_masks_one_pixel_per_box_and_keeps_the_original_in_the_target() -> None:
    from biapy_runner.train.inputs import n2v_mask

    image = np.random.default_rng(0).uniform(size=(2, 44, 44)).astype(np.float32)
    x, target = n2v_mask(
        image, np.random.default_rng(1), perc_pix=0.198, manipulator="mean", radius=2
    )
    assert x.shape == image.shape and target.shape == (4, 44, 44)
    mask = target[2:] > 0
    assert mask.sum(axis=(1, 2)).tolist() == [4, 4]  # box side round(sqrt(100 / 0.198)) = 22
    np.testing.assert_array_equal(target[:2][mask], image[mask])
    np.testing.assert_array_equal(x[~mask], image[~mask])
    c, y, xx = np.argwhere(mask)[0]
    window = image[c, max(0, y - 2) : y + 3, max(0, xx - 2) : xx + 3]
    expected = (window.sum() - image[c, y, xx]) / (window.size - 1)
    assert x[c, y, xx] == pytest.approx(expected, rel=1e-5)
    again = n2v_mask(image, np.random.default_rng(1), perc_pix=0.198, manipulator="mean", radius=2)
    np.testing.assert_array_equal(again[0], x)


def test_n2v_structmask_replaces_the_horizontal_neighbours() -> None:
    from biapy_runner.train.inputs import n2v_mask

    image = np.full((1, 22, 22), 5.0, dtype=np.float32)
    x, target = n2v_mask(image, np.random.default_rng(3), manipulator="identity", structmask=True)
    ((y, xx),) = np.argwhere(target[1] > 0)
    changed = np.argwhere(x[0] != 5.0)
    assert set(changed[:, 0]) == {y} and len(changed) == len(
        {min(max(xx + d, 0), 21) for d in range(-4, 5) if d}
    )
    assert np.abs(x[0][x[0] != 5.0]).max() <= 2


def test_crappify_keeps_shape_and_dtype_and_degrades() -> None:
    from biapy_runner.train.inputs import crappify, ssl_input

    rng = np.random.default_rng(0)
    image = np.zeros((1, 32, 32), dtype=np.uint8)
    image[:, ::2] = 200
    out = crappify(image, rng, resizing_factor=4, noise=0.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out == 100).all()  # halving the size averages the 0/200 stripes away
    assert crappify(image, rng, 4, 0.2).std() > 0  # noise
    cfg = load_config(
        None, ["PROBLEM.TYPE=SELF_SUPERVISED", "PROBLEM.SELF_SUPERVISED.PRETEXT_TASK=masking"]
    )
    assert ssl_input(cfg, image, rng) is image


def test_denoising_preparation_masks_each_crop_and_can_take_the_gt_values() -> None:
    from biapy_runner.train.inputs import prepare_for

    assert prepare_for(load_config(None, ["PROBLEM.TYPE=SEMANTIC_SEG"])) is None
    image = np.random.default_rng(0).uniform(size=(1, 22, 22)).astype(np.float32)
    clean = np.full((1, 22, 22), 7.0, dtype=np.float32)
    prepare = prepare_for(
        load_config(None, ["PROBLEM.TYPE=DENOISING", "PROBLEM.DENOISING.LOAD_GT_DATA=True"])
    )
    _, target = prepare(image, clean, np.random.default_rng(2))
    assert target.shape == (2, 22, 22) and target[1].sum() == 1
    assert target[0][target[1] > 0].tolist() == [7.0]


def test_n2v_masks_a_pixel_even_in_a_crop_smaller_than_a_box() -> None:
    from biapy_runner.train.inputs import n2v_mask

    image = np.ones((1, 8, 8), dtype=np.float32)
    for seed in range(20):
        _, target = n2v_mask(image, np.random.default_rng(seed))  # box side 22 > 8
        assert target[1].sum() == 1

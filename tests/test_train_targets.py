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
    np.testing.assert_allclose(d[1:4, 1:4], np.array([[1, 1, 1], [1, 2, 1], [1, 1, 1]]) / (2 + 1e-6), rtol=1e-6)

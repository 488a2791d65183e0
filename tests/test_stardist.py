"""stardist decoding: probability + ray distances of known star-convex labels decode back."""

from __future__ import annotations

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.decode import stardist as sd
from biapy_runner.errors import ConfigError
from known_labels import FIVE_BLOBS, assert_recovered, blobs, normalised_distance

IS = "PROBLEM.INSTANCE_SEG."
GT2 = FIVE_BLOBS


def test_rays_are_biapys() -> None:
    r2 = sd.rays(32, 2)
    assert np.allclose(r2[0], [0, 1]) and np.allclose(r2[8], [1, 0], atol=1e-6)  # (y, x)
    r3 = sd.rays(96, 3)
    assert r3.shape == (96, 3) and np.allclose(np.linalg.norm(r3, axis=1), 1)
    assert r3[0, 0] == pytest.approx(1 - 1 / 96)  # Fibonacci sphere, z first from the pole
    assert abs(r3.mean(axis=0)).max() < 0.02  # evenly spread


def test_ray_distances_of_a_square() -> None:
    """Half a pixel beyond the last object pixel along the ray's dominant axis (StarDist)."""
    labels = np.zeros((11, 11), dtype=np.int32)
    labels[3:8, 3:8] = 1
    dist = sd.ray_distances(labels, sd.rays(4, 2))  # +x, +y, -x, -y
    assert dist[:, 5, 5].tolist() == [2.5, 2.5, 2.5, 2.5]
    assert dist[:, 3, 3].tolist() == [4.5, 4.5, 0.5, 0.5]
    assert np.all(dist[:, labels == 0] == 0)


def test_2d_distances_decode_back() -> None:
    raw = np.concatenate([normalised_distance(GT2)[None], sd.ray_distances(GT2, sd.rays(32, 2))])
    labels = sd.decode(raw, ["Db", "R"], load_config(None, []))
    assert labels.shape == GT2.shape and labels.dtype == np.uint16
    assert min(assert_recovered(GT2, labels)) > 0.93


def test_2d_lattice_output_with_grid() -> None:
    """A stride-2 head: candidates at lattice index i sit at pixel 2i, the output is full size."""
    raw = np.concatenate([normalised_distance(GT2)[None], sd.ray_distances(GT2, sd.rays(32, 2))])
    cfg = load_config(None, [IS + "STARDIST.GRID=[2, 2]"])
    labels = sd.decode(raw[:, ::2, ::2], ["Db", "R"], cfg)
    assert labels.shape == GT2.shape
    assert min(assert_recovered(GT2, labels)) > 0.93


def test_3d_distances_decode_back() -> None:
    gt = blobs(
        (20, 40, 40), [(8, 12, 12), (10, 14, 28), (11, 28, 20)], [(6, 8, 8), (7, 7, 9), (8, 9, 9)]
    )
    prob = normalised_distance(gt)
    # distances where the probability reaches PROB_THRESH (0.4): the only ones decoding reads
    dist = sd.ray_distances(gt, sd.rays(96, 3), where=prob >= 0.4)
    labels = sd.decode(
        np.concatenate([prob[None], dist]), ["Db", "R"], load_config(None, ["PROBLEM.NDIM=3D"])
    )
    assert min(assert_recovered(gt, labels)) > 0.91


def test_non_maximum_suppression_as_biapy() -> None:
    """Discs of radius 6 at x = 15, 19 and 35 (probabilities 0.9, 0.8, 0.7).

    BiaPy 3.7.1's IoU rasterises both shapes in the intersection of their boxes padded by 2:
    15/19 overlap with IoU 67/143 = 0.4685 there; the boxes of 19 and 35 meet in one column,
    where both clipped polygons fill it: IoU 1.0 (BiaPy's numbers, checked against its code).
    """
    r = sd.rays(32, 2)
    discs = [np.array(c, np.float32) + 6 * r for c in ((20, 15), (20, 19), (20, 35))]
    assert sd.shape_iou(discs[0], discs[1], (40, 40)) == pytest.approx(67 / 143)
    assert sd.shape_iou(discs[0], discs[2], (40, 40)) == 0.0
    assert sd.shape_iou(discs[1], discs[2], (40, 40)) == 1.0
    prob = np.zeros((40, 40))
    prob[20, 15], prob[20, 19], prob[20, 35] = 0.9, 0.8, 0.7
    dist = np.full((32, 40, 40), 6.0)
    strict = sd.star_instances(prob, dist, nms_iou_thresh=0.3)
    assert np.unique(strict, return_counts=True)[1].tolist() == [1382, 113, 105]
    assert strict[20, 15] == 1 and strict[20, 35] == 2
    loose = sd.star_instances(prob, dist, nms_iou_thresh=0.7)
    assert np.unique(loose, return_counts=True)[1].tolist() == [1441, 113, 46]
    assert loose[20, 17] == 1 and loose[20, 24] == 2  # the more probable shape is painted on top
    assert sd.star_instances(prob, dist, prob_thresh=0.95).max() == 0


def test_channel_checks() -> None:
    cfg = load_config(None, [])
    with pytest.raises(ConfigError, match="one probability channel"):
        sd.decode(np.zeros((34, 8, 8), np.float32), ["Db", "F", "R"], cfg)
    with pytest.raises(ConfigError, match=r"needs the channel\(s\) \['R'\]"):
        sd.decode(np.zeros((2, 8, 8), np.float32), ["Db", "F"], cfg)
    with pytest.raises(ConfigError, match="GRID"):
        sd.decode(
            np.zeros((33, 8, 8), np.float32),
            ["Db", "R"],
            load_config(None, [IS + "STARDIST.GRID=[2, 2, 2]"]),
        )

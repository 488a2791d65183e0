"""agglomeration decoding: affinities of known labels, over-segmented, merge back to them."""

from __future__ import annotations

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.decode import agglomeration as ag
from biapy_runner.errors import ConfigError

IS = "PROBLEM.INSTANCE_SEG."


def _affinities(seg: np.ndarray, offsets: list[tuple[int, ...]]) -> np.ndarray:
    """1 where a voxel and its neighbour at the offset share an object (BiaPy's seg2aff)."""
    out = np.zeros((len(offsets), *seg.shape), dtype=np.float32)
    for c, off in enumerate(offsets):
        lo, hi, val = ag._pair_slices(off)
        out[c][val] = (seg[lo] == seg[hi]) & (seg[lo] > 0)
    return out


def _three_boxes() -> np.ndarray:
    gt = np.zeros((16, 48, 48), dtype=np.int32)
    gt[1:15, 2:23, 2:46] = 1
    gt[1:15, 25:46, 2:23] = 2
    gt[1:15, 25:46, 23:46] = 3  # touches object 2
    return gt


def test_offsets_are_interleaved_per_group() -> None:
    opts = {"z_affinities": [1, 2], "y_affinities": [1, 3], "x_affinities": [1, 9]}
    assert ag.affinity_offsets(opts, 3) == [
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (2, 0, 0),
        (0, 3, 0),
        (0, 0, 9),
    ]
    assert ag.affinity_offsets({}, 2) == [(1, 0), (0, 1)]


def test_3d_weak_bands_split_fragments_that_merge_back() -> None:
    """Affinity 0.7 across a plane in each object: two seeds per object (0.7 < FRAGMENT_SEED_TH
    0.9), merged again (0.7 >= MERGE_TH 0.5); objects never merge (boundary affinity 0)."""
    gt = _three_boxes()
    aff = _affinities(gt, ag.affinity_offsets({}, 3))
    for k, x in [(1, 24), (2, 12), (3, 34)]:
        band = gt == k
        band[:, :, :x] = False
        band[:, :, x + 1 :] = False
        aff[:, band] = np.minimum(aff[:, band], 0.7)
    frags = ag.fragments(aff)
    assert len(np.unique(frags)) - 1 == 6
    labels = ag.decode(aff, ["A"], load_config(None, ["PROBLEM.NDIM=3D"]))
    # every voxel whose affinities pass FRAGMENT_GROWTH_TH keeps its object (the first voxel of an
    # object along each axis has affinity 0 to its lower neighbour and stays background)
    expected = gt * (aff.min(axis=0) > 0.1)
    _, pairs = np.unique(np.stack([expected.ravel(), labels.ravel()]), axis=1, return_counts=True)
    assert len(pairs) == 4  # background + three one-to-one objects, nothing else
    assert labels.dtype == np.uint16 and int(labels.max()) == 3
    high = ag.decode(
        aff, ["A"], load_config(None, ["PROBLEM.NDIM=3D", IS + "AGGLOMERATION.MERGE_TH=0.8"])
    )
    assert int(high.max()) == 6


@pytest.mark.parametrize(
    ("shape", "by_2d_slices", "seed_th", "growth_th"),
    [((10, 32, 32), False, 0.7, 0.1), ((10, 32, 32), True, 0.6, 0.3), ((48, 48), False, 0.6, 0.3)],
)
def test_fragments_equal_the_standalone_definition(
    shape: tuple[int, ...], by_2d_slices: bool, seed_th: float, growth_th: float
) -> None:
    """``fragments`` (the ``A``-only watershed of decode/watershed.py, as BiaPy builds them) gives
    the labels of the definition it was written with before: seeds = face-connected parts of
    min(A) > seed_th, grown by scikit-image's watershed of the Gaussian (sigma 1, truncated at 1)
    of -min(A) inside min(A) > growth_th."""
    from scipy import ndimage
    from skimage.filters import gaussian
    from skimage.measure import label
    from skimage.segmentation import watershed

    rng = np.random.default_rng(len(shape) + by_2d_slices)
    blobs = ndimage.gaussian_filter(rng.random(shape), 2)
    blobs = (blobs - blobs.min()) / np.ptp(blobs)
    aff = np.stack([np.clip(blobs + 0.05 * rng.random(shape), 0, 1) for _ in shape])
    inside = aff.min(axis=0)
    seeds, surface = label(inside > seed_th, connectivity=1), gaussian(-inside, 1.0, truncate=1.0)
    mask = inside > growth_th
    if by_2d_slices:
        expected = np.stack([watershed(surface[z], seeds[z], mask=mask[z]) for z in range(shape[0])])
    else:
        expected = watershed(surface, seeds, mask=mask)
    frags = ag.fragments(aff, seed_th=seed_th, growth_th=growth_th, by_2d_slices=by_2d_slices)
    assert int(expected.max()) > 5
    assert np.array_equal(frags, expected)


def test_known_oversegmentation_merges_to_the_labels() -> None:
    gt = np.zeros((40, 40), dtype=np.int32)
    gt[2:20, 2:38], gt[22:38, 2:20], gt[22:38, 20:38] = 1, 2, 3
    stripes = np.indices(gt.shape)[1] // 5 + 1  # each object cut into 5-pixel x stripes
    frags = np.where(gt > 0, gt * 100 + stripes, 0)
    assert len(np.unique(frags)) - 1 == 16
    aff = _affinities(gt, ag.affinity_offsets({}, 2))
    merged = ag.agglomerate(frags, aff, ag.affinity_offsets({}, 2))
    assert np.array_equal(merged, gt)


def test_edge_score_quantile_and_support() -> None:
    hist = np.zeros(ag.BINS, dtype=np.int64)
    hist[int(0.3 * ag.BINS)] = 7
    hist[int(0.9 * ag.BINS)] = 3
    assert ag.edge_score(hist, 50) == pytest.approx((76 + 0.5) / 256)
    assert ag.edge_score(hist, 80) == pytest.approx((230 + 0.5) / 256)
    assert ag.merge([1, 2], {(1, 2): hist}, quantile=50) == {1: 1, 2: 2}
    assert ag.merge([1, 2], {(1, 2): hist}, quantile=80) == {1: 1, 2: 1}
    few = np.zeros(ag.BINS, dtype=np.int64)
    few[-1] = 3  # three voxel pairs, affinity 1
    assert ag.merge([1, 2], {(1, 2): few}, min_edge_voxels=5) == {1: 1, 2: 2}
    assert ag.merge([1, 2], {(1, 2): few}, min_edge_voxels=1) == {1: 1, 2: 1}


def test_channel_count_must_match_the_offsets() -> None:
    cfg = load_config(None, ["PROBLEM.NDIM=3D"])
    with pytest.raises(ConfigError, match="describes 3 affinity channel"):
        ag.decode(np.zeros((6, 4, 8, 8), np.float32), ["A"], cfg)

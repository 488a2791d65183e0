"""measure_objects (bounding boxes from find_objects) equals the straightforward regionprops
measurement, bit for bit, on random label images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from biapy_runner.config.load import voxel_spacing
from biapy_runner.decode import postprocess
from scipy import ndimage
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential


def _straightforward(labels, resolution=None, probability=None) -> pd.DataFrame:
    """The measurement with scikit-image's regionprops (the runner's earlier code)."""
    ndim = labels.ndim
    spacing = voxel_spacing(resolution, ndim)
    rows = []
    compact, _, original = relabel_sequential(labels)
    for rp in regionprops(compact, intensity_image=probability, spacing=spacing):
        npix = int(rp.num_pixels)
        size = npix * float(np.prod(spacing))
        row = {"label": int(original[rp.label]), "npixels": npix}
        row["volume" if ndim == 3 else "area"] = size
        for a, c in zip("zyx"[-ndim:], np.array(rp.centroid) / np.array(spacing)):
            row[f"centroid_{a}"] = float(c)
        for k, a in enumerate("zyx"[-ndim:]):
            row[f"bbox_{a}_min"] = int(rp.bbox[k])
            row[f"bbox_{a}_max"] = int(rp.bbox[k + ndim])
        row["diameter"] = float(
            max((rp.bbox[k + ndim] - rp.bbox[k]) * spacing[k] for k in range(ndim))
        )
        if probability is not None:
            row["mean_probability"] = float(rp.intensity_mean)
        row.update(postprocess._shape_props(rp.image, spacing, size))
        rows.append(row)
    return pd.DataFrame(rows)


def _random_labels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.52
    labels, _ = ndimage.label(blobs)
    ids = rng.permutation(np.arange(1, labels.max() + 1)) * 7  # sparse, unordered ids
    return np.concatenate([[0], ids])[labels].astype(np.uint32)


@pytest.mark.parametrize(
    ("shape", "resolution"),
    [((20, 40, 36), None), ((20, 40, 36), (2.0, 0.5, 0.75)), ((64, 72), (0.5, 1.5))],
)
def test_fast_measurement_equals_regionprops(shape, resolution) -> None:
    labels = _random_labels(shape, seed=len(shape))
    probability = np.random.default_rng(3).random(shape, dtype=np.float32)
    assert labels.max() > 20
    expected = _straightforward(labels, resolution, probability)
    got = postprocess.measure_objects(labels, resolution, probability)
    assert len(got) == len(np.unique(labels)) - 1
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pd.testing.assert_frame_equal(
        postprocess.measure_objects(labels, resolution),
        _straightforward(labels, resolution), check_exact=True,
    )


@pytest.mark.parametrize(
    ("shape", "resolution"),
    [((20, 40, 36), None), ((20, 40, 36), (2.0, 0.5, 0.75)), ((64, 72), (0.5, 1.5))],
)
def test_measurement_by_windows_of_planes_equals_whole(shape, resolution) -> None:
    """``measure_by_slabs`` sums each object's measurements window by window (objects far
    taller than a window, cut at every plane): the same table as on the whole volume, up to the
    order of float32 sums (marching-cubes areas, the whole volume's probability means): 1e-6.
    The probability sums come per label (``decode_instances_by_chunks`` sums them per chunk)."""
    from biapy_runner.decode.chunked import measure_by_slabs

    labels = _random_labels(shape, seed=len(shape))
    labels[(slice(None),) + (slice(3, 6),) * (len(shape) - 1)] = 5  # through every plane
    probability = np.random.default_rng(3).random(shape, dtype=np.float32)
    expected = postprocess.measure_objects(labels, resolution, probability)
    tall = int((expected["bbox_" + "zyx"[-len(shape)] + "_max"]
                - expected["bbox_" + "zyx"[-len(shape)] + "_min"]).max())  # fmt: skip
    assert tall == shape[0]
    sums = np.bincount(labels.ravel(), weights=probability.ravel())  # as decoding sums them
    for planes in (1, 3, 7, shape[0]):
        got = measure_by_slabs(labels, planes, resolution, sums)
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-6)
        exact = ["label", "npixels", *(c for c in got if c.startswith(("bbox", "centroid")))]
        pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)
    got = measure_by_slabs(labels, 4, resolution)
    pd.testing.assert_frame_equal(got, postprocess.measure_objects(labels, resolution),
                                  check_exact=False, rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("ndim", [2, 3])
def test_objects_keep_their_sparse_ids_with_or_without_background(ndim: int) -> None:
    """Ids far apart (up to 2**32 - 2) and an image with no background (one object filling it)
    are measured under their own ids, by windows of planes as whole."""
    from biapy_runner.decode.chunked import measure_by_slabs

    shape = (4, 6, 6)[-ndim:]
    full = np.full(shape, 70000, dtype=np.uint32)
    sparse = np.zeros(shape, dtype=np.uint32)
    sparse[..., :2], sparse[..., 4:] = 2**32 - 2, 9
    for labels, want in ((full, [70000]), (sparse, [9, 2**32 - 2])):
        whole = postprocess.measure_objects(labels)
        assert whole["label"].tolist() == want
        assert whole["npixels"].tolist() == [int((labels == k).sum()) for k in want]
        pd.testing.assert_frame_equal(measure_by_slabs(labels, 1), whole)

"""embeddings decoding: EmbedSeg outputs made from known labels decode back to those labels."""

from __future__ import annotations

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.decode import embeddings
from biapy_runner.errors import ConfigError
from known_labels import assert_recovered, blobs, embedseg_targets

IS = "PROBLEM.INSTANCE_SEG."
NAMES = ["E_offset", "E_sigma", "E_seediness"]


def _embedseg_output(gt: np.ndarray, grid: int, spacing: tuple, sigma: float, jitter: float = 0.0):
    """Offsets to each object's centroid (+ noise in pixels), constant sigma, seediness 1 -> 0.6."""
    rng = np.random.default_rng(0)
    coords = embeddings.coordinate_map(gt.shape, grid, spacing)
    offsets, seed = embedseg_targets(gt, coords)
    offsets += rng.uniform(-jitter, jitter, offsets.shape) / (grid - 1) * (gt > 0)
    return np.concatenate([offsets, np.full_like(coords, sigma), seed[None]]).astype(np.float32)


def test_coordinate_map_is_biapys_grid() -> None:
    coords = embeddings.coordinate_map((3, 4, 5), 11, (2.0, 0.5, 0.25))
    assert coords.shape == (3, 3, 4, 5)
    # channel 0 is x (ratio 0.25/0.5), 1 is y (ratio 1), 2 is z (ratio 2/0.5); step 1/(11-1)
    assert coords[0, 0, 0, 4] == pytest.approx(4 * 0.5 / 10)
    assert coords[1, 0, 3, 0] == pytest.approx(3 / 10)
    assert coords[2, 2, 0, 0] == pytest.approx(2 * 4 / 10)


def test_2d_embeddings_decode_back() -> None:
    gt = blobs(
        (64, 72),
        [(15, 15), (20, 40), (45, 25), (48, 55), (30, 62)],
        [(9, 9), (8, 12), (12, 8), (10, 10), (6, 6)],
    )
    raw = _embedseg_output(gt, 80, (1, 1), sigma=0.55, jitter=1.0)
    labels = embeddings.decode(raw, NAMES, load_config(None, [IS + "EMBEDSEG.GRID_SIZE=80"]))
    assert labels.shape == gt.shape and labels.dtype == np.uint16
    assert assert_recovered(gt, labels) == [1.0] * 5


def test_sigma_sets_the_clustering_bandwidth() -> None:
    """exp(10 * 0) = 1: a Gaussian half a grid wide swallows every object into the first one."""
    gt = blobs((40, 40), [(10, 10), (28, 28)], [(6, 6), (6, 6)])
    raw = _embedseg_output(gt, 40, (1, 1), sigma=0.0)
    labels = embeddings.decode(raw, NAMES, load_config(None, [IS + "EMBEDSEG.GRID_SIZE=40"]))
    assert np.array_equal(labels, (gt > 0).astype(labels.dtype))


def test_3d_anisotropic_embeddings_decode_back_with_automatic_grid(capsys) -> None:
    gt = blobs(
        (16, 40, 40), [(5, 12, 12), (8, 14, 28), (10, 28, 20)], [(4, 8, 8), (4, 7, 9), (5, 9, 9)]
    )
    raw = _embedseg_output(gt, 40, (2.0, 1.0, 1.0), sigma=0.5, jitter=0.5)
    cfg = load_config(None, ["PROBLEM.NDIM=3D", "DATA.TEST.RESOLUTION=(2,1,1)"])
    labels = embeddings.decode(raw, NAMES, cfg)
    assert "GRID_SIZE is -1: using 40" in capsys.readouterr().err
    assert assert_recovered(gt, labels) == [1.0] * 3


def test_grid_size_and_channel_checks() -> None:
    assert embeddings.grid_size_for((33, 20), -1) == 40
    assert embeddings.grid_size_for((33, 20), 1024) == 1024
    with pytest.raises(ConfigError, match="E_offset and E_sigma take 2 channels each"):
        embeddings.decode(np.zeros((4, 8, 8), np.float32), NAMES, load_config(None, []))
    with pytest.raises(ConfigError, match="E_sigma"):
        embeddings.decode(
            np.zeros((3, 8, 8), np.float32), ["E_offset", "E_seediness"], load_config(None, [])
        )

"""One slab along z predicted from the whole volume's tile grid (inference/slab.py): equal to
the whole prediction's slices, whatever the split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from biapy_runner.errors import InputError
from biapy_runner.inference.slab import parse_z_range, plan_slab, predict_slab, resolve_z_range
from biapy_runner.inference.tiling import plan_tiles, predict_tiled


def conv_net() -> torch.nn.Module:
    """A small 3D conv net with a receptive field wider than the tiles' padding (seams show)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv3d(4, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv3d(4, 2, 3, padding=1),
    ).eval()  # fmt: skip


@pytest.mark.parametrize(
    ("overlap", "scale", "splits"),
    [
        ((0.0, 0.0, 0.0), (1, 1, 1), [(0, 13), (13, 30), (30, 37)]),
        ((0.5, 0.25, 0.0), (1, 1, 1), [(0, 1), (1, 20), (20, 37)]),
        ((0.3, 0.0, 0.0), (1, 1, 1), [(0, 37)]),
    ],
)
def test_slabs_equal_the_whole_prediction(overlap, scale, splits) -> None:
    net = conv_net()
    volume = np.random.default_rng(2).standard_normal((1, 37, 20, 18)).astype(np.float32)
    plan = plan_tiles(volume.shape[1:], patch=(12, 12, 12), padding=(2, 2, 2), overlap=overlap,
                      scale=scale)  # fmt: skip
    whole = predict_tiled(volume, net, plan, batch_size=2)
    parts = []
    for start, end in splits:
        slab, rows = predict_slab(lambda a, b: volume[:, a:b], volume.shape[1:], net, plan,
                                  start, end, batch_size=3)  # fmt: skip
        assert slab.shape == (2, end - start, 20, 18)
        assert rows[0] <= max(0, start - 2) and rows[1] >= min(37, end + 2)
        parts.append(slab)
    assert np.abs(np.concatenate(parts, axis=1) - whole).max() <= 1e-5


def test_slab_reads_only_its_tiles_with_their_context() -> None:
    plan = plan_tiles((100, 16, 16), patch=(12, 16, 16), padding=(2, 0, 0), overlap=(0, 0, 0))
    slab = plan_slab((100, 16, 16), plan, 40, 60)
    # the tiles whose cores start at 40, 48 and 56, with 2 slices of context
    assert slab is not None and slab.rows == (38, 66) and slab.reflect == (0, 0)
    first = plan_slab((100, 16, 16), plan, 0, 8)
    assert first.rows == (0, 10) and first.reflect == (2, 0)


def test_z_range_parsing_follows_biapy() -> None:
    assert parse_z_range("0:64") == (0, 64)
    assert parse_z_range("64:") == (64, -1)
    assert parse_z_range("-1:-1") == (-1, -1)
    assert resolve_z_range(-1, -1, 50) == (0, 50)
    assert resolve_z_range(10, -1, 50) == (10, 50)
    for bad in ((10, 10), (20, 10), (0, 51), (-2, 5)):
        with pytest.raises(InputError, match="--z-range"):
            resolve_z_range(*bad, 50)
    with pytest.raises(InputError, match="START:END"):
        parse_z_range("10")

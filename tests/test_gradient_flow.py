"""gradient-flow decoding: Cellpose flows made from known labels decode back to those labels."""

from __future__ import annotations

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.decode import gradient_flow as gf
from biapy_runner.decode import omnipose as om
from biapy_runner.errors import ConfigError
from known_labels import FIVE_BLOBS, assert_recovered, blobs
from scipy import ndimage

IS = "PROBLEM.INSTANCE_SEG."
GT2 = FIVE_BLOBS
GT3 = blobs(
    (12, 40, 40), [(4, 12, 12), (6, 14, 28), (7, 28, 20)], [(3, 8, 8), (3.5, 7, 9), (4, 9, 9)]
)


def _cfg(*sets: str):
    return load_config(None, list(sets))


def test_diffusion_flows_are_unit_vectors_towards_the_centre() -> None:
    flows = gf.diffusion_flows(GT2)
    mag = np.sqrt((flows**2).sum(axis=0))
    off_unit = np.abs(mag - 1) > 1e-5
    assert np.array_equal(off_unit & (GT2 > 0), (mag == 0) & (GT2 > 0))  # the heat sources only
    assert np.count_nonzero(off_unit & (GT2 > 0)) <= 5
    assert np.all(mag[GT2 == 0] == 0)
    # left of object 4's centre (48, 52) the flow points right (+x), above it down (+y)
    assert flows[1, 48, 45] > 0.9 and flows[0, 41, 52] > 0.9
    # Cellpose's own flow of a correct mask has (numerically) no flow error
    assert max(gf.flow_errors(flows, GT2, (1, 1)).values()) < 1e-10


def test_2d_flows_with_foreground_decode_back() -> None:
    raw = np.concatenate([(GT2 > 0)[None].astype(np.float32), 5 * gf.diffusion_flows(GT2)])
    labels = gf.decode(raw, ["F", "Gv", "Gh"], _cfg(IS + "CELLPOSE.DIAMETER=30"))
    assert labels.shape == GT2.shape and labels.dtype == np.uint16
    assert assert_recovered(GT2, labels) == [1.0] * 5


def test_2d_background_channel_and_estimated_diameter_rescale() -> None:
    """B is inverted; DIAMETER 0 estimates 19.8 px, so the flows are resized by 30/19.8 and back."""
    assert gf.estimate_diameter(GT2 > 0) == pytest.approx(19.768, abs=1e-3)  # 4 components
    raw = np.concatenate([1 - (GT2 > 0)[None].astype(np.float32), 5 * gf.diffusion_flows(GT2)])
    labels = gf.decode(raw, ["B", "Gv", "Gh"], _cfg())
    assert min(assert_recovered(GT2, labels)) > 0.99


def test_3d_anisotropic_flows_decode_back() -> None:
    """Channel order as the model gives it; flows made with z twice as coarse as y/x."""
    flows = 5 * gf.diffusion_flows(GT3, (2, 1, 1))
    raw = np.concatenate([flows, (GT3 > 0)[None].astype(np.float32)])
    cfg = _cfg("PROBLEM.NDIM=3D", "DATA.TEST.RESOLUTION=(2,1,1)", IS + "CELLPOSE.DIAMETER=30")
    labels = gf.decode(raw, ["Gz", "Gv", "Gh", "F"], cfg)
    assert assert_recovered(GT3, labels) == [1.0] * 3


def test_distance_transform_flows_without_foreground_channel() -> None:
    """Flows from distance-transform gradients (another generator); foreground = non-zero flow."""
    gt = blobs(
        (64, 72), [(15, 15), (20, 36), (45, 25), (48, 52)], [(9, 9), (8, 9), (9, 8), (10, 10)]
    )
    edt = np.zeros(gt.shape)
    for k in range(1, 5):
        obj = gt == k
        edt[obj] = ndimage.distance_transform_edt(obj)[obj]
    grad = np.stack(np.gradient(ndimage.gaussian_filter(edt, 1))) * (gt > 0)
    grad /= np.sqrt((grad**2).sum(axis=0)) + 1e-9
    errors = gf.flow_errors(grad, gt, (1, 1))
    assert max(errors.values()) < 0.02  # close to Cellpose's own flows: nothing removed
    labels = gf.decode(
        np.concatenate([np.zeros_like(grad[:1]), 5 * grad]),
        ["Db", "Gv", "Gh"],
        _cfg(IS + "CELLPOSE.DIAMETER=30"),
    )
    assert min(assert_recovered(gt, labels)) > 0.99


def test_bad_flows_are_removed() -> None:
    """A mask whose network flow points away from its centre has error ~4 and is dropped."""
    flows = gf.diffusion_flows(GT2)
    flows[:, GT2 == 2] *= -1
    errors = gf.flow_errors(flows, GT2, (1, 1))
    assert errors[2] == pytest.approx(4.0, abs=1e-6) and errors[1] < 1e-10
    kept = gf.remove_bad_flow_masks(GT2, flows, 0.4, (1, 1))
    assert np.array_equal(np.unique(kept), [0, 1, 2, 3, 4])
    assert np.array_equal(kept == 0, (GT2 == 0) | (GT2 == 2))


OMNIPOSE = IS + "DATA_CHANNELS_EXTRA_OPTS=[{Gv: {gradient_type: omnipose}}]"


def _omnipose_output(gt: np.ndarray) -> np.ndarray:
    """Db (Omnipose distance, background -5 as BiaPy's dist_bg) then 5x the Omnipose flows."""
    dist, flows = om.distance_and_flows(gt)
    return np.concatenate([np.where(gt > 0, dist, -5.0)[None], 5 * flows])


def test_omnipose_distance_field_of_a_square() -> None:
    labels = np.zeros((13, 13), dtype=np.int32)
    labels[2:11, 2:11] = 1
    dist, flows = om.distance_and_flows(labels)
    assert dist[6, 6] == dist.max() and np.all(dist[labels == 0] == 0)
    assert dist[6, 2] < dist[6, 3] < dist[6, 4] < dist[6, 5] < dist[6, 6]
    assert flows[1, 6, 3] > 0 and flows[1, 6, 9] < 0 and flows[0, 3, 6] > 0  # towards the middle
    assert abs(flows[:, 6, 6]).max() < 1e-6  # the sink


def test_omnipose_2d_large_cells_decode_back_by_connectivity() -> None:
    raw = _omnipose_output(GT2)
    labels = gf.decode(raw, ["Db", "Gv", "Gh"], _cfg(OMNIPOSE))
    assert assert_recovered(GT2, labels) == [1.0] * 5


def test_omnipose_2d_small_cells_decode_back_by_dbscan() -> None:
    """Mean diameter 2 (ndim + 1) mean(T) = 9.5 <= 12: end points are clustered by DBSCAN."""
    gt = blobs(
        (32, 32),
        [(8, 8), (8, 20), (20, 10), (22, 24), (14, 14)],
        [(4, 4), (3, 5), (5, 3), (4, 4), (3, 3)],
    )
    raw = _omnipose_output(gt)
    assert 2 * 3 * raw[0][gt > 0].mean() == pytest.approx(9.51, abs=0.01)
    labels = gf.decode(raw, ["Db", "Gv", "Gh"], _cfg(OMNIPOSE))
    assert assert_recovered(gt, labels) == [1.0] * 5


def test_omnipose_3d_decode_back() -> None:
    raw = _omnipose_output(GT3)
    labels = gf.decode(raw, ["Db", "Gz", "Gv", "Gh"], _cfg(OMNIPOSE, "PROBLEM.NDIM=3D"))
    assert assert_recovered(GT3, labels) == [1.0] * 3


def test_omnipose_bad_flows_and_dbscan() -> None:
    _, flows = om.distance_and_flows(GT2)
    flows[:, GT2 == 3] *= -1
    errors = om.flow_errors(GT2, 5 * flows)
    assert errors[2] > 0.4 and max(np.delete(errors, 2)) < 1e-10
    pts = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [2.2, 1], [9, 9], [9, 9.5]])
    assert om.dbscan(pts, np.sqrt(2), 5).tolist() == [0, 0, 0, 0, 0, 0, -1, -1]


def test_unknown_gradient_type_and_missing_channels_are_refused() -> None:
    raw = np.zeros((3, 16, 16), dtype=np.float32)
    other = _cfg(IS + "DATA_CHANNELS_EXTRA_OPTS=[{Gv: {gradient_type: other}}]")
    with pytest.raises(ConfigError, match="'cellpose' or 'omnipose'"):
        gf.decode(raw, ["F", "Gv", "Gh"], other)
    with pytest.raises(ConfigError, match=r"Omnipose\)' needs the channel\(s\) \['Db'\]"):
        gf.decode(raw, ["F", "Gv", "Gh"], _cfg(OMNIPOSE))
    with pytest.raises(ConfigError, match=r"\['Gh'\]"):
        gf.decode(raw, ["F", "Gv", "Db"], _cfg())
    with pytest.raises(ConfigError, match="3 output channel"):
        gf.decode(raw, ["F", "Gv"], _cfg())

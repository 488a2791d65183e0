"""Instance segmentation: channel decoding, post-processing, objects table, CartoCell end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from biapy_runner.config.load import load_config
from biapy_runner.decode.channels import channel_targets, parse_channels
from biapy_runner.decode.filters import median_filter_channels
from biapy_runner.decode.postprocess import (
    clear_border,
    fill_holes,
    measure_objects,
    removal_mask,
    remove_labels,
    repair_large_blobs,
    voronoi_on_mask,
)
from biapy_runner.decode.watershed import watershed_by_channels, watershed_settings
from biapy_runner.errors import ConfigError
from biapy_runner.metrics.matching import matching
from model_sources import CONV3D_3X3X3
from scipy import ndimage
from skimage.segmentation import find_boundaries

CONFIGS = Path(__file__).parent / "data" / "configs"
CARTOCELL = CONFIGS / "training-material__biapy__conf_cartocell_swam.yaml"


def spheres(shape: tuple[int, ...], centers: list[tuple[int, ...]], radius: float) -> np.ndarray:
    """A label image of balls (1..n) of the given radius."""
    grid = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    for i, c in enumerate(centers, start=1):
        dist2 = sum((g - ci) ** 2 for g, ci in zip(grid, c))
        labels[dist2 <= radius**2] = i
    return labels


def bcm(labels: np.ndarray) -> np.ndarray:
    """Smooth B (inside without contour), C (contour) and M (foreground) probability maps."""
    fg = labels > 0
    contour = find_boundaries(labels, mode="thick") & fg
    maps = np.stack([fg & ~contour, contour, fg]).astype(np.float32)
    return np.stack([ndimage.gaussian_filter(m, 0.7) for m in maps])


BALLS_3D = [(10, 15, 15), (10, 15, 40), (25, 40, 20), (25, 45, 45), (30, 20, 50)]


@pytest.fixture(scope="module")
def balls() -> np.ndarray:
    return spheres((40, 64, 64), BALLS_3D, 7)


def fcm_decode(raw: np.ndarray, *sets: str):
    """BiaPy 3.7's watershed of an F+C+M prediction (BCM in older BiaPy)."""
    names = ["F", "C", "M"][: raw.shape[0]]
    channels = parse_channels(names)
    cfg = load_config(
        None,
        [
            "PROBLEM.TYPE=INSTANCE_SEG",
            f"PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[{', '.join(names)}]",
            *sets,
        ],
    )
    return watershed_by_channels(raw, channels, watershed_settings(cfg, channels))


def test_fcm_decoding_finds_every_ball(balls: np.ndarray) -> None:
    result = fcm_decode(bcm(balls))
    assert result.labels.dtype == np.uint16
    assert result.n_seeds == 5 and result.labels.max() == 5
    assert result.thresholds["growth F"] == pytest.approx(result.thresholds["seed F"] / 2)
    for r in matching(balls, result.labels, (0.5, 0.75)):
        assert r.stats["tp"] == 5 and r.stats["fp"] == 0


def test_older_bcm_configuration_decodes_the_same(balls: np.ndarray) -> None:
    """``BCM`` with manual DATA_MW_TH_* (BiaPy < 3.6.6) is read as F+C+M with those seeds."""
    cfg = load_config(
        None,
        ["PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=BCM"],
    )
    channels = parse_channels(cfg.get("PROBLEM.INSTANCE_SEG.DATA_CHANNELS"))
    assert channels.names == ("F", "C", "M") and parse_channels("BCM") == channels
    result = watershed_by_channels(bcm(balls), channels, watershed_settings(cfg, channels))
    (r,) = matching(balls, result.labels, (0.5,))
    assert r.stats["tp"] == 5


def test_two_touching_discs_in_2d_are_split() -> None:
    labels = spheres((40, 60), [(20, 18), (20, 40)], 11)  # overlapping discs: the second wins
    result = fcm_decode(bcm(labels)[:2])
    assert result.labels.max() == 2
    (r,) = matching(labels, result.labels, (0.5,))
    assert r.stats["tp"] == 2


def test_small_seeds_removed_before_watershed(balls: np.ndarray) -> None:
    raw = bcm(balls)
    raw[0, 2, 2, 2] = raw[2, 2, 2, 2] = 1.0  # a one-voxel spurious seed
    keep = fcm_decode(raw)
    ws = "PROBLEM.INSTANCE_SEG.WATERSHED."
    drop = fcm_decode(raw, f"{ws}DATA_REMOVE_BEFORE_MW=True", f"{ws}DATA_REMOVE_SMALL_OBJ_BEFORE=5")
    assert keep.n_seeds == 6 and drop.n_seeds == 5


def test_seed_erosion_shrinks_seeds_but_growth_restores_objects(balls: np.ndarray) -> None:
    ws = "PROBLEM.INSTANCE_SEG.WATERSHED."
    result = fcm_decode(
        bcm(balls), f"{ws}SEED_MORPH_SEQUENCE=[erode]", f"{ws}SEED_MORPH_RADIUS=[2]"
    )
    (r,) = matching(balls, result.labels, (0.5,))
    assert r.stats["tp"] == 5
    with pytest.raises(ConfigError, match="SEED_MORPH"):
        fcm_decode(bcm(balls), f"{ws}SEED_MORPH_SEQUENCE=[erode]")


def test_channel_parsing_errors() -> None:
    assert parse_channels("BCDv2").names == ("F", "C", "D")
    assert parse_channels(["F", "C"]).names == ("F", "C")
    with pytest.raises(ConfigError, match="DATA_CHANNELS"):
        parse_channels("XYZ")
    with pytest.raises(ConfigError, match="unknown channel 'Q'"):
        parse_channels(["F", "Q"])
    fc = parse_channels(["F", "C"])
    cfg = load_config(
        None, ["PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[F, C]"]
    )
    with pytest.raises(ConfigError, match="3 channels"):
        watershed_by_channels(np.zeros((3, 8, 8)), fc, watershed_settings(cfg, fc))


def test_channel_targets_follow_biapy_definitions() -> None:
    gt = np.zeros((8, 8), np.uint8)
    gt[1:6, 1:6] = 2
    t = channel_targets(gt, parse_channels(["F", "C", "M"]))
    assert t["M"].sum() == t["F"].sum() == 25
    assert t["C"].sum() == 16 + 20  # thick: the inner ring and the outer ring (no corners)
    dense = channel_targets(gt, parse_channels(["F", "C"]), "dense")
    assert dense["C"].sum() == 20 and not (dense["C"] & (gt > 0)).any()  # the rim outside
    lst = channel_targets(gt, parse_channels(["F", "B"]))
    assert lst["F"].sum() == 25 and lst["B"].sum() == 64 - 25


def test_voronoi_fills_the_mask_with_the_nearest_label() -> None:
    labels = np.zeros((1, 10), np.uint16)
    labels[0, 1] = 1
    labels[0, 8] = 2
    mask = np.zeros((1, 10), np.float32)
    mask[0, 0:10] = 1.0
    mask[0, 9] = 0.0  # outside the mask
    out = voronoi_on_mask(labels, mask, threshold=0.5)
    assert out.tolist() == [[1, 1, 1, 1, 1, 2, 2, 2, 2, 0]]
    # anisotropy: with z voxels 10 times larger, label 2 one slice away loses to label 1
    lab3 = np.zeros((2, 1, 8), np.uint16)
    lab3[0, 0, 0] = 1
    lab3[1, 0, 4] = 2
    ones = np.ones((2, 1, 8), np.float32)
    assert voronoi_on_mask(lab3, ones, 0.5)[0, 0].tolist() == [1, 1, 1, 2, 2, 2, 2, 2]
    assert voronoi_on_mask(lab3, ones, 0.5, (10, 1, 1))[0, 0].tolist() == [1] * 8


def test_clear_border_fill_holes_and_remove_labels() -> None:
    labels = np.zeros((10, 10), np.uint16)
    labels[0:3, 0:3] = 1
    labels[4:9, 4:9] = 2
    labels[6, 6] = 0  # a hole
    assert set(np.unique(clear_border(labels))) == {0, 2}
    filled = fill_holes(labels)
    assert filled[6, 6] == 2 and (filled == 2).sum() == 25
    assert set(np.unique(remove_labels(labels, [2]))) == {0, 1}


def test_repair_large_blobs_absorbs_contained_neighbours() -> None:
    labels = np.zeros((12, 12), np.uint16)
    labels[1:11, 1:11] = 1
    labels[4:6, 4:6] = 2  # inside the big object
    labels[0, 0] = 3  # outside its bounding box
    out = repair_large_blobs(labels, size=50)
    assert (out == 1).sum() == 100 and (out == 2).sum() == 0 and (out == 3).sum() == 1


def test_objects_table_of_a_square_and_property_removal() -> None:
    labels = np.zeros((20, 30), np.uint16)
    labels[2:12, 4:14] = 5  # a 10x10 square
    labels[15:17, 20:28] = 9  # a 2x8 bar
    prob = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    table = measure_objects(labels, None, prob).set_index("label")
    sq = table.loc[5]
    assert sq["area"] == 100 and sq["npixels"] == 100
    assert (sq["centroid_y"], sq["centroid_x"]) == (6.5, 8.5)
    assert (sq["bbox_y_min"], sq["bbox_y_max"], sq["bbox_x_min"], sq["bbox_x_max"]) == (
        2,
        12,
        4,
        14,
    )
    assert sq["diameter"] == 10 and sq["mean_probability"] == pytest.approx(0.8)
    assert table.loc[9, "elongation"] > sq["elongation"]
    drop = removal_mask(
        table.reset_index(),
        [["area"], ["circularity", "area"]],
        [[50], [0.5, 20]],
        [["lt"], ["lt", "ge"]],
    )
    assert drop.tolist() == [False, True]
    with pytest.raises(ConfigError, match="SIGNS"):
        removal_mask(table.reset_index(), [["area"]], [[1]], [["eq"]])


def test_objects_table_3d_uses_the_resolution(balls: np.ndarray) -> None:
    table = measure_objects(balls, (2.0, 1.0, 1.0))
    assert len(table) == 5
    assert table["volume"].iloc[0] == pytest.approx(2 * (balls == 1).sum())
    iso = measure_objects(balls)
    assert 0.8 < iso["sphericity"].iloc[0] <= 1.05  # a voxelized ball
    assert table["sphericity"].iloc[0] < iso["sphericity"].iloc[0]  # stretched along z
    assert table["centroid_z"].iloc[0] == pytest.approx(10.0)


def test_median_filter_axes() -> None:
    raw = np.zeros((1, 5, 9, 9), np.float32)
    raw[0, 2, 4, 4] = 1.0  # a single bright voxel disappears in the xy plane
    raw[0, :, 1, 1] = 1.0  # a z line survives a z filter
    out = median_filter_channels(raw, ["xy"], [3])
    assert out[0, 2, 4, 4] == 0.0
    out_z = median_filter_channels(raw, ["z"], 2)  # even size -> 3
    assert out_z[0, 2, 4, 4] == 0.0 and out_z[0, 2, 1, 1] == 1.0
    with pytest.raises(ConfigError, match="MEDIAN_FILTER_AXIS"):
        median_filter_channels(raw[:, 0], ["z"], [3])


# ---- the CartoCell configuration end to end ------------------------------------------------

ARCHITECTURE = CONV3D_3X3X3


def _cartocell_weights(s_in: float, s_out: float) -> dict[str, torch.Tensor]:
    """Weights mapping a normalized two-level volume to B, C, M logits."""
    d, mid = s_in - s_out, (s_in + s_out) / 2
    w = torch.zeros(3, 1, 3, 3, 3)
    b = torch.zeros(3)
    w[0, 0] = 14.0 / (27 * d)  # B: mean of the 27 neighbours
    b[0] = -14.0 * s_out / d - 10.0
    lap = torch.zeros(3, 3, 3)
    lap[1, 1, 1] = 6.0
    for z, y, x in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        lap[z, y, x] = -1.0
    w[1, 0] = 20.0 * lap / d  # C: positive on the inner border only
    b[1] = -10.0
    w[2, 0, 1, 1, 1] = 10.0 / d  # M: thresholded intensity
    b[2] = -10.0 * mid / d
    return {"conv.weight": w, "conv.bias": b}


@pytest.mark.slow
def test_cartocell_config_end_to_end(tmp_path: Path) -> None:
    from biapy_runner.cli import main
    from bmz_factory import make_model_package

    shape = (80, 160, 160)
    centers = [(z, y, x) for z in (22, 56) for y in (22, 62, 102, 140) for x in (22, 62, 102, 140)]
    gt = spheres(shape, centers, 11)
    volume = np.where(gt > 0, 200, 20).astype(np.uint8)
    fg = (gt > 0).mean()
    std = np.sqrt(fg * (1 - fg)) * 180
    s_in, s_out = (200 - volume.mean()) / std, (20 - volume.mean()) / std
    zip_path = make_model_package(
        tmp_path / "model",
        architecture_source=ARCHITECTURE,
        callable_name="Conv3x3x3",
        kwargs={},
        state_dict=_cartocell_weights(float(s_in), float(s_out)),
        ndim=3,
        in_channels=1,
        out_channels=3,
        size=80,
        preprocessing=[{"id": "zero_mean_unit_variance"}],
        postprocessing=[{"id": "sigmoid"}],
        channel_names=["channel0", "channel1", "channel2"],
        test_input=np.where(gt[:, :80, :80] > 0, 200.0, 20.0)[None].astype(np.float32)[:, :80],
        name="cartocell like",
        tags=["3d", "instance-segmentation"],
    )
    cfg = tmp_path / "cartocell.yaml"
    shutil.copy(CARTOCELL, cfg)
    vol_path, gt_path = tmp_path / "cyst.tif", tmp_path / "cyst_gt.tif"
    tifffile.imwrite(vol_path, volume)
    tifffile.imwrite(gt_path, gt)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--config",
            str(cfg),
            "--images",
            str(vol_path),
            "--gt",
            str(gt_path),
            "--model",
            str(zip_path),
            "--out",
            str(out),
            "--threads",
            "2",
        ]
    )
    assert code == 0
    instances = tifffile.imread(out / "instances" / "cyst.tif")
    post = tifffile.imread(out / "post_proc" / "cyst.tif")
    assert post.dtype == np.uint16 and post.shape == shape
    assert len(np.unique(instances)) - 1 == 32 and len(np.unique(post)) - 1 == 32
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    row = metrics.loc["cyst"]
    assert row["tp@0.5"] == 32 and row["fp@0.5"] == 0
    assert row["post_tp@0.75"] == 32 and row["post_f1@0.75"] == 1.0
    assert row["post_mean_matched_score@0.5"] > row["mean_matched_score@0.5"]
    assert row["post_panoptic_quality@0.5"] > 0.95
    assert metrics.loc["ALL", "post_f1@0.5"] == 1.0
    assert row["iou_M"] > 0.95
    objects = pd.read_csv(out / "metrics" / "objects.tsv", sep="\t")
    assert len(objects) == 32 and set(objects["image"]) == {"cyst"}
    assert objects["volume"].median() == pytest.approx((gt == 1).sum(), rel=0.05)
    assoc = pd.read_csv(out / "metrics" / "associations.tsv", sep="\t")
    post_05 = assoc[(assoc["stage"] == "post") & (assoc["threshold"] == 0.5)]
    assert (post_05["status"] == "tp").sum() == 32

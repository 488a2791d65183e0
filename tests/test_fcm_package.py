"""A BiaPy-exported-shaped 3D F+C+M package run with a BiaPy 3.6.6+ YAML (WATERSHED.*, list
DATA_CHANNELS) unchanged: the instances and matching metrics the reference definitions give on the
model's known outputs, for a volume larger than the patch and for one of exactly its size (which
BiaPy predicts in one forward pass without padding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from biapy_runner.metrics.matching import matching
from instance_channels import balls
from model_sources import CONV3D_3X3X3
from scipy import ndimage
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label
from skimage.morphology import remove_small_objects
from skimage.segmentation import relabel_sequential, watershed

PATCH = (32, 64, 64)
PADDING = (8, 16, 16)

#: what BiaPy (3.6.6 and later) writes for a CartoCell-style F+C+M model
BIAPY_YAML = """\
SYSTEM:
  NUM_CPUS: -1
PROBLEM:
  TYPE: INSTANCE_SEG
  NDIM: 3D
  INSTANCE_SEG:
    DATA_CHANNELS: ["F", "C", "M"]
    DATA_CHANNELS_EXTRA_OPTS: [{}]
    INSTANCE_CREATION_PROCESS: watershed
    WATERSHED:
      SEED_CHANNELS: ["F", "C"]
      SEED_CHANNELS_THRESH: ["auto", "auto"]
      TOPOGRAPHIC_SURFACE_CHANNEL: "F"
      GROWTH_MASK_CHANNELS: ["F"]
      GROWTH_MASK_CHANNELS_THRESH: ["auto"]
      DATA_CHECK_MW: True
      DATA_REMOVE_BEFORE_MW: True
      DATA_REMOVE_SMALL_OBJ_BEFORE: 5
      SEED_MORPH_SEQUENCE: []
      SEED_MORPH_RADIUS: []
      ERODE_AND_DILATE_GROWTH_MASK: False
      FORE_EROSION_RADIUS: 5
      FORE_DILATION_RADIUS: 5
      BY_2D_SLICES: False
DATA:
  PATCH_SIZE: (32, 64, 64, 1)
  REFLECT_TO_COMPLETE_SHAPE: True
  TEST:
    IN_MEMORY: True
    LOAD_GT: True
    PADDING: (8, 16, 16)
    OVERLAP: (0, 0, 0)
TRAIN:
  ENABLE: False
MODEL:
  SOURCE: bmz
  BMZ:
    SOURCE_MODEL_ID: 'venomous-swan'
TEST:
  ENABLE: True
  MATCHING_STATS: True
  MATCHING_STATS_THS: [0.3, 0.5, 0.75]
"""

ARCHITECTURE = CONV3D_3X3X3

LOW, HIGH = 20.0, 200.0


def fcm_weights() -> dict[str, torch.Tensor]:
    """F: mean of the 27 neighbours; C: positive on the objects' inner border; M: intensity."""
    d, mid = HIGH - LOW, (HIGH + LOW) / 2
    w = torch.zeros(3, 1, 3, 3, 3)
    b = torch.zeros(3)
    w[0, 0] = 14.0 / (27 * d)
    b[0] = -14.0 * LOW / d - 10.0
    lap = torch.zeros(3, 3, 3)
    lap[1, 1, 1] = 6.0
    for z, y, x in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        lap[z, y, x] = -1.0
    w[1, 0] = 20.0 * lap / d
    b[1] = -10.0
    w[2, 0, 1, 1, 1] = 10.0 / d
    b[2] = -10.0 * mid / d
    return {"conv.weight": w, "conv.bias": b}


def module() -> torch.nn.Module:
    namespace: dict = {}
    exec(compile(ARCHITECTURE, "<architecture>", "exec"), namespace)  # noqa: S102
    net = namespace["Conv3x3x3"]()
    net.load_state_dict(fcm_weights())
    return net.eval()


def known_output(volume: np.ndarray, context: tuple[int, ...] | None) -> np.ndarray:
    """The model's sigmoid output on the whole volume: as it is (one forward pass), or after
    BiaPy's reflection padding of ``context`` voxels (a 3x3x3 convolution needs 1: every tile
    sees the same neighbourhood as the whole padded volume)."""
    x = volume.astype(np.float32)
    if context:
        x = np.pad(x, [(c, c) for c in context], mode="reflect")
    with torch.inference_mode():
        y = torch.sigmoid(module()(torch.from_numpy(x)[None, None]))[0].numpy()
    if context:
        y = y[(slice(None),) + tuple(slice(c, -c) for c in context)]
    return y


def reference_instances(pred: np.ndarray) -> np.ndarray:
    """BiaPy 3.7.1's watershed for F+C(+M) with its definitions, written with scikit-image: seeds
    ``F > otsu(F)`` and ``C < otsu(C)``, growth mask ``F > otsu(F) / 2``, face-connected seed
    labels, seeds of at most 5 voxels removed, surface ``gaussian(-F, 1, truncate=1)``."""
    f, c = pred[0], pred[1]
    th_f = threshold_otsu(f)
    seeds = (f > th_f) & (c < threshold_otsu(c))
    growth = f > th_f / 2
    markers = label(seeds, connectivity=1)
    surface = gaussian(-f, sigma=1.0, truncate=1.0)
    markers = relabel_sequential(remove_small_objects(markers, max_size=5))[0]
    return watershed(surface, markers, mask=growth)


def make_package(tmp_path: Path) -> Path:
    from bmz_factory import make_model_package

    test_input = np.where(balls(PATCH, [(16, 32, 32)], 8) > 0, HIGH, LOW)[None].astype(np.float32)
    return make_model_package(
        tmp_path / "model",
        architecture_source=ARCHITECTURE,
        callable_name="Conv3x3x3",
        kwargs={},
        state_dict=fcm_weights(),
        ndim=3,
        in_channels=1,
        out_channels=3,
        size=(16, 16),
        preprocessing=[],
        postprocessing=[{"id": "sigmoid"}],
        channel_names=["F", "C", "M"],
        test_input=test_input,
        name="cartocell fcm",
        tags=["3d", "instance-segmentation"],
    )


def cyst_volume(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Touching balls of radius 8 on a grid (some overlap), shuffled a little."""
    rng = np.random.default_rng(seed)
    centres = [
        (z, y, x)
        for z in range(9, shape[0] - 8, 15)
        for y in range(10, shape[1] - 8, 15)
        for x in range(10, shape[2] - 8, 15)
    ]
    centres = [tuple(int(v + rng.integers(-1, 2)) for v in c) for c in centres]
    return balls(shape, centres, 8)


def membranes(gt: np.ndarray) -> np.ndarray:
    """Voxels of an object next to another object (dark in the image, as cell membranes)."""
    big = np.iinfo(gt.dtype).max
    highest = ndimage.maximum_filter(gt, size=3)
    lowest = ndimage.minimum_filter(np.where(gt > 0, gt, big), size=3)
    return (gt > 0) & ((highest != gt) | ((lowest != gt) & (lowest != big)))


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "whole"), [((48, 96, 96), False), (PATCH, True)])
def test_biapy_fcm_package_with_its_yaml(tmp_path: Path, shape, whole: bool) -> None:
    from biapy_runner.cli import main

    gt = cyst_volume(shape, seed=len(shape) + shape[0])
    volume = np.where((gt > 0) & ~membranes(gt), HIGH, LOW).astype(np.uint8)
    package = make_package(tmp_path)
    cfg = tmp_path / "biapy_config.yaml"
    cfg.write_text(BIAPY_YAML)
    vol_path, gt_path = tmp_path / "cyst.tif", tmp_path / "cyst_gt.tif"
    tifffile.imwrite(vol_path, volume)
    tifffile.imwrite(gt_path, gt)
    out = tmp_path / "out"
    args = ["run", "--config", str(cfg), "--images", str(vol_path), "--gt", str(gt_path)]
    code = main([*args, "--model", str(package), "--out", str(out), "--threads", "2"])
    assert code == 0

    # the known output: one unpadded pass for a volume of exactly PATCH_SIZE, else padded tiles
    expected_raw = known_output(volume, None if whole else PADDING)
    raw = tifffile.imread(out / "raw" / "cyst.tif").transpose(1, 0, 2, 3)  # written ZCYX
    np.testing.assert_allclose(raw, expected_raw, atol=1e-5)
    if whole:  # the padded tiling the runner did before gives other values at the borders
        assert np.abs(known_output(volume, PADDING) - expected_raw).max() > 0.1

    expected = reference_instances(expected_raw)
    instances = tifffile.imread(out / "instances" / "cyst.tif")
    n_expected = len(np.unique(expected)) - 1
    assert len(np.unique(instances)) - 1 == n_expected
    # every cyst found; the reflected context of padded tiles adds objects at the borders (BiaPy
    # pads the same way), the unpadded single pass does not
    assert n_expected == int(gt.max()) if whole else n_expected > int(gt.max())
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    row = metrics.loc["cyst"]
    for r in matching(gt, expected, (0.3, 0.5, 0.75)):
        th = f"{r.thresh:g}"
        for name in ("precision", "recall", "f1", "mean_matched_score", "panoptic_quality"):
            assert row[f"{name}@{th}"] == pytest.approx(r.stats[name], abs=0.01), (name, th)
        assert row[f"tp@{th}"] == r.stats["tp"]
    # DATA_CHECK_MW: the watershed's inputs are written next to the results
    seeds = tifffile.imread(out / "watershed" / "seed_map" / "cyst.tif")
    assert seeds.shape == shape and seeds.max() >= n_expected
    assert ndimage.label(seeds > 0)[1] >= n_expected

"""The DSB2018 crop shipped in test-data split into a training part and a held-out crop, and the
configuration that trains a small 2D semantic U-Net on it on CPU (shared by the end-to-end test
and ``benchmarks/bench_train.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
#: columns x < SPLIT train, the rest (256 x 64 pixels) is the held-out crop
SPLIT = 192

CONFIG = """\
PROBLEM:
  TYPE: SEMANTIC_SEG
  NDIM: 2D
DATA:
  PATCH_SIZE: (64, 64, 1)
  N_CLASSES: 2
  NORMALIZATION:
    TYPE: zero_mean_unit_variance
  TEST:
    PADDING: (8, 8)
  TRAIN:
    EXTRACT_RANDOM_PATCH: True
    REPLICATE: 24
  VAL:
    FROM_TRAIN: False
MODEL:
  ARCHITECTURE: unet
  FEATURE_MAPS: [16, 32, 64, 128]
  NORMALIZATION: bn
  BMZ:
    EXPORT:
      ENABLE: True
      MODEL_NAME: dsb nuclei unet
      DESCRIPTION: 2D semantic U-Net for fluorescent nuclei, trained on a DSB2018 crop.
      AUTHORS: [{name: galaxy-biapy tests}]
      TAGS: [nuclei, fluorescence]
TRAIN:
  ENABLE: True
  EPOCHS: 12
  BATCH_SIZE: 8
  OPTIMIZER: ADAMW
  LR: 0.01
  W_DECAY: 0.0
  LR_SCHEDULER:
    NAME: onecycle
AUGMENTOR:
  ENABLE: True
  VFLIP: True
  HFLIP: True
  ROT90: True
TEST:
  ENABLE: True
  AUGMENTATION: True
"""


def write_split(folder: Path) -> dict[str, Path]:
    """Write the training part and the held-out crop (image + binary mask folders) and the
    configuration under ``folder``; returns their paths by role."""
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")
    mask = (tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif") > 0).astype(np.uint8)
    parts = {
        "train_x": ("dsb_train", image[:, :SPLIT]),
        "train_y": ("dsb_train", mask[:, :SPLIT]),
        "held_x": ("dsb_held", image[:, SPLIT:]),
        "held_y": ("dsb_held", mask[:, SPLIT:]),
    }
    paths = {}
    for role, (stem, data) in parts.items():
        (folder / role).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / role / f"{stem}.tif", np.ascontiguousarray(data))
        paths[role] = folder / role
    paths["config"] = folder / "dsb_unet.yaml"
    paths["config"].write_text(CONFIG)
    return paths


#: the package ``MODEL.BMZ.EXPORT`` writes under the output folder
PACKAGE = Path("bmz") / "dsb_nuclei_unet.zip"


def train_args(paths: dict[str, Path], out: Path, threads: int = 2) -> list[str]:
    """``biapy-runner train`` arguments: train on the training part, test on the held-out crop."""
    return [
        "train", "--config", str(paths["config"]),
        "--train-images", str(paths["train_x"]), "--train-gt", str(paths["train_y"]),
        "--test-images", str(paths["held_x"]), "--test-gt", str(paths["held_y"]),
        "--out", str(out), "--device", "cpu", "--threads", str(threads), "--name", "dsb",
    ]


def package_run_args(paths: dict[str, Path], trained: Path, out: Path, threads: int = 2) -> list[str]:
    """``biapy-runner run`` arguments: the exported package (MODEL.SOURCE: bmz) on the held-out
    crop, with the configuration the training wrote."""
    return [
        "run", "--config", str(trained / "config.yaml"), "--set", "MODEL.SOURCE=bmz",
        "--model", str(trained / PACKAGE), "--images", str(paths["held_x"]),
        "--gt", str(paths["held_y"]), "--out", str(out), "--threads", str(threads), "--no-report",
    ]

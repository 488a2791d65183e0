"""``biapy-runner train``: bad inputs stop with one paragraph and exit 2, before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from biapy_runner.cli import main

SEMANTIC = """\
PROBLEM:
  TYPE: SEMANTIC_SEG
  NDIM: 2D
DATA:
  PATCH_SIZE: (32, 32, 1)
  N_CLASSES: 2
MODEL:
  ARCHITECTURE: unet
  FEATURE_MAPS: [4, 8]
TRAIN:
  ENABLE: True
  EPOCHS: 2
  BATCH_SIZE: 2
"""


def _pair(folder: Path, stem: str, size: int = 48, gt_stem: str | None = None) -> tuple[Path, Path]:
    rng = np.random.default_rng(len(stem))
    mask = (rng.random((size, size)) > 0.7).astype(np.uint8)
    image = folder / "x" / f"{stem}.tif"
    gt = folder / "y" / f"{gt_stem or stem}.tif"
    for path, data in ((image, (mask * 200 + 20).astype(np.uint8)), (gt, mask)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, data)
    return image, gt


def _train(tmp_path: Path, *args: str, config: str = SEMANTIC) -> int:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(config)
    return main(["train", "--config", str(cfg), "--out", str(tmp_path / "out"), "--threads", "1",
                 "--device", "cpu", *args])


def _no_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no_gt", "--train-gt"),
        ("unpaired", "could not all be paired"),
        ("patch_too_big", "DATA.PATCH_SIZE"),
        ("channels", "channel"),
        ("scheduler", "TRAIN.LR_SCHEDULER.NAME = 'warmupreduceonplateau'"),
        ("cross_val", "DATA.VAL.CROSS_VAL"),
        ("checkpoint_missing", "PATHS.CHECKPOINT_FILE"),
        ("split", "SPLIT_TRAIN"),
        ("unknown_key", "Unknown configuration key 'LOSS.LR'"),
        ("bad_type", "TRAIN.EPOCHS"),
        ("no_test_images", "--test-images"),
    ],
)
def test_bad_training_input_is_one_paragraph_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    image, gt = _pair(tmp_path, "a", gt_stem="b" if case == "unpaired" else None)
    args = ["--train-images", str(image)]
    if case != "no_gt":
        args += ["--train-gt", str(gt)]
    config = SEMANTIC
    if case == "patch_too_big":
        config = config.replace("(32, 32, 1)", "(64, 64, 1)")
    if case == "unknown_key":  # a key under the wrong section: ignored by run, refused to train
        config += "LOSS:\n  LR: 0.01\n"
    if case == "channels":
        config = config.replace("(32, 32, 1)", "(32, 32, 3)")
    sets = {
        "scheduler": ["TRAIN.LR_SCHEDULER.NAME=warmupreduceonplateau"],
        "cross_val": ["DATA.VAL.CROSS_VAL=True"],
        "checkpoint_missing": ["MODEL.LOAD_CHECKPOINT=True",
                               f"PATHS.CHECKPOINT_FILE={tmp_path / 'none.pth'}"],
        "split": ["DATA.VAL.SPLIT_TRAIN=1.0"],
        "bad_type": ["TRAIN.EPOCHS=many"],
        "no_test_images": ["TEST.ENABLE=True"],
    }.get(case, [])
    for item in sets:
        args += ["--set", item]
    assert _train(tmp_path, *args, config=config) == 2
    err = capsys.readouterr().err
    assert expected in err
    message = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(message) == 1 and "Traceback" not in err
    _no_results(tmp_path)

"""End to end: a 2D semantic U-Net trained on CPU on the shipped DSB2018 crop (training part)
segments the held-out crop, ``run`` with the saved checkpoint (the written ``config.yaml``)
reproduces that IoU exactly, and ``run`` with the exported BioImage.IO package (MODEL.BMZ.EXPORT)
reproduces it within 1e-4.

The issue's goal is a foreground IoU of 0.80; this recipe (U-Net 16-32-64-128, 12 epochs,
TEST.AUGMENTATION) gives, on 1 thread, 0.798 / 0.795 / 0.796 / 0.800 / 0.800 / 0.799 with seeds 0
(the test's) / 7 / 42 / 1 / 2 / 3. The held-out crop's GT outlines its nuclei more widely than the
training part's (``benchmarks/bench_train.py``'s ``annotation_margin``: 1.19 against 1.03), so
the predicted nuclei come out slightly small; longer training fits the training outlines more
closely and scores lower (README, "Training"). Float differences between CPUs move the IoU by a
few thousandths: the test asserts 0.785, which every seed tried clears by 0.01, and
``benchmarks/bench_train.py`` reports each seed against the goal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from biapy_runner.cli import main
from dsb_training import PACKAGE, package_run_args, train_args, write_split


def _iou(out: Path) -> float:
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    return float(table.loc[table["image"] == "ALL", "iou"].iloc[0])


@pytest.mark.slow
def test_unet_trained_on_the_dsb_crop_segments_the_held_out_crop(tmp_path: Path) -> None:
    paths = write_split(tmp_path)
    out = tmp_path / "trained"
    assert main(train_args(paths, out, threads=1)) == 0
    iou = _iou(out)
    assert iou >= 0.785
    log = pd.read_csv(out / "train_log.tsv", sep="\t")
    assert log["train_loss"].iloc[-1] < 0.5 * log["train_loss"].iloc[0]
    assert (out / "checkpoints" / "dsb-checkpoint-best.pth").is_file()
    assert (out / "report" / "charts" / "training.png").is_file()

    rerun = tmp_path / "rerun"
    assert main(["run", "--config", str(out / "config.yaml"), "--images", str(paths["held_x"]),
                 "--gt", str(paths["held_y"]), "--out", str(rerun), "--threads", "1",
                 "--no-report"]) == 0
    assert _iou(rerun) == pytest.approx(iou, abs=1e-6)

    # the exported BioImage.IO package (checked by bioimageio.core when exported) segments the
    # held-out crop as the checkpoint does
    assert (out / PACKAGE).is_file()
    packaged = tmp_path / "packaged"
    assert main(package_run_args(paths, out, packaged, threads=1)) == 0
    assert _iou(packaged) == pytest.approx(iou, abs=1e-4)

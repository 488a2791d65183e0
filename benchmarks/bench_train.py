"""Training end to end: a 2D semantic U-Net trained on the shipped DSB2018 crop, seed by seed,
against the bare forward + backward floor.

The crop (``test-data/dsb_nuclei.tif``, 256x256) is split into a training part (x < 192) and a
held-out crop (256x64); ``biapy-runner train`` (the configuration of ``tests/dsb_training.py``:
U-Net 16-32-64-128, 64x64 random crops, AdamW + one-cycle, flips and rotations,
TEST.AUGMENTATION, export to BioImage.IO) trains on the first and tests the best checkpoint on
the second, once per ``SYSTEM.SEED`` of ``--seeds``. Reported, in one run:

- per seed: the held-out foreground IoU of the trained model, the IoU of ``biapy-runner run``
  with the written ``config.yaml`` (the saved checkpoint, MODEL.SOURCE: biapy) and with the
  exported package (MODEL.SOURCE: bmz): they must be equal; the lowest and mean IoU over the
  seeds against the issue's goal (0.80);
- seconds per epoch of the runner (``train_log.tsv``, the first seed) against the floor: the
  same network, the same number of batches of the same shape, bare torch forward + loss +
  backward + optimizer step on tensors already in memory (no crops, augmentation, metrics,
  validation or checkpoints), measured in the same process with the same threads, before and
  after the runner trains (the lower of the two medians: the load of a shared machine changes);
- the total wall time of ``train`` per seed (start-up, reading, training, checkpoints, export,
  test, report);
- how generously each part's GT outlines its nuclei (``annotation_margin``): the held-out crop's
  masks are larger, relative to the nuclei's half-maximum contour, than the training part's, so a
  model that learns the training part's outlines predicts the held-out nuclei slightly small.

The machine's load changes wall times: compare the ratio measured in the same run.

    PYTHONPATH=runner .venv/bin/python benchmarks/bench_train.py [--threads 2] [--epochs N]
        [--seeds 0 7 42 1 2 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from biapy_runner.cli import main
from biapy_runner.config.load import load_config
from dsb_training import SPLIT, TEST_DATA, package_run_args, train_args, write_split

#: nuclei smaller than this (pixels) or cut by a part's border are left out of the margin
MIN_NUCLEUS = 30


def floor_seconds_per_epoch(config: Path, epochs: int, threads: int) -> float:
    """Bare forward + BCE + backward + AdamW step of the configured U-Net over as many batches
    of the configured shape as one epoch of the runner has; the median over ``epochs`` epochs."""
    from biapy_runner.models.architectures import build_model

    cfg = load_config(config, [f"TRAIN.EPOCHS={epochs}"])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_model(cfg, in_channels=1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss = torch.nn.BCEWithLogitsLoss()
    patch = tuple(cfg.get("DATA.PATCH_SIZE"))[:-1]
    batch = int(cfg.get("TRAIN.BATCH_SIZE"))
    crops = int(cfg.get("DATA.TRAIN.REPLICATE"))  # one training image, one random crop each
    sizes = [batch] * (crops // batch) + ([crops % batch] if crops % batch else [])
    x = torch.randn(batch, 1, *patch)
    y = (torch.rand(batch, 1, *patch) > 0.9).float()
    net.train()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for size in sizes:
            optimizer.zero_grad(set_to_none=True)
            loss(net(x[:size]), y[:size]).backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2])


def annotation_margin(image: np.ndarray, labels: np.ndarray) -> float:
    """The median over whole nuclei of GT area / half-maximum area: the pixels within 4 of the
    nucleus (other nuclei excluded) brighter than halfway between the background's median and
    the nucleus' median intensity. 1.0: the GT outlines the half-maximum contour; above 1: a
    wider outline."""
    background = float(np.median(image[labels == 0]))
    ratios = []
    for index in np.unique(labels)[1:]:
        nucleus = labels == index
        edge = np.concatenate([nucleus[0], nucleus[-1], nucleus[:, 0], nucleus[:, -1]])
        if edge.any() or nucleus.sum() < MIN_NUCLEUS:
            continue
        near = ndimage.binary_dilation(nucleus, iterations=4) & ((labels == 0) | nucleus)
        half = background + 0.5 * (float(np.median(image[nucleus])) - background)
        ratios.append(nucleus.sum() / max(int((near & (image > half)).sum()), 1))
    return round(float(np.median(ratios)), 3)


def annotation_margins() -> dict[str, float]:
    """``annotation_margin`` of the training part and of the held-out crop."""
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif").astype(np.float32)
    labels = tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif")
    return {"training_part": annotation_margin(image[:, :SPLIT], labels[:, :SPLIT]),
            "held_out_crop": annotation_margin(image[:, SPLIT:], labels[:, SPLIT:])}


def held_out_iou(out: Path) -> float:
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    return float(table.loc[table["image"] == "ALL", "iou"].iloc[0])


def train_seed(paths: dict[str, Path], folder: Path, seed: int, threads: int,
               sets: list[str]) -> dict:
    """Train with ``SYSTEM.SEED=seed``, then ``run`` the checkpoint and the exported package on
    the held-out crop; the IoUs, the runner's seconds per epoch and the wall time of ``train``."""
    out = folder / f"train_seed{seed}"
    start = time.perf_counter()
    assert main([*train_args(paths, out, threads), *sets, "--set", f"SYSTEM.SEED={seed}"]) == 0
    wall = time.perf_counter() - start
    log = pd.read_csv(out / "train_log.tsv", sep="\t")
    rerun, packaged = folder / f"run_seed{seed}", folder / f"package_seed{seed}"
    assert main(["run", "--config", str(out / "config.yaml"), "--images", str(paths["held_x"]),
                 "--gt", str(paths["held_y"]), "--out", str(rerun), "--threads",
                 str(threads), "--no-report"]) == 0
    assert main(package_run_args(paths, out, packaged, threads)) == 0
    iou, ious = held_out_iou(out), (held_out_iou(rerun), held_out_iou(packaged))
    return {
        "seed": seed,
        "held_out_iou": round(iou, 4),
        "run_with_checkpoint_iou": round(ious[0], 4),
        "run_with_package_iou": round(ious[1], 4),
        "same_iou": all(abs(iou - other) <= 1e-4 for other in ious),
        "epochs": int(log["epoch"].iloc[-1]),
        "seconds_per_epoch": float(log["seconds"].median()),
        "train_wall_seconds": round(wall, 1),
    }


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="override TRAIN.EPOCHS")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 7, 42, 1, 2, 3],
                        help="SYSTEM.SEED values, one training each (default 0 7 42 1 2 3)")
    parser.add_argument("--keep", type=Path, help="keep the data and outputs here")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    paths = write_split(folder)
    sets = ["--set", f"TRAIN.EPOCHS={args.epochs}"] if args.epochs else []
    epochs = args.epochs or int(load_config(paths["config"]).get("TRAIN.EPOCHS"))
    floor_before = floor_seconds_per_epoch(paths["config"], min(epochs, 5), args.threads)
    runs = [train_seed(paths, folder, seed, args.threads, sets) for seed in args.seeds]
    floor = min(floor_before, floor_seconds_per_epoch(paths["config"], min(epochs, 5), args.threads))
    ious = [r["held_out_iou"] for r in runs]
    per_epoch = runs[0].pop("seconds_per_epoch")
    for r in runs[1:]:
        r.pop("seconds_per_epoch")
    result = {
        "seeds": args.seeds,
        "per_seed": runs,
        "iou_goal": 0.80,
        "lowest_iou": min(ious),
        "mean_iou": round(sum(ious) / len(ious), 4),
        "every_seed_meets_goal": min(ious) >= 0.80,
        "same_iou_everywhere": all(r["same_iou"] for r in runs),
        "gt_area_over_half_maximum_area": annotation_margins(),
        "seconds_per_epoch": round(per_epoch, 2),
        "floor_seconds_per_epoch": round(floor, 2),
        "epoch_over_floor": round(per_epoch / floor, 2),
        "threads": args.threads,
    }
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main_bench()

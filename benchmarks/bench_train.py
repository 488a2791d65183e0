"""Training end to end: a 2D semantic U-Net trained on the shipped DSB2018 crop, against the bare
forward + backward floor.

The crop (``test-data/dsb_nuclei.tif``, 256x256) is split into a training part (x < 192) and a
held-out crop (256x64); ``biapy-runner train`` (the configuration of ``tests/dsb_training.py``:
U-Net 16-32-64, 64x64 random crops, AdamW + one-cycle, flips and rotations) trains on the first
and tests the best checkpoint on the second. Reported, in one run:

- the held-out foreground IoU of the trained model, and the IoU of ``biapy-runner run`` with the
  written ``config.yaml`` (the saved checkpoint, MODEL.SOURCE: biapy): they must be equal;
- seconds per epoch of the runner (``train_log.tsv``) against the floor: the same network, the
  same number of batches of the same shape, bare torch forward + loss + backward + optimizer
  step on tensors already in memory (no crops, augmentation, metrics, validation or checkpoints),
  measured in the same process with the same threads, before and after the runner trains (the
  lower of the two medians: the load of a shared machine changes);
- the total wall time of ``train`` (start-up, reading, training, checkpoints, test, report).

The machine's load changes wall times: compare the ratio measured in the same run.

    PYTHONPATH=runner .venv/bin/python benchmarks/bench_train.py [--threads 2] [--epochs N]
        [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from biapy_runner.cli import main
from biapy_runner.config.load import load_config
from dsb_training import train_args, write_split


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


def held_out_iou(out: Path) -> float:
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    return float(table.loc[table["image"] == "ALL", "iou"].iloc[0])


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="override TRAIN.EPOCHS")
    parser.add_argument("--keep", type=Path, help="keep the data and outputs here")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    paths = write_split(folder)
    sets = ["--set", f"TRAIN.EPOCHS={args.epochs}"] if args.epochs else []
    epochs = args.epochs or int(load_config(paths["config"]).get("TRAIN.EPOCHS"))
    floor_before = floor_seconds_per_epoch(paths["config"], min(epochs, 5), args.threads)

    out = folder / "train_out"
    start = time.perf_counter()
    assert main([*train_args(paths, out, args.threads), *sets]) == 0
    wall = time.perf_counter() - start
    log = pd.read_csv(out / "train_log.tsv", sep="\t")
    per_epoch = float(log["seconds"].median())
    floor = min(floor_before, floor_seconds_per_epoch(paths["config"], min(epochs, 5), args.threads))

    rerun = folder / "run_out"
    assert main(["run", "--config", str(out / "config.yaml"), "--images", str(paths["held_x"]),
                 "--gt", str(paths["held_y"]), "--out", str(rerun), "--threads",
                 str(args.threads), "--no-report"]) == 0
    result = {
        "held_out_iou": round(held_out_iou(out), 4),
        "iou_goal": 0.80,
        "iou_meets_goal": held_out_iou(out) >= 0.80,
        "run_with_checkpoint_iou": round(held_out_iou(rerun), 4),
        "same_iou": abs(held_out_iou(out) - held_out_iou(rerun)) <= 1e-6,
        "epochs": int(log["epoch"].iloc[-1]),
        "seconds_per_epoch": round(per_epoch, 2),
        "floor_seconds_per_epoch": round(floor, 2),
        "epoch_over_floor": round(per_epoch / floor, 2),
        "train_wall_seconds": round(wall, 1),
        "threads": args.threads,
    }
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main_bench()

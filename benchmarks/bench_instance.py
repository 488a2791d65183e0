"""Benchmark: BCM decoding (watershed), Voronoi on mask and matching on a CartoCell-sized volume.

Synthesizes an 80x512x512 label volume of about 1500 random ellipsoids, smooth B/C/M probability
maps from it, then times each stage (best of ``--repeat`` runs, wall and CPU time, since the
machine may be shared: the load average is printed too). BiaPy 3.7.1 on the 2-core dev machine:
about 3.4 s watershed, 5.6 s Voronoi, 17.5 s matching (3 thresholds, raw and post). Goal: the
three together under 5 s.

Run: ``PYTHONPATH=runner python benchmarks/bench_instance.py [--objects 1500] [--seed 0]
[--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from biapy_runner.config.load import load_config
from biapy_runner.decode.channels import parse_channels
from biapy_runner.decode.postprocess import voronoi_on_mask
from biapy_runner.decode.watershed import watershed_by_channels, watershed_settings
from biapy_runner.metrics.matching import label_overlap, match_overlap
from scipy import ndimage
from skimage.segmentation import find_boundaries

SHAPE = (80, 512, 512)
THRESHOLDS = (0.3, 0.5, 0.75)
GOAL_S = 5.0
#: BiaPy 3.7.1 on the 2-core dev machine (seconds).
BIAPY_S = {"watershed": 3.4, "voronoi": 5.6, "matching": 17.5}


def ellipsoids(shape: tuple[int, int, int], n: int, seed: int) -> np.ndarray:
    """A label volume of ``n`` random ellipsoids (later ones overwrite earlier ones)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for i in range(1, n + 1):
        radii = rng.uniform([3, 6, 6], [6, 11, 11])
        center = rng.uniform(0, shape)
        lo = np.maximum(np.floor(center - radii).astype(int), 0)
        hi = np.minimum(np.ceil(center + radii).astype(int) + 1, shape)
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1
        labels[tuple(slice(a, b) for a, b in zip(lo, hi))][inside] = i
    return labels


def bcm(labels: np.ndarray) -> np.ndarray:
    """Smooth B (inside without contour), C (contour) and M (foreground) probabilities."""
    fg = labels > 0
    contour = find_boundaries(labels, mode="thick") & fg
    maps = [fg & ~contour, contour, fg]
    return np.stack([ndimage.gaussian_filter(m.astype(np.float32), 0.7) for m in maps])


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """``fn(*args)`` with its wall-clock and CPU (this process) seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def match_both(gt: np.ndarray, raw_labels: np.ndarray, post: np.ndarray) -> list[str]:
    """Matching of the raw and post-processed instances at each threshold, one line each."""
    lines = []
    for stage, labels in (("raw", raw_labels), ("post", post)):
        ov = label_overlap(gt, labels)
        for th in THRESHOLDS:
            s = match_overlap(ov, th).stats
            lines.append(
                f"  {stage} @{th}: tp {s['tp']} fp {s['fp']} fn {s['fn']} "
                f"f1 {s['f1']:.3f} pq {s['panoptic_quality']:.3f}"
            )
    return lines


def main() -> None:
    """Time the three stages and print one line each, then the total against the goal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    gt = ellipsoids(SHAPE, args.objects, args.seed)
    raw = bcm(gt)
    print(
        f"setup: {int((np.bincount(gt.ravel()) > 0).sum()) - 1} objects in {SHAPE}, "
        f"{time.perf_counter() - t0:.1f} s"
    )

    best = {name: (float("inf"), float("inf")) for name in BIAPY_S}

    def keep(name: str, wall: float, cpu: float) -> None:
        best[name] = (min(best[name][0], wall), min(best[name][1], cpu))

    load = [os.getloadavg()[0]]
    channels = parse_channels(["F", "C", "M"])  # BiaPy 3.7's name of BCM
    cfg = load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=BCM"])
    settings = watershed_settings(cfg, channels)
    for _ in range(max(args.repeat, 1)):
        result, wall, cpu = timed(watershed_by_channels, raw, channels, settings)
        keep("watershed", wall, cpu)
        post, wall, cpu = timed(voronoi_on_mask, result.labels, raw[2], 0.0)
        keep("voronoi", wall, cpu)
        lines, wall, cpu = timed(match_both, gt, result.labels, post)
        keep("matching", wall, cpu)
        load.append(os.getloadavg()[0])

    print(f"{int(result.labels.max())} instances; best of {args.repeat}, load {max(load):.2f}")
    print(f"{'stage':<24}{'wall s':>8}{'cpu s':>8}{'BiaPy s':>9}{'speed-up':>10}")
    for name, (wall, cpu) in best.items():
        label = {"watershed": "watershed (BCM decode)", "matching": "matching (3 ths x 2)"}
        print(
            f"{label.get(name, 'voronoi on mask'):<24}{wall:>8.2f}{cpu:>8.2f}"
            f"{BIAPY_S[name]:>9.1f}{BIAPY_S[name] / wall:>9.1f}x"
        )
    wall, cpu = sum(w for w, _ in best.values()), sum(c for _, c in best.values())
    verdict = "OK" if wall < GOAL_S else "OVER"
    print(
        f"{'total':<24}{wall:>8.2f}{cpu:>8.2f}{sum(BIAPY_S.values()):>9.1f}"
        f"{sum(BIAPY_S.values()) / wall:>9.1f}x   goal < {GOAL_S:.0f} s: {verdict}"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()

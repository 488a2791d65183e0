"""Benchmark: BCM decoding (watershed), Voronoi on mask and matching on a CartoCell-sized volume.

Synthesizes an 80x512x512 label volume of about 1500 random ellipsoids, smooth B/C/M probability
maps from it, then times each stage. BiaPy 3.7.1 on the 2-core dev machine: about 3.4 s
watershed, 5.6 s Voronoi, 17.5 s matching (3 thresholds, raw and post). Goal: all under 5 s.

Run: ``PYTHONPATH=runner python benchmarks/bench_instance.py [--objects 1500] [--seed 0]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from biapy_runner.instance_decode import DecodeSettings, decode_instances, parse_channels
from biapy_runner.instance_postprocess import voronoi_on_mask
from biapy_runner.matching import label_overlap, match_overlap
from scipy import ndimage
from skimage.segmentation import find_boundaries

SHAPE = (80, 512, 512)
THRESHOLDS = (0.3, 0.5, 0.75)


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


def main() -> None:
    """Time the three stages and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    gt = ellipsoids(SHAPE, args.objects, args.seed)
    raw = bcm(gt)
    print(
        f"setup: {int((np.bincount(gt.ravel()) > 0).sum()) - 1} objects in {SHAPE}, "
        f"{time.perf_counter() - t0:.1f} s"
    )

    t = time.perf_counter()
    result = decode_instances(raw, parse_channels("BCM"), DecodeSettings())
    t_ws = time.perf_counter() - t

    t = time.perf_counter()
    post = voronoi_on_mask(result.labels, raw[2], 0.0)
    t_vor = time.perf_counter() - t

    t = time.perf_counter()
    lines = []
    for stage, labels in (("raw", result.labels), ("post", post)):
        ov = label_overlap(gt, labels)
        for th in THRESHOLDS:
            s = match_overlap(ov, th).stats
            lines.append(
                f"  {stage} @{th}: tp {s['tp']} fp {s['fp']} fn {s['fn']} "
                f"f1 {s['f1']:.3f} pq {s['panoptic_quality']:.3f}"
            )
    t_match = time.perf_counter() - t

    print(f"watershed (BCM decode): {t_ws:.2f} s, {int(result.labels.max())} instances")
    print(f"voronoi on mask:        {t_vor:.2f} s")
    print(f"matching (3 ths x 2):   {t_match:.2f} s")
    print(f"total:                  {t_ws + t_vor + t_match:.2f} s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

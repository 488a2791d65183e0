"""Out-of-core prediction: a volume several times the memory budget, predicted by chunks.

A uint16 Zarr volume of ``--scale`` GB (default 6.5: 4x the default budget of 1.5 GiB) is written
slab by slab (never whole in memory) and segmented by ``biapy-runner run`` (semantic, the tests'
small 3D conv net: 4 then 2 channels with a sigmoid, zero-mean/unit-variance input) with
``--memory-budget`` (default 1.5G), in a subprocess, as a user runs it. A second volume with the
same YX size and 128 slices (~2.3 GB at the peak of its in-memory prediction) is predicted in
memory (the budget raised so that the automatic switch stays off) for the throughput floor.
Reported:

- each run's wall time, voxels per second and peak RSS (the child's ``ru_maxrss``);
- peak RSS / budget of the chunked run (goal <= 1.0; the budget is the whole process's), and the
  runner's own footprint (Python, torch, the model, the backend probe: the peak RSS of a run on a
  one-tile volume);
- throughput of the chunked run / throughput in memory (goal >= 0.8).

    PYTHONPATH=runner .venv/bin/python benchmarks/bench_chunks.py [--scale 6.5] [--budget 1.5G]
        [--threads 2] [--work DIR] [--keep] [--workflow semantic|instance]

``--workflow instance`` runs the same volumes as 3D instance segmentation instead: a small model
(a 1x1x1 convolution) gives BiaPy's ``BC`` channels (B: the blobs, C: no contours), which the
runner decodes by chunks out of core (watershed per chunk with its halo, labels merged across
chunk borders into a Zarr, the object table by windows of planes), so the peak RSS / budget
covers the decoding too (the in-memory run decodes its volume whole).

Each run's stderr (the runner's timestamped log: prediction, decoding, object table) is saved
to ``<work>/tiny.log``, ``fits.log`` and ``big.log`` (kept with ``--keep``). ``--by-chunks`` sets
``TEST.BY_CHUNKS.ENABLE`` for the large run: a quick check of the by-chunks path on a volume
small enough to fit the budget (``--yx 256 --scale 0.05``).

Check the free disk first (``df -h``): the input, the raw prediction (two float32 channels: 4
times the input) and the labels are written under ``--work`` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
YX = (1024, 1024)


def build_model(work: Path) -> Path:
    """The tests' small 3D net (two 3x3x3 convolutions, 2 sigmoid channels) as a package."""
    from tests.test_chunks import conv3d_package

    return conv3d_package(work)


#: The instance model: B = sigmoid(4 z - 4) of the normalised input z, C = sigmoid(-10) ~ 0.
CONV1 = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv3d(1, 2, 1)

    def forward(self, x):
        return torch.sigmoid(self.a(x))
"""

INSTANCE_CONFIG = (
    "PROBLEM:\n  TYPE: INSTANCE_SEG\n  NDIM: 3D\n  INSTANCE_SEG:\n    DATA_CHANNELS: BC\n"
    "    WATERSHED:\n      SEED_CHANNELS_THRESH: [0.5, 0.3]\n"
    "      GROWTH_MASK_CHANNELS_THRESH: [0.4]\n"
    "DATA:\n  PATCH_SIZE: (64, 128, 128, 1)\n  TEST:\n    PADDING: (4, 8, 8)\n"
    "MODEL:\n  SOURCE: bmz\n"
)


def build_instance_model(work: Path) -> Path:
    """A 1x1x1 convolution giving B (the blobs) and C (none) with zero-mean/unit-variance
    input, as a package."""
    import torch

    from tests.bmz_factory import make_model_package

    state = {"a.weight": torch.tensor([4.0, 0.0]).reshape(2, 1, 1, 1, 1),
             "a.bias": torch.tensor([-4.0, -10.0])}  # fmt: skip
    return make_model_package(
        work / "instance_model", architecture_source=CONV1, callable_name="Net", kwargs={},
        state_dict=state, ndim=3, out_channels=2, size=(16, 8), halo=0, name="conv1-bc",
        preprocessing=[{"id": "zero_mean_unit_variance"}], channel_names=["B", "C"],
    )  # fmt: skip


def write_volume(path: Path, depth: int, yx: tuple[int, int], seed: int = 0) -> int:
    """A uint16 Zarr volume ``(depth, *yx)`` written 16 slices at a time from four precomputed
    slabs of blobs and noise (computing new noise for gigabytes takes longer than predicting
    them); returns its bytes."""
    import zarr

    store = zarr.create_array(
        store=str(path), shape=(depth, *yx), dtype=np.uint16, chunks=(16, 256, 256),
        compressors=[zarr.codecs.BloscCodec(cname="lz4", clevel=3, shuffle="shuffle")],
        overwrite=True,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: yx[0], : yx[1]]
    slabs = []
    for k in range(4):
        z = np.arange(16 * k, 16 * k + 16)[:, None, None]
        blobs = 400 * (np.sin(yy / 23.0 + z / 11.0) * np.cos(xx / 17.0 - z / 13.0) > 0.6)
        noise = rng.normal(100, 20, size=(16, *yx))
        slabs.append(np.clip(blobs + noise, 0, 65535).astype(np.uint16))
    for index, start in enumerate(range(0, depth, 16)):
        stop = min(depth, start + 16)
        store[start:stop] = slabs[index % 4][: stop - start]
    return depth * yx[0] * yx[1] * 2


def run(args: list[str], threads: int, log: Path) -> tuple[float, int, str]:
    """One ``biapy-runner run`` in a subprocess: wall seconds, peak RSS bytes, stderr (also
    saved to ``log``: the runner's timestamped phases)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "runner"), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "biapy_runner", "run", *args, "--threads", str(threads),
               "--no-report"]  # fmt: skip
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        err.seek(0)
        text = err.read().decode(errors="replace")
    log.write_text(text)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"biapy-runner failed:\n{text[-3000:]}")
    return wall, usage.ru_maxrss * 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=6.5,
                        help="GB (10^9 bytes) of the large volume; 6.5 = 4x a 1.5G budget")
    parser.add_argument("--budget", default="1.5G", help="--memory-budget of the chunked run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, help="folder for the volumes and outputs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--workflow", choices=("semantic", "instance"), default="semantic",
                        help="instance: BC channels decoded by chunks out of core")
    parser.add_argument("--yx", type=int, default=YX[0],
                        help="side of the volumes' YX planes (smaller for a quick check)")
    parser.add_argument("--by-chunks", action="store_true",
                        help="set TEST.BY_CHUNKS.ENABLE for the large run (a quick check on a "
                        "volume that would fit the budget)")
    opts = parser.parse_args()
    sys.path[:0] = [str(REPO / "runner"), str(REPO)]
    from biapy_runner.inference.chunked import parse_size

    from tests.test_chunks import semantic_config

    budget = parse_size(opts.budget, "--budget")
    work = opts.work or Path(tempfile.mkdtemp(prefix="bench-chunks-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        config = work / "cfg.yaml"
        if opts.workflow == "instance":
            (work / "instance_model").mkdir(exist_ok=True)
            model = build_instance_model(work)
            config.write_text(INSTANCE_CONFIG)
        else:
            model = build_model(work)
            config.write_text(semantic_config((64, 128, 128), (4, 8, 8), 0.0))
        yx = (opts.yx, opts.yx)
        plane = yx[0] * yx[1]
        depth = max(64, round(opts.scale * 1e9 / (2 * plane)))
        fit_depth = min(depth, 128)  # predicted in memory: ~2.3 GB at its peak
        big = write_volume(work / "big.zarr", depth, yx)
        write_volume(work / "fits.zarr", fit_depth, yx, seed=1)
        write_volume(work / "tiny.zarr", 56, (120, 120), seed=2)
        print(f"large volume {depth}x{yx[0]}x{yx[1]} uint16 = {big / 2**30:.2f} GiB, "
              f"{big / budget:.1f}x the budget {budget / 2**30:.2f} GiB; in-memory volume "
              f"{fit_depth}x{yx[0]}x{yx[1]}", flush=True)  # fmt: skip
        common = ["--config", str(config), "--model", str(model)]
        base_wall, base_rss, _ = run([*common, "--images", str(work / "tiny.zarr"), "--out",
                                      str(work / "out_tiny"), "--memory-budget", "64G"],
                                     opts.threads, work / "tiny.log")  # fmt: skip
        mem_wall, mem_rss, _ = run([*common, "--images", str(work / "fits.zarr"), "--out",
                                    str(work / "out_fits"), "--memory-budget", "64G"],
                                   opts.threads, work / "fits.log")  # fmt: skip
        chk_wall, chk_rss, log = run([*common, "--images", str(work / "big.zarr"), "--out",
                                      str(work / "out_big"), "--memory-budget", opts.budget,
                                      *(["--set", "TEST.BY_CHUNKS.ENABLE=True"]
                                        if opts.by_chunks else [])],
                                     opts.threads, work / "big.log")  # fmt: skip
        decision = next(line for line in log.splitlines() if "by chunks (" in line)
        mem_rate = fit_depth * plane / mem_wall
        chk_rate = depth * plane / chk_wall
        print(decision.strip())
        if opts.workflow == "instance":
            print(next((line.strip() for line in reversed(log.splitlines())
                        if "instances:" in line), "no instance count in the log"))  # fmt: skip
        print(f"{'run':26} {'wall s':>8} {'Mvoxel/s':>9} {'peak RSS':>10}")
        for name, wall, rate, rss in (
            ("fixed footprint (1 tile)", base_wall, math.nan, base_rss),
            ("in memory (fits)", mem_wall, mem_rate, mem_rss),
            ("by chunks (large)", chk_wall, chk_rate, chk_rss),
        ):
            print(f"{name:26} {wall:8.1f} {rate / 1e6:9.2f} {rss / 2**30:8.2f} GiB")
        print(f"peak RSS / budget (chunked run): {chk_rss / budget:.2f} (goal <= 1.0)")
        print(f"(peak RSS - fixed footprint) / budget: {(chk_rss - base_rss) / budget:.2f}")
        print(f"throughput by chunks / in memory: {chk_rate / mem_rate:.2f} (goal >= 0.8)")
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

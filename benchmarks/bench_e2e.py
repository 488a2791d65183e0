"""End to end on a real-shaped model: the runner's whole run against the bare eager forward floor.

A 3D residual U-Net of the shape BiaPy exports (1 input channel, 3 output channels B, C, M with a
sigmoid, zero-mean/unit-variance input; 16-32-64-128 feature maps, written here) is packaged as a
BioImage.IO zip and put in a model cache as if downloaded; a synthetic nuclei volume (default
60x256x256) is segmented by ``biapy-runner run`` (3D instance segmentation, tiles of 32x128x128
with 4/16/16 pixels of context) in a subprocess, as a user runs it.

The weights (``--weights``): ``fitted`` (the default) makes the prediction realistic. Random
weights predict one foreground blob over the whole volume with hundreds of seeds, so the
watershed, the per-object measurements and the writing cost far more than on a real nuclei
model (a real BiaPy nuclei model gives ~23 instances on a sparse foreground of this kind). So
the same network is first fitted to this volume's own targets: the synthetic volume comes with
its instance labels, the runner's ``train.targets.make_targets`` turns them into the B/C/M
channels (BiaPy's F, C, M) and ``train.losses.loss_for`` gives the loss ``biapy-runner train``
would optimise; ``FIT_STEPS`` seeded Adam steps on ``FIT_CROP`` crops (three in four near a
nucleus). The fitted weights are cached in the work folder (``--keep DIR`` reuses them) and the
fit's time is reported on its own line, in no ratio. ``--weights random`` keeps the seeded
random weights (the degenerate case: the worst case for post-processing).

Reported, in one run:

- floor: the bare torch eager forward over exactly the tiles the runner predicts (batch 1,
  same threads, same process count), and the same for the backend the runner chose;
- each runner run: wall time and wall / floor, start-up to the first tile, the phases (start-up,
  backend choice, tiles, post-processing and writing, exit), peak RSS, the backend, its batch and
  its speed-up over eager as the runner measured it; the goals of issue 12 beside the ratios
  (warm <= 0.50, torch <= 0.90, start-up to the first tile <= 2.5 s), and the number of
  instances the warm run found against the volume's nuclei.

Runs: ``cold`` (the backend is probed: no remembered choice), then ``warm`` (choice remembered,
the normal case), then, unless ``--quick``, ``torch-cold`` (``--backend torch-channels-last``:
torch only, checked against eager on the first tile) and ``torch`` (the same, the check
remembered: the normal case of a forced backend).
The machine's load changes wall times: compare ratios measured in the same run, and rerun on a
quiet machine for figures to quote.

    PYTHONPATH=runner .venv/bin/python benchmarks/bench_e2e.py [--threads 2] [--shape 60 256 256]
        [--weights fitted|random] [--fit-steps N] [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PATCH = (32, 128, 128)
PADDING = (4, 16, 16)
HALO = 4
FIT_CROP = (16, 48, 48)
FIT_STEPS = 150
#: the issue's goals for wall / floor by run, and for the start-up to the first tile (s)
GOALS = {"warm": 0.50, "torch": 0.90}
STARTUP_GOAL = 2.5
MODEL_ID = "bench-resunet"

ARCHITECTURE = '''
import torch
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(c_in, c_out, 3, padding=1), nn.BatchNorm3d(c_out), nn.ELU(),
            nn.Conv3d(c_out, c_out, 3, padding=1), nn.BatchNorm3d(c_out),
        )
        self.skip = nn.Conv3d(c_in, c_out, 1)
        self.act = nn.ELU()

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class ResUNet3D(nn.Module):
    def __init__(self, in_channels=1, out_channels=3, feature_maps=(16, 32, 64, 128)):
        super().__init__()
        fm = list(feature_maps)
        self.down = nn.ModuleList()
        c = in_channels
        for f in fm[:-1]:
            self.down.append(ResBlock(c, f))
            c = f
        self.pool = nn.MaxPool3d(2)
        self.bottom = ResBlock(fm[-2], fm[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for f_hi, f_lo in zip(fm[::-1][:-1], fm[::-1][1:]):
            self.up.append(nn.ConvTranspose3d(f_hi, f_lo, 2, stride=2))
            self.merge.append(ResBlock(2 * f_lo, f_lo))
        self.head = nn.Conv3d(fm[0], out_channels, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, skips[::-1]):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)
'''

CONFIG = f"""
PROBLEM:
  TYPE: INSTANCE_SEG
  NDIM: 3D
  INSTANCE_SEG:
    DATA_CHANNELS: BCM
DATA:
  PATCH_SIZE: ({PATCH[0]}, {PATCH[1]}, {PATCH[2]}, 1)
  TEST:
    PADDING: ({PADDING[0]}, {PADDING[1]}, {PADDING[2]})
    LOAD_GT: False
MODEL:
  SOURCE: bmz
  BMZ:
    SOURCE_MODEL_ID: {MODEL_ID}
TEST:
  ENABLE: True
"""


def build_package(work: Path, cache: Path, state_dict: dict[str, torch.Tensor] | None) -> Path:
    """The ResUNet as a BioImage.IO package, saved in ``cache`` as the runner saves downloads
    (``state_dict`` None: seeded random weights)."""
    sys.path.insert(0, str(REPO / "tests"))
    from biapy_runner.models.store import rdf_bytes
    from bmz_factory import make_model_package

    torch.manual_seed(0)
    package = make_model_package(
        work, architecture_source=ARCHITECTURE, callable_name="ResUNet3D",
        kwargs={"in_channels": 1, "out_channels": 3}, state_dict=state_dict, ndim=3,
        out_channels=3, size=(16, 16),
        halo=HALO, postprocessing=[{"id": "sigmoid"}], channel_names=["B", "C", "M"],
        name="bench resunet",
    )
    import hashlib

    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{MODEL_ID}__{hashlib.sha256(rdf_bytes(package)).hexdigest()[:16]}.zip"
    cached.write_bytes(package.read_bytes())
    return cached


def synthetic_volume(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright ellipsoidal nuclei on a noisy background (uint16) and their instance labels (uint16;
    where nuclei overlap the later one's label wins)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    volume = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint16)
    for k in range(1, max(8, shape[1] * shape[2] // 2500) + 1):
        c = rng.uniform((0, 0, 0), shape)
        r = rng.uniform(4, 10, size=3)
        inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2
        volume += np.where(inside < 1, rng.uniform(400, 900), 0).astype(np.float32)
        labels[inside < 1] = k
    volume += rng.normal(100, 20, size=shape).astype(np.float32)
    return np.clip(volume, 0, 65535).astype(np.uint16), labels


def fit_weights(volume: np.ndarray, labels: np.ndarray, steps: int, threads: int,
                seed: int = 0) -> tuple[dict[str, torch.Tensor], float, float]:
    """The bench ResUNet fitted to the volume's own B/C/M targets: ``(state dict, seconds, last
    loss)``. The targets and the loss are the runner's own (``train.targets.make_targets``,
    ``train.losses.loss_for`` for this configuration, i.e. what ``biapy-runner train`` would
    optimise); Adam (lr 1e-3), batch 1, seeded random crops of ``FIT_CROP`` from the normalised
    volume (zero mean, unit variance over the whole volume, as the package's preprocessing), three
    in four centred near a nucleus."""
    from scipy import ndimage

    from biapy_runner.config.load import load_config
    from biapy_runner.train.losses import loss_for
    from biapy_runner.train.targets import make_targets

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "bench.yaml"
        cfg_path.write_text(CONFIG)
        cfg = load_config(cfg_path)
    target = make_targets(cfg, labels)[:3]  # B, C, M
    centres = np.array(ndimage.center_of_mass(labels > 0, labels, range(1, int(labels.max()) + 1)),
                       dtype=int)
    x = volume.astype(np.float32)
    x = (x - x.mean()) / (x.std() + 1e-6)
    loss = loss_for(cfg, [("B", "sigmoid"), ("C", "sigmoid"), ("M", "sigmoid")])
    namespace: dict = {}
    exec(compile(ARCHITECTURE, "architecture.py", "exec"), namespace)
    net = namespace["ResUNet3D"](in_channels=1, out_channels=3)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    start = time.perf_counter()
    value = float("nan")
    for _ in range(steps):
        # three crops in four around a nucleus (the foreground is ~1% of the volume)
        around = centres[rng.integers(len(centres))] if rng.random() < 0.75 else None
        corner = [int(np.clip((a if around is not None else rng.integers(0, n))
                              - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, n - c))
                  for n, c, a in zip(x.shape, FIT_CROP, around if around is not None else x.shape)]
        region = tuple(slice(c, c + n) for c, n in zip(corner, FIT_CROP))
        xb = torch.from_numpy(np.ascontiguousarray(x[region]))[None, None]
        yb = torch.from_numpy(np.ascontiguousarray(target[(slice(None), *region)]))[None]
        optimizer.zero_grad()
        step_loss = loss(net(xb), yb)
        step_loss.backward()
        optimizer.step()
        value = float(step_loss.detach())
    seconds = time.perf_counter() - start
    net.eval()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, seconds, value


def fitted_weights(work: Path, volume: np.ndarray, labels: np.ndarray, steps: int, threads: int
                   ) -> tuple[dict[str, torch.Tensor], float | None, float | None]:
    """``fit_weights``, cached in ``work`` by the volume's digest and the steps (``None`` seconds
    and loss when read back from the cache)."""
    import hashlib

    digest = hashlib.sha256(volume.tobytes() + labels.tobytes()).hexdigest()[:12]
    path = work / f"fitted-{digest}-{steps}.pt"
    if path.is_file():
        return torch.load(path), None, None
    state, seconds, value = fit_weights(volume, labels, steps, threads)
    torch.save(state, path)
    return state, seconds, value


def bare_forward(cached: Path, volume: np.ndarray, threads: int, backend: str | None) -> dict:
    """Seconds of the bare forward (eager, and ``backend`` when another) over the tiles the runner
    predicts, batch 1, cut and preprocessed beforehand."""
    from biapy_runner.inference.tiling import plan_tiles, tile_grid
    from biapy_runner.models.backends import choice
    from biapy_runner.models.model import load_model

    torch.set_num_threads(threads)
    model = load_model(cached, device="cpu", cache_dir=cached.parent / "floor", backend="torch")
    prepared = model.preprocess(volume[None].astype(np.float32))
    plan = plan_tiles(prepared.shape[1:], patch=PATCH, padding=PADDING, overlap=(0, 0, 0),
                      valid_size=model.valid_size)
    grid = tile_grid(prepared.shape[1:], plan)
    padded = grid.pad(prepared)
    tiles = [torch.from_numpy(np.ascontiguousarray(padded[grid.input_slices(s)][None]))
             for s in grid.starts()]
    result = {"tiles": len(tiles), "eager": _timed_over(model.reference, tiles)}
    if backend and backend != "torch":
        source = choice.Source("pytorch_state_dict", model.reference, None,
                               torch.device("cpu"), threads, cached.parent / "floor")
        forward = choice.builders_for(source, tiles[0], 5, (1, 1))[backend]()
        result[backend] = _timed_over(forward, tiles)
    return result


def _timed_over(forward, tiles: list[torch.Tensor]) -> float:
    with torch.inference_mode():
        forward(tiles[0])  # warm-up: compilation, allocation
        start = time.perf_counter()
        for tile in tiles:
            forward(tile)
        return time.perf_counter() - start


@dataclass
class Run:
    name: str
    wall: float = 0.0
    peak_rss: int = 0
    marks: dict[str, float] = field(default_factory=dict)
    backend: str = "?"
    speedup: float | None = None
    batch: str = "?"
    tiles_line: str = ""


_MARKS = [
    ("loaded", re.compile(r"running \S+ weights on|weights on \S+, loaded only if")),
    ("chosen", re.compile(r": backend \S+")),
    ("first_tile", re.compile(r"tile\(s\) \(.*batches of")),
    ("tiles_done", re.compile(r"tiles (\d+)/\1 ")),
    ("written", re.compile(r"results written to")),
]


def run_runner(name: str, cached: Path, image: Path, out: Path, threads: int, extra: list[str]
               ) -> Run:
    """One ``biapy-runner run`` in a subprocess: wall, peak RSS and the time of each log mark."""
    cfg = out.parent / "bench.yaml"
    cfg.write_text(CONFIG)
    command = [sys.executable, "-m", "biapy_runner", "run", "--config", str(cfg),
               "--images", str(image), "--out", str(out), "--cache-dir", str(cached.parent),
               "--device", "cpu", "--threads", str(threads), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO / "runner")}
    run = Run(name)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        now = time.perf_counter() - start
        for mark, pattern in _MARKS:
            if mark not in run.marks and pattern.search(line):
                run.marks[mark] = now
        if m := re.search(r": backend (\S+?)(?:,| \()", line):
            run.backend = m.group(1)
            speed = re.search(r"([\d.]+)x the speed", line)
            run.speedup = float(speed.group(1)) if speed else None
        if m := re.search(r"tile\(s\) \(.*, batches of (\d+)", line):
            run.batch = m.group(1)
        if "ERROR" in line or "Traceback" in line:
            print(line, end="", file=sys.stderr)
    _, status, usage = os.wait4(proc.pid, 0)
    run.wall = time.perf_counter() - start
    run.peak_rss = usage.ru_maxrss * 1024
    if status != 0:
        raise SystemExit(f"the runner failed in run {name!r} (status {status})")
    return run


def _instances(path: Path) -> int:
    import tifffile

    return int(np.count_nonzero(np.unique(tifffile.imread(path))))


def _phases(run: Run) -> str:
    order = ["loaded", "chosen", "first_tile", "tiles_done", "written"]
    labels = ["start-up", "choice", "to 1st tile", "tiles", "post+write", "exit"]
    times, last, parts = [], 0.0, []
    for mark in order:
        value = run.marks.get(mark, last)
        times.append(value - last)
        last = value
    times.append(run.wall - last)
    for label, t in zip(labels, times):
        parts.append(f"{label} {t:.1f}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(60, 256, 256))
    parser.add_argument("--quick", action="store_true", help="skip the --backend torch runs")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (the fitted "
                        "weights are cached there)")
    parser.add_argument("--weights", choices=("fitted", "random"), default="fitted",
                        help="fitted: weights fitted to the volume (nuclei-like prediction, the "
                        "default); random: seeded random weights (one foreground blob)")
    parser.add_argument("--fit-steps", type=int, default=FIT_STEPS)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    for old in cache.glob(f"{MODEL_ID}__*"):
        if old.is_dir():
            import shutil

            shutil.rmtree(old)
        else:
            old.unlink()
    volume, labels = synthetic_volume(tuple(args.shape))
    fit = None
    state = None
    if args.weights == "fitted":
        state, fit_seconds, fit_loss = fitted_weights(work, volume, labels, args.fit_steps,
                                                      args.threads)
        fit = (fit_seconds, fit_loss)
    cached = build_package(work / "package", cache, state)
    import tifffile

    image = work / "nuclei.tif"
    tifffile.imwrite(image, volume, metadata={"axes": "ZYX"})

    runs = [run_runner("cold", cached, image, work / "out-cold", args.threads, [])]
    runs.append(run_runner("warm", cached, image, work / "out-warm", args.threads, []))
    if not args.quick:
        for name in ("torch-cold", "torch"):  # the check against eager, then remembered
            runs.append(run_runner(name, cached, image, work / f"out-{name}", args.threads,
                                   ["--backend", "torch-channels-last"]))
    chosen = runs[1].backend
    floor = bare_forward(cached, volume, args.threads, chosen)

    eager = floor["eager"]
    print(f"\nvolume {tuple(args.shape)}, {floor['tiles']} tiles of {PATCH}, context {PADDING}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"floor: bare eager forward over the same tiles {eager:.2f}s "
          f"({eager / floor['tiles']:.3f}s per tile)"
          + (f"; bare {chosen} {floor[chosen]:.2f}s ({eager / floor[chosen]:.2f}x eager)"
             if chosen in floor and chosen != "eager" else ""))
    if fit is not None:
        print(f"weights: fitted to the volume's B/C/M targets, {args.fit_steps} steps of "
              f"{FIT_CROP}: " + (f"{fit[0]:.1f}s, last loss {fit[1]:.3f} (not in any ratio)"
                                 if fit[0] is not None else "read from the work folder's cache"))
    else:
        print("weights: seeded random (degenerate prediction: one foreground blob)")
    print(f"instances: {_instances(work / 'out-warm' / 'post_proc' / 'nuclei.tif')} in the warm "
          f"run's post_proc (the volume has {len(np.unique(labels)) - 1} nuclei)")
    print(f"{'run':10} {'wall s':>7} {'/floor':>7} {'goal':>6} {'1st tile s':>10} {'peak RSS':>9} "
          f"{'backend':>20} {'speed-up':>8} {'batch':>5}  phases (s)")
    for run in runs:
        speed = f"{run.speedup:.2f}x" if run.speedup else "-"
        goal = GOALS.get(run.name)
        print(f"{run.name:10} {run.wall:7.1f} {run.wall / eager:7.2f} "
              f"{f'<={goal:.2f}' if goal else '-':>6} "
              f"{run.marks.get('first_tile', float('nan')):10.1f} "
              f"{run.peak_rss / 2**30:7.2f}GB {run.backend:>20} {speed:>8} {run.batch:>5}  "
              f"{_phases(run)}")
    print(f"goals (issue 12): warm wall / floor <= {GOALS['warm']:.2f}, torch wall / floor <= "
          f"{GOALS['torch']:.2f}, start-up to the first tile <= {STARTUP_GOAL:.1f}s (warm)")
    remembered = list(cache.glob(f"{MODEL_ID}__*.derived/backends.json"))
    if remembered:
        print("remembered choice:", json.dumps(json.loads(remembered[0].read_text()), indent=1))


if __name__ == "__main__":
    main()

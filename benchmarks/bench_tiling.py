"""Overhead of the runner's tiled prediction over the bare model forward (a script, not a test).

For a 2D 2048x2048 image and a 3D 64x512x512 volume, on the same tiles and in the same run:
(a) the bare torch forward over exactly the tiles ``predict_tiled`` runs (same batches, tiles cut
beforehand), (b) ``biapy_runner.inference.tiling.predict_tiled``, and (c) bioimageio.core's own blockwise
prediction of a BioImage.IO package of the same network (skipped when the package cannot be built
here). Prints a table and the ratio (b)/(a); the goal is <= 1.05 on CPU. On a loaded machine
wall times are noisy: the CPU-time ratio and (b0), ``predict_tiled`` around an identity model
(the runner's own work alone, so (b) ~ (a) + (b0)), are the steadier measures of the overhead.

    PYTHONPATH=runner python benchmarks/bench_tiling.py [--threads 2] [--repeats 2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from biapy_runner.inference.tiling import TilePlan, plan_tiles, predict_tiled, tile_grid

REPO = Path(__file__).resolve().parents[1]

ARCHITECTURE = '''
import torch
from torch import nn


def _double_conv(conv, c_in, c_out):
    return nn.Sequential(
        conv(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
        conv(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True),
    )


class TinyUNet(nn.Module):
    """One-level U-Net: two convolutions, pool, two convolutions, upsample, skip, two, 1x1."""

    def __init__(self, ndim=2, in_channels=1, out_channels=1, width=16):
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        self.down = _double_conv(conv, in_channels, width)
        self.pool = (nn.MaxPool2d if ndim == 2 else nn.MaxPool3d)(2)
        self.bottom = _double_conv(conv, width, 2 * width)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = _double_conv(conv, 3 * width, width)
        self.head = conv(width, out_channels, 1)

    def forward(self, x):
        skip = self.down(x)
        deep = self.up(self.bottom(self.pool(skip)))
        return self.head(self.fuse(torch.cat([skip, deep], dim=1)))
'''


@dataclass(frozen=True)
class Case:
    """One benchmark: image shape, tile geometry and network width."""

    name: str
    shape: tuple[int, ...]
    patch: tuple[int, ...]
    padding: int
    batch_size: int
    width: int

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.shape)


CASES = (
    Case("2D 2048x2048", (2048, 2048), (256, 256), 16, 4, 16),
    Case("3D 64x512x512", (64, 512, 512), (32, 128, 128), 4, 2, 8),
)
QUICK = (
    Case("2D 512x512", (512, 512), (256, 256), 16, 4, 16),
    Case("3D 32x128x128", (32, 128, 128), (32, 64, 64), 4, 2, 8),
)


def build_net(case: Case) -> tuple[torch.nn.Module, dict]:
    """The benchmark network (random weights, fixed seed) and its constructor arguments."""
    namespace: dict = {}
    exec(compile(ARCHITECTURE, "<architecture>", "exec"), namespace)  # noqa: S102
    kwargs = {"ndim": case.ndim, "in_channels": 1, "out_channels": 1, "width": case.width}
    torch.manual_seed(0)
    return namespace["TinyUNet"](**kwargs).eval(), kwargs


@dataclass(frozen=True)
class Timing:
    """Wall-clock and process CPU seconds (CPU time is less sensitive to other load)."""

    wall: float
    cpu: float


def timed(work: Callable[[], object]) -> Timing:
    """Run ``work`` once and time it."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def bare_forward(net: torch.nn.Module, image: np.ndarray, plan: TilePlan, batch: int) -> Timing:
    """(a): the forward alone over the tiles ``predict_tiled`` would run (cut beforehand)."""
    grid = tile_grid(image.shape[1:], plan)
    padded = grid.pad(image)
    starts = list(grid.starts())
    batches = [
        torch.from_numpy(np.stack([padded[grid.input_slices(s)] for s in starts[i : i + batch]]))
        for i in range(0, len(starts), batch)
    ]

    def run() -> None:
        with torch.inference_mode():
            for tensor in batches:
                net(tensor)

    return timed(run)


def runner_predict(net: torch.nn.Module, image: np.ndarray, plan: TilePlan, batch: int) -> Timing:
    """(b): ``predict_tiled``."""
    return timed(lambda: predict_tiled(image, net, plan, batch_size=batch))


def tiling_only(image: np.ndarray, plan: TilePlan, batch: int) -> Timing:
    """(b0): ``predict_tiled`` around an identity model, i.e. the runner's own work alone (a
    measure of (b) - (a) that other load on the machine hardly disturbs)."""
    return timed(lambda: predict_tiled(image, lambda tiles: tiles, plan, batch_size=batch))


def bioimageio_predictor(
    case: Case, net: torch.nn.Module, kwargs: dict, workdir: Path
) -> Callable[[np.ndarray], Timing] | None:
    """(c): a function timing bioimageio.core's blockwise prediction, or None if unavailable."""
    try:
        sys.path.insert(0, str(REPO / "tests"))
        from bioimageio.core import Sample, Tensor, create_prediction_pipeline, load_description
        from bioimageio.spec.model.v0_5 import AxisId, TensorId
        from bmz_factory import make_model_package
    except ImportError as exc:
        print(f"(c) skipped: {exc}")
        return None
    step = 16
    low = step * -(-(2 * case.padding + 1) // step)  # the spec wants min size > 2 * halo
    package = make_model_package(
        workdir,
        architecture_source=ARCHITECTURE,
        callable_name="TinyUNet",
        kwargs=kwargs,
        state_dict=net.state_dict(),
        ndim=case.ndim,
        size=(low, step),
        halo=case.padding,
        preprocessing=[],
        postprocessing=[],
        name=f"bench {case.ndim}d",
    )
    pipeline = create_prediction_pipeline(load_description(package), devices=["cpu"])
    axes = ("z", "y", "x")[-case.ndim :]
    ns = {(TensorId("input"), AxisId(a)): (p - low) // step for a, p in zip(axes, case.patch)}
    dims = ("batch", "channel", *axes)

    def run(image: np.ndarray) -> Timing:
        sample = Sample(
            members={TensorId("input"): Tensor(image[None], dims=dims)}, stat={}, id="bench"
        )
        return timed(lambda: pipeline.predict_sample_with_blocking(sample, ns=ns))  # 1 by 1

    return run


def bench(case: Case, repeats: int, with_bmz: bool) -> dict[str, Timing | int]:
    """Best-of-``repeats`` timers of (a) and (b) (interleaved) and one of (c) for one case."""
    net, kwargs = build_net(case)
    image = np.random.default_rng(0).random((1, *case.shape), dtype=np.float32)
    plan = plan_tiles(
        case.shape,
        patch=case.patch,
        padding=(case.padding,) * case.ndim,
        overlap=(0.0,) * case.ndim,
    )
    result: dict[str, Timing | int] = {"tiles": tile_grid(case.shape, plan).count}
    with torch.inference_mode():  # warm-up: first-call allocations and kernel selection
        net(torch.zeros((case.batch_size, 1, *case.patch)))
    runs: dict[str, list[Timing]] = {"a": [], "b": []}
    for i in range(repeats):  # interleaved, order alternating: a b, b a, ...
        for key in ("a", "b") if i % 2 == 0 else ("b", "a"):
            run = bare_forward if key == "a" else runner_predict
            runs[key].append(run(net, image, plan, case.batch_size))
    result.update({k: min(v, key=lambda t: t.wall) for k, v in runs.items()})
    result["b0"] = min(
        (tiling_only(image, plan, case.batch_size) for _ in range(repeats)), key=lambda t: t.wall
    )
    if with_bmz:
        with tempfile.TemporaryDirectory() as tmp:
            bmz = bioimageio_predictor(case, net, kwargs, Path(tmp))
            if bmz is not None:
                result["c"] = bmz(image)
    return result


def _row(name: str, r: dict) -> str:
    a, b, b0, c = r["a"], r["b"], r["b0"], r.get("c")
    cells = [f"{name:<16}{r['tiles']:>6}"]
    for t in (a, b, c):
        cells.append(f"{t.wall:9.2f}{t.cpu:8.2f}" if t else f"{'-':>9}{'-':>8}")
    cells.append(f"{b.wall / a.wall:9.3f}{b.cpu / a.cpu:8.3f}")
    cells.append(f"{b0.wall:9.3f}{1 + b0.wall / a.wall:9.3f}")
    cells.append(f"{c.wall / a.wall:9.3f}" if c else f"{'-':>9}")
    return "".join(cells)


def main() -> None:
    """Run the cases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small images, for a smoke run")
    parser.add_argument("--no-bmz", action="store_true", help="skip (c)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, CPU, {args.threads} threads; (a), (b) best of {args.repeats}"
    )
    rows = [
        f"{'':<22}{'(a) bare':>17}{'(b) runner':>17}{'(c) bioimageio':>17}{'(b)/(a)':>17}"
        + f"{'(b0) tiling only':>18}",
        f"{'case':<16}{'tiles':>6}"
        + f"{'wall s':>9}{'cpu s':>8}" * 4
        + f"{'wall s':>9}{'1+b0/a':>9}{'(c)/(a)':>9}",
    ]
    for case in QUICK if args.quick else CASES:
        rows.append(_row(case.name, bench(case, args.repeats, not args.no_bmz)))
        print(rows[-1], flush=True)
    print("\n".join(["", *rows]))


if __name__ == "__main__":
    main()

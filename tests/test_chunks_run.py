"""``run`` by chunks decodes instances and points by chunks and scores them (semantic labels
too): the same metrics rows, labels (up to relabelling) and points as the in-memory run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_chunked_decode import balls, same_up_to_relabelling

#: a 1x1x1 convolution with fixed weights: F = sigmoid(8 z), C ~ 0 (instances); one channel
#: sigmoid(2 z - 3) (points), z the normalised input
CONV = """
import torch


class Net(torch.nn.Module):
    def __init__(self, out_channels):
        super().__init__()
        self.a = torch.nn.Conv3d(1, out_channels, 1)

    def forward(self, x):
        return torch.sigmoid(self.a(x))
"""

CONFIGS = {
    "instance": (
        "PROBLEM:\n  TYPE: INSTANCE_SEG\n  NDIM: 3D\n  INSTANCE_SEG:\n    DATA_CHANNELS: BC\n"
        "    WATERSHED:\n      SEED_CHANNELS_THRESH: [0.5, 0.3]\n"
        "      GROWTH_MASK_CHANNELS_THRESH: [0.4]\n"
        "DATA:\n  PATCH_SIZE: (32, 32, 32, 1)\n  TEST:\n    PADDING: (8, 8, 8)\n"
        "MODEL:\n  SOURCE: bmz\n"
    ),
    "semantic": (
        "PROBLEM:\n  TYPE: SEMANTIC_SEG\n  NDIM: 3D\n"
        "DATA:\n  PATCH_SIZE: (32, 32, 32, 1)\n  TEST:\n    PADDING: (8, 8, 8)\n"
        "MODEL:\n  SOURCE: bmz\n"
    ),
    "detection": (
        "PROBLEM:\n  TYPE: DETECTION\n  NDIM: 3D\nTEST:\n  DET_MIN_TH_TO_BE_PEAK: 0.5\n"
        "  DET_PEAK_LOCAL_MAX_MIN_DISTANCE: 3\n  DET_TOLERANCE: 3\n"
        "DATA:\n  PATCH_SIZE: (32, 32, 32, 1)\n  TEST:\n    PADDING: (8, 8, 8)\n"
        "MODEL:\n  SOURCE: bmz\n"
    ),
}


def _package(folder: Path, weights: list[float], biases: list[float]) -> Path:
    import torch

    from tests.bmz_factory import make_model_package

    state = {"a.weight": torch.tensor(weights).reshape(-1, 1, 1, 1, 1),
             "a.bias": torch.tensor(biases)}  # fmt: skip
    return make_model_package(
        folder, architecture_source=CONV, callable_name="Net",
        kwargs={"out_channels": len(weights)}, state_dict=state, ndim=3,
        out_channels=len(weights), size=(16, 8), halo=0, name=f"conv{len(weights)}",
    )  # fmt: skip


def _run(root: Path, kind: str, out: str, *extra: str) -> Path:
    from biapy_runner.cli import main

    args = ["run", "--config", str(root / f"{kind}.yaml"), "--images", str(root / f"{kind}.tif"),
            "--gt", str(root / "gt" / f"{kind}.tif"),
            "--model", (root / kind / "model.txt").read_text(),
            "--out", str(root / out), "--no-report", *extra]  # fmt: skip
    try:
        assert int(main(args) or 0) == 0
    except SystemExit as stop:
        assert int(stop.code or 0) == 0
    return root / out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import scipy.ndimage as ndi
    import tifffile

    root = tmp_path_factory.mktemp("chunks_run")
    gt = balls()
    (root / "gt").mkdir()
    images = {"instance": (gt > 0) * 1000.0, "semantic": (gt > 0) * 1000.0,
              "detection": ndi.gaussian_filter((gt > 0).astype(float), 2) * 1000}  # fmt: skip
    for kind, image in images.items():
        tifffile.imwrite(root / f"{kind}.tif", image.astype(np.uint16))
        tifffile.imwrite(root / "gt" / f"{kind}.tif",
                         (gt > 0).astype(np.uint8) if kind == "semantic" else gt)
        (root / f"{kind}.yaml").write_text(CONFIGS[kind])
        (root / kind).mkdir()
    for kind, weights, biases in (("instance", [8.0, 0.0], [0.0, -10.0]),
                                  ("semantic", [0.0, 8.0], [0.0, 0.0]),
                                  ("detection", [2.0], [-3.0])):
        (root / kind / "model.txt").write_text(str(_package(root / kind, weights, biases)))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["instance", "detection", "semantic"])
def test_run_by_chunks_scores_like_in_memory(root: Path, kind: str) -> None:
    import tifffile
    import zarr

    memory = _run(root, kind, f"{kind}_memory", "--memory-budget", "4G")
    chunks = _run(root, kind, f"{kind}_chunks", "--memory-budget", "2M",
                  "--set", "TEST.BY_CHUNKS.ENABLE=True",
                  *(["--report"] if kind == "instance" else []))  # fmt: skip
    expected = pd.read_csv(memory / "metrics" / "metrics.tsv", sep="\t")
    got = pd.read_csv(chunks / "metrics" / "metrics.tsv", sep="\t")
    pd.testing.assert_frame_equal(got, expected)
    if kind == "instance":
        assert expected.loc[0, "post_f1@0.5"] > 0.5
        labels = zarr.open_array(str(chunks / "post_proc" / "instance.zarr"), mode="r")
        assert labels.attrs["complete"]
        whole = tifffile.imread(memory / "post_proc" / "instance.tif")
        assert same_up_to_relabelling(labels[...], whole)
        assert labels.dtype == whole.dtype == np.uint16
        # the report's preview read the Zarr results thinned (2 MiB budget: every 2nd voxel)
        from PIL import Image as PILImage

        preview = np.asarray(PILImage.open(chunks / "report" / "previews" / "instance.png"))
        assert preview.shape[0] == 2 * 32 + 2 * 20 + 3 * 4  # z views 32 high, y/x views 20
        assert "previews/instance.png" in (chunks / "report" / "index.html").read_text()
        assert not (chunks / ".scratch").exists()
        tables = [pd.read_csv(out / "metrics" / "objects.tsv", sep="\t").drop(columns="label")
                  .sort_values(["centroid_z", "centroid_y", "centroid_x"], ignore_index=True)
                  for out in (memory, chunks)]  # fmt: skip
        assert len(tables[0]) == 9
        pd.testing.assert_frame_equal(tables[1], tables[0])
        summaries = [pd.read_csv(out / "metrics" / "summary.tsv", sep="\t") for out in
                     (memory, chunks)]  # fmt: skip
        assert summaries[1].loc[0, "n_objects"] == summaries[0].loc[0, "n_objects"] == 9
        assert summaries[1].loc[0, "mean_size"] == summaries[0].loc[0, "mean_size"]
    elif kind == "semantic":
        assert expected.loc[0, "iou"] > 0.5
    else:
        assert int(expected.loc[0, "tp"]) > 0
        points = [pd.read_csv(out / "post_proc" / "detection_points.tsv", sep="\t")
                  for out in (memory, chunks)]  # fmt: skip
        pd.testing.assert_frame_equal(points[1], points[0])
        mask = zarr.open_array(str(chunks / "post_proc" / "detection.zarr"), mode="r")
        assert np.array_equal(mask[...], tifffile.imread(memory / "post_proc" / "detection.tif"))


PROBLEM_TYPES = {"instance": "INSTANCE_SEG", "semantic": "SEMANTIC_SEG", "detection": "DETECTION"}


def _slabs(run: Path, kind: str, ranges: list[tuple[int, int]]) -> list[Path]:
    """The run's raw prediction cut into the slabs that ``run --z-range`` jobs write for
    ``ranges`` (their prediction equals the whole one: tests/test_split_merge.py)."""
    from biapy_runner.io.images import read_image
    from biapy_runner.io.slabs import SlabInfo, slab_name, write_slab

    raw = read_image(run / "raw" / f"{kind}.tif", ndim=3).data.astype(np.float32)
    (run / "slabs").mkdir(exist_ok=True)
    paths = []
    for start, end in ranges:
        info = SlabInfo(kind, raw.shape[1:], (start, end), (start, end), raw.shape,
                        (0, raw.shape[1]), PROBLEM_TYPES[kind], "conv")  # fmt: skip
        paths.append(run / "slabs" / slab_name(kind, start, end))
        write_slab(paths[-1], raw[:, start:end], info)
    return paths


def _merge(root: Path, kind: str, slabs: list[Path], out: str, *extra: str) -> Path:
    from biapy_runner.cli import main

    assert main(["merge", "--slabs", *map(str, slabs), "--config", str(root / f"{kind}.yaml"),
                 "--gt", str(root / "gt" / f"{kind}.tif"), "--out", str(root / out),
                 "--no-report", *extra]) == 0  # fmt: skip
    return root / out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["instance", "detection", "semantic"])
def test_merge_by_chunks_equals_merge_in_memory_and_the_run(root: Path, kind: str) -> None:
    """``merge`` by chunks stitches the slabs into ``raw/<stem>.zarr`` and decodes from it into
    ``<folder>/<stem>.zarr`` (no TIFF): the same prediction, labels (up to relabelling),
    points and metrics rows as ``merge`` in memory and as one ``run`` of the volume."""
    import tifffile
    import zarr
    from biapy_runner.io.images import read_image

    run = root / f"{kind}_memory"
    if not run.exists():
        run = _run(root, kind, f"{kind}_memory", "--memory-budget", "4G")
    slabs = _slabs(run, kind, [(0, 16), (16, 27), (27, 40)])
    memory = _merge(root, kind, slabs, f"{kind}_merge_memory", "--memory-budget", "4G")
    chunks = _merge(root, kind, slabs[::-1], f"{kind}_merge_chunks", "--memory-budget", "2M",
                    "--set", "TEST.BY_CHUNKS.ENABLE=True")  # fmt: skip
    rows = [pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t") for out in (run, memory,
                                                                                chunks)]
    pd.testing.assert_frame_equal(rows[1], rows[0])
    pd.testing.assert_frame_equal(rows[2], rows[0])
    stored = zarr.open_array(str(chunks / "raw" / f"{kind}.zarr"), mode="r")
    assert stored.attrs["complete"] and stored.attrs["axes"] == "CZYX"
    whole = read_image(run / "raw" / f"{kind}.tif", ndim=3).data
    assert stored.shape == whole.shape == (stored.shape[0], 40, 64, 64)
    assert np.abs(stored[...] - whole).max() <= 1e-5
    assert not list(chunks.glob("*/*.tif")) and not (chunks / ".scratch").exists()
    summary = pd.read_csv(chunks / "metrics" / "summary.tsv", sep="\t")
    assert bool(summary.loc[0, "by_chunks"])
    folders = ["instances", "post_proc"] if kind == "instance" else ["post_proc"]
    for folder in folders:
        labels = zarr.open_array(str(chunks / folder / f"{kind}.zarr"), mode="r")
        assert labels.attrs["complete"]
        for out in (run, memory):
            expected = tifffile.imread(out / folder / f"{kind}.tif")
            if kind == "instance":
                assert same_up_to_relabelling(labels[...], expected)
            else:
                assert np.array_equal(labels[...], expected)
    if kind == "instance":
        assert rows[0].loc[0, "post_tp@0.5"] == 9
        tables = [pd.read_csv(out / "metrics" / "objects.tsv", sep="\t").drop(columns="label")
                  .sort_values(["centroid_z", "centroid_y", "centroid_x"], ignore_index=True)
                  for out in (run, memory, chunks)]  # fmt: skip
        pd.testing.assert_frame_equal(tables[1], tables[0])
        pd.testing.assert_frame_equal(tables[2], tables[0])
    if kind == "detection":
        points = [pd.read_csv(out / "post_proc" / "detection_points.tsv", sep="\t")
                  for out in (run, chunks)]  # fmt: skip
        pd.testing.assert_frame_equal(points[1], points[0])

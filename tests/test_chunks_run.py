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

"""Detection: peaks, close-point removal, point matching, point GT, the DETECTION workflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from biapy_runner.decode.points import (
    PointSet,
    find_peaks,
    point_mask,
    points_from_image,
    read_points_table,
    remove_close_points,
)
from biapy_runner.errors import InputError
from biapy_runner.metrics.points import match_points, ratios
from biapy_runner.workflows.detection import grow_instances
from tests.cli_run import run_cli


def gaussian_blobs(
    shape: tuple[int, ...], centres: list[tuple[float, ...]], amps: list[float] | None = None,
    sigma: float = 2.0,
) -> np.ndarray:  # fmt: skip
    """A map with a Gaussian of peak ``amps[i]`` (default 1) at each centre."""
    grid = np.indices(shape).astype(np.float64)
    out = np.zeros(shape)
    for i, centre in enumerate(centres):
        d2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        amp = 1.0 if amps is None else amps[i]
        out = np.maximum(out, amp * np.exp(-d2 / (2 * sigma**2)))
    return out.astype(np.float32)


def pointset(coords: list[tuple[float, ...]], probs=None, classes=None) -> PointSet:
    arr = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)
    n = len(arr)
    return PointSet(
        arr,
        np.ones(n) if probs is None else np.asarray(probs, dtype=np.float64),
        np.ones(n, dtype=np.int64) if classes is None else np.asarray(classes, dtype=np.int64),
    )


# --------------------------------------------------------------------------- peaks


def test_peaks_2d_exact_positions_and_threshold() -> None:
    centres = [(10, 12), (30, 40), (50, 20), (55, 55)]
    prob = gaussian_blobs((64, 64), centres, amps=[0.9, 0.8, 0.95, 0.3])[None]
    points = find_peaks(prob, [0.5], min_distance=3)
    np.testing.assert_array_equal(points.coords, [[10, 12], [30, 40], [50, 20]])
    np.testing.assert_allclose(points.probs, [0.9, 0.8, 0.95], rtol=1e-6)
    np.testing.assert_array_equal(points.classes, [1, 1, 1])


def test_peaks_3d_exact_positions() -> None:
    centres = [(3, 10, 12), (12, 30, 40), (8, 40, 8)]
    prob = gaussian_blobs((16, 48, 48), centres)[None]
    points = find_peaks(prob, [0.5], min_distance=2)
    np.testing.assert_array_equal(points.coords, sorted(centres, key=lambda c: (c[0], c[1], c[2])))


def test_peaks_one_threshold_per_class() -> None:
    a = gaussian_blobs((40, 40), [(10, 10), (30, 30)], amps=[0.9, 0.6])
    b = gaussian_blobs((40, 40), [(10, 30)], amps=[0.6])
    points = find_peaks(np.stack([a, b]), [0.7, 0.5])
    np.testing.assert_array_equal(points.coords, [[10, 10], [10, 30]])
    np.testing.assert_array_equal(points.classes, [1, 2])


def test_blob_log_finds_the_blobs() -> None:
    centres = [(10, 12), (30, 40), (50, 20)]
    prob = gaussian_blobs((64, 64), centres)[None]
    points = find_peaks(prob, [0.1], method="blob_log", blob_sigmas=(1.0, 4.0, 4))
    np.testing.assert_array_equal(points.coords, centres)


def test_peaks_none_above_threshold_gives_empty_set() -> None:
    points = find_peaks(np.zeros((1, 8, 8, 8), np.float32), [0.5])
    assert len(points) == 0 and points.coords.shape == (0, 3)


# --------------------------------------------------------------------------- close points


def test_remove_close_points_keeps_the_most_probable() -> None:
    points = pointset([(10, 10), (10, 13), (30, 30), (30, 36)], probs=[0.6, 0.9, 0.8, 0.7])
    kept = remove_close_points(points, [5.0], (1.0, 1.0))
    np.testing.assert_array_equal(kept.coords, [[10, 13], [30, 30], [30, 36]])
    np.testing.assert_allclose(kept.probs, [0.9, 0.8, 0.7])


def test_remove_close_points_anisotropic_resolution() -> None:
    # Two points 2 slices apart: 2 px, but 6 units with z three times coarser than y/x.
    points = pointset([(4, 10, 10), (6, 10, 10), (4, 20, 20), (4, 20, 24)], probs=[1, 0.5, 1, 0.5])
    kept = remove_close_points(points, [5.0], (3.0, 1.0, 1.0))
    np.testing.assert_array_equal(kept.coords, [[4, 10, 10], [6, 10, 10], [4, 20, 20]])
    kept_iso = remove_close_points(points, [5.0], (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(kept_iso.coords, [[4, 10, 10], [4, 20, 20]])


def test_remove_close_points_per_class_radius() -> None:
    points = pointset(
        [(0, 0), (0, 3), (10, 0), (10, 3)], probs=[1, 0.5, 1, 0.5], classes=[1, 1, 2, 2]
    )
    kept = remove_close_points(points, [5.0, 2.0], (1.0, 1.0))
    np.testing.assert_array_equal(kept.coords, [[0, 0], [10, 0], [10, 3]])


# --------------------------------------------------------------------------- matching


def test_match_exact_counts_with_shifts_and_double_detection() -> None:
    gt = np.array([[10, 10], [20, 20], [30, 30], [40, 40], [50, 50]], dtype=float)
    pred = np.array(
        [
            [10, 12],  # 2 px from GT 1: TP
            [20, 26],  # 6 px from GT 2: beyond the tolerance -> FP, GT 2 FN
            [31, 30],  # 1 px from GT 3: TP
            [30.5, 30],  # double detection of GT 3: FP
            [43, 44],  # 5 px from GT 4: not strictly within 5 -> FP, GT 4 FN
            [50, 49],  # TP
        ]
    )
    m = match_points(gt, pred, 5.0, (1.0, 1.0))
    assert m.counts() == {"tp": 3, "fp": 3, "fn": 2}
    np.testing.assert_array_equal(m.pairs, [[0, 0], [2, 3], [4, 5]])
    np.testing.assert_allclose(m.distances, [2.0, 0.5, 1.0])
    np.testing.assert_array_equal(m.fn, [1, 3])
    np.testing.assert_array_equal(m.fp, [1, 2, 4])
    r = ratios(**m.counts())
    assert r["precision"] == pytest.approx(0.5)
    assert r["recall"] == pytest.approx(0.6)
    assert r["f1"] == pytest.approx(2 * 3 / (2 * 3 + 3 + 2))


def test_match_is_optimal_not_greedy() -> None:
    # Greedy nearest-first pairs B with P and leaves A and Q alone; the optimum pairs both.
    gt = np.array([[0, 0], [0, 4]], dtype=float)
    pred = np.array([[0, 3], [0, 6.5]], dtype=float)
    m = match_points(gt, pred, 3.5, (1.0, 1.0))
    np.testing.assert_array_equal(m.pairs, [[0, 0], [1, 1]])
    assert m.counts() == {"tp": 2, "fp": 0, "fn": 0}


def test_match_tolerance_uses_resolution() -> None:
    gt = np.array([[0, 10, 10]], dtype=float)
    pred = np.array([[2, 10, 10]], dtype=float)
    assert match_points(gt, pred, 3.0, (1.0, 1.0, 1.0)).counts()["tp"] == 1
    assert match_points(gt, pred, 3.0, (2.0, 1.0, 1.0)).counts()["tp"] == 0


def test_match_empty_sides_give_zeros_not_nan() -> None:
    empty = np.zeros((0, 2))
    some = np.array([[1.0, 1.0]])
    assert match_points(empty, empty, 5, (1, 1)).counts() == {"tp": 0, "fp": 0, "fn": 0}
    assert match_points(empty, some, 5, (1, 1)).counts() == {"tp": 0, "fp": 1, "fn": 0}
    assert match_points(some, empty, 5, (1, 1)).counts() == {"tp": 0, "fp": 0, "fn": 1}
    assert ratios(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_match_many_points_is_fast_and_complete() -> None:
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 2000, size=(5000, 2))
    pred = gt + rng.normal(0, 0.5, size=gt.shape)
    m = match_points(gt, pred[::-1], 3.0, (1.0, 1.0))
    assert m.counts()["tp"] >= 4990


# --------------------------------------------------------------------------- GT reading


def test_read_biapy_csv_3d(tmp_path: Path) -> None:
    path = tmp_path / "img.csv"
    path.write_text("index, axis-0, axis-1, axis-2\n0,3.0,10.5,12\n1,5,20,30\n")
    points = read_points_table(path, 3)
    np.testing.assert_allclose(points.coords, [[3, 10.5, 12], [5, 20, 30]])
    np.testing.assert_array_equal(points.classes, [0, 0])


def test_read_tsv_named_axes_with_class(tmp_path: Path) -> None:
    path = tmp_path / "img.tsv"
    pd.DataFrame({"x": [5, 7], "y": [1, 2], "class": [2, 1]}).to_csv(path, sep="\t", index=False)
    points = read_points_table(path, 2)
    np.testing.assert_allclose(points.coords, [[1, 5], [2, 7]])
    np.testing.assert_array_equal(points.classes, [2, 1])


def test_read_table_errors_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("axis-0,axis-1\n1,2\n")
    with pytest.raises(InputError, match="3D"):
        read_points_table(path, 3)
    path.write_text("foo,bar\n1,2\n")
    with pytest.raises(InputError, match="no coordinate columns"):
        read_points_table(path, 2)
    path.write_text("axis-0,axis-1\n")
    assert len(read_points_table(path, 2)) == 0
    path.write_text("")
    assert len(read_points_table(path, 2)) == 0


def test_points_from_label_and_point_images() -> None:
    labels = np.zeros((20, 20), np.uint16)
    labels[2:5, 2:5] = 7
    labels[10:14, 10:12] = 3
    labels[10:14, 12:14] = 9  # touches label 3: still its own object
    points = points_from_image(labels)
    np.testing.assert_allclose(points.coords, [[3, 3], [11.5, 10.5], [11.5, 12.5]])
    np.testing.assert_array_equal(points.classes, [0, 0, 0])
    mask = point_mask(pointset([(3, 4), (15, 15), (8, 2)], classes=[1, 2, 1]), (20, 20))
    assert mask.dtype == np.uint8 and mask[3, 4] == 1 and mask[15, 15] == 2
    assert np.count_nonzero(mask) == 27
    back = points_from_image(mask)
    np.testing.assert_allclose(back.coords, [[3, 4], [8, 2], [15, 15]])
    np.testing.assert_array_equal(back.classes, [1, 1, 2])


# --------------------------------------------------------------------------- watershed


def test_grow_instances_one_label_per_point() -> None:
    centres = [(10, 10), (10, 22), (30, 30)]
    prob = gaussian_blobs((40, 40), centres, sigma=3.0)[None]
    points = pointset(centres)
    labels = grow_instances(prob, points, [[3, 3]])
    assert labels.dtype == np.uint16
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]
    for k, centre in enumerate(centres, start=1):
        assert labels[centre] == k
    # the foreground stays around the blobs: nothing far from every centre
    assert labels[0, 39] == 0 and labels[39, 0] == 0
    # the two touching blobs are split between their centres
    assert labels[10, 14] == 1 and labels[10, 18] == 2


def test_grow_instances_3d_and_empty() -> None:
    centres = [(4, 10, 10), (4, 10, 20)]
    prob = gaussian_blobs((8, 30, 30), centres)[None]
    labels = grow_instances(prob, pointset(centres), [[-1, -1]])
    assert sorted(np.unique(labels)) == [0, 1, 2]
    empty = grow_instances(prob, PointSet.empty(3), [[-1, -1]])
    assert empty.shape == (8, 30, 30) and not empty.any()


# --------------------------------------------------------------------------- the workflow


def _cfg(*overrides: str, ndim: str = "2D"):
    from biapy_runner.config.load import load_config

    return load_config(None, ["PROBLEM.TYPE=DETECTION", f"PROBLEM.NDIM={ndim}", *overrides])


def _image(shape: tuple[int, ...], stem: str = "img"):
    from biapy_runner.io.images import Image

    data = np.zeros((1, *shape), np.float32)
    return Image(
        path=Path(f"{stem}.tif"), stem=stem, data=data, axes="cyx" if len(shape) == 2 else "czyx",
        source_axes="YX" if len(shape) == 2 else "ZYX", dtype=data.dtype,
    )  # fmt: skip


def test_workflow_decode_and_score_2d(tmp_path: Path) -> None:
    from biapy_runner.workflows.base import workflow_for

    wf = workflow_for(
        _cfg(
            "TEST.DET_MIN_TH_TO_BE_PEAK=[0.5]",
            "TEST.DET_TOLERANCE=[4]",
            "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS=True",
            "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS=[3]",
        )
    )
    centres = [(10, 10), (30, 40), (50, 20)]
    prob = gaussian_blobs((64, 64), centres)
    prob[10, 12] = 0.99  # a second peak 2 px from the first, less probable: removed
    image = _image((64, 64))
    decoded = wf.decode(prob[None], image)
    table = decoded.tables["post_proc/{stem}_points.tsv"]
    assert list(table.columns) == ["pred_id", "axis-0", "axis-1", "probability", "class"]
    np.testing.assert_array_equal(table[["axis-0", "axis-1"]], centres)
    np.testing.assert_allclose(table["probability"], [1.0, 1.0, 1.0], rtol=1e-6)
    mask = decoded.images["post_proc"]
    assert mask.shape == (64, 64) and mask[10, 10] == 1 and np.count_nonzero(mask) == 27

    gt_path = tmp_path / "img.csv"
    gt_path.write_text("axis-0,axis-1\n10,10\n30,45\n50,21\n60,60\n")
    gt = wf.load_gt(gt_path, image)
    scored = wf.score(decoded, gt, image)
    assert scored.row == {
        "precision": pytest.approx(2 / 3), "recall": pytest.approx(0.5),
        "f1": pytest.approx(4 / 7), "tp": 2, "fp": 1, "fn": 2, "n_true": 4, "n_pred": 3,
    }  # fmt: skip
    assoc = scored.tables["metrics/associations.tsv"]
    assert list(assoc["status"]) == ["tp", "tp", "fn", "fn", "fp"]
    np.testing.assert_allclose(assoc["distance"][:2], [0.0, 1.0])
    assert list(assoc["gt_id"][:4]) == [1, 3, 2, 4] and list(assoc["pred_id"][:2]) == [1, 3]

    total = wf.aggregate([scored.row, {**scored.row, "tp": 0, "fp": 0, "fn": 3, "n_true": 3}])
    assert total.row["tp"] == 2 and total.row["fn"] == 5 and total.row["fp"] == 1
    assert total.row["recall"] == pytest.approx(2 / 7)


def test_workflow_empty_gt_and_no_detection_give_zeros(tmp_path: Path) -> None:
    from biapy_runner.workflows.base import workflow_for

    wf = workflow_for(_cfg())
    image = _image((16, 16))
    decoded = wf.decode(np.zeros((1, 16, 16), np.float32), image)
    assert len(decoded.tables["post_proc/{stem}_points.tsv"]) == 0
    empty = tmp_path / "img.csv"
    empty.write_text("axis-0,axis-1\n")
    row = wf.score(decoded, wf.load_gt(empty, image), image).row
    assert row == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 0,
                   "n_true": 0, "n_pred": 0}  # fmt: skip
    assert wf.aggregate([row, row]).row["f1"] == 0.0
    assert wf.summarize(decoded, image) == {"n_points": 0, "mean_probability": 0.0}


def test_workflow_3d_anisotropic_watershed_and_label_gt(tmp_path: Path) -> None:
    import tifffile
    from biapy_runner.workflows.base import workflow_for

    wf = workflow_for(
        _cfg(
            "DATA.TEST.RESOLUTION=(2, 1, 1)",
            "TEST.DET_TOLERANCE=[3]",
            "TEST.POST_PROCESSING.DET_WATERSHED=True",
            "TEST.POST_PROCESSING.DET_WATERSHED_FIRST_DILATION=[[1, 3, 3]]",
            ndim="3D",
        )
    )
    centres = [(4, 10, 10), (10, 20, 24)]
    image = _image((16, 32, 32))
    decoded = wf.decode(gaussian_blobs((16, 32, 32), centres)[None], image)
    labels = decoded.images["instances"]
    assert labels.dtype == np.uint16 and sorted(np.unique(labels)) == [0, 1, 2]
    assert labels[4, 10, 10] == 1 and labels[10, 20, 24] == 2
    gt_labels = np.zeros((16, 32, 32), np.uint16)
    gt_labels[4:7, 9:12, 9:12] = 5  # centroid (5, 10, 10): 1 slice = 2 units away -> TP
    gt_labels[11:14, 19:22, 23:26] = 8  # centroid (12, 20, 24): 4 units away -> FN
    tifffile.imwrite(tmp_path / "img_mask.tif", gt_labels)
    row = wf.score(decoded, wf.load_gt(tmp_path / "img_mask.tif", image), image).row
    assert (row["tp"], row["fp"], row["fn"]) == (1, 1, 1)


def test_workflow_threshold_types() -> None:
    from biapy_runner.workflows.base import workflow_for

    prob = gaussian_blobs((40, 40), [(10, 10), (30, 30)], amps=[0.4, 0.15])[None]
    for kind, expected in [("manual", 0), ("relative", 1), ("auto", 2)]:
        wf = workflow_for(_cfg(f"TEST.DET_TH_TYPE={kind}", "TEST.DET_MIN_TH_TO_BE_PEAK=0.5"))
        points = wf.find_points(prob)
        assert len(points) == expected, kind


def test_per_class_threshold_lists_become_their_first_value_as_in_biapy_37() -> None:
    """BiaPy 3.7 converts the older per-class lists of DET_MIN_TH_TO_BE_PEAK / DET_TOLERANCE
    to their first value; the runner converts them the same way."""
    from biapy_runner.workflows.base import workflow_for

    cfg = _cfg("TEST.DET_MIN_TH_TO_BE_PEAK=[0.5, 0.6, 0.7]", "TEST.DET_TOLERANCE=[4, 8]")
    assert cfg.get("TEST.DET_MIN_TH_TO_BE_PEAK") == 0.5
    assert cfg.get("TEST.DET_TOLERANCE") == 4
    workflow_for(cfg).check_model(2, ["a", "b"])


def test_gt_point_outside_image_is_an_input_error(tmp_path: Path) -> None:
    from biapy_runner.workflows.base import workflow_for

    wf = workflow_for(_cfg())
    path = tmp_path / "img.csv"
    path.write_text("axis-0,axis-1\n5,5\n5,40\n")
    with pytest.raises(InputError, match="outside the image"):
        wf.load_gt(path, _image((16, 16)))


# --------------------------------------------------------------------------- end to end

IDENTITY_SOURCE = '''
import torch


class Identity(torch.nn.Module):
    """Returns its input: the image itself is the probability map."""

    def forward(self, x):
        return x * 1.0
'''


@pytest.mark.slow
def test_end_to_end_run_and_evaluate_2d(tmp_path: Path) -> None:
    import tifffile

    from tests.bmz_factory import make_model_package

    model = make_model_package(
        tmp_path, architecture_source=IDENTITY_SOURCE, callable_name="Identity", kwargs={},
        ndim=2, size=(16, 8), preprocessing=[], name="identity det",
    )  # fmt: skip
    centres = [(10, 12), (30, 40), (50, 20), (52, 52)]
    image = gaussian_blobs((64, 64), centres, amps=[0.9, 0.8, 0.95, 0.3])
    tifffile.imwrite(tmp_path / "img.tif", image)
    gt = tmp_path / "img.csv"
    gt.write_text("index,axis-0,axis-1\n0,11,12\n1,30,44\n2,50,20\n3,52,52\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "PROBLEM:\n  TYPE: DETECTION\n  NDIM: 2D\nDATA:\n  PATCH_SIZE: (32, 32, 1)\n"
        "MODEL:\n  SOURCE: bmz\nTEST:\n  DET_MIN_TH_TO_BE_PEAK: [0.5]\n  DET_TOLERANCE: [3]\n"
    )
    out = tmp_path / "out"
    code = run_cli(["run", "--config", str(cfg), "--images", str(tmp_path / "img.tif"),
                     "--gt", str(gt), "--model", str(model), "--out", str(out)])  # fmt: skip
    assert code == 0
    points = pd.read_csv(out / "post_proc" / "img_points.tsv", sep="\t")
    np.testing.assert_array_equal(points[["axis-0", "axis-1"]], centres[:3])
    np.testing.assert_allclose(points["probability"], [0.9, 0.8, 0.95], atol=1e-5)
    mask = tifffile.imread(out / "post_proc" / "img.tif")
    assert np.squeeze(mask).shape == (64, 64) and np.count_nonzero(mask) == 27
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    # GT 1 is 1 px off (TP), GT 2 is 4 px off (FN + FP), GT 3 exact (TP), GT 4 too faint (FN)
    assert metrics.loc["img", ["tp", "fp", "fn"]].tolist() == [2, 1, 2]
    assert metrics.loc["ALL", "precision"] == pytest.approx(2 / 3)
    assert metrics.loc["ALL", "recall"] == pytest.approx(0.5)
    assert metrics.loc["ALL", "f1"] == pytest.approx(4 / 7)
    assoc = pd.read_csv(out / "metrics" / "associations.tsv", sep="\t")
    assert sorted(assoc["status"]) == ["fn", "fn", "fp", "tp", "tp"]

    # evaluate the written point mask against the same GT: the same counts
    evaluated = tmp_path / "eval"
    code = run_cli(["evaluate", "--workflow", "detection", "--pred",
                     str(out / "post_proc" / "img.tif"), "--gt", str(gt),
                     "--out", str(evaluated), "--set", "TEST.DET_TOLERANCE=[3]"])  # fmt: skip
    assert code == 0
    again = pd.read_csv(evaluated / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    assert again.loc["img", ["tp", "fp", "fn"]].tolist() == [2, 1, 2]

    # evaluate the written points table (no image size known): the same counts, no mask written
    from_table = tmp_path / "eval_table"
    table = tmp_path / "img.tsv"
    table.write_bytes((out / "post_proc" / "img_points.tsv").read_bytes())
    code = run_cli(["evaluate", "--workflow", "detection", "--pred", str(table),
                     "--gt", str(gt), "--out", str(from_table),
                     "--set", "TEST.DET_TOLERANCE=[3]"])  # fmt: skip
    assert code == 0
    scored = pd.read_csv(from_table / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    assert scored.loc["img", ["tp", "fp", "fn"]].tolist() == [2, 1, 2]
    assert not list((from_table / "post_proc").glob("*.tif"))

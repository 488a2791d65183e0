"""``biapy-runner evaluate``: label checks on both sides, 2D/3D from the files, binary masks."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from biapy_runner.cli import main

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
MASK_2D = TEST_DATA / "dsb_nuclei_mask.tif"  # 65 nuclei, uint16
LABELS_3D = TEST_DATA / "nuclei3d_labels.tif"  # napari nuclei crop (44, 128, 128), 6 nuclei


def _evaluate(workflow: str, pred: Path, gt: Path, out: Path, *extra: str) -> int:
    return main(
        ["evaluate", "--workflow", workflow, "--pred", str(pred), "--gt", str(gt),
         "--out", str(out), *extra]
    )  # fmt: skip


def _pair(tmp_path: Path, pred: np.ndarray | Path, gt: np.ndarray | Path) -> tuple[Path, Path]:
    """Write ``pred`` and ``gt`` as ``pred/img.tif`` and ``gt/img.tif`` (copies for paths)."""
    paths = []
    for side, data in (("pred", pred), ("gt", gt)):
        (tmp_path / side).mkdir()
        path = tmp_path / side / "img.tif"
        tifffile.imwrite(path, tifffile.imread(data) if isinstance(data, Path) else data)
        paths.append(path)
    return paths[0], paths[1]


def _metrics(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")


def _assert_nothing_published(out: Path) -> None:
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


# ----------------------------------------------------------------------------- label values


@pytest.mark.parametrize("side", ["pred", "gt"])
@pytest.mark.parametrize("workflow", ["instance", "semantic"])
def test_negative_labels_are_refused_on_either_side(
    tmp_path: Path, capsys, side: str, workflow: str
) -> None:
    labels = tifffile.imread(MASK_2D).astype(np.int32)
    bad = labels.copy()
    bad[:10, :10] = -1  # would wrap to 65535 in uint16: one huge object
    pred, gt = _pair(tmp_path, bad if side == "pred" else labels, bad if side == "gt" else labels)
    out = tmp_path / "out"
    assert _evaluate(workflow, pred, gt, out) == 2
    err = capsys.readouterr().err
    culprit = pred if side == "pred" else gt
    assert str(culprit) in err and "100 negative label" in err and "minimum -1" in err
    assert "Traceback" not in err
    _assert_nothing_published(out)


@pytest.mark.parametrize("side", ["pred", "gt"])
def test_non_integer_labels_are_refused(tmp_path: Path, capsys, side: str) -> None:
    labels = tifffile.imread(MASK_2D).astype(np.float32)
    bad = labels + 0.25  # one channel of fractions: neither labels nor the 2 BC channels
    pred, gt = _pair(tmp_path, bad if side == "pred" else labels, bad if side == "gt" else labels)
    out = tmp_path / "out"
    assert _evaluate("instance", pred, gt, out) == 2
    err = capsys.readouterr().err
    assert str(pred if side == "pred" else gt) in err and "integer labels" in err
    _assert_nothing_published(out)


def test_float_labels_without_fractions_are_labels(tmp_path: Path) -> None:
    labels = tifffile.imread(MASK_2D)
    pred, gt = _pair(tmp_path, labels.astype(np.float32), labels)
    assert _evaluate("instance", pred, gt, tmp_path / "out") == 0
    row = _metrics(tmp_path / "out").loc["img"]
    assert (row["tp@0.5"], row["fp@0.5"], row["fn@0.5"], row["f1@0.5"]) == (65, 0, 0, 1.0)


def test_rgb_prediction_names_the_file_and_asks_for_the_label_image(
    tmp_path: Path, capsys
) -> None:
    labels = tifffile.imread(MASK_2D)
    colours = np.stack([labels % 256, labels * 7 % 256, labels * 13 % 256], -1).astype(np.uint8)
    (tmp_path / "pred").mkdir()
    pred = tmp_path / "pred" / "img.png"
    iio.imwrite(pred, colours)
    out = tmp_path / "out"
    gt = tmp_path / "img_mask.tif"
    tifffile.imwrite(gt, labels)
    for workflow in ("instance", "semantic"):
        assert _evaluate(workflow, pred, gt, out) == 2
        err = capsys.readouterr().err
        assert str(pred) in err and "colour (RGB/RGBA) image with 3 different channels" in err
        assert "single channel, integer labels" in err
        _assert_nothing_published(out)


def test_grey_prediction_saved_as_rgb_is_read_as_labels(tmp_path: Path) -> None:
    labels = (tifffile.imread(MASK_2D) % 256).astype(np.uint8)
    (tmp_path / "pred").mkdir()
    pred = tmp_path / "pred" / "img.png"
    iio.imwrite(pred, np.repeat(labels[..., None], 3, axis=-1))
    gt = tmp_path / "img_mask.tif"
    tifffile.imwrite(gt, labels)
    assert _evaluate("instance", pred, gt, tmp_path / "out") == 0
    assert _metrics(tmp_path / "out").loc["img", "f1@0.5"] == 1.0


# ----------------------------------------------------------------------------- 0/1 masks


def test_binary_mask_as_instance_prediction_is_warned_and_scored_as_one_object(
    tmp_path: Path, capsys
) -> None:
    labels = tifffile.imread(MASK_2D)
    pred, gt = _pair(tmp_path, (labels > 0).astype(np.uint8), labels)
    out = tmp_path / "out"
    assert _evaluate("instance", pred, gt, out) == 0
    err = capsys.readouterr().err
    assert str(pred) in err and "only the values 0 and 1" in err and "ONE object" in err
    assert "skimage.measure.label" in err
    row = _metrics(out).loc["img"]
    assert (row["n_pred@0.3"], row["n_true@0.3"], row["tp@0.3"]) == (1, 65, 0)


def test_single_object_mask_is_not_warned(tmp_path: Path, capsys) -> None:
    labels = tifffile.imread(MASK_2D)
    one = (labels == 1).astype(np.uint8)
    pred, gt = _pair(tmp_path, one, one)
    assert _evaluate("instance", pred, gt, tmp_path / "out") == 0
    assert "ONE object" not in capsys.readouterr().err
    assert _metrics(tmp_path / "out").loc["img", "tp@0.5"] == 1


# ----------------------------------------------------------------------------- 3D from the files


def test_3d_label_volume_is_evaluated_as_3d_without_options(tmp_path: Path) -> None:
    """The real 3D labels (tifffile metadata 'QYX', no Z letter): one object removed from the
    prediction is one miss, at every threshold."""
    gt = tifffile.imread(LABELS_3D)
    assert gt.shape == (44, 128, 128) and np.unique(gt).tolist() == [0, 1, 2, 4, 5, 8, 10]
    missing = np.where(gt == 5, 0, gt).astype(np.uint16)
    pred, gt_path = _pair(tmp_path, missing, LABELS_3D)
    out = tmp_path / "out"
    assert _evaluate("instance", pred, gt_path, out) == 0
    row = _metrics(out).loc["img"]
    for th in ("0.3", "0.5", "0.75"):
        assert (row[f"tp@{th}"], row[f"fp@{th}"], row[f"fn@{th}"]) == (5, 0, 1)
        assert row[f"precision@{th}"] == 1.0 and row[f"recall@{th}"] == pytest.approx(5 / 6)
    assert tifffile.imread(out / "post_proc" / "img.tif").shape == (44, 128, 128)
    objects = pd.read_csv(out / "metrics" / "objects.tsv", sep="\t")
    assert sorted(objects["label"]) == [1, 2, 4, 8, 10]
    assert yaml.safe_load((out / "config.yaml").read_text())["PROBLEM"]["NDIM"] == "3D"


def test_3d_semantic_mask_is_evaluated_as_3d(tmp_path: Path) -> None:
    labels = tifffile.imread(LABELS_3D)
    gt = (labels > 0).astype(np.uint8)
    pred = (labels > 0) & (labels != 5)  # one nucleus missed
    pred_path, gt_path = _pair(tmp_path, pred.astype(np.uint8), gt)
    out = tmp_path / "out"
    assert _evaluate("semantic", pred_path, gt_path, out) == 0
    expected = np.count_nonzero(labels[labels != 5]) / np.count_nonzero(labels)
    assert _metrics(out).loc["img", "iou"] == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.75106, abs=1e-5)  # one of six nuclei (cut by the crop)
    assert tifffile.imread(out / "post_proc" / "img.tif").shape == (44, 128, 128)


def test_axes_option_alone_sets_the_dimension_count(tmp_path: Path) -> None:
    gt = tifffile.imread(LABELS_3D)
    pred, gt_path = _pair(tmp_path, gt, LABELS_3D)
    assert _evaluate("instance", pred, gt_path, tmp_path / "out", "--axes", "ZYX") == 0
    assert _metrics(tmp_path / "out").loc["img", "tp@0.5"] == 6


def test_explicit_2d_still_refuses_a_volume(tmp_path: Path, capsys) -> None:
    pred, gt = _pair(tmp_path, LABELS_3D, LABELS_3D)
    out = tmp_path / "out"
    assert _evaluate("instance", pred, gt, out, "--set", "PROBLEM.NDIM=2D") == 2
    err = capsys.readouterr().err
    assert str(pred) in err and "3D stack" in err
    _assert_nothing_published(out)


def test_ambiguous_float_prediction_asks_for_ndim_or_axes(tmp_path: Path, capsys) -> None:
    (tmp_path / "pred").mkdir()
    pred = tmp_path / "pred" / "img.npy"  # 2D with 3 channels first or last, or 3 slices?
    np.save(pred, np.random.default_rng(0).random((3, 64, 3)).astype(np.float32))
    gt = tmp_path / "img.tif"
    tifffile.imwrite(gt, np.zeros((64, 3), np.uint8))
    out = tmp_path / "out"
    assert _evaluate("semantic", pred, gt, out) == 2
    err = capsys.readouterr().err
    assert str(pred) in err and "PROBLEM.NDIM=2D" in err and "--axes" in err
    _assert_nothing_published(out)


def test_2d_label_image_stays_2d(tmp_path: Path) -> None:
    pred, gt = _pair(tmp_path, MASK_2D, MASK_2D)
    assert _evaluate("instance", pred, gt, tmp_path / "out") == 0
    assert _metrics(tmp_path / "out").loc["img", "tp@0.5"] == 65
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["PROBLEM"]["NDIM"] == "2D"

"""StarDist matching metrics: reference values, hand-computed cases, aggregation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from biapy_runner.errors import InputError
from biapy_runner.metrics.matching import aggregate_stats, label_overlap, matching

SEGMETRICS = Path(__file__).parent / "data" / "segmetrics"


@pytest.mark.parametrize("name", ["img1", "img2"])
def test_segmetrics_reference_values(name: str) -> None:
    gt = tifffile.imread(SEGMETRICS / "gt" / f"{name}.tiff")
    seg = tifffile.imread(SEGMETRICS / "seg" / f"{name}.tiff")
    r03, r05, r075 = matching(gt, seg, (0.3, 0.5, 0.75))
    assert (r03.stats["tp"], r03.stats["fp"], r03.stats["fn"]) == (1, 2, 2)
    assert r03.stats["f1"] == pytest.approx(1 / 3, abs=1e-4)
    assert r03.stats["panoptic_quality"] == pytest.approx(0.1429, abs=1e-4)
    assert r05.stats["tp"] == 0 and r075.stats["tp"] == 0
    assert r05.stats["panoptic_quality"] == 0.0


def test_dataset_aggregation_sums_counts_then_ratios() -> None:
    stats = [
        matching(
            tifffile.imread(SEGMETRICS / "gt" / f"{n}.tiff"),
            tifffile.imread(SEGMETRICS / "seg" / f"{n}.tiff"),
            (0.3,),
        )[0].stats
        for n in ("img1", "img2")
    ]
    total = aggregate_stats(stats)
    assert (total["tp"], total["fp"], total["fn"], total["n_true"]) == (2, 4, 4, 6)
    assert total["panoptic_quality"] == pytest.approx(0.1429, abs=1e-4)


def test_aggregation_weights_scores_by_true_positives() -> None:
    a = {"tp": 1, "n_true": 1, "n_pred": 1, "mean_matched_score": 1.0}
    b = {"tp": 3, "n_true": 4, "n_pred": 3, "mean_matched_score": 0.6}
    total = aggregate_stats([a, b])
    # summed IoU = 1.0 + 1.8 = 2.8 over tp 4, n_true 5, fp 0, fn 1
    assert total["mean_matched_score"] == pytest.approx(0.7)
    assert total["mean_true_score"] == pytest.approx(0.56)
    assert total["panoptic_quality"] == pytest.approx(2.8 / 4.5)
    assert total["recall"] == pytest.approx(0.8) and total["precision"] == 1.0


def test_hand_computed_two_squares() -> None:
    gt = np.zeros((10, 10), np.uint16)
    gt[0:4, 0:4] = 7  # non-consecutive labels
    gt[6:10, 6:10] = 3
    pred = np.zeros_like(gt)
    pred[0:4, 0:2] = 1  # IoU 8/16 = 0.5 with GT 7
    pred[6:10, 6:10] = 2  # perfect
    pred[5, 0] = 9  # false positive
    _, r05, r075 = matching(gt, pred, (0.3, 0.5, 0.75))
    assert (r05.stats["tp"], r05.stats["fp"], r05.stats["fn"]) == (2, 1, 0)
    assert r05.stats["mean_matched_score"] == pytest.approx(0.75)
    assert r05.stats["panoptic_quality"] == pytest.approx(1.5 / 2.5)
    assert r075.stats["tp"] == 1 and r075.stats["fn"] == 1 and r075.stats["fp"] == 2
    assoc = {(g, p, s) for g, p, _, s in r05.associations}
    assert assoc == {(3, 2, "tp"), (7, 1, "tp"), (0, 9, "fp")}
    fn = [a for a in r075.associations if a[3] == "fn"]
    assert fn == [(7, 0, 0.0, "fn")]


def test_one_to_many_overlap_takes_the_best_single_partner() -> None:
    gt = np.zeros((4, 12), np.uint8)
    gt[:, 0:12] = 1
    pred = np.zeros_like(gt)
    pred[:, 0:7] = 1  # IoU 7/12
    pred[:, 7:12] = 2  # IoU 5/12
    (r,) = matching(gt, pred, (0.3,))
    assert (r.stats["tp"], r.stats["fp"], r.stats["fn"]) == (1, 1, 0)
    assert r.stats["mean_matched_score"] == pytest.approx(7 / 12)


def test_assignment_maximizes_the_number_of_matches() -> None:
    # GT 1 overlaps preds 2 (IoU 0.7) and 1 (0.2); GT 2 overlaps pred 1 (10/26 = 0.38).
    gt = np.zeros((1, 40), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0:20] = 1
    gt[0, 20:40] = 2
    pred[0, 0:14] = 2  # with gt1: 14/20 = 0.7
    pred[0, 14:30] = 1  # with gt1: 6/30=0.2 ; with gt2: 10/26=0.38
    (r,) = matching(gt, pred, (0.3,))
    assert r.stats["tp"] == 2


@pytest.mark.parametrize("empty", ["gt", "pred", "both"])
def test_empty_images_give_zeros_not_nan(empty: str) -> None:
    obj = np.zeros((8, 8), np.uint16)
    obj[2:5, 2:5] = 4
    zero = np.zeros_like(obj)
    gt = zero if empty in ("gt", "both") else obj
    pred = zero if empty in ("pred", "both") else obj
    for r in matching(gt, pred):
        values = np.array([float(v) for v in r.stats.values()])
        assert np.all(np.isfinite(values))
        assert r.stats["tp"] == 0
        assert r.stats["f1"] == 0.0 and r.stats["panoptic_quality"] == 0.0
    assert r.stats["n_true"] == (0 if empty in ("gt", "both") else 1)
    assert r.stats["fp"] == (0 if empty in ("pred", "both") else 1)


def test_3d_shifted_cubes() -> None:
    gt = np.zeros((10, 10, 10), np.uint32)
    gt[0:4, 0:4, 0:4] = 100000  # a large label id
    pred = np.zeros_like(gt)
    pred[1:5, 0:4, 0:4] = 5  # overlap 48, union 80
    ov = label_overlap(gt, pred)
    assert ov.iou.tolist() == [pytest.approx(0.6)]
    r05, r075 = matching(gt, pred, (0.5, 0.75))
    assert r05.stats["tp"] == 1 and r075.stats["tp"] == 0


def test_shape_mismatch_and_float_probabilities_are_input_errors() -> None:
    with pytest.raises(InputError, match="shape"):
        matching(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError, match="non-integer"):
        matching(np.zeros((4, 4), np.uint8), np.full((4, 4), 0.5))

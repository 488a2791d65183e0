"""Classification workflow: fitting images to the model input, GT layouts, metrics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from biapy_runner.errors import ConfigError, InputError
from biapy_runner.images import Image
from biapy_runner.workflows.classification import (
    Classification,
    classification_scores,
    confusion_matrix,
    fit_to_input,
    load_class_gt,
    to_probabilities,
)


class FakeConfig:
    def __init__(self, **values: Any) -> None:
        self.values = {"DATA.N_CLASSES": 3, "DATA.PATCH_SIZE": (8, 8, 1), **values}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def _image(data: np.ndarray, stem: str) -> Image:
    return Image(Path(f"{stem}.tif"), stem, data, "cyx", "yx", data.dtype)


class ThirdsPredictor:
    """A fixed 3-class 'model': the class is which third of 0..255 the image mean falls in."""

    def __init__(self, size: tuple[int, int] = (8, 8)) -> None:
        self.model = SimpleNamespace(valid_size=lambda requested: size)
        self.seen: list[tuple[int, ...]] = []

    def whole(self, data: np.ndarray) -> np.ndarray:
        self.seen.append(data.shape)
        centres = np.array([42.5, 127.5, 212.5])
        return -np.abs(float(data.mean()) - centres) / 10.0  # logits


# --------------------------------------------------------------------------- fitting


def test_fit_to_input_crops_the_centre_of_larger_images() -> None:
    data = np.arange(10 * 12, dtype=np.uint16).reshape(1, 10, 12)
    out = fit_to_input(data, (4, 6))
    assert out.shape == (1, 4, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], data[0, 3:7, 3:9])


def test_fit_to_input_resizes_smaller_axes_after_cropping() -> None:
    data = np.ones((2, 4, 20), dtype=np.float32)
    data[1] *= 5
    out = fit_to_input(data, (8, 8))
    assert out.shape == (2, 8, 8)
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], 5.0)
    same = np.zeros((1, 8, 8), dtype=np.float32)
    assert fit_to_input(same, (8, 8)) is same


def test_to_probabilities_softmax_or_passthrough() -> None:
    probs = np.array([0.2, 0.5, 0.3])
    np.testing.assert_allclose(to_probabilities(probs), probs)
    logits = np.array([[1.0], [2.0], [3.0]])
    expected = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(to_probabilities(logits), expected)


# --------------------------------------------------------------------------- GT layouts


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.zeros((4, 4), dtype=np.uint8))


def test_class_folders_sorted_names(tmp_path: Path) -> None:
    for cls, stem in [("mito", "a"), ("nucleus", "b"), ("mito", "c"), ("actin", "d")]:
        _touch_image(tmp_path / "gt" / cls / f"{stem}.tif")
    classes, names = load_class_gt([tmp_path / "gt"])
    assert names == ["actin", "mito", "nucleus"]
    assert classes == {"a": 1, "b": 2, "c": 1, "d": 0}


def test_integer_class_folders_are_class_numbers(tmp_path: Path) -> None:
    for cls, stem in [("0", "a"), ("10", "b"), ("2", "c")]:
        _touch_image(tmp_path / "gt" / cls / f"{stem}.tif")
    classes, names = load_class_gt(tmp_path / "gt")
    assert classes == {"a": 0, "b": 10, "c": 2}
    assert len(names) == 11 and names[10] == "10" and names[1] == ""


def test_class_table_and_files_in_class_folders(tmp_path: Path) -> None:
    table = tmp_path / "classes.csv"
    table.write_text("filename,label\nx.tif,1\ny.png,0\n")
    assert load_class_gt([table]) == ({"x": 1, "y": 0}, ["0", "1"])
    tsv = tmp_path / "classes.tsv"
    tsv.write_text("image\tclass\nx\tcat\ny\tdog\n")
    assert load_class_gt([tsv])[0] == {"x": 0, "y": 1}
    files = [tmp_path / "col" / "dog" / "p.tif", tmp_path / "col" / "cat" / "q.tif"]
    for f in files:
        _touch_image(f)
    assert load_class_gt(files) == ({"p": 1, "q": 0}, ["cat", "dog"])
    bad = tmp_path / "bad.tsv"
    bad.write_text("foo\tbar\n1\t2\n")
    with pytest.raises(InputError, match="image column"):
        load_class_gt([bad])


def test_conflicting_classes_and_missing_images(tmp_path: Path) -> None:
    _touch_image(tmp_path / "gt" / "a" / "x.tif")
    _touch_image(tmp_path / "gt" / "b" / "x.tif")
    with pytest.raises(InputError, match="two ground-truth classes"):
        load_class_gt([tmp_path / "gt"])
    table = tmp_path / "t.tsv"
    table.write_text("image\tclass\nx\t0\n")
    wf = Classification(FakeConfig())
    with pytest.raises(InputError, match="No ground-truth class for y.tif"):
        wf.pair_gt([tmp_path / "x.tif", tmp_path / "y.tif"], [table])
    assert wf.pair_gt([tmp_path / "x.tif"], [table]) == [(tmp_path / "x.tif", 0)]


# --------------------------------------------------------------------------- metrics


def test_scores_from_confusion_matrix() -> None:
    truth = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, 2]
    matrix = confusion_matrix(truth, predicted, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    scores = classification_scores(matrix)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["precision_class_0"] == 1.0
    assert scores["recall_class_0"] == pytest.approx(2 / 3)
    assert scores["f1_class_0"] == pytest.approx(0.8)
    assert scores["precision_class_1"] == 0.5 and scores["recall_class_1"] == 0.5
    assert scores["precision_class_2"] == 0.5 and scores["recall_class_2"] == 1.0
    assert scores["f1_class_2"] == pytest.approx(2 / 3)
    assert scores["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    empty = classification_scores(confusion_matrix([0], [0], 2))
    assert empty["precision_class_1"] == 0.0 and empty["f1_class_1"] == 0.0


def test_workflow_predict_decode_score_aggregate(tmp_path: Path) -> None:
    wf = Classification(FakeConfig())
    wf.check_model(3, ["a", "b", "c"])
    predictor = ThirdsPredictor()
    means = {"dark": 20, "mid": 130, "bright": 240, "mid2": 100}
    truth = {"dark": 0, "mid": 1, "bright": 2, "mid2": 2}
    rows, tables = [], []
    for stem, mean in means.items():
        image = _image(np.full((1, 12, 5), mean, dtype=np.uint8), stem)
        raw = wf.predict(image, predictor)
        decoded = wf.decode(raw, image)
        assert decoded.images == {}
        tables.append(decoded.tables["post_proc/predictions.tsv"])
        rows.append(wf.score(decoded, truth[stem], image).row)
    assert predictor.seen == [(1, 8, 8)] * 4
    predictions = pd.concat(tables, ignore_index=True)
    assert predictions["class"].tolist() == [0, 1, 2, 1]
    assert list(predictions.columns) == [
        "image", "class", "prob_class_0", "prob_class_1", "prob_class_2",
    ]
    np.testing.assert_allclose(predictions.filter(like="prob_").sum(axis=1), 1.0)
    total = wf.aggregate(rows)
    assert total.row["accuracy"] == 0.75
    assert total.row["recall_class_2"] == 0.5 and total.row["precision_class_1"] == 0.5
    matrix = total.tables["metrics/confusion_matrix.tsv"]
    assert matrix[["pred_0", "pred_1", "pred_2"]].values.tolist() == [
        [1, 0, 0], [0, 1, 0], [0, 1, 1],
    ]
    assert Classification.writes_raw is False


def test_check_model_names_both_class_counts() -> None:
    with pytest.raises(ConfigError, match=r"DATA.N_CLASSES.*is 2.*gives 3"):
        Classification(FakeConfig(**{"DATA.N_CLASSES": 2})).check_model(3, [])

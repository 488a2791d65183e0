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
from biapy_runner.io.images import Image
from biapy_runner.workflows.classification import (
    Classification,
    classification_scores,
    confusion_matrix,
    fit_to_input,
    load_class_gt,
    to_probabilities,
)

from tests.model_sources import THIRDS


class FakeConfig:
    def __init__(self, **values: Any) -> None:
        self.values = {"DATA.N_CLASSES": 3, "DATA.PATCH_SIZE": (8, 8, 1), **values}
        self.user_keys = set(self.values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def _image(data: np.ndarray, stem: str) -> Image:
    return Image(Path(f"{stem}.tif"), stem, data, "cyx", "yx", data.dtype)


class ThirdsPredictor:
    """A fixed 3-class 'model': the class is which third of 0..255 the image mean falls in."""

    def __init__(self, size: tuple[int, int] = (8, 8)) -> None:
        self.model = SimpleNamespace(valid_size=lambda requested: size, out_spatial_axes=())
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


def test_class_names_in_biapys_natural_order(tmp_path: Path) -> None:
    """BiaPy 3.7.1 numbers class folders in natural order: class2 before class10."""
    for cls, stem in [("class10", "a"), ("class2", "b"), ("Class1", "c")]:
        _touch_image(tmp_path / "gt" / cls / f"{stem}.tif")
    classes, names = load_class_gt(tmp_path / "gt")
    assert names == ["Class1", "class2", "class10"]
    assert classes == {"c": 0, "b": 1, "a": 2}


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


def test_class_count_comes_from_the_model_when_not_configured() -> None:
    from biapy_runner.config.load import load_config

    cfg = load_config(None, ["PROBLEM.TYPE=CLASSIFICATION"])
    workflow = Classification(cfg)
    workflow.check_model(5, [])
    assert cfg.get("DATA.N_CLASSES") == 5 and workflow.n_classes == 5


# --------------------------------------------------------------------------- end to end



#: Image stem -> (uint8 image, mean of its centre fitted to 16x16, true class).
CENTRE_VALUE = {"dark": 20, "ring": 128, "small_bright": 240, "rect": 100}
TRUTH = {"dark": 0, "ring": 1, "small_bright": 2, "rect": 2}


def _e2e_images() -> dict[str, np.ndarray]:
    """Images whose 16x16 model input is constant; ``ring`` and ``rect`` differ outside it."""
    ring = np.full((40, 40), 230, np.uint8)
    ring[12:28, 12:28] = 128  # the centre crop; the whole image's mean would be class 2
    rect = np.full((10, 50), 250, np.uint8)
    rect[:, 17:33] = 100  # x is centre-cropped, y (10) is resized to 16
    return {
        "dark": np.full((30, 30), 20, np.uint8),
        "ring": ring,
        "small_bright": np.full((8, 12), 240, np.uint8),  # resized up to 16x16
        "rect": rect,
    }


def _expected_probs(value: float) -> np.ndarray:
    m = value / 255
    logits = -((m - np.array([1 / 6, 1 / 2, 5 / 6])) ** 2) / 0.05
    return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


@pytest.fixture(scope="module")
def thirds_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 3-class package (fixed 16x16 input, scale_linear 1/255, softmax), images, config."""
    from bmz_factory import make_model_package

    root = tmp_path_factory.mktemp("classification")
    package = make_model_package(
        root,
        architecture_source=THIRDS,
        callable_name="Thirds",
        kwargs={},
        out_channels=3,
        size=16,
        classifier=True,
        preprocessing=[{"id": "scale_linear", "kwargs": {"gain": 1 / 255, "offset": 0.0}}],
        postprocessing=[{"id": "softmax"}],
        channel_names=["low", "mid", "high"],
        name="thirds classifier",
    )
    images = []
    for stem, data in _e2e_images().items():
        images.append(root / "images" / f"{stem}.tif")
        images[-1].parent.mkdir(exist_ok=True)
        tifffile.imwrite(images[-1], data)
    table = root / "classes.tsv"
    table.write_text("image\tclass\n" + "".join(f"{s}.tif\t{c}\n" for s, c in TRUTH.items()))
    config = root / "classification.yaml"
    config.write_text(
        "PROBLEM:\n  TYPE: CLASSIFICATION\n  NDIM: 2D\n"
        "DATA:\n  N_CLASSES: 3\n  PATCH_SIZE: (16, 16, 1)\n"
        "TEST:\n  ENABLE: True\n"
    )
    return {"root": root, "package": package, "images": images, "table": table, "config": config}


def _run_classification(setup: dict[str, Any], gt: list[Path], out: Path) -> int:
    from biapy_runner.cli import main

    return main(
        [
            "run",
            "--config", str(setup["config"]),
            "--images", *map(str, setup["images"]),
            "--gt", *map(str, gt),
            "--model", str(setup["package"]),
            "--out", str(out),
            "--threads", "1",
        ]
    )


def test_end_to_end_thirds_classifier(thirds_setup: dict[str, Any]) -> None:
    out = thirds_setup["root"] / "results"
    assert _run_classification(thirds_setup, [thirds_setup["table"]], out) == 0
    predictions = pd.read_csv(out / "post_proc" / "predictions.tsv", sep="\t")
    assert list(predictions.columns) == ["image", "class"] + [f"prob_class_{k}" for k in range(3)]
    assert predictions["image"].tolist() == list(CENTRE_VALUE)
    assert predictions["class"].tolist() == [0, 1, 2, 1]
    expected = np.stack([_expected_probs(v) for v in CENTRE_VALUE.values()])
    np.testing.assert_allclose(predictions.filter(like="prob_").to_numpy(), expected, atol=1e-5)
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    assert metrics.loc[list(TRUTH), "correct"].tolist() == [1, 1, 1, 0]
    assert metrics.loc["ALL", "accuracy"] == 0.75
    assert metrics.loc["ALL", "recall_class_2"] == 0.5
    assert metrics.loc["ALL", "precision_class_1"] == 0.5
    matrix = pd.read_csv(out / "metrics" / "confusion_matrix.tsv", sep="\t")
    assert matrix["gt_class"].tolist() == [0, 1, 2]
    assert matrix[["pred_0", "pred_1", "pred_2"]].to_numpy().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    summary = pd.read_csv(out / "metrics" / "summary.tsv", sep="\t")
    assert summary["class"].tolist() == [0, 1, 2, 1]
    assert not (out / "raw").exists()


def test_end_to_end_class_subfolders(thirds_setup: dict[str, Any]) -> None:
    """GT as BiaPy's class folders; names sort in the model's class order."""
    gt = thirds_setup["root"] / "gt"
    names = ["0_low", "1_mid", "2_high"]
    for stem, data in _e2e_images().items():
        (gt / names[TRUTH[stem]]).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(gt / names[TRUTH[stem]] / f"{stem}.tif", data)
    out = thirds_setup["root"] / "results_folders"
    assert _run_classification(thirds_setup, [gt], out) == 0
    matrix = pd.read_csv(out / "metrics" / "confusion_matrix.tsv", sep="\t")
    assert matrix["class_name"].tolist() == names
    assert matrix[["pred_0", "pred_1", "pred_2"]].to_numpy().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    assert metrics.loc["ALL", "accuracy"] == 0.75


def test_model_kind_must_fit_the_workflow(
    thirds_setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A classifier under SEMANTIC_SEG and an image model under CLASSIFICATION stop with exit 3
    before any image is processed or any output written."""
    from biapy_runner.cli import main

    image = str(thirds_setup["images"][0])
    semantic = tmp_path / "semantic.yaml"
    semantic.write_text("PROBLEM:\n  TYPE: SEMANTIC_SEG\n  NDIM: 2D\n")
    nuclei = Path(__file__).resolve().parents[1] / "test-data" / "unet2d_nuclei_broad.zip"
    cases = [
        (semantic, thirds_setup["package"], "(a classifier), which does not fit SEMANTIC_SEG"),
        (thirds_setup["config"], nuclei, "not one score per class, which does not fit CLASSIFICATION"),
    ]
    for index, (config, model, message) in enumerate(cases):
        out = tmp_path / f"out{index}"
        code = main(["run", "--config", str(config), "--images", image, "--model", str(model),
                     "--out", str(out)])  # fmt: skip
        assert code == 3
        assert message in capsys.readouterr().err
        assert not out.exists()

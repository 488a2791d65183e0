"""Training CLASSIFICATION: BiaPy's ``simple_cnn`` on images in class folders
(``<folder>/<class name>/<image>``), 2D and 3D, a few epochs on CPU; the log, curves, test
metrics, the BioImage.IO package (``test_model`` offline, BiaPy's rules for consuming it) and
``run`` with the exported zip."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from biapy_bmz_rules import checked_package
from biapy_runner.cli import main
from biapy_runner.config.load import load_config
from PIL import Image

CLASSES = ("left", "right")
BASE = """\
PROBLEM:
  TYPE: CLASSIFICATION
  NDIM: {ndim}D
DATA:
  PATCH_SIZE: {patch}
  N_CLASSES: 2
  NORMALIZATION:
    TYPE: zero_mean_unit_variance
  VAL:
    SPLIT_TRAIN: 0.25
MODEL:
  ARCHITECTURE: simple_cnn
TRAIN:
  ENABLE: True
  EPOCHS: {epochs}
  BATCH_SIZE: 4
  OPTIMIZER: ADAM
  LR: 0.001
"""


def _write_classes(folder: Path, ndim: int, per_class: int, seed: int) -> Path:
    """``folder/<left|right>/<image>.tif``: noise with a bright block in the left or the right
    half (its row, and plane in 3D, at random), the class the network must learn."""
    rng = np.random.default_rng(seed)
    shape = (4, 8, 8) if ndim == 3 else (16, 16)
    side = shape[-1] // 2
    for number, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.normal(40, 10, shape)
            row = int(rng.integers(0, shape[-2] - side + 1))
            block = (slice(None),) * (ndim - 2) + (
                slice(row, row + side - 2), slice(1 + number * side, side * (number + 1) - 1))
            image[block] += 150
            tifffile.imwrite(folder / name / f"{folder.name}_{name}{i}.tif",
                             image.clip(0, 255).astype(np.uint8), photometric="minisblack",
                             metadata={"axes": "ZYX"[-ndim:]})
    return folder


def _config(folder: Path, ndim: int, epochs: int) -> Path:
    patch = "(4, 8, 8, 1)" if ndim == 3 else "(16, 16, 1)"
    path = folder / "cfg.yaml"
    path.write_text(BASE.format(ndim=ndim, patch=patch, epochs=epochs))
    return path


def _log(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "train_log.tsv", sep="\t")


@pytest.mark.parametrize("ndim", [2, 3])
def test_tiny_classifier_trains_tests_and_logs(tmp_path: Path, ndim: int) -> None:
    """Training images from class folders (the folder is their GT), validation split from them,
    the loss decreases; the test images, classified by the best checkpoint, are all right."""
    train = _write_classes(tmp_path / "train", ndim, 8, seed=ndim)
    test = _write_classes(tmp_path / "test", ndim, 3, seed=10 + ndim)
    out = tmp_path / "out"
    code = main(["train", "--config", str(_config(tmp_path, ndim, 6)), "--train-images",
                 str(train), "--test-images", str(test), "--test-gt", str(test), "--out",
                 str(out), "--device", "cpu", "--threads", "1", "--name", "cnn", "--no-report",
                 "--set", "MODEL.BMZ.EXPORT.ENABLE=True"])
    assert code == 0
    log = _log(out)
    assert list(log.columns) == ["epoch", "train_loss", "val_loss", "train_Accuracy",
                                 "val_Accuracy", "lr", "seconds"]
    assert log["epoch"].tolist() == list(range(1, 7))
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    assert log["val_loss"].notna().all()  # 4 of the 16 images held out
    assert log["train_Accuracy"].iloc[-1] == 1.0
    with Image.open(out / "train_curves.png") as png:
        assert png.size == (400 * 3, 320)  # loss, accuracy, lr
    content = torch.load(out / "checkpoints" / "cnn-checkpoint-best.pth", map_location="cpu",
                         weights_only=False)
    assert content["epoch"] == int(log.loc[log["val_loss"].idxmin(), "epoch"])
    assert content["model"]["heads.2.weight"].shape == (2, 64 * (16 if ndim == 2 else 4))
    predicted = pd.read_csv(out / "post_proc" / "predictions.tsv", sep="\t")
    assert predicted["image"].tolist() == [f"test_{c}{i}" for c in CLASSES for i in range(3)]
    assert predicted["class"].tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(predicted[["prob_class_0", "prob_class_1"]].sum(axis=1), 1,
                               atol=1e-5)
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    assert metrics.loc["ALL", "accuracy"] == 1.0
    matrix = pd.read_csv(out / "metrics" / "confusion_matrix.tsv", sep="\t")
    assert matrix["class_name"].tolist() == list(CLASSES)
    assert matrix[["pred_0", "pred_1"]].to_numpy().tolist() == [[3, 0], [0, 3]]
    biapy = checked_package(out / "bmz" / "model.zip", "CLASSIFICATION", ndim).settings
    assert biapy["DATA.PATCH_SIZE"] == ((4, 8, 8, 1) if ndim == 3 else (16, 16, 1))


def test_exported_classifier_passes_test_model_and_runs_like_the_checkpoint(
    tmp_path: Path,
) -> None:
    """``run`` with TRAIN.ENABLE on BiaPy's folders (DATA.TRAIN.PATH, DATA.VAL.PATH,
    DATA.TEST.PATH, each ``<class>/<image>``), MODEL.BMZ.EXPORT.ENABLE: the package's output
    is batch + class channels, bioimageio.core's test_model passes offline, and ``run`` with
    the zip gives the checkpoint's predictions."""
    from bioimageio.core import test_model
    from bioimageio.spec import load_description

    train = _write_classes(tmp_path / "train", 2, 6, seed=0)
    val = _write_classes(tmp_path / "val", 2, 2, seed=1)
    test = _write_classes(tmp_path / "test", 2, 3, seed=2)
    config = _config(tmp_path, 2, 4)
    text = config.read_text().replace("  VAL:\n    SPLIT_TRAIN: 0.25\n", (
        f"  TRAIN:\n    PATH: {train}\n  VAL:\n    FROM_TRAIN: False\n    PATH: {val}\n"
        f"  TEST:\n    PATH: {test}\n    LOAD_GT: True\n"))
    config.write_text(text + "TEST:\n  ENABLE: True\n")
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--set", "MODEL.BMZ.EXPORT.ENABLE=True",
                 "--out", str(out), "--threads", "1", "--no-report"]) == 0
    assert _log(out)["val_loss"].notna().all()
    package = out / "bmz" / "model.zip"
    descr = load_description(package)
    axes = descr.outputs[0].axes
    assert [a.type for a in axes] == ["batch", "channel"]
    assert [str(n) for n in axes[1].channel_names] == ["class0", "class1"]
    assert [a.size for a in descr.inputs[0].axes[2:]] == [16, 16]  # the linear layer's size
    assert test_model(package).status == "passed"
    again = tmp_path / "again"
    shutil.copy(config, tmp_path / "run.yaml")
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--set", "TRAIN.ENABLE=False",
                 "--model", str(package), "--out", str(again), "--threads", "1",
                 "--no-report"]) == 0
    want = pd.read_csv(out / "post_proc" / "predictions.tsv", sep="\t")
    got = pd.read_csv(again / "post_proc" / "predictions.tsv", sep="\t")
    assert got["image"].tolist() == want["image"].tolist() and len(got) == 6
    assert got["class"].tolist() == want["class"].tolist()
    np.testing.assert_allclose(got[["prob_class_0", "prob_class_1"]],
                               want[["prob_class_0", "prob_class_1"]], atol=1e-5)
    accuracy = pd.read_csv(again / "metrics" / "metrics.tsv", sep="\t").iloc[-1]["accuracy"]
    assert accuracy == pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").iloc[-1]["accuracy"]


def test_class_folders_must_match_n_classes(tmp_path: Path, capsys) -> None:
    train = _write_classes(tmp_path / "train", 2, 2, seed=0)
    code = main(["train", "--config", str(_config(tmp_path, 2, 1)), "--train-images", str(train),
                 "--set", "DATA.N_CLASSES=3", "--out", str(tmp_path / "out"), "--threads", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "The training images are in 2 class(es) (numbers [0, 1]) but DATA.N_CLASSES is 3" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_biapy_vit_template_is_refused_naming_timm(tmp_path: Path, capsys) -> None:
    """BiaPy's own 2D classification template asks for ViT (timm's class): refused before any
    image is read, with the way out."""
    template = Path(__file__).parent / "data" / "biapy_configs" / "2d_classification.yaml"
    assert load_config(template).get("MODEL.ARCHITECTURE") == "ViT"
    code = main(["run", "--config", str(template), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "MODEL.ARCHITECTURE = 'ViT' (BiaPy builds it with timm" in err
    assert "train simple_cnn instead" in err

"""Fine-tuning from a BioImage.IO package (MODEL.SOURCE: bmz + TRAIN.ENABLE) for workflows
beyond test_export.py's semantic case: a tiny classifier (2D), a tiny instance U-Net (3D,
channels F + C) and 2D detection, super-resolution and denoising U-Nets are trained briefly and
exported by ``train``, then fine-tuned from the zip
with the package's own architecture code. The loss decreases, the weights move, the package
exported again passes test_model offline and BiaPy's rules, and ``run`` with it gives the
fine-tuned checkpoint's outputs. A package that does not fit the configuration is refused
before any image is read, and training normalises its inputs as the package does."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml
from biapy_bmz_rules import checked_package
from biapy_runner.cli import main
from test_train_classification import CLASSES
from test_train_classification import _config as classifier_config
from test_train_classification import _write_classes
from test_train_workflows import _config as unet_config
from test_train_workflows import _write

FC = "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=['F', 'C']"
#: the tiles' context, so that the package (its halo) and the checkpoint tile alike (the U-Net's
#: instance normalisation makes a tile's output depend on the tile)
PADDING = {3: "DATA.TEST.PADDING=(0, 4, 4)", 2: "DATA.TEST.PADDING=(4, 4)"}


def _setup(tmp: Path, problem: str, ndim: int) -> tuple[Path, list[str], list[str], list[str]]:
    """(config, arguments of the start's training, of the fine-tuning, test images and GT) of a
    tiny training set. The classifier learns the task within an epoch (its loss, cross-entropy
    on its softmax as BiaPy computes it, is then at its floor), so it is fine-tuned to the
    swapped classes: the images of one class folder moved to the other."""
    if problem == "CLASSIFICATION":
        train = _write_classes(tmp / "train", ndim, 8, seed=ndim)
        swapped = tmp / "swapped"
        for a, b in ((CLASSES[0], CLASSES[1]), (CLASSES[1], CLASSES[0])):
            shutil.copytree(train / a, swapped / b)
        test = _write_classes(tmp / "test", ndim, 3, seed=10 + ndim)
        return (classifier_config(tmp, ndim, 4), ["--train-images", str(train)],
                ["--train-images", str(swapped)], [str(test), str(test)])
    images, gts = _write(tmp, problem, ndim)
    train = ["--train-images", str(images), *_sets(problem, ndim)]
    test = [str(images / "s0.tif"), None]
    if gts is not None:
        train += ["--train-gt", str(gts)]
        test[1] = str(next(gts.glob("s0.*")))
    return unet_config(tmp, problem, ndim), train, train, test


def _sets(problem: str, ndim: int) -> list[str]:
    """The ``--set`` arguments of a U-Net case: the tiles' context (and the instance channels)."""
    if problem == "CLASSIFICATION":
        return []
    return ["--set", PADDING[ndim], *(["--set", FC] if problem == "INSTANCE_SEG" else [])]


def _cli(command: str, config: Path, out: Path, *args: str) -> int:
    return main([command, "--config", str(config), "--out", str(out), "--device", "cpu",
                 "--threads", "1", "--no-report", *args])


def _state(package: Path) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(package) as archive, archive.open("weights.pt") as weights:
        return torch.load(weights, map_location="cpu", weights_only=True)


def _outputs(folder: Path, problem: str) -> np.ndarray:
    if problem == "CLASSIFICATION":
        table = pd.read_csv(folder / "post_proc" / "predictions.tsv", sep="\t")
        return table[["prob_class_0", "prob_class_1"]].to_numpy()
    return tifffile.imread(folder / "raw" / "s0.tif")


#: (problem, ndim): the shape of the compared outputs (6 images x 2 classes; the raw prediction
#: of s0, an (8, 32, 32) volume or a (32, 32) image, stored (z,) channel, y, x) and the channel
#: names of the package's output
CASES = {
    ("CLASSIFICATION", 2): ((6, 2), ["class0", "class1"]),
    ("INSTANCE_SEG", 3): ((8, 2, 32, 32), ["F", "C"]),
    ("DETECTION", 2): ((32, 32), ["points"]),
    ("SUPER_RESOLUTION", 2): ((64, 64), ["channel0"]),
    ("DENOISING", 2): ((32, 32), ["channel0"]),
}


@pytest.mark.slow
@pytest.mark.parametrize(("problem", "ndim"), list(CASES),
                         ids=[f"{p.lower()}-{n}d" for p, n in CASES])  # fmt: skip
def test_fine_tuning_from_an_exported_package(tmp_path: Path, problem: str, ndim: int) -> None:
    config, train, tune, (images, gt) = _setup(tmp_path, problem, ndim)
    shape, channel_names = CASES[(problem, ndim)]
    with_gt = ["--gt", gt] if gt else []
    start = tmp_path / "start"
    assert _cli("train", config, start, *train, "--set", "TRAIN.EPOCHS=1",
                "--set", "MODEL.BMZ.EXPORT.ENABLE=True") == 0
    package = start / "bmz" / "model.zip"
    tuned = tmp_path / "tuned"
    assert _cli("train", config, tuned, *tune, "--test-images", images,
                *(["--test-gt", gt] if gt else []), "--name", "tuned",
                "--set", "MODEL.SOURCE=bmz", "--set", f"MODEL.BMZ.SOURCE_MODEL_ID={package}",
                "--set", "TRAIN.EPOCHS=4") == 0
    log = pd.read_csv(tuned / "train_log.tsv", sep="\t")
    assert log["epoch"].tolist() == [1, 2, 3, 4]
    # Noise2Void's training loss is over a few random masked pixels per step (it jumps between
    # epochs): its validation loss shows the learning
    loss = log["val_loss" if problem == "DENOISING" else "train_loss"]
    assert loss.iloc[-1] < loss.iloc[0]
    # the package exported again: test_model offline, BiaPy's rules, the start's code
    again = tuned / "bmz" / "model.zip"
    checked_package(again, problem, ndim)
    with zipfile.ZipFile(package) as a, zipfile.ZipFile(again) as b:
        assert a.read("nets.py") == b.read("nets.py")
        rdf = yaml.safe_load(b.read("rdf.yaml"))
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == channel_names
    before, after = _state(package), _state(again)
    assert before.keys() == after.keys()
    moved = [k for k in before if before[k].is_floating_point()
             and not torch.equal(before[k], after[k])]
    assert len(moved) > len(before) // 2
    checkpoint = tuned / "checkpoints" / "tuned-checkpoint-best.pth"
    best = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    assert all(torch.equal(best[k].cpu(), after[k]) for k in after)  # the best epoch exported
    tested = yaml.safe_load((tuned / "config.yaml").read_text().split("\n", 2)[2])
    assert tested["MODEL"]["SOURCE"] == "bmz"
    assert tested["MODEL"]["BMZ"]["SOURCE_MODEL_ID"] == str(again)
    # run with the package exported again = run with the fine-tuned checkpoint
    run_args = ["--images", images, *with_gt]
    sets = ["--set", "TRAIN.ENABLE=False", *_sets(problem, ndim)]
    assert _cli("run", config, tmp_path / "zip", *run_args, *sets, "--model", str(again)) == 0
    assert _cli("run", config, tmp_path / "ckpt", *run_args, *sets, "--set", "MODEL.SOURCE=biapy",
                "--set", "MODEL.LOAD_CHECKPOINT=True",
                "--set", f"PATHS.CHECKPOINT_FILE={checkpoint}") == 0
    got, want = _outputs(tmp_path / "zip", problem), _outputs(tmp_path / "ckpt", problem)
    assert got.shape == want.shape == shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got, _outputs(tuned, problem), atol=1e-5)  # the test phase


@pytest.fixture(scope="module")
def classifier_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, package) of a tiny 2D classifier trained one epoch (16 x 16 input, 2 classes)."""
    tmp = tmp_path_factory.mktemp("classifier")
    config, train, _, _ = _setup(tmp, "CLASSIFICATION", 2)
    assert _cli("train", config, tmp / "out", *train, "--set", "TRAIN.EPOCHS=1",
                "--set", "MODEL.BMZ.EXPORT.ENABLE=True") == 0
    return config, tmp / "out" / "bmz" / "model.zip"


@pytest.mark.parametrize(("override", "exit_code", "words"), [
    ("DATA.N_CLASSES=3", 2, "DATA.N_CLASSES (MODEL.N_CLASSES in older configs) is 3 but the "
                            "model gives 2 class scores"),
    ("DATA.PATCH_SIZE=(32, 32, 1)", 2, "DATA.PATCH_SIZE (32, 32) (without channels) is not an "
                                       "input size of the model"),
    ("PROBLEM.TYPE=SEMANTIC_SEG", 3, "gives one score per class for the whole image (a "
                                     "classifier), which does not fit SEMANTIC_SEG"),
])
def test_a_package_that_does_not_fit_is_refused_before_training(
    classifier_package, tmp_path: Path, capsys, override: str, exit_code: int, words: str
) -> None:
    config, package = classifier_package
    code = _cli("train", config, tmp_path / "out", "--train-images", str(tmp_path / "missing"),
                "--set", "MODEL.SOURCE=bmz", "--set", f"MODEL.BMZ.SOURCE_MODEL_ID={package}",
                "--set", override)
    err = capsys.readouterr().err
    assert code == exit_code and words in err, err
    assert "missing" not in err and "Traceback" not in err  # before the inputs are looked at
    assert not (tmp_path / "out").exists()


def test_a_2d_package_does_not_fine_tune_in_3d(test_data: Path, tmp_path: Path, capsys) -> None:
    config, _, _, _ = _setup(tmp_path, "SEMANTIC_SEG", 3)
    package = test_data / "unet2d_nuclei_broad.zip"
    code = _cli("train", config, tmp_path / "out", "--train-images", str(tmp_path / "x"),
                "--set", "MODEL.SOURCE=bmz", "--set", f"MODEL.BMZ.SOURCE_MODEL_ID={package}")
    assert code == 2
    assert "is a 2D model (spatial axes y, x) but PROBLEM.NDIM is 3D" in capsys.readouterr().err


def test_fine_tuning_normalises_as_the_package_does() -> None:
    """DATA.NORMALIZATION is set from the package's preprocessing (BiaPy's
    check_bmz_model_compatibility mapping), whatever the configuration said."""
    from types import SimpleNamespace

    from bioimageio.spec.model import v0_5
    from biapy_runner.config.load import load_config
    from biapy_runner.models.trainable import adopt_package_normalization

    norm = "DATA.NORMALIZATION."
    cases = [
        ([v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
            axes=["y", "x"], min_percentile=1, max_percentile=99.8))],
         {"TYPE": "scale_range", "PERC_CLIP.ENABLE": True, "PERC_CLIP.LOWER_PERC": 1.0,
          "PERC_CLIP.UPPER_PERC": 99.8}),
        ([v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(gain=1 / 255))], {"TYPE": "div"}),
        ([v0_5.FixedZeroMeanUnitVarianceDescr(kwargs=v0_5.FixedZeroMeanUnitVarianceKwargs(
            mean=10, std=2))],
         {"TYPE": "zero_mean_unit_variance", "ZERO_MEAN_UNIT_VAR.MEAN_VAL": [10.0],
          "ZERO_MEAN_UNIT_VAR.STD_VAL": [2.0]}),
        ([v0_5.ClipDescr(kwargs=v0_5.ClipKwargs(min=0, max=300)),
          v0_5.ZeroMeanUnitVarianceDescr()],
         {"TYPE": "zero_mean_unit_variance", "PERC_CLIP.ENABLE": True,
          "PERC_CLIP.LOWER_VALUE": [0.0], "PERC_CLIP.UPPER_VALUE": [300.0],
          "ZERO_MEAN_UNIT_VAR.MEAN_VAL": [-1.0]}),
    ]
    before = load_config(None, ["DATA.NORMALIZATION.TYPE=div"])
    for steps, want in cases:
        cfg = load_config(None, ["DATA.NORMALIZATION.TYPE=div"])
        descr = SimpleNamespace(name="m", inputs=[SimpleNamespace(preprocessing=steps)])
        changed = adopt_package_normalization(cfg, descr)
        assert {k: cfg.get(norm + k) for k in want} == want
        assert set(changed) == {norm + k for k, v in want.items() if before.get(norm + k) != v}

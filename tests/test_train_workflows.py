"""``biapy-runner train`` end to end on tiny 2D and 3D U-Nets, a few iterations on CPU, for every
workflow training builds: the loss decreases, ``train_log.tsv`` and the curves are what the
README says, the exported BioImage.IO package passes bioimageio.core's test_model offline and
meets BiaPy's rules for consuming it, checkpoints load back to the same outputs, and resuming
continues at the right epoch with the losses of the uninterrupted run."""

from __future__ import annotations

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

EPOCHS = 4
BASE = """\
PROBLEM:
  TYPE: {problem}
  NDIM: {ndim}D
DATA:
  PATCH_SIZE: {patch}
  NORMALIZATION:
    TYPE: zero_mean_unit_variance
  VAL:
    SPLIT_TRAIN: 0.25
MODEL:
  ARCHITECTURE: unet
  FEATURE_MAPS: [4, 8]
  Z_DOWN: [1]
TRAIN:
  ENABLE: True
  EPOCHS: {epochs}
  BATCH_SIZE: 2
  OPTIMIZER: ADAM
  LR: 0.01
"""
EXTRA = {
    "SEMANTIC_SEG": "",
    "INSTANCE_SEG": "",
    "DETECTION": "",
    # BiaPy's 0.198 % of a 16x16 patch masks no pixel at all (an undefined N2V loss)
    "DENOISING": "  DENOISING:\n    N2V_PERC_PIX: 5.0\n",
    "SUPER_RESOLUTION": "  SUPER_RESOLUTION:\n    UPSCALING: {scale}\n",
    "SELF_SUPERVISED": "",
    "IMAGE_TO_IMAGE": "",
}


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Labelled cubes/squares of side 4 at random places."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for label in range(1, 7):
        corner = [int(rng.integers(0, s - 4)) for s in shape]
        labels[tuple(slice(c, c + 4) for c in corner)] = label
    return labels


def _write(folder: Path, problem: str, ndim: int) -> tuple[Path, Path | None]:
    shape = (8, 32, 32) if ndim == 3 else (32, 32)
    images, gts = folder / "x", folder / "y"
    images.mkdir(parents=True)
    gts.mkdir()
    for i in range(2):
        labels = _blobs(shape, i)
        rng = np.random.default_rng(10 + i)
        clean = (labels > 0) * 150.0 + 30
        noisy = (clean + rng.normal(0, 20, shape)).clip(0, 255).astype(np.uint8)
        tifffile.imwrite(images / f"s{i}.tif", noisy)
        if problem == "SEMANTIC_SEG":
            tifffile.imwrite(gts / f"s{i}.tif", (labels > 0).astype(np.uint8))
        elif problem == "INSTANCE_SEG":
            tifffile.imwrite(gts / f"s{i}.tif", labels)
        elif problem == "DETECTION":
            centres = [np.argwhere(labels == k).mean(axis=0) for k in range(1, 7)]
            header = ",".join(f"axis-{a}" for a in range(ndim))
            rows = [",".join(f"{c:.1f}" for c in centre) for centre in centres]
            (gts / f"s{i}.csv").write_text("\n".join([header, *rows]) + "\n")
        elif problem == "SUPER_RESOLUTION":
            scale = (1, 2, 2) if ndim == 3 else (2, 2)
            tifffile.imwrite(gts / f"s{i}.tif", np.kron(clean, np.ones(scale)).astype(np.uint8))
        elif problem == "IMAGE_TO_IMAGE":
            tifffile.imwrite(gts / f"s{i}.tif", clean.astype(np.uint8))
    return images, None if problem in ("DENOISING", "SELF_SUPERVISED") else gts


def _config(folder: Path, problem: str, ndim: int, epochs: int = EPOCHS) -> Path:
    patch = "(8, 16, 16, 1)" if ndim == 3 else "(16, 16, 1)"
    text = BASE.format(problem=problem, ndim=ndim, patch=patch, epochs=epochs)
    scale = "(1, 2, 2)" if ndim == 3 else "(2, 2)"
    extra = EXTRA[problem].format(scale=scale)
    if extra:
        text = text.replace("  NDIM:", extra + "  NDIM:", 1)
    if ndim == 2:
        text = text.replace("  Z_DOWN: [1]\n", "")
    path = folder / "cfg.yaml"
    path.write_text(text)
    return path


def _train(folder: Path, config: Path, images: Path, gts: Path | None, out: Path,
           *sets: str) -> int:
    args = ["train", "--config", str(config), "--train-images", str(images), "--out", str(out),
            "--device", "cpu", "--threads", "1", "--name", "tiny", "--no-report"]
    if gts is not None:
        args += ["--train-gt", str(gts)]
    for item in sets:
        args += ["--set", item]
    return main(args)


CASES = [(p, n) for p in EXTRA for n in (2, 3)]


@pytest.mark.parametrize(("problem", "ndim"), CASES, ids=[f"{p.lower()}-{n}d" for p, n in CASES])
def test_tiny_training_lowers_the_loss_and_writes_log_curves_checkpoints_package(
    tmp_path: Path, problem: str, ndim: int
) -> None:
    images, gts = _write(tmp_path, problem, ndim)
    config = _config(tmp_path, problem, ndim)
    out = tmp_path / "out"
    assert _train(tmp_path, config, images, gts, out, "MODEL.BMZ.EXPORT.ENABLE=True") == 0
    log = pd.read_csv(out / "train_log.tsv", sep="\t")
    assert log["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert list(log.columns[:3]) == ["epoch", "train_loss", "val_loss"]
    assert list(log.columns[-2:]) == ["lr", "seconds"]
    metrics = [c for c in log.columns[3:-2]]
    assert metrics and all(c.startswith(("train_", "val_")) for c in metrics)
    assert log["val_loss"].notna().all()  # 25 % of the crops held out for validation
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    panels = 2 + len(metrics) // 2  # loss, each metric, lr
    with Image.open(out / "train_curves.png") as png:
        assert png.size == (400 * panels, 320)
    best = out / "checkpoints" / "tiny-checkpoint-best.pth"
    content = torch.load(best, map_location="cpu", weights_only=False)
    assert {"model", "cfg", "epoch", "optimizer"} <= set(content)
    assert content["epoch"] == int(log.loc[log["val_loss"].idxmin(), "epoch"])
    assert content["train_log"][-1]["val_loss"] == pytest.approx(log["val_loss"].min(), rel=1e-5)
    # the package of the best checkpoint: bioimageio.core's test_model, BiaPy's settings from it
    biapy = checked_package(out / "bmz" / "model.zip", problem, ndim).settings
    patch = (8, 16, 16, 1) if ndim == 3 else (16, 16, 1)
    assert biapy["DATA.PATCH_SIZE"] == patch
    assert biapy["DATA.NORMALIZATION.TYPE"] == "zero_mean_unit_variance"
    if problem == "INSTANCE_SEG":
        assert biapy["PROBLEM.INSTANCE_SEG.DATA_CHANNELS"] == ["B", "C"]  # BiaPy's default
    if problem == "SEMANTIC_SEG":
        assert biapy["DATA.N_CLASSES"] == 2


def test_checkpoint_loads_back_to_the_same_outputs(tmp_path: Path) -> None:
    from biapy_runner.models.architectures import build_model
    from biapy_runner.models.checkpoint import load_checkpoint, save_checkpoint

    cfg = load_config(_config(tmp_path, "SEMANTIC_SEG", 2))
    torch.manual_seed(3)
    net = build_model(cfg, in_channels=1)
    with torch.no_grad():  # moved away from the initialisation, as training does
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    optimizer = torch.optim.Adam(net.parameters())
    path = save_checkpoint(tmp_path / "x-checkpoint-best.pth", net, cfg, 3, optimizer=[optimizer])
    loaded, info = load_checkpoint(path, load_config(_config(tmp_path, "SEMANTIC_SEG", 2)))
    x = torch.randn(2, 1, 16, 16)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert info["epoch"] == 3 and len(info["optimizer"]) == 1


def test_resume_continues_at_the_checkpoint_epoch_with_the_same_losses(tmp_path: Path) -> None:
    images, gts = _write(tmp_path, "SEMANTIC_SEG", 2)
    straight = tmp_path / "straight"
    config = _config(tmp_path, "SEMANTIC_SEG", 2)
    assert _train(tmp_path, config, images, gts, straight, "MODEL.SAVE_CKPT_FREQ=2") == 0
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == [
        "tiny-checkpoint-2.pth", "tiny-checkpoint-4.pth", "tiny-checkpoint-best.pth"]
    resumed = tmp_path / "resumed"
    code = _train(
        tmp_path, config, images, gts, resumed, "MODEL.LOAD_CHECKPOINT=True",
        f"PATHS.CHECKPOINT_FILE={straight / 'checkpoints' / 'tiny-checkpoint-2.pth'}",
        "MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT=['weights', 'optimizer', 'epoch']",
    )
    assert code == 0
    want = pd.read_csv(straight / "train_log.tsv", sep="\t")
    got = pd.read_csv(resumed / "train_log.tsv", sep="\t")
    assert got["epoch"].tolist() == [1, 2, 3, 4]
    for column in ("train_loss", "val_loss", "train_IoU", "val_IoU"):
        np.testing.assert_allclose(got[column], want[column], rtol=1e-5, atol=1e-6)


def test_same_seed_same_log_other_seed_other_log(tmp_path: Path) -> None:
    images, gts = _write(tmp_path, "SEMANTIC_SEG", 2)
    config = _config(tmp_path, "SEMANTIC_SEG", 2, epochs=2)
    logs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 7)):
        assert _train(tmp_path, config, images, gts, tmp_path / name, f"SYSTEM.SEED={seed}") == 0
        logs.append(pd.read_csv(tmp_path / name / "train_log.tsv", sep="\t"))
    assert logs[0]["train_loss"].tolist() == logs[1]["train_loss"].tolist()
    assert logs[0]["val_loss"].tolist() == logs[1]["val_loss"].tolist()
    assert logs[0]["train_loss"].tolist() != logs[2]["train_loss"].tolist()


def test_run_with_train_enable_trains_then_tests_like_biapy(tmp_path: Path) -> None:
    images, gts = _write(tmp_path, "SEMANTIC_SEG", 2)
    config = _config(tmp_path, "SEMANTIC_SEG", 2, epochs=2)
    text = config.read_text().replace(
        "DATA:\n", f"DATA:\n  TRAIN:\n    PATH: {images}\n    GT_PATH: {gts}\n", 1)
    config.write_text(text + "TEST:\n  ENABLE: True\n")
    cfg = load_config(config)
    assert cfg.get("DATA.TRAIN.PATH") == str(images) and cfg.get("TEST.ENABLE")
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--images", str(images / "s0.tif"),
                 "--gt", str(gts / "s0.tif"), "--out", str(out), "--threads", "1",
                 "--no-report"]) == 0
    assert len(pd.read_csv(out / "train_log.tsv", sep="\t")) == 2
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    assert metrics["image"].tolist() == ["s0", "ALL"] and 0.0 <= metrics["iou"].iloc[-1] <= 1.0
    tested = load_config(out / "config.yaml")
    assert tested.get("MODEL.SOURCE") == "biapy" and not tested.get("TRAIN.ENABLE")
    assert tested.get("PATHS.CHECKPOINT_FILE") == str(out / "checkpoints" / "model-checkpoint-best.pth")
    # TEST.ENABLE off: training outputs only
    only = tmp_path / "only"
    assert main(["run", "--config", str(config), "--set", "TEST.ENABLE=False", "--out", str(only),
                 "--threads", "1", "--no-report"]) == 0
    assert sorted(p.name for p in only.iterdir()) == [
        "checkpoints", "config.yaml", "train_curves.png", "train_log.tsv"]

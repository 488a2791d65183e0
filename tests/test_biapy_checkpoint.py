"""BiaPy checkpoints: BiaPy's .pth layout written and read back, and ``run`` with
MODEL.SOURCE: biapy through the same tiled prediction and decoding as BioImage.IO models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml
from biapy_runner.cli import main
from biapy_runner.config.load import load_config
from biapy_runner.errors import ConfigError, ModelError
from biapy_runner.models.architectures import build_model
from biapy_runner.models.checkpoint import load_checkpoint, save_checkpoint

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"

SEMANTIC = {
    "PROBLEM": {"TYPE": "SEMANTIC_SEG", "NDIM": "2D"},
    "DATA": {"PATCH_SIZE": "(64, 64, 1)", "TEST": {"PADDING": "(8, 8)"}},
    "MODEL": {"SOURCE": "biapy", "ARCHITECTURE": "unet", "FEATURE_MAPS": [4, 8, 16],
              "LOAD_CHECKPOINT": True},
}
INSTANCE_3D = {
    "PROBLEM": {"TYPE": "INSTANCE_SEG", "NDIM": "3D",
                "INSTANCE_SEG": {"DATA_CHANNELS": ["F", "C"]}},
    "DATA": {"PATCH_SIZE": "(8, 32, 32, 1)", "TEST": {"PADDING": "(0, 4, 4)"}},
    "MODEL": {"SOURCE": "biapy", "ARCHITECTURE": "resunet", "FEATURE_MAPS": [4, 8, 16],
              "Z_DOWN": [1, 2], "NORMALIZATION": "bn", "LOAD_CHECKPOINT": True},
}


def _write(tmp: Path, tree: dict, checkpoint: Path, name: str = "cfg.yaml") -> Path:
    tree = {**tree, "PATHS": {"CHECKPOINT_FILE": str(checkpoint)}}
    path = tmp / name
    path.write_text(yaml.safe_dump(tree))
    return path


def _checkpoint(tmp: Path, tree: dict, seed: int = 0) -> tuple[Path, Path, torch.nn.Module]:
    """A configuration file and a checkpoint of its network with seeded weights."""
    ckpt = tmp / "model.pth"
    config = _write(tmp, tree, ckpt)
    cfg = load_config(config)
    torch.manual_seed(seed)
    net = build_model(cfg)
    with torch.no_grad():  # non-trivial batch-norm statistics
        for name, buf in net.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buf.normal_(0, 0.1)
    save_checkpoint(ckpt, net, cfg, epoch=7, optimizer=torch.optim.Adam(net.parameters()))
    return config, ckpt, net.eval()


def test_layout_is_biapys(tmp_path: Path) -> None:
    config, ckpt, net = _checkpoint(tmp_path, SEMANTIC)
    content = torch.load(ckpt, weights_only=True)
    assert {"model", "optimizer", "epoch", "cfg", "biapy_version", "model_build_kwargs"} <= set(
        content)
    assert content["epoch"] == 7 and content["biapy_version"] == "3.7.1"
    assert isinstance(content["optimizer"], list) and "state" in content["optimizer"][0]
    assert content["cfg"]["MODEL"]["ARCHITECTURE"] == "unet"
    assert content["model_build_kwargs"]["feature_maps"] == [4, 8, 16]
    assert list(content["model"]) == list(net.state_dict())
    loaded, info = load_checkpoint(ckpt, load_config(config))
    assert info["epoch"] == 7 and info["changed"] == []
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_model_options_come_from_the_checkpoint(tmp_path: Path) -> None:
    """MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT's 'model_arch' (BiaPy's default): MODEL.* of the
    checkpoint's configuration replace the run's, 'norm' likewise DATA.NORMALIZATION."""
    tree = {**SEMANTIC, "DATA": {**SEMANTIC["DATA"], "NORMALIZATION": {"TYPE": "div"}}}
    _, ckpt, net = _checkpoint(tmp_path, tree)
    bare = _write(tmp_path, {"PROBLEM": SEMANTIC["PROBLEM"],
                             "DATA": {"PATCH_SIZE": "(64, 64, 1)"},
                             "MODEL": {"SOURCE": "biapy", "ARCHITECTURE": "resunet",
                                       "LOAD_CHECKPOINT": True}}, ckpt, "bare.yaml")
    cfg = load_config(bare)
    loaded, info = load_checkpoint(ckpt, cfg)
    assert "MODEL.ARCHITECTURE" in info["changed"] and "MODEL.FEATURE_MAPS" in info["changed"]
    assert "DATA.NORMALIZATION.TYPE" in info["changed"]
    assert cfg.get("MODEL.ARCHITECTURE") == "unet" and cfg.get("DATA.NORMALIZATION.TYPE") == "div"
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_mismatch_missing_and_corrupt_checkpoints(tmp_path: Path) -> None:
    config, ckpt, _ = _checkpoint(tmp_path, SEMANTIC)
    cfg = load_config(config, ["MODEL.FEATURE_MAPS=[4, 8, 32]",
                               "MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT=[weights]"])
    with pytest.raises(ModelError, match=r"model.pth does not fit .*shape \(e.g. bottleneck"):
        load_checkpoint(ckpt, cfg)
    with pytest.raises(ModelError, match="missing.pth .*does not exist"):
        load_checkpoint(tmp_path / "missing.pth", load_config(config))
    broken = tmp_path / "broken.pth"
    broken.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(ModelError, match="Cannot read the checkpoint .*broken.pth"):
        load_checkpoint(broken, load_config(config))
    assert main(["run", "--config", str(config), "--set", f"PATHS.CHECKPOINT_FILE={broken}",
                 "--images", str(TEST_DATA / "dsb_nuclei.tif"),
                 "--out", str(tmp_path / "out")]) == 3
    assert not (tmp_path / "out").exists()


def test_run_needs_a_checkpoint_and_a_built_architecture(tmp_path: Path) -> None:
    config, _, _ = _checkpoint(tmp_path, SEMANTIC)
    image = str(TEST_DATA / "dsb_nuclei.tif")
    for extra, words in ((["MODEL.LOAD_CHECKPOINT=False"], "MODEL.LOAD_CHECKPOINT"),
                         (["MODEL.ARCHITECTURE=unetr"], "MODEL.ARCHITECTURE = 'unetr'")):
        sets = [arg for value in extra for arg in ("--set", value)]
        with pytest.raises(ConfigError, match=words):
            from biapy_runner.pipeline import RunOptions, run

            run(RunOptions(config=config, out=tmp_path / "o", images=[Path(image)],
                           overrides=[a for a in sets if a != "--set"]))


def _zmuv(image: np.ndarray) -> np.ndarray:
    data = image.astype(np.float32)
    return (data - data.mean()) / data.std()


def test_semantic_2d_run_equals_the_network(tmp_path: Path) -> None:
    config, _, net = _checkpoint(tmp_path, SEMANTIC)
    out = tmp_path / "out"
    code = main(["run", "--config", str(config), "--images", str(TEST_DATA / "dsb_nuclei.tif"),
                 "--gt", str(TEST_DATA / "dsb_nuclei_mask.tif"), "--out", str(out),
                 "--set", "TEST.FULL_IMG=True", "--threads", "2", "--no-report"])
    assert code == 0
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(_zmuv(image)[None, None])))[0].numpy()
    raw = tifffile.imread(out / "raw" / "dsb_nuclei.tif")
    assert raw.shape == (256, 256)
    np.testing.assert_allclose(raw, expected[0], atol=1e-5)
    mask = tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif") > 0
    pred = raw > 0.5
    iou = (pred & mask).sum() / (pred | mask).sum()
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    assert table["iou"].iloc[0] == pytest.approx(iou, abs=1e-6)
    assert 0 < iou < 1
    assert "SOURCE: biapy" in (out / "config.yaml").read_text()


def test_instance_3d_run_with_channels(tmp_path: Path) -> None:
    config, _, net = _checkpoint(tmp_path, INSTANCE_3D, seed=3)
    out = tmp_path / "out"
    code = main(["run", "--config", str(config), "--images", str(TEST_DATA / "cells3d.tif"),
                 "--gt", str(TEST_DATA / "cells3d_mask.tif"), "--out", str(out),
                 "--set", "TEST.FULL_IMG=True", "--threads", "2", "--no-report"])
    assert code == 0
    image = tifffile.imread(TEST_DATA / "cells3d.tif")
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(_zmuv(image)[None, None])))[0].numpy()
    raw = np.moveaxis(tifffile.imread(out / "raw" / "cells3d.tif"), 1, 0)  # ImageJ's ZCYX
    assert raw.shape == (2, 24, 48, 48)  # F, C
    np.testing.assert_allclose(raw, expected, atol=1e-5)
    labels = tifffile.imread(out / "instances" / "cells3d.tif")
    assert labels.shape == (24, 48, 48)
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    assert list(table["image"]) == ["cells3d", "ALL"]
    found = len(np.unique(labels)) - 1
    assert found > 0
    row = table.iloc[0]
    assert row["n_true@0.5"] == 4  # the GT's nuclei
    assert row["tp@0.5"] + row["fp@0.5"] == found

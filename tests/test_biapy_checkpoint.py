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
from biapy_runner.models.checkpoint import checkpoint_file, load_checkpoint, save_checkpoint

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
    safetensors = tmp_path / "weights.safetensors"
    safetensors.write_bytes(b"{}")
    with pytest.raises(ModelError, match="weights.safetensors is a safetensors file"):
        load_checkpoint(safetensors, load_config(config))
    cfg = load_config(config, [f"PATHS.CHECKPOINT_FILE={tmp_path / 'model.safetensors'}"])
    assert checkpoint_file(cfg) == ckpt  # BiaPy takes the .pth first, whatever the extension
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


def _run_whole_image(tmp: Path, tree: dict, image: str, gt: str, seed: int = 0):
    """``run`` on one shipped image in one forward pass (TEST.FULL_IMG), and what the network
    gives directly on the image normalised as BiaPy's default (zero mean, unit variance)."""
    config, _, net = _checkpoint(tmp, tree, seed)
    out = tmp / "out"
    code = main(["run", "--config", str(config), "--images", str(TEST_DATA / image),
                 "--gt", str(TEST_DATA / gt), "--out", str(out),
                 "--set", "TEST.FULL_IMG=True", "--threads", "2", "--no-report"])
    assert code == 0
    data = tifffile.imread(TEST_DATA / image).astype(np.float32)
    data = (data - data.mean()) / data.std()
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(data[None, None])))[0].numpy()
    return out, expected


def test_semantic_2d_run_equals_the_network(tmp_path: Path) -> None:
    out, expected = _run_whole_image(tmp_path, SEMANTIC, "dsb_nuclei.tif", "dsb_nuclei_mask.tif")
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
    out, expected = _run_whole_image(tmp_path, INSTANCE_3D, "cells3d.tif", "cells3d_mask.tif", 3)
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


def test_older_biapy_checkpoint_with_a_yacs_configuration(tmp_path: Path, monkeypatch) -> None:
    """BiaPy before 3.5.1 pickled its configuration as a yacs CfgNode: read as a dict, without
    yacs installed and without unpickling anything else."""
    import sys
    import types

    yacs = types.ModuleType("yacs")
    config_module = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None) -> None:
            super().__init__(init or {})
            self.__dict__["__immutable__"] = False
            self.__dict__["__deprecated_keys__"] = set()

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    config_module.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", config_module)
    config, _ckpt, net = _checkpoint(tmp_path, SEMANTIC)
    old = tmp_path / "old.pth"
    saved = CfgNode({"MODEL": CfgNode({"ARCHITECTURE": "unet", "FEATURE_MAPS": [4, 8, 16]}),
                     "DATA": CfgNode({"NORMALIZATION": CfgNode({"TYPE": "div"})})})
    torch.save({"model": net.state_dict(), "epoch": 12, "cfg": saved}, old)
    monkeypatch.delitem(sys.modules, "yacs.config")
    monkeypatch.delitem(sys.modules, "yacs")
    cfg = load_config(config, ["MODEL.FEATURE_MAPS=[8, 16, 32]"])
    loaded, info = load_checkpoint(old, cfg)
    assert info["epoch"] == 12
    assert info["changed"] == ["MODEL.FEATURE_MAPS", "DATA.NORMALIZATION.TYPE"]
    assert type(info["content"]["cfg"]) is dict
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    evil = tmp_path / "evil.pth"
    torch.save({"model": net.state_dict(), "cfg": Path("/etc")}, evil)
    with pytest.raises(ModelError, match="evil.pth.*PosixPath is not allowed"):
        load_checkpoint(evil, load_config(config))

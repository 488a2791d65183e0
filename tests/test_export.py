"""Export to BioImage.IO (MODEL.BMZ.EXPORT.*): packages that bioimageio.core's test_model passes
offline, that this runner runs with the trained network's numbers, and that name their
channels; fine-tuning starts from a package's pytorch_state_dict network."""

from __future__ import annotations

import zipfile
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
from biapy_runner.inference.normalization import normalize
from biapy_runner.models.architectures import build_model, output_channels
from biapy_runner.models.checkpoint import save_checkpoint
from biapy_runner.models.description import representation_channels
from biapy_runner.models.export import export_model, halos, preprocessing
from biapy_runner.models.model import load_model
from biapy_runner.models.runnable import apply_activations
from biapy_runner.models.trainable import trainable_from_package

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
EXPORT = {
    "ENABLE": True,
    "MODEL_NAME": "tiny nuclei model",
    "DESCRIPTION": "Nuclei in fluorescence microscopy, a test model",
    "AUTHORS": [{"name": "Ada Lovelace", "affiliation": "Tests"}],
    "LICENSE": "MIT",
    "TAGS": ["fluorescence", "nuclei"],
    "CITE": [{"text": "DSB 2018", "doi": "10.1038/s41592-019-0612-7"}],
    "DATASET_INFO": [{"name": "DSB2018 crop", "image_modality": "fluorescence microscopy"}],
    "MODEL_VERSION": "0.2.0",
}
INSTANCE_2D = {
    "PROBLEM": {"TYPE": "INSTANCE_SEG", "NDIM": "2D",
                "INSTANCE_SEG": {"DATA_CHANNELS": ["F", "C"]}},
    "DATA": {"PATCH_SIZE": "(64, 64, 1)", "TEST": {"PADDING": "(8, 8)"}},
    "MODEL": {"SOURCE": "biapy", "ARCHITECTURE": "unet", "FEATURE_MAPS": [4, 8, 16],
              "NORMALIZATION": "bn", "LOAD_CHECKPOINT": True, "BMZ": {"EXPORT": EXPORT}},
}
SEMANTIC_3D = {
    "PROBLEM": {"TYPE": "SEMANTIC_SEG", "NDIM": "3D"},
    "DATA": {"PATCH_SIZE": "(8, 32, 32, 1)", "N_CLASSES": 3,
             "NORMALIZATION": {"TYPE": "scale_range"}},
    "MODEL": {"SOURCE": "biapy", "ARCHITECTURE": "resunet", "FEATURE_MAPS": [4, 8, 16],
              "Z_DOWN": [1, 2], "LOAD_CHECKPOINT": True, "BMZ": {"EXPORT": EXPORT}},
}


def _config(tmp: Path, tree: dict, checkpoint: Path | None = None) -> Path:
    tree = {**tree, "PATHS": {"CHECKPOINT_FILE": str(checkpoint or tmp / "model.pth")}}
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _net(cfg, seed: int) -> torch.nn.Module:
    """A network of ``cfg`` with seeded weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    net = build_model(cfg)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buf.normal_(0, 0.1)
    return net.eval()


def _test_model(package: Path) -> str:
    from bioimageio.core import test_model

    return test_model(package).status


@pytest.fixture(scope="module")
def instance_2d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.nn.Module]:
    """(config, exported zip, network) of a tiny 2D instance U-Net (channels F, C)."""
    tmp = tmp_path_factory.mktemp("instance2d")
    config = _config(tmp, INSTANCE_2D)
    cfg = load_config(config)
    net = _net(cfg, seed=1)
    save_checkpoint(tmp / "model.pth", net, cfg, epoch=3)
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")[None]
    zip_path = export_model(cfg, net, image, tmp / "bmz" / "model.zip",
                            attachments=[config], training={"epochs": 3})
    return config, zip_path, net


@pytest.mark.slow
def test_2d_instance_package_passes_test_model_and_names_its_channels(instance_2d) -> None:
    _, package, _ = instance_2d
    assert _test_model(package) == "passed"
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        x = np.load(archive.open("test_input.npy"))
        y = np.load(archive.open("test_output.npy"))
        readme = archive.read("README.md").decode()
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "nets.py", "test_input.npy",
            "test_output.npy", "cover.png", "README.md", "cfg.yaml"} <= names
    assert rdf["format_version"].startswith("0.5.")
    assert rdf["name"] == "tiny nuclei model" and rdf["version"] == "0.2.0"
    assert rdf["license"] == "MIT" and rdf["authors"] == [
        {"name": "Ada Lovelace", "affiliation": "Tests"}]
    assert rdf["tags"] == ["fluorescence", "nuclei", "2d", "pytorch", "biapy",
                           "instance-segmentation", "unet"]
    assert [c["text"] for c in rdf["cite"]] == [
        "DSB 2018", "BiaPy: accessible deep learning on bioimages"]
    assert rdf["description"].endswith("Instance segmentation representation: F + C")
    assert representation_channels(rdf["description"]) == ["F", "C"]
    output = rdf["outputs"][0]
    assert output["axes"][1]["channel_names"] == ["F", "C"]
    assert [a.get("halo") for a in output["axes"][2:]] == [8, 8]  # DATA.TEST.PADDING
    assert [a["size"] for a in rdf["inputs"][0]["axes"][2:]] == [{"min": 64, "step": 4}] * 2
    assert [p["id"] for p in rdf["inputs"][0]["preprocessing"]] == [
        "ensure_dtype", "zero_mean_unit_variance", "ensure_dtype"]
    weights = rdf["weights"]
    assert weights["torchscript"]["parent"] == "pytorch_state_dict"
    arch = weights["pytorch_state_dict"]["architecture"]
    assert arch["callable"] == "U_Net" and arch["kwargs"]["explicit_activations"] is True
    assert arch["kwargs"]["output_channel_info"] == ["F+C"]
    assert x.shape == (1, 1, 64, 64) and y.shape == (1, 2, 64, 64)
    assert 0 < y.min() and y.max() < 1  # sigmoid outputs
    assert "channel 1: `C`: contour" in readme and "biapy-runner run" in readme
    model = load_model(package, device="cpu")
    assert model.out_channel_names == ("F", "C") and model.halo == (8, 8)
    assert (model.min_shape, model.step) == ((64, 64), (4, 4))


@pytest.mark.slow
def test_run_with_the_exported_package_reproduces_the_network(instance_2d, tmp_path) -> None:
    """The zip run as MODEL.SOURCE: bmz gives the trained network's outputs (<= 1e-5) and the
    same metrics as the checkpoint it was exported from (MODEL.SOURCE: biapy)."""
    config, package, net = instance_2d
    common = ["--config", str(config), "--images", str(TEST_DATA / "dsb_nuclei.tif"),
              "--gt", str(TEST_DATA / "dsb_nuclei_mask.tif"), "--threads", "2", "--no-report"]
    assert main(["run", *common, "--out", str(tmp_path / "ckpt")]) == 0
    assert main(["run", *common, "--out", str(tmp_path / "bmz"), "--model", str(package)]) == 0
    raw = tifffile.imread(tmp_path / "bmz" / "raw" / "dsb_nuclei.tif")
    reference = tifffile.imread(tmp_path / "ckpt" / "raw" / "dsb_nuclei.tif")
    assert raw.shape == (2, 256, 256)
    np.testing.assert_allclose(raw, reference, atol=1e-5)
    a, b = (pd.read_csv(tmp_path / d / "metrics" / "metrics.tsv", sep="\t")
            for d in ("ckpt", "bmz"))
    assert list(a.columns) == list(b.columns) and len(a) == 2
    pd.testing.assert_frame_equal(a, b)
    assert "SOURCE: bmz" in (tmp_path / "bmz" / "config.yaml").read_text()
    # one tile through the package's weights (torch and TorchScript) is the network's forward
    cfg = load_config(config)
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")[None, :64, :64]
    tile = normalize(image, cfg)
    with torch.no_grad():
        expected = apply_activations(net(torch.from_numpy(tile)[None]), output_channels(cfg))
    model = load_model(package, device="cpu", weight_format="torchscript")
    for fmt, forward in (("pytorch_state_dict", load_model(package, device="cpu").reference),
                         ("torchscript", model.reference)):
        pre = torch.from_numpy(load_model(package, device="cpu").preprocess(image))[None]
        with torch.no_grad():
            got = forward(pre)
        assert float((got - expected).abs().max()) <= 1e-5, fmt


@pytest.mark.slow
def test_3d_semantic_package_passes_test_model(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, SEMANTIC_3D))
    net = _net(cfg, seed=2)
    image = tifffile.imread(TEST_DATA / "cells3d.tif")[None]
    package = export_model(cfg, net, image, tmp_path / "model3d.zip")
    assert _test_model(package) == "passed"
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        y = np.load(archive.open("test_output.npy"))
    assert y.shape == (1, 3, 8, 32, 32)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)  # softmax over the classes
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["class0", "class1", "class2"]
    assert [a["size"] for a in rdf["inputs"][0]["axes"][2:]] == [
        {"min": 8, "step": 2}, {"min": 32, "step": 4}, {"min": 32, "step": 4}]
    assert [a["halo"] for a in rdf["outputs"][0]["axes"][2:]] == [1, 4, 4]  # BiaPy's eighth
    assert rdf["inputs"][0]["preprocessing"][1] == {
        "id": "scale_range", "kwargs": {"axes": ["z", "y", "x"], "min_percentile": 0.0,
                                        "max_percentile": 100.0}}
    assert "semantic-segmentation" in rdf["tags"] and "3d" in rdf["tags"]
    assert "representation" not in rdf["description"]


def test_normalization_becomes_preprocessing() -> None:
    x = np.full((1, 1, 4, 4), 300.0, np.float32)
    cases = [
        (["DATA.NORMALIZATION.TYPE=div"], [{"id": "scale_linear",
                                            "kwargs": {"gain": 1 / 65535.0, "offset": 0.0}}]),
        (["DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL=[10]",
          "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL=[2]"],
         [{"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": 10.0, "std": 2.0}}]),
        (["DATA.NORMALIZATION.PERC_CLIP.ENABLE=True", "DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC=1",
          "DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC=99"],
         [{"id": "clip", "kwargs": {"min_percentile": 1.0, "max_percentile": 99.0,
                                    "axes": ["y", "x"]}},
          {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]),
    ]
    for overrides, expected in cases:
        assert preprocessing(load_config(None, overrides), x, ("y", "x")) == expected
    with pytest.raises(ConfigError, match="one value for all channels"):
        preprocessing(load_config(None, [
            "DATA.NORMALIZATION.PERC_CLIP.ENABLE=True",
            "DATA.NORMALIZATION.PERC_CLIP.LOWER_VALUE=[0, 1]",
            "DATA.NORMALIZATION.PERC_CLIP.UPPER_VALUE=[5, 6]"]), x, ("y", "x"))


def test_halo_follows_padding_or_biapys_rule() -> None:
    padded = load_config(None, ["DATA.TEST.PADDING=(5, 12)"])
    # twice the halo stays a multiple of the input step (16): 5 -> 0, 12 -> 8
    assert halos(padded, (64, 64), (1.0, 1.0), (16, 16)) == (0, 8)
    plain = load_config(None)
    assert halos(plain, (256, 256), (1.0, 1.0), (16, 16)) == (32, 32)
    assert halos(plain, (128, 128), (2.0, 2.0), (4, 4)) == (16, 16)  # super-resolution x2
    assert halos(plain, (64, 64), (1.0, 1.0), (0, 0)) == (0, 0)  # fixed input size


def test_bad_export_keys_are_refused(tmp_path: Path) -> None:
    net = torch.nn.Conv2d(1, 1, 1)
    image = np.zeros((1, 8, 8), np.float32)
    arch = (tmp_path / "a.py", "A", {})
    for override, words in (
        ("MODEL.BMZ.EXPORT.AUTHORS=[{github: x}]", "AUTHORS entry .* needs 'name'"),
        ("MODEL.BMZ.EXPORT.CITE=[{text: only text}]", "CITE entry .* needs a doi or a url"),
        ("MODEL.BMZ.EXPORT.DOCUMENTATION=missing.md", "DOCUMENTATION is 'missing.md'"),
        ("MODEL.BMZ.EXPORT.LICENSE=''", "LICENSE is empty"),
    ):
        with pytest.raises(ConfigError, match=words):
            export_model(load_config(None, [override]), net, image, tmp_path / "m.zip",
                         architecture=arch, channels=[("foreground", "sigmoid")])
    assert not (tmp_path / "m.zip").exists()


# -- fine-tuning from a package -----------------------------------------------------------


@pytest.mark.slow
def test_trainable_module_from_an_exported_package(instance_2d) -> None:
    """The package's own architecture code, pre-activation outputs (explicit_activations off),
    trainable parameters: one optimiser step changes the output."""
    _, package, net = instance_2d
    cfg = load_config(None, ["MODEL.SOURCE=bmz", f"MODEL.BMZ.SOURCE_MODEL_ID={package}"])
    module = trainable_from_package(cfg)
    assert type(module).__module__ != type(net).__module__  # imported from the package
    assert module.training and all(p.requires_grad for p in module.parameters())
    x = torch.randn(2, 1, 64, 64)
    module.eval()
    with torch.no_grad():
        assert torch.allclose(module(x), net(x), atol=1e-6)  # logits, as BiaPy trains them
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    loss = module(x).square().mean()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        assert float(module(x).square().mean()) < float(loss)


@pytest.mark.slow
def test_trainable_module_from_a_fixed_shape_format_04_package(tmp_path: Path) -> None:
    """The layout of the spec's ``unet2d_fixed_shape`` (format 0.4, architecture file + kwargs)."""
    from test_models import _format_04_package

    rdf = _format_04_package(tmp_path / "smooth")
    cfg = load_config(None, ["MODEL.SOURCE=bmz", f"MODEL.BMZ.SOURCE_MODEL_ID={rdf}"])
    module = trainable_from_package(cfg)
    assert type(module).__name__ == "Smooth" and module.training
    x = np.load(tmp_path / "smooth" / "test_input.npy")
    y = np.load(tmp_path / "smooth" / "test_output.npy")
    with torch.no_grad():
        got = module.eval()(torch.from_numpy((x - x.mean()) / (x.std() + 1e-6))).numpy()
    np.testing.assert_allclose(got, y, atol=1e-5)


def test_torchscript_only_package_cannot_be_fine_tuned() -> None:
    cfg = load_config(None, ["MODEL.SOURCE=bmz",
                             f"MODEL.BMZ.SOURCE_MODEL_ID={TEST_DATA / 'unet2d_nuclei_broad.zip'}"])
    with pytest.raises(ModelError, match="onnx, torchscript weights only: fine-tuning needs "
                                         "pytorch_state_dict weights") as err:
        trainable_from_package(cfg)
    assert err.value.exit_code == 3
    with pytest.raises(ConfigError, match="SOURCE_MODEL_ID is empty"):
        trainable_from_package(load_config(None, ["MODEL.SOURCE=bmz"]))


# -- the train command: export after training, fine-tuning from the exported package --------

TRAIN_CONFIG = """\
PROBLEM:
  TYPE: SEMANTIC_SEG
  NDIM: 2D
DATA:
  PATCH_SIZE: (32, 32, 1)
  TEST:
    PADDING: (4, 4)
MODEL:
  ARCHITECTURE: unet
  FEATURE_MAPS: [4, 8]
  BMZ:
    EXPORT:
      ENABLE: True
      MODEL_NAME: tiny semantic model
      AUTHORS: [{name: Ada Lovelace}]
      TAGS: [nuclei]
TRAIN:
  EPOCHS: 2
  BATCH_SIZE: 2
  LR: 0.01
"""


def _training_set(folder: Path) -> tuple[Path, Path]:
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")
    mask = (tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif") > 0).astype(np.uint8)
    (folder / "x").mkdir(parents=True)
    (folder / "y").mkdir()
    for i, (r, c) in enumerate(((0, 0), (0, 128), (128, 0))):
        tifffile.imwrite(folder / "x" / f"s{i}.tif", image[r:r + 128, c:c + 128])
        tifffile.imwrite(folder / "y" / f"s{i}.tif", mask[r:r + 128, c:c + 128])
    return folder / "x", folder / "y"


@pytest.mark.slow
def test_train_exports_a_package_and_fine_tunes_from_it(tmp_path: Path) -> None:
    x, y = _training_set(tmp_path)
    config = tmp_path / "train.yaml"
    config.write_text(TRAIN_CONFIG)
    common = ["--train-images", str(x), "--train-gt", str(y), "--threads", "2", "--no-report"]
    assert main(["train", "--config", str(config), *common, "--out", str(tmp_path / "a")]) == 0
    package = tmp_path / "a" / "bmz" / "tiny_semantic_model.zip"  # checked when exported
    with zipfile.ZipFile(package) as archive:
        assert {"config.yaml", "train_log.tsv", "weights.pt", "weights_torchscript.pt"} <= set(
            archive.namelist())
        readme = archive.read("README.md").decode()
    assert "- epochs: 2" in readme and "- training images: 3" in readme
    # fine-tuning: the exported package is the start, its package is exported and tested
    tuned = tmp_path / "b"
    assert main(["train", "--config", str(config), *common, "--out", str(tuned),
                 "--test-images", str(TEST_DATA / "dsb_nuclei.tif"),
                 "--test-gt", str(TEST_DATA / "dsb_nuclei_mask.tif"),
                 "--set", "MODEL.SOURCE=bmz", "--set", f"MODEL.BMZ.SOURCE_MODEL_ID={package}",
                 "--set", "MODEL.BMZ.EXPORT.ENABLE=False", "--set", "TRAIN.EPOCHS=1"]) == 0
    again = tuned / "bmz" / "tiny_semantic_model.zip"
    assert _test_model(again) == "passed"
    tested = yaml.safe_load((tuned / "config.yaml").read_text().split("\n", 2)[2])
    assert tested["MODEL"]["SOURCE"] == "bmz"
    assert tested["MODEL"]["BMZ"]["SOURCE_MODEL_ID"] == str(again)
    table = pd.read_csv(tuned / "metrics" / "metrics.tsv", sep="\t")
    assert list(table["image"]) == ["dsb_nuclei", "ALL"] and 0 <= table["iou"].iloc[0] <= 1
    # the fine-tuned weights differ from the start's, the architecture is the package's
    with zipfile.ZipFile(package) as a, zipfile.ZipFile(again) as b:
        assert a.read("nets.py") == b.read("nets.py")
        assert a.read("weights.pt") != b.read("weights.pt")


@pytest.mark.slow
def test_instance_package_with_a_class_head_meets_biapys_rules(tmp_path: Path) -> None:
    """Instance channels plus a class head (DATA.N_CLASSES 3): BiaPy reads the channels from the
    representation line (the class head's channels are not among them) and the classes from
    the second ``output_channels`` entry."""
    from biapy_bmz_rules import biapy_consumption

    tree = {**INSTANCE_2D, "DATA": {**INSTANCE_2D["DATA"], "N_CLASSES": 3}}
    cfg = load_config(_config(tmp_path, tree))
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")[None]
    package = export_model(cfg, _net(cfg, seed=3), image, tmp_path / "classes.zip")
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
    assert rdf["description"].endswith("Instance segmentation representation: F + C")
    kwargs = rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    assert kwargs["output_channels"] == [2, 3]
    assert len(rdf["outputs"][0]["axes"][1]["channel_names"]) == 3  # F, C, the class (argmax)
    verdict = biapy_consumption(rdf, "INSTANCE_SEG", 2, n_classes=3)
    assert verdict.refusals == []
    assert verdict.settings["PROBLEM.INSTANCE_SEG.DATA_CHANNELS"] == ["F", "C"]


def test_biapys_rules_refuse_what_biapy_refuses() -> None:
    """The rules of tests/biapy_bmz_rules.py on a minimal rdf, then one fact broken at a time."""
    from biapy_bmz_rules import biapy_consumption

    def rdf(**changes) -> dict:
        base = {
            "format_version": "0.5.4", "tags": ["2d", "biapy", "instance-segmentation"],
            "description": "Nuclei. Instance segmentation representation: F + Dc\nmore",
            "weights": {"pytorch_state_dict": {"architecture": {
                "callable": "U_Net", "kwargs": {"output_channels": [2]}}}},
            "inputs": [{"axes": [{"type": "batch"}, {"type": "channel"},
                                 {"type": "space", "id": "y", "size": {"min": 64, "step": 8}},
                                 {"type": "space", "id": "x", "size": 64}],
                        "preprocessing": [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                                          {"id": "scale_linear", "kwargs": {"gain": 0.1}}]}],
        }
        return {**base, **changes}

    good = biapy_consumption(rdf(), "INSTANCE_SEG", 2)
    assert good.refusals == []
    assert good.settings == {"PROBLEM.INSTANCE_SEG.DATA_CHANNELS": ["F", "Dc"],
                             "DATA.PATCH_SIZE": (64, 64, 1), "DATA.NORMALIZATION.TYPE": "div"}
    inputs = rdf()["inputs"]
    broken = {
        "in 3D": (rdf(), "INSTANCE_SEG", 3, "input axes 'bcyx', BiaPy wants 'bczyx'"),
        "tag": (rdf(tags=["2d", "self-supervised"]), "SELF_SUPERVISED", 2,
                "none of the tags ('self-supervision',)"),
        "channels": (rdf(weights={"pytorch_state_dict": {"architecture": {
            "kwargs": {"output_channels": 2}}}}), "INSTANCE_SEG", 2, "is not a list"),
        "step": (rdf(inputs=[{**inputs[0], "preprocessing": [{"id": "binarize"}]}]),
                 "INSTANCE_SEG", 2, "preprocessing {'id': 'binarize'}"),
        "classes": (rdf(tags=["semantic-segmentation"], weights={"pytorch_state_dict": {
            "architecture": {"kwargs": {"output_channels": [4]}}}}), "SEMANTIC_SEG", 2,
                    "4 classes but DATA.N_CLASSES is 2"),
        "torchscript only": (rdf(weights={"torchscript": {}}), "INSTANCE_SEG", 2,
                             "no pytorch_state_dict weights"),
    }
    for case, (descr, problem, ndim, words) in broken.items():
        refusals = biapy_consumption(descr, problem, ndim).refusals
        assert any(words in r for r in refusals), (case, refusals)

"""BiaPy's architectures: parameter names and outputs equal to BiaPy 3.7.1's, built from a
configuration, shipped as one self-contained source file."""

from __future__ import annotations

import ast
import importlib.util
import sys

import numpy as np
import pytest
import torch
from biapy_architecture_cases import CLASSIFIERS, fill, load_cases
from biapy_runner.config.load import load_config
from biapy_runner.config.support import model_problems
from biapy_runner.errors import ConfigError
from biapy_runner.models.architectures import (
    architecture_source,
    build_model,
    nets,
    output_channels,
)

CASES, DATA = load_cases()
CLASSIFIER_CASES, CLASSIFIER_DATA = load_cases(CLASSIFIERS)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_same_parameters_and_outputs_as_biapy(case: dict) -> None:
    _check_against_biapy(case, DATA)


@pytest.mark.parametrize("case", CLASSIFIER_CASES, ids=[c["name"] for c in CLASSIFIER_CASES])
def test_classifier_same_parameters_and_outputs_as_biapy(case: dict) -> None:
    """BiaPy's simple_CNN: the same state dict names/shapes, the same probabilities."""
    _check_against_biapy(case, CLASSIFIER_DATA)


def test_classifier_reference_covers_2d_and_3d() -> None:
    assert {len(c["kwargs"]["image_shape"]) for c in CLASSIFIER_CASES} == {3, 4}
    assert {c["class"] for c in CLASSIFIER_CASES} == {"simple_CNN"}


def _check_against_biapy(case: dict, data) -> None:
    net = getattr(nets, case["class"])(**case["kwargs"]).eval()
    ours = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert sorted(ours) == sorted(case["keys"])
    net.load_state_dict(fill(net.state_dict(), case["seed"]), strict=True)
    x = torch.from_numpy(data[case["name"] + "__input"].copy())
    with torch.no_grad():
        y = net(x)
    if isinstance(y, dict):
        y = torch.cat([y["pred"], y["class"]], dim=1)
    expected = data[case["name"] + "__output"]
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-5, rtol=0)


def test_reference_covers_every_architecture_in_2d_and_3d() -> None:
    seen = {(c["class"], "3d" if "_3d" in c["name"] else "2d") for c in CASES}
    classes = {"U_Net", "ResUNet", "SE_U_Net", "Attention_U_Net", "ResUNet_SE",
               "ResUNetPlusPlus", "MultiResUnet", "U_NeXt_V1", "U_NeXt_V2"}
    assert seen == {(c, d) for c in classes for d in ("2d", "3d")}


def _cfg(*overrides: str):
    return load_config(None, list(overrides))


def test_unet_from_the_configuration_2d_and_3d() -> None:
    cfg2 = _cfg("PROBLEM.TYPE=SEMANTIC_SEG", "DATA.PATCH_SIZE=(64, 64, 3)",
                "MODEL.FEATURE_MAPS=[8, 16, 32]")
    net = build_model(cfg2)
    assert type(net).__name__ == "U_Net"
    assert net.state_dict()["down_path.0.block.0.block.0.weight"].shape == (8, 3, 3, 3)
    assert net.heads[0].out_channels == 1
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 64, 64)
    cfg3 = _cfg("PROBLEM.TYPE=SEMANTIC_SEG", "PROBLEM.NDIM=3D", "DATA.PATCH_SIZE=(8, 32, 32, 1)",
                "DATA.N_CLASSES=3", "MODEL.FEATURE_MAPS=[4, 8, 16]", "MODEL.Z_DOWN=[1, 2]",
                "MODEL.ISOTROPY=[False, True, True]", "MODEL.NORMALIZATION=bn")
    net3 = build_model(cfg3, in_channels=2)
    assert net3.state_dict()["down_path.0.block.0.block.0.weight"].shape == (4, 2, 1, 3, 3)
    assert net3.state_dict()["down_path.0.block.0.block.1.running_var"].shape == (4,)
    assert net3.mpooling_layers[0].kernel_size == (1, 2, 2)
    assert net3(torch.zeros(1, 2, 8, 32, 32)).shape == (1, 3, 8, 32, 32)


def test_biapy_defaults_of_per_level_options() -> None:
    """Zeros in Z_DOWN/YX_DOWN mean 2 on every level; all-zero dropout and all-True isotropy
    stretch to the feature maps; one CONV_LAYERS value repeats (BiaPy's check_configuration)."""
    cfg = _cfg("PROBLEM.TYPE=SEMANTIC_SEG", "MODEL.FEATURE_MAPS=[4, 8, 16, 32]",
               "MODEL.DROPOUT_VALUES=[0]", "MODEL.CONV_LAYERS=[3]")
    _, name, kwargs = architecture_source(cfg)
    assert name == "U_Net"
    assert kwargs["z_down"] == kwargs["yx_down"] == [2, 2, 2]
    assert kwargs["drop_values"] == [0.0] * 4
    assert kwargs["isotropy"] == [True] * 4
    assert kwargs["conv_layers"] == [3] * 4
    assert kwargs["normalization"] == "in" and kwargs["larger_io"] is False


def test_output_channels_per_workflow() -> None:
    assert output_channels(_cfg("PROBLEM.TYPE=SEMANTIC_SEG")) == [("foreground", "sigmoid")]
    assert output_channels(_cfg("PROBLEM.TYPE=SEMANTIC_SEG", "DATA.N_CLASSES=3")) == [
        ("class0", "softmax"), ("class1", "softmax"), ("class2", "softmax")]
    inst = _cfg("PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.NDIM=3D", "DATA.PATCH_SIZE=(8, 32, 32, 1)",
                "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[F, C, D, E_offset]")
    assert output_channels(inst) == [("F", "sigmoid"), ("C", "sigmoid"), ("D", "tanh"),
                                     ("E_offset", "tanh"), ("E_offset", "tanh"),
                                     ("E_offset", "tanh")]
    legacy = _cfg("PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=BCD")
    assert [n for n, _ in output_channels(legacy)] == ["F", "C", "Db"]  # converted at load
    assert output_channels(legacy)[2] == ("Db", "linear")  # BiaPy's default loss: l1
    rays = _cfg("PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[F, R]",
                "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS=[{R: {nrays: 8}}]")
    assert output_channels(rays) == [("F", "sigmoid")] + [("R", "linear")] * 8
    det = _cfg("PROBLEM.TYPE=DETECTION", "DATA.N_CLASSES=3")
    assert output_channels(det)[0] == ("points", "sigmoid") and len(output_channels(det)) == 4
    den = _cfg("PROBLEM.TYPE=DENOISING", "DATA.PATCH_SIZE=(64, 64, 2)")
    assert output_channels(den) == [("channel0", "linear"), ("channel1", "linear")]
    i2i = _cfg("PROBLEM.TYPE=IMAGE_TO_IMAGE", "PROBLEM.IMAGE_TO_IMAGE.OUTPUT_CHANNELS=2",
               "PROBLEM.IMAGE_TO_IMAGE.OUTPUT_CHANNEL_ACT=[ce_sigmoid, linear]")
    assert output_channels(i2i) == [("channel0", "sigmoid"), ("channel1", "linear")]


def test_instance_heads_and_class_head() -> None:
    cfg = _cfg("PROBLEM.TYPE=INSTANCE_SEG", "DATA.N_CLASSES=3", "MODEL.FEATURE_MAPS=[4, 8, 16]",
               "DATA.PATCH_SIZE=(32, 32, 1)", "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[F, C, Dc]",
               "PROBLEM.INSTANCE_SEG.CHANNELS_PER_HEAD_INFO=[2, 1]",
               "PROBLEM.INSTANCE_SEG.SEPARATED_DECODERS_PER_HEAD=True")
    _, _, kwargs = architecture_source(cfg)
    assert kwargs["output_channels"] == [2, 1, 3]
    assert kwargs["output_channel_info"] == ["F+C", "Dc", "class"]
    assert kwargs["head_activations"] == ["ce_sigmoid", "ce_sigmoid", "linear"] + ["ce_softmax"] * 3
    net = build_model(cfg).eval()
    assert len(net.up_paths) == 3
    out = net(torch.zeros(1, 1, 32, 32))
    assert out["pred"].shape == (1, 3, 32, 32) and out["class"].shape == (1, 3, 32, 32)
    bad = _cfg("PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.INSTANCE_SEG.CHANNELS_PER_HEAD_INFO=[3]")
    with pytest.raises(ConfigError, match="CHANNELS_PER_HEAD_INFO"):
        build_model(bad)


def test_architecture_source_is_self_contained_and_rebuilds_the_network(tmp_path) -> None:
    cfg = _cfg("PROBLEM.TYPE=SEMANTIC_SEG", "MODEL.ARCHITECTURE=resunet++",
               "MODEL.FEATURE_MAPS=[4, 8, 16, 32]", "DATA.PATCH_SIZE=(32, 32, 1)")
    path, name, kwargs = architecture_source(cfg)
    tree = ast.parse(path.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= {"torch", "__future__"}
    copy = tmp_path / "shipped_architecture.py"
    copy.write_text(path.read_text())
    spec = importlib.util.spec_from_file_location("shipped_architecture", copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules["shipped_architecture"] = module
    spec.loader.exec_module(module)
    shipped = getattr(module, name)(**kwargs)
    ours = build_model(cfg)
    shipped.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(shipped.eval()(x), ours.eval()(x))


def test_unext_from_the_configuration() -> None:
    """BiaPy's U-NeXt takes MODEL.CONV_LAYERS as its ConvNeXt blocks per level and the
    CONVNEXT_* keys; the U-Net options its blocks fix are not passed."""
    cfg = _cfg("PROBLEM.TYPE=SEMANTIC_SEG", "PROBLEM.NDIM=3D", "DATA.PATCH_SIZE=(8, 32, 32, 1)",
               "MODEL.ARCHITECTURE=unext_v1", "MODEL.FEATURE_MAPS=[4, 8, 16]",
               "MODEL.CONV_LAYERS=[1, 2, 1]", "MODEL.CONVNEXT_LAYER_SCALE=0.5")
    _, name, kwargs = architecture_source(cfg)
    assert name == "U_NeXt_V1"
    assert kwargs["cn_layers"] == [1, 2, 1] and kwargs["layer_scale"] == 0.5
    assert kwargs["stem_k_size"] == 2 and kwargs["stochastic_depth_prob"] == 0.1
    assert not {"activation", "normalization", "conv_layers", "larger_io"} & set(kwargs)
    net = build_model(cfg).eval()
    assert len(net.down_path[2]) == 2  # the second level's ConvNeXt blocks
    assert net(torch.zeros(1, 1, 8, 32, 32)).shape == (1, 1, 8, 32, 32)
    cfg.set("MODEL.ARCHITECTURE", "unext_v2")
    assert "layer_scale" not in architecture_source(cfg)[2]
    assert build_model(cfg).state_dict()["down_path.1.0.block.5.gamma"].shape == (1, 1, 1, 16)


def test_options_not_built_are_refused() -> None:
    assert model_problems(_cfg("PROBLEM.TYPE=SEMANTIC_SEG")) == []
    problems = model_problems(_cfg("MODEL.ARCHITECTURE=unetr", "MODEL.NORMALIZATION=gn",
                                   "LOSS.CONTRAST.ENABLE=True", "PROBLEM.TYPE=SEMANTIC_SEG"))
    assert [p.split(" = ")[0] for p in problems] == [
        "MODEL.ARCHITECTURE", "MODEL.NORMALIZATION", "LOSS.CONTRAST.ENABLE"]
    with pytest.raises(ConfigError, match="MODEL.ARCHITECTURE 'hrnet48' is not implemented"):
        build_model(_cfg("MODEL.ARCHITECTURE=hrnet48"))

def test_simple_cnn_from_the_configuration_2d_and_3d() -> None:
    """BiaPy's build_model arguments: DATA.PATCH_SIZE, MODEL.ACTIVATION lowercased,
    DATA.N_CLASSES; outputs are the network's own softmax (taken as they are)."""
    cfg = _cfg("PROBLEM.TYPE=CLASSIFICATION", "MODEL.ARCHITECTURE=simple_cnn",
               "DATA.PATCH_SIZE=(20, 24, 3)", "DATA.N_CLASSES=5")
    path, name, kwargs = architecture_source(cfg)
    assert path.name == "nets.py" and name == "simple_CNN"
    assert kwargs == {"image_shape": [20, 24, 3], "activation": "elu", "n_classes": 5}
    assert output_channels(cfg) == [(f"class{i}", "linear") for i in range(5)]
    net = build_model(cfg).eval()
    assert net.state_dict()["heads.2.weight"].shape == (5, 64 * 5 * 6)
    y = net(torch.randn(2, 3, 20, 24))
    assert y.shape == (2, 5)
    np.testing.assert_allclose(y.sum(dim=1).detach().numpy(), 1.0, atol=1e-6)
    cfg3 = _cfg("PROBLEM.TYPE=CLASSIFICATION", "PROBLEM.NDIM=3D", "MODEL.ARCHITECTURE=simple_cnn",
                "DATA.PATCH_SIZE=(8, 12, 16, 1)", "MODEL.ACTIVATION=ReLU")
    net3 = build_model(cfg3)
    assert net3.state_dict()["block1.0.weight"].shape == (32, 1, 3, 3, 3)
    assert net3(torch.randn(1, 1, 8, 12, 16)).shape == (1, 2)
    assert model_problems(cfg) == model_problems(cfg3) == []


@pytest.mark.parametrize(("arch", "library"), [("efficientnet_b0", "torchvision"),
                                               ("efficientnet_b7", "torchvision"),
                                               ("vit", "timm")])
def test_classifiers_from_other_libraries_are_refused_by_name(arch: str, library: str) -> None:
    (problem,) = model_problems(_cfg("PROBLEM.TYPE=CLASSIFICATION", f"MODEL.ARCHITECTURE={arch}"))
    assert problem.startswith(f"MODEL.ARCHITECTURE = '{arch}' (BiaPy builds it with {library}")
    assert "train simple_cnn instead" in problem and "MODEL.SOURCE: bmz" in problem


def test_classifier_and_workflow_must_match() -> None:
    assert model_problems(_cfg("PROBLEM.TYPE=CLASSIFICATION", "MODEL.ARCHITECTURE=unet")) == [
        "MODEL.ARCHITECTURE = 'unet' (PROBLEM.TYPE CLASSIFICATION takes a classifier: simple_cnn)"]
    assert model_problems(_cfg("PROBLEM.TYPE=SEMANTIC_SEG", "MODEL.ARCHITECTURE=simple_cnn")) == [
        "MODEL.ARCHITECTURE = 'simple_cnn' (PROBLEM.TYPE SEMANTIC_SEG takes an image-to-image "
        "network)"]

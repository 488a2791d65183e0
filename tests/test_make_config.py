"""make-config: the wizard's YAML loads with load_config and holds its answers."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from biapy_runner.config import wizard as make_config
from biapy_runner.config.load import load_config
from biapy_runner.errors import InputError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    make_config.add_arguments(parser)
    return parser.parse_args(list(argv))


def _write(tmp_path: Path, *argv: str):
    """Run make-config with ``argv`` and load the written YAML."""
    out = tmp_path / "cfg.yaml"
    assert make_config.run(_args("--out", str(out), *argv)) == 0
    return load_config(out)


@pytest.mark.parametrize("workflow", sorted(make_config.PROBLEM_TYPES))
def test_every_workflow_loads(tmp_path: Path, workflow: str) -> None:
    cfg = _write(tmp_path, "--workflow", workflow, "--model", "affable-shark")
    assert cfg.get("PROBLEM.TYPE") == make_config.PROBLEM_TYPES[workflow]
    assert cfg.get("PROBLEM.NDIM") == "2D"
    assert cfg.get("MODEL.SOURCE") == "bmz"
    assert cfg.get("MODEL.BMZ.SOURCE_MODEL_ID") == "affable-shark"
    assert cfg.get("TEST.ENABLE") is True
    assert cfg.get("TEST.AUGMENTATION") is False


def test_semantic_2d_patch_from_object_size(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "--workflow", "semantic", "--object-size", "20", "--channels", "2",
                 "--tta")
    # 4 x 20 = 80 -> next power of two 128; channels last as in BiaPy
    assert cfg.get("DATA.PATCH_SIZE") == (128, 128, 2)
    assert cfg.get("DATA.TEST.PADDING") == (16, 16)
    assert cfg.get("TEST.AUGMENTATION") is True


def test_instance_3d_manual_thresholds(tmp_path: Path) -> None:
    cfg = _write(
        tmp_path, "--workflow", "instance", "--ndim", "3D", "--slices", "40",
        "--object-size", "25", "--instance-channels", "BCM", "--threshold-mode", "manual",
        "--th-binary", "0.6", "--th-contour", "0.2", "--th-foreground", "0.4",
        "--voronoi", "--min-size", "15", "--clear-border",
    )
    assert cfg.get("PROBLEM.NDIM") == "3D"
    # xy: 4 x 25 = 100 -> 128; z: at most the largest power of two <= 40 slices
    assert cfg.get("DATA.PATCH_SIZE") == (32, 128, 128, 1)
    assert cfg.get("DATA.TEST.PADDING") == (4, 16, 16)
    # written in BiaPy 3.7.1's keys: the list form and the watershed's seed/growth thresholds
    ws = "PROBLEM.INSTANCE_SEG.WATERSHED."
    assert cfg.get("PROBLEM.INSTANCE_SEG.DATA_CHANNELS") == ["F", "C", "M"]
    assert cfg.get(ws + "SEED_CHANNELS") == ["F", "C"]
    assert cfg.get(ws + "SEED_CHANNELS_THRESH") == pytest.approx([0.6, 0.2])
    assert cfg.get(ws + "GROWTH_MASK_CHANNELS") == ["F"]
    assert cfg.get(ws + "GROWTH_MASK_CHANNELS_THRESH") == pytest.approx([0.4])
    assert cfg.get(ws + "DATA_REMOVE_SMALL_OBJ_BEFORE") == 15
    assert cfg.get(ws + "DATA_REMOVE_BEFORE_MW") is True  # the switch that makes the size count
    assert cfg.get("TEST.POST_PROCESSING.VORONOI_ON_MASK") is True
    assert cfg.get("TEST.POST_PROCESSING.INSTANCE_REFINEMENT.ENABLE") is True
    assert cfg.get("TEST.POST_PROCESSING.INSTANCE_REFINEMENT.OPERATIONS") == ["clear_border"]


def test_instance_auto_thresholds_keep_defaults(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "--workflow", "instance", "--th-binary", "0.9")
    # auto: no thresholds written, BiaPy's Otsu defaults stay; no size filter switched on
    ws = "PROBLEM.INSTANCE_SEG.WATERSHED."
    assert cfg.get("PROBLEM.INSTANCE_SEG.DATA_CHANNELS") == ["F", "C"]
    assert cfg.get(ws + "SEED_CHANNELS_THRESH") == []
    assert cfg.get(ws + "GROWTH_MASK_CHANNELS_THRESH") == []
    assert cfg.get(ws + "DATA_REMOVE_BEFORE_MW") is False
    assert cfg.get("TEST.POST_PROCESSING.VORONOI_ON_MASK") is False
    assert cfg.get("TEST.POST_PROCESSING.INSTANCE_REFINEMENT.ENABLE") is False


def test_detection_settings(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "--workflow", "detection", "--peak-threshold", "0.35",
                 "--min-distance", "4", "--tolerance", "6")
    assert float(cfg.get("TEST.DET_MIN_TH_TO_BE_PEAK")) == pytest.approx(0.35)
    assert cfg.get("TEST.DET_PEAK_LOCAL_MAX_MIN_DISTANCE") == 4
    assert float(cfg.get("TEST.DET_TOLERANCE")) == pytest.approx(6.0)


def test_2d_stack(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "--workflow", "instance", "--ndim", "2D-stack")
    assert cfg.get("PROBLEM.NDIM") == "2D"
    assert cfg.get("TEST.ANALIZE_2D_IMGS_AS_3D_STACK") is True
    assert cfg.get("DATA.PATCH_SIZE") == (256, 256, 1)


def test_without_model_no_bmz_id(tmp_path: Path) -> None:
    out = tmp_path / "cfg.yaml"
    make_config.run(_args("--out", str(out), "--workflow", "denoising"))
    assert "SOURCE_MODEL_ID" not in out.read_text()
    assert out.read_text().startswith("# BiaPy configuration written by biapy-runner")


@pytest.mark.parametrize(
    ("workflow", "ndim", "size", "slices", "expected"),
    [
        ("semantic", 2, None, None, (256, 256)),
        ("semantic", 2, 3, None, (32, 32)),      # 12 -> 16, raised to the minimum 32
        ("semantic", 2, 200, None, (512, 512)),  # 800 -> 1024, capped at 512
        ("semantic", 2, 16, None, (64, 64)),     # exactly a power of two
        ("instance", 3, None, None, (64, 64, 64)),
        ("instance", 3, 20, 80, (64, 128, 128)),
        ("instance", 3, 20, 5, (4, 128, 128)),
        ("classification", 2, 50, None, (224, 224)),
    ],
)
def test_patch_size(workflow: str, ndim: int, size: int | None, slices: int | None,
                    expected: tuple[int, ...]) -> None:
    assert make_config.patch_size(ndim, size, slices, workflow) == expected


@pytest.mark.parametrize(
    "bad",
    [("--min-distance", "0"), ("--object-size", "0"), ("--th-binary", "1.5"),
     ("--channels", "0"), ("--peak-threshold", "-0.1")],
)
def test_out_of_range_is_input_error(tmp_path: Path, bad: tuple[str, str]) -> None:
    with pytest.raises(InputError, match=bad[0]):
        make_config.build_config(_args("--out", str(tmp_path / "c.yaml"),
                                       "--workflow", "instance", *bad))


@pytest.mark.slow
def test_cli_subcommand(tmp_path: Path) -> None:
    from biapy_runner.cli import main

    out = tmp_path / "sub" / "cfg.yaml"
    assert main(["make-config", "--workflow", "detection", "--ndim", "3D", "--out",
                 str(out)]) == 0
    cfg = load_config(out)
    assert cfg.get("PROBLEM.TYPE") == "DETECTION"
    assert cfg.get("DATA.PATCH_SIZE") == (64, 64, 64, 1)
    assert main(["make-config", "--workflow", "detection", "--tolerance", "0", "--out",
                 str(out)]) == 2


def test_guided_channel_sets_come_from_the_vocabulary(tmp_path: Path) -> None:
    """Every channel set the guided mode offers loads, names its process, and the Galaxy form
    offers exactly these sets."""
    import re

    from biapy_runner.config.schema import GUIDED_INSTANCE_CHANNELS, creation_process
    from biapy_runner.decode.channels import parse_channels
    from biapy_runner.decode.processes import resolve_process

    for channels, process in GUIDED_INSTANCE_CHANNELS:
        cfg = _write(tmp_path, "--workflow", "instance", "--ndim", "3D",
                     "--instance-channels", ",".join(channels))
        assert cfg.get("PROBLEM.INSTANCE_SEG.DATA_CHANNELS") == list(channels)
        assert cfg.get("PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS") == process
        assert creation_process(channels) == process or process == "watershed"
        assert resolve_process(parse_channels(list(channels)), process) == process
    xml = (Path(__file__).parents[1] / "biapy.xml").read_text()
    block = xml[xml.index('<param name="instance_channels"'):]
    block = block[: block.index("</param>")]
    offered = re.findall(r'<option value="([^"]+)"', block)
    assert offered == list(make_config.INSTANCE_CHANNELS)


FIXED_FC = '''
import torch


class FixedFC(torch.nn.Module):
    """A 1x1 convolution: foreground logit from the intensity, a low contour logit."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)

    def forward(self, x):
        return self.conv(x)
'''


@pytest.mark.slow
def test_min_size_really_removes_small_objects_in_a_run(tmp_path: Path) -> None:
    """The form's "Remove objects smaller than": make-config writes the size and the switch that
    enables it, and the run's objects are all at least that large."""
    import numpy as np
    import pandas as pd
    import tifffile
    import torch
    from biapy_runner.cli import main
    from bmz_factory import make_model_package

    yy, xx = np.indices((128, 128))
    gt = np.zeros((128, 128), np.uint16)
    discs = [((30, 30), 9), ((30, 95), 9), ((95, 60), 9), ((100, 110), 2), ((70, 20), 2)]
    for i, ((cy, cx), r) in enumerate(discs, start=1):
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    image = np.where(gt > 0, 200, 20).astype(np.uint8)
    s_in, s_out = (np.array([200.0, 20.0]) - image.mean()) / image.std()  # normalised levels
    # F: +-10 logits inside / outside the discs; C: low, lowest inside the discs (a constant C
    # would leave BiaPy 3.7's watershed no seeds: its Otsu threshold is the constant itself)
    weights = {
        "conv.weight": torch.tensor([[[[20.0 / (s_in - s_out)]]], [[[-2.0]]]]),
        "conv.bias": torch.tensor([-10.0 * (s_in + s_out) / (s_in - s_out), -10.0]),
    }
    model = make_model_package(
        tmp_path / "model", architecture_source=FIXED_FC, callable_name="FixedFC", kwargs={},
        state_dict=weights, ndim=2, in_channels=1, out_channels=2, size=64,
        preprocessing=[{"id": "zero_mean_unit_variance"}],
        postprocessing=[{"id": "sigmoid"}], name="fixed fc",
        test_input=image[None, :64, :64].astype(np.float32), tags=["instance-segmentation"],
    )
    tifffile.imwrite(tmp_path / "discs.tif", image)
    counts = {}
    for min_size in (0, 50):
        cfg = tmp_path / f"cfg{min_size}.yaml"
        assert main(["make-config", "--workflow", "instance", "--object-size", "16",
                     "--instance-channels", "BC", "--min-size", str(min_size),
                     "--out", str(cfg)]) == 0
        out = tmp_path / f"out{min_size}"
        assert main(["run", "--config", str(cfg), "--images", str(tmp_path / "discs.tif"),
                     "--model", str(model), "--out", str(out), "--threads", "1"]) == 0
        post = tifffile.imread(out / "post_proc" / "discs.tif")
        sizes = np.bincount(post.ravel())[1:]
        counts[min_size] = (int((sizes > 0).sum()), int(sizes[sizes > 0].min()))
        objects = pd.read_csv(out / "metrics" / "objects.tsv", sep="\t")
        assert len(objects) == counts[min_size][0]
    assert counts[0][0] == 5 and counts[0][1] < 50  # the two small discs (13 pixels) are found
    assert counts[50][0] == 3 and counts[50][1] >= 50  # ... and removed with --min-size 50

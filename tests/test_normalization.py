"""DATA.NORMALIZATION for models whose rdf does not normalise their input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from biapy_runner.cli import main
from biapy_runner.config.load import load_config
from biapy_runner.errors import ConfigError
from biapy_runner.inference.normalization import normalize

IDENTITY = '''
import torch


class Identity(torch.nn.Module):
    def forward(self, x):
        return x * 1.0
'''


def _cfg(*overrides: str):
    return load_config(None, ["PROBLEM.TYPE=SEMANTIC_SEG", *overrides])


def test_types_use_whole_image_statistics_per_channel() -> None:
    image = np.stack([np.arange(16.0).reshape(4, 4), 2 * np.arange(16.0).reshape(4, 4) + 5])
    scaled = normalize(image, _cfg("DATA.NORMALIZATION.TYPE=scale_range"))
    np.testing.assert_allclose(scaled[0], image[0] / 15)
    np.testing.assert_allclose(scaled[1], (image[1] - 5) / 30)
    zmuv = normalize(image, _cfg("DATA.NORMALIZATION.TYPE=zero_mean_unit_variance"))
    np.testing.assert_allclose(zmuv.mean(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(zmuv.std(axis=(1, 2)), 1, atol=1e-5)
    custom = normalize(image, _cfg(
        "DATA.NORMALIZATION.TYPE=zero_mean_unit_variance",
        "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL=5",
        "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL=2",
    ))  # fmt: skip
    np.testing.assert_allclose(custom, (image - 5) / 2)
    np.testing.assert_allclose(normalize(image, _cfg("DATA.NORMALIZATION.TYPE=div")), image / 255)
    np.testing.assert_allclose(
        normalize(image * 100, _cfg("DATA.NORMALIZATION.TYPE=div")), image * 100 / 65535
    )


def test_percentile_clipping_before_normalisation() -> None:
    image = np.arange(101.0).reshape(1, 1, 101)
    clipped = normalize(image, _cfg(
        "DATA.NORMALIZATION.TYPE=scale_range",
        "DATA.NORMALIZATION.PERC_CLIP.ENABLE=True",
        "DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC=10",
        "DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC=90",
    ))  # fmt: skip
    expected = (np.clip(image, 10, 90) - 10) / 80
    np.testing.assert_allclose(clipped, expected, atol=1e-6)
    with pytest.raises(ConfigError, match="PERC_CLIP"):
        normalize(image, _cfg("DATA.NORMALIZATION.PERC_CLIP.ENABLE=True"))


def test_configured_normalisation_reaches_a_model_without_its_own(tmp_path: Path) -> None:
    """An identity model without preprocessing: raw output = the normalised image, and the same
    model without a DATA.NORMALIZATION key in the config sees the raw intensities."""
    from tests.bmz_factory import make_model_package

    model = make_model_package(
        tmp_path, architecture_source=IDENTITY, callable_name="Identity", kwargs={}, ndim=2,
        size=(16, 16), preprocessing=[], name="identity model",
    )  # fmt: skip
    image = (np.arange(64 * 64).reshape(64, 64) % 200).astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image)
    config = tmp_path / "cfg.yaml"
    config.write_text("PROBLEM:\n  TYPE: SEMANTIC_SEG\n  NDIM: 2D\nDATA:\n  PATCH_SIZE: (32, 32, 1)\n")
    outputs = {}
    for name, extra in (("plain", []), ("scaled", ["--set", "DATA.NORMALIZATION.TYPE=scale_range"])):
        out = tmp_path / name
        code = main(["run", "--config", str(config), "--images", str(tmp_path / "img.tif"),
                     "--model", str(model), "--out", str(out), *extra])  # fmt: skip
        assert code == 0
        outputs[name] = tifffile.imread(out / "raw" / "img.tif").squeeze()
    np.testing.assert_allclose(outputs["plain"], image, atol=1e-4)
    np.testing.assert_allclose(outputs["scaled"], image / 199.0, atol=1e-6)


# -- BiaPy 3.7.1's definitions (biapy/data/norm.py: normalize_image, norm_range01,
# zero_mean_unit_variance_normalization, percentile_clip), channel by channel ----------------


def test_div_follows_each_channels_range_and_leaves_floats_in_0_1() -> None:
    cfg = _cfg("DATA.NORMALIZATION.TYPE=div")
    wide = np.stack([np.full((4, 4), 200), np.full((4, 4), 1000)]).astype(np.uint16)
    wide[:, 0, 0] = 3
    out = normalize(wide, cfg)
    np.testing.assert_allclose(out[0], wide[0] / 255.0)  # this channel stays within 0..255
    np.testing.assert_allclose(out[1], wide[1] / 65535.0)
    dim = np.full((1, 4, 4), 2, np.uint8)  # an integer image is always divided
    dim[0, 0, 0] = 1
    np.testing.assert_allclose(normalize(dim, cfg), dim / 255.0)
    unit = np.linspace(0, 0.9, 16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_array_equal(normalize(unit, cfg), unit)  # already 0..1: not divided again
    np.testing.assert_allclose(normalize(unit * 200, cfg), unit * 200 / 255.0, rtol=1e-6)


def test_scale_range_eps_and_binary_channels_left_as_they_are() -> None:
    image = np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 3.0),
                      (np.arange(16) % 2).reshape(4, 4).astype(float)])
    for kind in ("scale_range", "div", "zero_mean_unit_variance"):
        out = normalize(image, _cfg(f"DATA.NORMALIZATION.TYPE={kind}"))
        np.testing.assert_array_equal(out[2], image[2])  # binary: never normalised
    scaled = normalize(image, _cfg("DATA.NORMALIZATION.TYPE=scale_range"))
    np.testing.assert_allclose(scaled[0], image[0] / 15)
    np.testing.assert_array_equal(scaled[1], 0)  # (x - min) / max(max - min, 1e-6)
    tiny = np.array([[[0.0, 5e-7]]])
    np.testing.assert_allclose(normalize(tiny, _cfg("DATA.NORMALIZATION.TYPE=scale_range")),
                               tiny / 1e-6)
    ones = np.ones((1, 4, 4), np.uint8)  # all ones is binary too
    np.testing.assert_array_equal(normalize(ones, _cfg("DATA.NORMALIZATION.TYPE=div")), ones)


def test_percentiles_are_clipped_channel_by_channel() -> None:
    image = np.stack([np.arange(101.0), 10 * np.arange(101.0)]).reshape(2, 1, 101)
    out = normalize(image, _cfg(
        "DATA.NORMALIZATION.TYPE=scale_range",
        "DATA.NORMALIZATION.PERC_CLIP.ENABLE=True",
        "DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC=10",
        "DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC=90",
    ))  # fmt: skip
    np.testing.assert_allclose(out[0], (np.clip(image[0], 10, 90) - 10) / 80, atol=1e-6)
    np.testing.assert_allclose(out[1], (np.clip(image[1], 100, 900) - 100) / 800, atol=1e-6)


@pytest.mark.parametrize("overrides", [
    ["DATA.NORMALIZATION.TYPE=div"],
    ["DATA.NORMALIZATION.TYPE=scale_range", "DATA.NORMALIZATION.PERC_CLIP.ENABLE=True",
     "DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC=5", "DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC=95"],
    ["DATA.NORMALIZATION.TYPE=zero_mean_unit_variance"],
])  # fmt: skip
def test_regions_with_the_whole_images_statistics_equal_the_whole_image(
    tmp_path: Path, overrides: list[str]
) -> None:
    """The statistics an image read by chunks is normalised with give the in-memory result."""
    from types import SimpleNamespace

    from biapy_runner.inference.chunked import input_statistics
    from biapy_runner.io.chunked import open_lazy

    rng = np.random.default_rng(0)
    image = np.stack([rng.integers(0, 2, (8, 32, 16)), rng.integers(0, 4000, (8, 32, 16)),
                      rng.integers(0, 200, (8, 32, 16))]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", image, metadata={"axes": "CZYX"})
    cfg = load_config(None, ["PROBLEM.TYPE=SEMANTIC_SEG", "PROBLEM.NDIM=3D", *overrides])
    lazy = open_lazy(tmp_path / "v.tif", ndim=3)
    model = SimpleNamespace(input_measures=lambda: [])
    stats = input_statistics(lazy, cfg, model, True, 2**30).normalization
    whole = normalize(image, cfg)
    region = (slice(2, 5), slice(0, 32), slice(4, 12))
    np.testing.assert_allclose(normalize(lazy.read(region), cfg, stats),
                               whole[(slice(None), *region)], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(whole[0], image[0])  # the binary channel


def test_training_normalises_once_as_inference_does(tmp_path: Path) -> None:
    """A training image under ``div`` is divided once (as ``run`` divides it), not twice."""
    from types import SimpleNamespace

    from biapy_runner.training import read_samples
    from biapy_runner.workflows.base import workflow_for

    image = (np.arange(32 * 32).reshape(32, 32) % 250).astype(np.uint8)
    tifffile.imwrite(tmp_path / "x.tif", image)
    tifffile.imwrite(tmp_path / "x_mask.tif", (image > 100).astype(np.uint8))
    cfg = _cfg("DATA.NORMALIZATION.TYPE=div", "DATA.PATCH_SIZE=(32, 32, 1)", "TRAIN.ENABLE=True")
    workflow = workflow_for(cfg)
    pairs = workflow.pair_gt([tmp_path / "x.tif"], [tmp_path / "x_mask.tif"], "error")
    (sample,) = read_samples(pairs, cfg, workflow, SimpleNamespace(axes=None, dataset=None))
    np.testing.assert_allclose(sample.image[0], image / 255.0, rtol=1e-6)

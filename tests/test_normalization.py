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

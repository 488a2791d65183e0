"""Restoration workflows (denoising, super-resolution, self-supervised, image-to-image).

Metric values are checked against scikit-image's own functions on the same arrays; the scale of
super-resolution models against the configuration and through the tiler (2D and 3D).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from biapy_runner.errors import ConfigError, InputError
from biapy_runner.inference.tiling import plan_tiles, predict_tiled
from biapy_runner.io.images import Image
from biapy_runner.metrics import restoration as rm
from biapy_runner.workflows.restoration import (
    Denoising,
    ImageToImage,
    SelfSupervised,
    SuperResolution,
    convert_output,
    upscaling_per_axis,
)
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from tests.cli_run import run_cli
from tests.model_sources import UPSAMPLE_SOURCE


class FakeConfig:
    """Just the keys the restoration workflows read."""

    def __init__(self, **values: Any) -> None:
        self.values = {
            "TEST.OUTPUT_DTYPE": "float32",
            "TEST.METRICS": [],
            "PROBLEM.SUPER_RESOLUTION.UPSCALING": (),
            **values,
        }

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def _image(data: np.ndarray, stem: str = "img") -> Image:
    axes = "cyx" if data.ndim == 3 else "czyx"
    return Image(Path(f"{stem}.tif"), stem, data, axes, axes, data.dtype)


class FakePredictor:
    """A predictor whose model has a given scale; ``tiled`` upsamples by nearest neighbour."""

    def __init__(self, scale: tuple[float, ...]) -> None:
        self.model = SimpleNamespace(scale=scale)

    def tiled(self, data: np.ndarray) -> np.ndarray:
        out = data.astype(np.float32)
        for axis, factor in enumerate(self.model.scale, start=1):
            out = np.repeat(out, int(factor), axis=axis)
        return out


# --------------------------------------------------------------------------- metrics


@pytest.fixture()
def pair_uint8() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, size=(1, 40, 48), dtype=np.uint8)
    pred = np.clip(gt + rng.normal(0, 12, size=gt.shape), 0, 255).astype(np.float32)
    return gt, pred


def test_metrics_match_skimage_for_integer_gt(pair_uint8: tuple[np.ndarray, np.ndarray]) -> None:
    gt, pred = pair_uint8
    values = rm.compute(gt, pred)
    g, p = gt[0].astype(np.float64), pred[0].astype(np.float64)
    assert rm.data_range(gt) == 255.0
    assert values["psnr"] == pytest.approx(peak_signal_noise_ratio(gt[0], p, data_range=255))
    assert values["ssim"] == pytest.approx(structural_similarity(g, p, data_range=255))
    assert values["mse"] == pytest.approx(mean_squared_error(g, p))
    assert values["mae"] == pytest.approx(np.mean(np.abs(g - p)))
    assert list(values) == ["psnr", "ssim", "mae", "mse"]
    assert 20 < values["psnr"] < 30  # noise sigma 12 on 0..255: about 26 dB


def test_metrics_float_gt_use_gt_range_and_multichannel() -> None:
    rng = np.random.default_rng(4)
    gt = rng.normal(5.0, 2.0, size=(2, 30, 30)).astype(np.float32)
    pred = gt + rng.normal(0, 0.3, size=gt.shape).astype(np.float32)
    span = float(gt.max() - gt.min())
    values = rm.compute(gt, pred)
    g, p = gt.astype(np.float64), pred.astype(np.float64)
    assert rm.data_range(gt) == pytest.approx(span)
    assert values["psnr"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=span))
    assert values["ssim"] == pytest.approx(
        structural_similarity(g, p, data_range=span, channel_axis=0)
    )
    assert values["mse"] == pytest.approx(np.mean((g - p) ** 2))


def test_ssim_window_shrinks_for_thin_3d_stacks() -> None:
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 65536, size=(1, 5, 20, 20), dtype=np.uint16)
    pred = gt.astype(np.float32) * 0.9
    expected = structural_similarity(
        gt[0].astype(np.float64), pred[0].astype(np.float64), data_range=65535, win_size=5
    )
    assert rm.ssim(gt, pred) == pytest.approx(expected)
    assert rm.ssim_window((5, 20, 20)) == 5 and rm.ssim_window((4, 9)) == 3
    with pytest.raises(InputError, match="3 pixels"):
        rm.ssim_window((2, 50))


def test_identical_images_and_constant_gt() -> None:
    gt = np.full((1, 8, 8), 3.0, dtype=np.float32)
    assert rm.data_range(gt) == 1.0
    values = rm.compute(gt, gt.copy(), ("mae", "mse", "psnr"))
    assert values == {"mae": 0.0, "mse": 0.0, "psnr": np.inf}


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(InputError, match=r"\(1, 8, 8\).*\(1, 16, 16\)"):
        rm.compute(np.zeros((1, 16, 16)), np.zeros((1, 8, 8)))


# --------------------------------------------------------------------------- output dtype


def test_convert_output_modes() -> None:
    source = np.array([[[10, 200]]], dtype=np.uint8)
    raw = np.array([[[-3.4, 300.6], [1.5, 2.49]]], dtype=np.float32)
    kept = convert_output(raw, source, "float32")
    assert kept.dtype == np.float32 and np.array_equal(kept, raw)
    cast = convert_output(raw, source, "input_cast")
    assert cast.dtype == np.uint8
    assert cast.tolist() == [[[0, 255], [2, 2]]]
    rescaled = convert_output(np.array([[[0.0, 0.5, 1.0]]]), source, "input_rescale")
    assert rescaled.dtype == np.uint8 and rescaled.tolist() == [[[10, 105, 200]]]
    with pytest.raises(ConfigError, match="TEST.OUTPUT_DTYPE"):
        convert_output(raw, source, "uint8")


def test_decode_writes_post_proc_with_configured_dtype() -> None:
    data = np.arange(16, dtype=np.uint16).reshape(1, 4, 4) * 1000
    wf = Denoising(FakeConfig(**{"TEST.OUTPUT_DTYPE": "input_cast"}))
    decoded = wf.decode(data.astype(np.float32) + 0.2, _image(data))
    assert list(decoded.images) == ["post_proc"]
    assert decoded.images["post_proc"].dtype == np.uint16
    assert np.array_equal(decoded.images["post_proc"], data)
    summary = wf.summarize(decoded, _image(data))
    assert summary == {"shape": "1x4x4", "dtype": "uint16", "min": 0.0, "max": 15000.0,
                       "mean": 7500.0}


# --------------------------------------------------------------------------- scale


def test_upscaling_per_axis() -> None:
    assert upscaling_per_axis((), 2) is None
    assert upscaling_per_axis(2, 3) == (2.0, 2.0, 2.0)
    assert upscaling_per_axis((1, 2, 2), 3) == (1.0, 2.0, 2.0)
    with pytest.raises(ConfigError, match="UPSCALING"):
        upscaling_per_axis((2, 2), 3)
    with pytest.raises(ConfigError, match="UPSCALING"):
        upscaling_per_axis((0, 2), 2)


def test_super_resolution_scale_must_match_upscaling() -> None:
    data = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    wf = SuperResolution(FakeConfig(**{"PROBLEM.SUPER_RESOLUTION.UPSCALING": (2, 2)}))
    out = wf.predict(_image(data), FakePredictor((2.0, 2.0)))
    assert out.shape == (1, 6, 8)
    assert np.array_equal(out[0, ::2, ::2], data[0])
    wrong = SuperResolution(FakeConfig(**{"PROBLEM.SUPER_RESOLUTION.UPSCALING": (4, 4)}))
    with pytest.raises(ConfigError, match=r"UPSCALING is \(4, 4\).*\(2, 2\)"):
        wrong.predict(_image(data), FakePredictor((2.0, 2.0)))


def test_super_resolution_takes_model_scale_when_unset() -> None:
    data = np.ones((1, 2, 3, 4), dtype=np.float32)
    wf = SuperResolution(FakeConfig())
    assert wf.predict(_image(data), FakePredictor((1.0, 2.0, 2.0))).shape == (1, 2, 6, 8)


@pytest.mark.parametrize("workflow", [Denoising, SelfSupervised, ImageToImage])
def test_same_size_workflows_refuse_scaling_models(workflow: type) -> None:
    data = np.ones((1, 4, 4), dtype=np.float32)
    with pytest.raises(ConfigError, match="SUPER_RESOLUTION"):
        workflow(FakeConfig()).predict(_image(data), FakePredictor((2.0, 2.0)))
    assert workflow(FakeConfig()).predict(_image(data), FakePredictor((1.0, 1.0))).shape == (
        1, 4, 4,
    )


def _upsample_forward(factor: int) -> Any:
    def forward(batch: torch.Tensor) -> torch.Tensor:
        out = batch
        for axis in range(2, batch.ndim):
            out = out.repeat_interleave(factor, dim=axis)
        return out * 2.0

    return forward


@pytest.mark.parametrize(
    ("shape", "patch", "padding"),
    [((1, 50, 70), (32, 32), (4, 4)), ((1, 20, 30, 26), (16, 16, 16), (2, 2, 2))],
)
def test_tiler_scales_positions_and_halos(
    shape: tuple[int, ...], patch: tuple[int, ...], padding: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(6)
    image = rng.random(shape).astype(np.float32)
    ndim = len(shape) - 1
    plan = plan_tiles(
        shape, patch=patch, padding=padding, overlap=(0.0,) * ndim, scale=(2,) * ndim
    )
    out = predict_tiled(image, _upsample_forward(2), plan)
    expected = image * 2.0
    for axis in range(1, ndim + 1):
        expected = np.repeat(expected, 2, axis=axis)
    assert out.shape == (1, *(2 * s for s in shape[1:]))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_score_checks_gt_shape_and_uses_metrics_selection() -> None:
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 256, size=(1, 16, 16), dtype=np.uint8)
    pred = gt.astype(np.float32) + 1.0
    wf = ImageToImage(FakeConfig(**{"TEST.METRICS": ["MAE", "psnr", "lpips"]}))
    decoded = wf.decode(pred, _image(gt))
    scored = wf.score(decoded, gt, _image(gt))
    assert scored.row == pytest.approx(
        {"psnr": peak_signal_noise_ratio(gt, pred.astype(np.float64), data_range=255), "mae": 1.0}
    )
    with pytest.raises(InputError, match=r"\(1, 16, 16\).*\(1, 8, 8\)"):
        wf.score(decoded, gt[:, :8, :8], _image(gt))
    with pytest.raises(ConfigError, match="TEST.METRICS"):
        Denoising(FakeConfig(**{"TEST.METRICS": ["iou"]})).metric_names()


def test_aggregate_is_the_mean() -> None:
    wf = Denoising(FakeConfig())
    total = wf.aggregate([{"psnr": 20.0, "mae": 1.0}, {"psnr": 30.0, "mae": 3.0}])
    assert total.row == {"psnr": 25.0, "mae": 2.0}


# --------------------------------------------------------------------------- end to end

MEAN_FILTER_SOURCE = '''
import torch


class MeanFilter(torch.nn.Module):
    """A fixed 3x3 (or 3x3x3) mean filter with replicate borders: a known denoiser."""

    def __init__(self, ndim: int = 2):
        super().__init__()
        self.ndim = ndim

    def forward(self, x):
        pad = (1, 1) * self.ndim
        x = torch.nn.functional.pad(x, pad, mode="replicate")
        pool = torch.nn.functional.avg_pool2d if self.ndim == 2 else torch.nn.functional.avg_pool3d
        return pool(x, 3, stride=1)
'''


def _write_config(path: Path, problem: str, ndim: int, extra: str = "") -> Path:
    patch = "(32, 32, 1)" if ndim == 2 else "(16, 16, 16, 1)"
    path.write_text(
        f"PROBLEM:\n  TYPE: {problem}\n  NDIM: {ndim}D\n{extra}"
        f"DATA:\n  PATCH_SIZE: {patch}\nMODEL:\n  SOURCE: bmz\n"
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("ndim", [2, 3])
def test_end_to_end_super_resolution(tmp_path: Path, ndim: int) -> None:
    from tests.bmz_factory import make_model_package

    size = (16, 8) if ndim == 2 else (8, 8)
    model = make_model_package(
        tmp_path, architecture_source=UPSAMPLE_SOURCE, callable_name="Upsample",
        kwargs={"factor": 2}, ndim=ndim, size=size, scale=2, preprocessing=[],
        name=f"upsample {ndim}d",
    )
    rng = np.random.default_rng(8)
    shape = (40, 56) if ndim == 2 else (12, 20, 28)
    image = rng.integers(0, 200, size=shape, dtype=np.uint8)
    expected = image.astype(np.float32)
    for axis in range(ndim):
        expected = np.repeat(expected, 2, axis=axis)
    gt = np.clip(expected + rng.normal(0, 5, size=expected.shape), 0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "lr.tif", image)
    tifffile.imwrite(tmp_path / "lr_gt.tif", gt)
    upscaling = "(2, 2)" if ndim == 2 else "(2, 2, 2)"
    cfg = _write_config(
        tmp_path / "cfg.yaml", "SUPER_RESOLUTION", ndim,
        f"  SUPER_RESOLUTION:\n    UPSCALING: {upscaling}\n",
    )
    out = tmp_path / "out"
    code = run_cli(["run", "--config", str(cfg), "--images", str(tmp_path / "lr.tif"),
                     "--gt", str(tmp_path / "lr_gt.tif"), "--model", str(model),
                     "--out", str(out)])
    assert code == 0
    result = tifffile.imread(out / "post_proc" / "lr.tif")
    assert result.dtype == np.float32
    np.testing.assert_allclose(np.squeeze(result), expected, atol=1e-4)
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    row = metrics[metrics["image"] == "lr"].iloc[0]
    pred = np.squeeze(result).astype(np.float64)
    assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=255), 1e-5)
    assert row["ssim"] == pytest.approx(
        structural_similarity(gt.astype(np.float64), pred, data_range=255), 1e-5
    )
    assert row["mse"] == pytest.approx(mean_squared_error(gt.astype(np.float64), pred), 1e-5)
    all_row = metrics[metrics["image"] == "ALL"].iloc[0]
    assert all_row["psnr"] == pytest.approx(row["psnr"], 1e-6)


@pytest.mark.slow
def test_end_to_end_denoising_cast_to_input_dtype(tmp_path: Path) -> None:
    from scipy.ndimage import uniform_filter

    from tests.bmz_factory import make_model_package

    model = make_model_package(
        tmp_path, architecture_source=MEAN_FILTER_SOURCE, callable_name="MeanFilter",
        kwargs={"ndim": 2}, ndim=2, size=(16, 8), halo=1, preprocessing=[], name="mean filter",
    )
    rng = np.random.default_rng(9)
    clean = np.tile(np.linspace(20, 220, 48), (40, 1))
    noisy = np.clip(clean + rng.normal(0, 20, size=clean.shape), 0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", noisy)
    tifffile.imwrite(tmp_path / "a_gt.tif", clean.astype(np.uint8))
    cfg = _write_config(tmp_path / "cfg.yaml", "DENOISING", 2)
    out = tmp_path / "out"
    code = run_cli(["run", "--config", str(cfg), "--images", str(tmp_path / "a.tif"),
                     "--gt", str(tmp_path / "a_gt.tif"), "--model", str(model), "--out", str(out),
                     "--set", "TEST.OUTPUT_DTYPE=input_cast",
                     "--set", "DATA.REFLECT_TO_COMPLETE_SHAPE=True"])
    assert code == 0
    result = tifffile.imread(out / "post_proc" / "a.tif")
    # the tiler pads image borders by reflection (numpy "reflect" = scipy "mirror")
    expected = uniform_filter(noisy.astype(np.float64), size=3, mode="mirror")
    assert result.dtype == np.uint8
    assert np.abs(np.squeeze(result).astype(float) - np.rint(expected)).max() <= 1
    metrics = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image")
    gt = clean.astype(np.uint8)
    pred = np.squeeze(result)
    assert metrics.loc["a", "psnr"] == pytest.approx(
        peak_signal_noise_ratio(gt, pred, data_range=255), 1e-5
    )
    noisy_psnr = peak_signal_noise_ratio(gt, noisy, data_range=255)
    assert metrics.loc["a", "psnr"] > noisy_psnr + 3  # the mean filter does denoise

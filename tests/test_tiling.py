"""Tiled inference: exact reconstruction, super-resolution, real convolutions, sizes, TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from biapy_runner.errors import ConfigError, InputError, ModelError
from biapy_runner.inference.tiling import (
    TilePlan,
    make_valid_size,
    plan_tiles,
    predict_tiled,
    predict_tta,
    tile_grid,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def pixel_model(c_in: int, c_out: int, seed: int = 0):
    """A per-pixel model: channel mixing, offset and a non-linearity."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(c_out, c_in, generator=gen)
    bias = torch.randn(c_out, generator=gen)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("oc,bc...->bo...", weight, batch)
        return torch.tanh(mixed + bias.view(1, -1, *([1] * (batch.ndim - 2))))

    return forward


def apply_whole(forward, image: np.ndarray) -> np.ndarray:
    """The model on the whole image at once."""
    with torch.inference_mode():
        return forward(torch.from_numpy(np.ascontiguousarray(image))[None])[0].numpy()


@st.composite
def tiling_case(draw, max_scale: int = 1):
    """A random image shape, tile geometry, channel counts and batch size (2D or 3D)."""
    ndim = draw(st.sampled_from([2, 3]))
    side = 40 if ndim == 2 else 14
    shape = tuple(draw(st.integers(1, side)) for _ in range(ndim))
    patch = tuple(draw(st.integers(3, 20 if ndim == 2 else 10)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, (p - 1) // 2)) for p in patch)
    overlap = tuple(draw(st.sampled_from([0.0, 0.25, 0.5, 0.8])) for _ in range(ndim))
    cores = (p - 2 * d for p, d in zip(patch, padding))
    steps = (max(1, int(c * (1 - o))) for c, o in zip(cores, overlap))
    assume(np.prod([n / s + 1 for n, s in zip(shape, steps)]) < 300)  # keep examples fast
    return {
        "shape": shape,
        "patch": patch,
        "padding": padding,
        "overlap": overlap,
        "scale": tuple(draw(st.integers(1, max_scale)) for _ in range(ndim)),
        "c_in": draw(st.integers(1, 3)),
        "c_out": draw(st.integers(1, 3)),
        "batch": draw(st.integers(1, 4)),
        "reflect": draw(st.booleans()),
        "seed": draw(st.integers(0, 1000)),
    }


def random_image(case: dict) -> np.ndarray:
    rng = np.random.default_rng(case["seed"])
    return rng.standard_normal((case["c_in"], *case["shape"])).astype(np.float32)


def plan_of(case: dict, **kwargs) -> TilePlan:
    return plan_tiles(
        case["shape"],
        patch=case["patch"],
        padding=case["padding"],
        overlap=case["overlap"],
        scale=case["scale"],
        reflect=case["reflect"],
        **kwargs,
    )


@SETTINGS
@given(tiling_case())
def test_per_pixel_model_is_reconstructed_exactly(case: dict) -> None:
    image = random_image(case)
    forward = pixel_model(case["c_in"], case["c_out"], case["seed"])
    plan = plan_of(case)
    seen: list[tuple[int, ...]] = []

    def spy(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        return forward(batch)

    result = predict_tiled(image, spy, plan, out_channels=case["c_out"], batch_size=case["batch"])
    assert result.dtype == np.float32
    assert result.shape == (case["c_out"], *case["shape"])
    np.testing.assert_allclose(result, apply_whole(forward, image), atol=1e-5, rtol=0)
    assert all(s[0] <= case["batch"] and s[2:] == plan.patch for s in seen)
    assert sum(s[0] for s in seen) == tile_grid(case["shape"], plan).count


def upsample_model(scale: tuple[int, ...], c_in: int, c_out: int, seed: int):
    """Nearest-neighbour upsampling by ``scale`` after a per-pixel model."""
    pixel = pixel_model(c_in, c_out, seed)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        out = pixel(batch)
        for axis, factor in enumerate(scale):
            out = out.repeat_interleave(factor, dim=2 + axis)
        return out

    return forward


@SETTINGS
@given(tiling_case(max_scale=3))
def test_super_resolution_gives_upsampled_image(case: dict) -> None:
    image = random_image(case)
    forward = upsample_model(case["scale"], case["c_in"], case["c_out"], case["seed"])
    result = predict_tiled(image, forward, plan_of(case), batch_size=case["batch"])
    expected = apply_whole(pixel_model(case["c_in"], case["c_out"], case["seed"]), image)
    for axis, factor in enumerate(case["scale"]):
        expected = np.repeat(expected, factor, axis=1 + axis)
    assert result.shape == (case["c_out"], *(n * s for n, s in zip(case["shape"], case["scale"])))
    np.testing.assert_allclose(result, expected, atol=1e-5, rtol=0)


def conv_net(ndim: int, c_in: int = 2, c_out: int = 2, seed: int = 0) -> torch.nn.Module:
    """A random-weight 3-layer network of 3x3(x3) convolutions: receptive radius 3."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d
    net = torch.nn.Sequential(
        conv(c_in, 8, 3, padding=1),
        torch.nn.ReLU(),
        conv(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        conv(8, c_out, 3, padding=1),
    )
    return net.eval()


def whole_with_context(net: torch.nn.Module, image: np.ndarray, context: int) -> np.ndarray:
    """The network on the whole image after the same reflection padding the tiler uses."""
    pad = [(0, 0)] + [(context, context)] * (image.ndim - 1)
    out = apply_whole(net, np.pad(image, pad, mode="reflect"))
    return out[(slice(None),) + (slice(context, -context),) * (image.ndim - 1)]


@pytest.mark.parametrize(
    ("shape", "patch", "padding", "overlap"),
    [
        ((70, 53), (24, 32), (3, 4), (0.0, 0.0)),
        ((70, 53), (24, 32), (3, 3), (0.5, 0.25)),
        ((9, 30, 21), (10, 12, 12), (3, 3, 3), (0.0, 0.0, 0.0)),
        ((9, 30, 21), (10, 12, 12), (3, 4, 3), (0.3, 0.5, 0.0)),
    ],
)
def test_conv_net_tiled_equals_whole_image(shape, patch, padding, overlap) -> None:
    ndim = len(shape)
    net = conv_net(ndim)
    image = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    plan = plan_tiles(shape, patch=patch, padding=padding, overlap=overlap)
    assert tile_grid(shape, plan).count > 4
    result = predict_tiled(image, net, plan, batch_size=3)
    np.testing.assert_allclose(result, whole_with_context(net, image, 3), atol=1e-5, rtol=0)


def test_conv_net_without_context_shows_seams_that_overlap_reduces() -> None:
    net = conv_net(2)
    image = np.random.default_rng(2).standard_normal((2, 96, 96)).astype(np.float32)
    reference = whole_with_context(net, image, 3)

    def error(padding: int, overlap: float) -> float:
        plan = plan_tiles(
            image.shape, patch=(32, 32), padding=(padding,) * 2, overlap=(overlap,) * 2
        )
        return float(np.abs(predict_tiled(image, net, plan) - reference).mean())

    seams = error(0, 0.0)
    assert seams > 1e-3  # the test can see a too small padding
    assert error(1, 0.5) < 0.5 * seams  # context plus blending brings it close
    assert error(3, 0.5) < 1e-6


def fixed_size_model(size: tuple[int, ...], c: int = 1):
    """A per-pixel model that refuses any tile shape but ``size``."""
    pixel = pixel_model(c, 2)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        assert tuple(batch.shape[2:]) == size, batch.shape
        return pixel(batch)

    return forward, pixel


@pytest.mark.parametrize("padding", [0, 32])
def test_fixed_size_model_pads_small_image(padding: int) -> None:
    image = np.random.default_rng(3).random((1, 256, 256), dtype=np.float32)
    valid = make_valid_size((512, 512), (0, 0))
    plan = plan_tiles(
        image.shape, patch=(256, 256), padding=(padding,) * 2, overlap=(0, 0), valid_size=valid
    )
    assert plan.patch == (512, 512)
    assert tile_grid(image.shape[1:], plan).count == 1
    forward, pixel = fixed_size_model((512, 512))
    result = predict_tiled(image, forward, plan)
    np.testing.assert_allclose(result, apply_whole(pixel, image), atol=1e-6)


def test_fixed_size_model_tiles_large_image() -> None:
    image = np.random.default_rng(4).random((1, 700, 530), dtype=np.float32)
    valid = make_valid_size((512, 512), (0, 0))
    plan = plan_tiles(
        image.shape, patch=(256, 256), padding=(32, 32), overlap=(0, 0), valid_size=valid
    )
    assert plan.patch == (512, 512) and plan.core == (448, 448)
    assert tile_grid(image.shape[1:], plan).count == 4
    forward, pixel = fixed_size_model((512, 512))
    np.testing.assert_allclose(
        predict_tiled(image, forward, plan, batch_size=2), apply_whole(pixel, image), atol=1e-6
    )


def test_parameterized_size_min_16_step_16() -> None:
    valid = make_valid_size((16, 16), (16, 16))
    assert valid((40, 16)) == (48, 16)
    assert valid((3, 33)) == (16, 48)
    image = np.random.default_rng(5).random((1, 100, 37), dtype=np.float32)
    plan = plan_tiles(
        image.shape, patch=(40, 40), padding=(4, 4), overlap=(0.25, 0.25), valid_size=valid
    )
    assert plan.patch == (48, 48)
    shapes: set[tuple[int, ...]] = set()
    pixel = pixel_model(1, 2)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        shapes.add(tuple(batch.shape[2:]))
        return pixel(batch)

    np.testing.assert_allclose(
        predict_tiled(image, forward, plan), apply_whole(pixel, image), atol=1e-5
    )
    assert shapes == {(48, 48)}


def test_image_smaller_than_patch_gets_a_smaller_tile() -> None:
    plan = plan_tiles((1, 20, 30), patch=(256, 256), padding=(8, 8), overlap=(0.5, 0.5))
    assert plan.patch == (36, 46)
    plan = plan_tiles(
        (20, 30),
        patch=(256, 256),
        padding=(8, 8),
        overlap=(0, 0),
        valid_size=make_valid_size((16, 16), (16, 16)),
    )
    assert plan.patch == (48, 48)


def test_full_image_runs_one_padded_tile() -> None:
    valid = make_valid_size((16, 16), (16, 16))
    plan = plan_tiles(
        (100, 70),
        patch=(32, 32),
        padding=(4, 4),
        overlap=(0.5, 0.5),
        valid_size=valid,
        full_image=True,
    )
    assert (plan.patch, plan.padding, plan.overlap) == ((112, 80), (0, 0), (0.0, 0.0))
    assert tile_grid((100, 70), plan).count == 1
    forward, pixel = fixed_size_model((112, 80))
    image = np.random.default_rng(6).random((1, 100, 70), dtype=np.float32)
    np.testing.assert_allclose(
        predict_tiled(image, forward, plan), apply_whole(pixel, image), atol=1e-6
    )


def test_full_image_falls_back_to_tiles_for_a_fixed_small_model() -> None:
    plan = plan_tiles(
        (600, 600),
        patch=(256, 256),
        padding=(16, 16),
        overlap=(0, 0),
        valid_size=make_valid_size((512, 512), (0, 0)),
        full_image=True,
    )
    assert plan.patch == (512, 512) and plan.padding == (16, 16)
    assert tile_grid((600, 600), plan).count == 4


def test_context_is_reflected_and_completion_follows_reflect_option() -> None:
    """Borders always get reflected context; an image smaller than the tile's core is completed
    with zeros unless DATA.REFLECT_TO_COMPLETE_SHAPE (``reflect``) asks for reflection."""
    mean_filter = torch.nn.Conv2d(1, 1, 5, padding=2, bias=False)
    torch.nn.init.constant_(mean_filter.weight, 1 / 25)
    large = np.ones((1, 10, 10), dtype=np.float32)
    plan = plan_tiles(large.shape, patch=(8, 8), padding=(2, 2), overlap=(0, 0), reflect=False)
    np.testing.assert_allclose(predict_tiled(large, mean_filter, plan), 1.0, atol=1e-6)

    small = np.ones((1, 3, 3), dtype=np.float32)  # a model taking 8x8 only: core 4, 1 completed

    def plan(reflect: bool) -> TilePlan:
        return plan_tiles(
            small.shape, patch=(8, 8), padding=(2, 2), overlap=(0, 0), reflect=reflect,
            valid_size=lambda requested: (8, 8),
        )  # fmt: skip

    zeros = plan(False)
    completed = predict_tiled(small, mean_filter, zeros)
    # last pixel: its 5-wide window over [1, 1, 1, 0 | 1] per axis holds 4 ones -> (4/5)^2
    assert completed[0, 2, 2] == pytest.approx(16 / 25)
    np.testing.assert_allclose(predict_tiled(small, mean_filter, plan(True)), 1.0, atol=1e-6)


def test_on_batch_reports_counts() -> None:
    image = np.zeros((1, 50, 50), dtype=np.float32)
    plan = plan_tiles(image.shape, patch=(20, 20), padding=(0, 0), overlap=(0, 0))
    grid = tile_grid((50, 50), plan)
    assert [a.starts for a in grid.axes] == [(0, 20, 30), (0, 20, 30)]
    calls: list[tuple[int, int]] = []
    predict_tiled(
        image,
        pixel_model(1, 1),
        plan,
        batch_size=4,
        on_batch=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(4, 9), (8, 9), (9, 9)]


def test_overlap_sets_the_step() -> None:
    plan = plan_tiles((100,), patch=(24,), padding=(2,), overlap=(0.5,))
    axis = tile_grid((100,), plan).axes[0]
    assert plan.core == (20,)
    assert axis.starts == (0, 10, 20, 30, 40, 50, 60, 70, 80)
    assert axis.overlap_px == 10


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"padding": (8, 8)}, ConfigError, "DATA.TEST.PADDING"),
        ({"padding": (-1, 0)}, ConfigError, "must not be negative"),
        ({"overlap": (1.0, 0.0)}, ConfigError, "DATA.TEST.OVERLAP"),
        ({"overlap": (0.0,)}, ConfigError, "one value per axis"),
        ({"patch": (16, 16, 16)}, InputError, "spatial axes"),
    ],
)
def test_bad_geometry_is_a_clear_error(kwargs: dict, error: type, words: str) -> None:
    args = {"patch": (16, 16), "padding": (2, 2), "overlap": (0.0, 0.0)} | kwargs
    with pytest.raises(error, match=words):
        plan_tiles((40, 40), **args)


def test_padding_too_large_for_the_model_size() -> None:
    with pytest.raises(ConfigError, match="lower DATA.TEST.PADDING"):
        plan_tiles(
            (600, 600),
            patch=(256, 256),
            padding=(100, 100),
            overlap=(0, 0),
            valid_size=make_valid_size((128, 128), (0, 0)),
        )


def test_wrong_model_output_is_a_model_error() -> None:
    image = np.zeros((1, 32, 32), dtype=np.float32)
    plan = plan_tiles(image.shape, patch=(16, 16), padding=(0, 0), overlap=(0, 0))
    with pytest.raises(ModelError, match="expected"):
        predict_tiled(image, lambda t: t[..., :8], plan)
    with pytest.raises(ModelError, match="3 channels, expected 2"):
        predict_tiled(image, lambda t: t.repeat(1, 3, 1, 1), plan, out_channels=2)


# --- test-time augmentation -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 12, 7), (1, 5, 12, 9)])
@pytest.mark.parametrize("mode", ["mean", "min", "max"])
def test_tta_with_equivariant_model_equals_plain_prediction(shape, mode) -> None:
    image = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    forward = pixel_model(shape[0], 3)
    plan = plan_tiles(
        shape,
        patch=(8,) * (len(shape) - 1),
        padding=(1,) * (len(shape) - 1),
        overlap=(0.25,) * (len(shape) - 1),
    )
    calls: list[tuple[int, ...]] = []

    def predict(data: np.ndarray) -> np.ndarray:
        calls.append(data.shape)
        assert data.flags.c_contiguous
        return predict_tiled(data, forward, plan)

    merged = predict_tta(image, predict, len(shape) - 1, mode=mode)
    np.testing.assert_allclose(merged, apply_whole(forward, image), atol=1e-5)
    assert len(calls) == (8 if len(shape) == 3 else 16)
    assert set(calls) == {shape, shape[:-2] + shape[:-3:-1]}  # YX swapped by quarter turns


def test_tta_transforms_are_all_distinct_and_inverted() -> None:
    image = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    seen: list[bytes] = []

    def predict(data: np.ndarray) -> np.ndarray:
        seen.append(data.tobytes() + bytes(data.shape))
        return data * 2.0

    np.testing.assert_array_equal(predict_tta(image, predict, 3, mode="max"), image * 2.0)
    assert len(set(seen)) == 16


def test_tta_mean_min_max_of_a_non_equivariant_model() -> None:
    image = np.zeros((1, 4, 4), dtype=np.float32)
    ramp = np.arange(4, dtype=np.float32)  # the model adds an x ramp: depends on orientation

    def predict(data: np.ndarray) -> np.ndarray:
        return data + ramp[: data.shape[-1]]

    y, x = np.mgrid[0:4, 0:4].astype(np.float32)
    seen = np.stack([x, 3 - x, y, 3 - y])  # where a pixel's x lands under the 8 transforms
    mean = predict_tta(image, predict, 2)
    np.testing.assert_allclose(mean, np.full((1, 4, 4), 1.5), atol=1e-6)
    np.testing.assert_allclose(predict_tta(image, predict, 2, mode="min")[0], seen.min(0))
    np.testing.assert_allclose(predict_tta(image, predict, 2, mode="max")[0], seen.max(0))


def test_tta_bad_mode() -> None:
    with pytest.raises(ConfigError, match="TEST.AUGMENTATION_MODE"):
        predict_tta(np.zeros((1, 4, 4), np.float32), lambda d: d, 2, mode="median")


def test_fractional_scale_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="whole number"):
        plan_tiles((40, 40), patch=(16, 16), padding=(0, 0), overlap=(0, 0), scale=(1.5, 1.5))
    plan = plan_tiles((40, 40), patch=(16, 16), padding=(0, 0), overlap=(0, 0), scale=(2.0, 2.0))
    assert plan.scale == (2, 2)


@pytest.mark.parametrize("shape", [(32, 48, 48), (64, 64)])
def test_image_of_exactly_the_patch_size_is_one_forward_pass(shape) -> None:
    """BiaPy predicts an image of exactly DATA.PATCH_SIZE as it is: no context padding, no
    tiles, even when DATA.TEST.PADDING is set (the 3D case was 8 padded tiles)."""
    ndim = len(shape)
    padding = (8,) * ndim
    plan = plan_tiles(shape, patch=shape, padding=padding, overlap=(0.0,) * ndim)
    assert plan.patch == shape and plan.padding == (0,) * ndim
    assert tile_grid(shape, plan).count == 1
    net = conv_net(ndim)
    image = np.random.default_rng(9).standard_normal((2, *shape)).astype(np.float32)
    np.testing.assert_allclose(predict_tiled(image, net, plan), apply_whole(net, image), atol=1e-5)
    # one voxel more on an axis: tiled with the configured context, as before
    bigger = (shape[0] + 1, *shape[1:])
    plan = plan_tiles(bigger, patch=shape, padding=padding, overlap=(0.0,) * ndim)
    assert plan.padding == padding and tile_grid(bigger, plan).count >= 2**ndim

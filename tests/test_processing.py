"""The numpy pre/postprocessing (models/processing.py) against bioimageio.core's operators."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from biapy_runner.models.description import load_description
from biapy_runner.models.digest import digest
from biapy_runner.models.processing import Processing
from bioimageio.core import Sample, Tensor
from bioimageio.core.proc_setup import setup_pre_and_postprocessing
from bmz_factory import make_model_package
from model_sources import PIXEL_FOREGROUND

STEPS: list[tuple[str, list[dict[str, Any]]]] = [
    ("zmuv per sample", [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]),
    ("zmuv per dataset", [{"id": "zero_mean_unit_variance", "kwargs": {"axes": None}}]),
    ("fixed zmuv", [{"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": 3.0, "std": 2.0}}]),
    ("scale range", [{"id": "scale_range", "kwargs": {
        "axes": ["y", "x"], "min_percentile": 1.0, "max_percentile": 99.5}}]),
    ("scale range per dataset", [{"id": "scale_range", "kwargs": {
        "min_percentile": 5.0, "max_percentile": 95.0}}]),
    ("scale linear + clip", [{"id": "scale_linear", "kwargs": {"gain": 0.5, "offset": -1.0}},
                             {"id": "clip", "kwargs": {"min": 0.0, "max": 2.0}}]),
    ("sigmoid", [{"id": "sigmoid"}]),
]


@pytest.mark.parametrize("steps", [s for _, s in STEPS], ids=[n for n, _ in STEPS])
def test_numpy_processing_matches_bioimageio(tmp_path, steps) -> None:
    package = make_model_package(
        tmp_path, architecture_source=PIXEL_FOREGROUND, callable_name="PixelForeground",
        kwargs={}, size=(16, 8), preprocessing=steps, postprocessing=[{"id": "sigmoid"}],
    )
    descr = load_description(package, "steps")
    known = digest(descr)
    assert known.preprocessing is not None and known.postprocessing is not None
    setup = setup_pre_and_postprocessing(descr, dataset_for_initial_statistics=[])
    ours = Processing(known.preprocessing, known.in_dims)
    rng = np.random.default_rng(0)
    for image in range(3):  # dataset statistics accumulate over the images
        x = (rng.random((1, 1, 24, 32)) * 1000 + 50 * image).astype(np.uint16)
        sample = Sample(members={known.in_id: Tensor(x, dims=known.in_dims)}, stat={}, id=None)
        for op in setup.pre:
            op(sample)
        expected = np.asarray(sample.members[known.in_id].data, dtype=np.float32)
        got = np.asarray(ours(x), dtype=np.float32)
        np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6)
    y = rng.normal(size=(1, 1, 24, 32)).astype(np.float32)
    sample = Sample(members={known.out_id: Tensor(y, dims=known.out_dims)}, stat={}, id=None)
    for op in setup.post:
        op(sample)
    np.testing.assert_allclose(
        Processing(known.postprocessing, known.out_dims)(y),
        sample.members[known.out_id].data, rtol=1e-6, atol=1e-7,
    )


def test_unsupported_step_leaves_it_to_bioimageio(tmp_path) -> None:
    """A step not applied here (clip at percentiles) is left to bioimageio.core."""
    package = make_model_package(
        tmp_path, architecture_source=PIXEL_FOREGROUND, callable_name="PixelForeground",
        kwargs={}, size=(16, 8), preprocessing=[{"id": "clip", "kwargs": {
            "min_percentile": 1.0, "max_percentile": 99.0, "axes": ["y", "x"]}}],
    )
    known = digest(load_description(package, "steps"))
    assert known.preprocessing is None and known.postprocessing is not None

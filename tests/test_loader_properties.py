"""Property test of the image loaders: whatever bytes, shapes or dtypes a file holds, ``evaluate``
and ``read_image`` either work or fail with a one-paragraph input error (exit 0, 2 or 3, never 1,
never a traceback)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from biapy_runner.cli import main
from biapy_runner.errors import InputError
from biapy_runner.io.images import Image, read_gt_image, read_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
EXTENSIONS = (".tif", ".png", ".jpg", ".npy", ".h5")
WORKFLOWS = ("instance", "semantic", "detection", "denoising")
DTYPES = (
    "bool", "uint8", "int8", "uint16", "int16", "int32", "uint32", "int64", "float16", "float32",
    "float64", "complex64", "object", "<U3",
)  # fmt: skip
# writing odd arrays with tifffile / imageio (the test's side) warns; those warnings are noise here
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",
    "ignore::DeprecationWarning",
    "ignore::pytest.PytestUnraisableExceptionWarning",
)
PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _write(path: Path, array: np.ndarray) -> None:
    """Store ``array`` in the format of ``path``'s extension, as far as that format can."""
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, array, allow_pickle=True)
    elif suffix == ".h5":
        with h5py.File(path, "w") as handle:
            handle["data"] = array.astype("S3") if array.dtype.kind in "OU" else array
    elif suffix == ".tif":
        tifffile.imwrite(path, array.astype(np.uint8) if array.dtype.kind in "OU" else array)
    else:
        iio.imwrite(path, np.clip(array.real, 0, 255).astype(np.uint8))


def _real_bytes(suffix: str) -> bytes:
    """A valid small file of the given format, as bytes (to be truncated or garbled)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        _write(path, (tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif")[:32, :32] % 200))
        return path.read_bytes()


_SIZES = st.sampled_from([0, 1, 2, 3, 5, 17])
_SHAPES = st.one_of(
    st.lists(_SIZES, min_size=0, max_size=6).map(tuple),  # anything, up to 6D, 0-sized axes
    st.sampled_from([(17, 17), (5, 17, 17), (17, 17, 3), (1, 17, 17), (2, 5, 17, 17)]),
)


def _values(dtype: str, shape: tuple[int, ...], seed: int, fractions: bool) -> np.ndarray:
    values = np.random.default_rng(seed).integers(-3, 40, size=shape)
    if dtype == "object":
        return values.astype(object)
    if dtype.startswith("float") and fractions:
        return (values / 7).astype(dtype)
    return values.astype(dtype)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of 0 to 6 axes (some of size 0 or 1) in many dtypes, values small or wild."""
    dtype, shape = draw(st.sampled_from(DTYPES)), draw(_SHAPES)
    return _values(dtype, shape, draw(st.integers(0, 2**16)), draw(st.booleans()))


@st.composite
def array_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A prediction and a GT: often of one shape (so that scoring is reached), else any two."""
    pred = draw(arrays())
    if draw(st.booleans()):
        return pred, draw(arrays())
    gt_dtype = draw(st.sampled_from(["uint8", "uint16", "int32", "float32", "bool"]))
    return pred, _values(gt_dtype, pred.shape, draw(st.integers(0, 2**16)), draw(st.booleans()))


@st.composite
def broken_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """Random bytes, or a real file truncated or with some bytes overwritten, with an extension."""
    suffix = draw(st.sampled_from(EXTENSIONS))
    kind = draw(st.sampled_from(["random", "truncated", "garbled"]))
    if kind == "random":
        return suffix, draw(st.binary(min_size=0, max_size=300))
    data = bytearray(_REAL[suffix])
    cut = draw(st.integers(0, len(data) - 1))
    if kind == "truncated":
        return suffix, bytes(data[:cut])
    junk = draw(st.binary(min_size=1, max_size=64))
    data[cut : cut + len(junk)] = junk
    return suffix, bytes(data)


_REAL = {suffix: _real_bytes(suffix) for suffix in EXTENSIONS}


def _evaluate_exit(workflow: str, pred: Path, gt: Path, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["evaluate", "--workflow", workflow, "--pred", str(pred), "--gt", str(gt),
                     "--out", str(out)])  # fmt: skip
    return code, err.getvalue()


def _check_contract(code: int, err: str, out: Path) -> None:
    assert code in (0, 2, 3), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code != 0:
        assert err.count("ERROR:") == 1, err
        assert not out.exists() or not any(out.iterdir()), "a failed evaluate published files"


def _read_only_input_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(InputError):
        call()


@PROPERTY_SETTINGS
@given(
    pair=array_pairs(), suffix=st.sampled_from(EXTENSIONS), workflow=st.sampled_from(WORKFLOWS)
)
def test_evaluate_any_array_exits_0_2_or_3(
    pair: tuple[np.ndarray, np.ndarray], suffix: str, workflow: str
) -> None:
    pred, gt = pair
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        pred_path, gt_path = root / f"img{suffix}", root / "img_mask.tif"
        try:
            _write(pred_path, pred)
            _write(gt_path, gt)
        except Exception:  # noqa: BLE001  (a format that cannot hold this array: nothing to test)
            return
        code, err = _evaluate_exit(workflow, pred_path, gt_path, root / "out")
        _check_contract(code, err, root / "out")


@PROPERTY_SETTINGS
@given(broken=broken_files(), workflow=st.sampled_from(WORKFLOWS), as_gt=st.booleans())
def test_evaluate_broken_files_exit_2(
    broken: tuple[str, bytes], workflow: str, as_gt: bool
) -> None:
    suffix, content = broken
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bad = root / f"img{'_mask' if as_gt else ''}{suffix}"
        bad.write_bytes(content)
        good = root / ("img.tif" if as_gt else "img_mask.tif")
        tifffile.imwrite(good, tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif")[:32, :32])
        pred, gt = (good, bad) if as_gt else (bad, good)
        code, err = _evaluate_exit(workflow, pred, gt, root / "out")
        _check_contract(code, err, root / "out")


@PROPERTY_SETTINGS
@given(array=arrays(), suffix=st.sampled_from(EXTENSIONS), ndim=st.sampled_from([2, 3, None]))
def test_read_image_returns_channel_first_or_raises_input_error(
    array: np.ndarray, suffix: str, ndim: int | None
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"img{suffix}"
        try:
            _write(path, array)
        except Exception:  # noqa: BLE001
            return
        try:
            image = read_image(path, ndim=ndim)
        except InputError as error:
            assert str(path) in str(error) or path.name in str(error)
            return
        assert image.data.ndim in (3, 4) and image.axes == ("cyx", "czyx")[image.data.ndim - 3]
        assert image.data.size > 0 and image.data.dtype.kind in "biuf"
        like = Image(path, "img", image.data, image.axes, image.source_axes, image.dtype)
        _read_only_input_errors(lambda: read_gt_image(path, like))


@PROPERTY_SETTINGS
@given(broken=broken_files(), ndim=st.sampled_from([2, 3, None]))
def test_read_image_of_broken_files_raises_input_error(
    broken: tuple[str, bytes], ndim: int | None
) -> None:
    suffix, content = broken
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"img{suffix}"
        path.write_bytes(content)
        _read_only_input_errors(lambda: read_image(path, ndim=ndim))


@pytest.mark.parametrize("suffix", EXTENSIONS)
def test_real_files_of_each_format_are_read(suffix: str, tmp_path: Path) -> None:
    """The undamaged files the broken ones start from are valid, so the truncation tests test
    damage, not an unreadable format."""
    path = tmp_path / f"img{suffix}"
    path.write_bytes(_REAL[suffix])
    image = read_image(path, ndim=2)
    assert image.data.shape == (1, 32, 32)

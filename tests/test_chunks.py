"""Out-of-core prediction (TEST.BY_CHUNKS, the memory budget): equal to the in-memory one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from biapy_runner.errors import InputError
from biapy_runner.inference.chunked import _Moments, _Quantiles, parse_size
from biapy_runner.io.chunked import open_lazy
from biapy_runner.io.images import read_image

CONV3D = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.b = torch.nn.Conv3d(4, 2, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.b(torch.relu(self.a(x))))
"""


def semantic_config(patch: tuple[int, ...], padding: tuple[int, ...], overlap: float) -> str:
    """A 3D semantic configuration with these tiles (also ``benchmarks/bench_chunks.py``'s)."""
    return (
        "PROBLEM:\n  TYPE: SEMANTIC_SEG\n  NDIM: 3D\nDATA:\n"
        f"  PATCH_SIZE: {(*patch, 1)}\n  TEST:\n    PADDING: {padding}\n"
        f"    OVERLAP: {(overlap,) * 3}\nMODEL:\n  SOURCE: bmz\n"
    )


def conv3d_package(folder: Path) -> Path:
    """A small 3D conv model (2 sigmoid channels, zero-mean-unit-variance input) as a package
    (also the model of ``benchmarks/bench_chunks.py``)."""
    import torch

    from tests.bmz_factory import make_model_package

    namespace: dict = {}
    exec(CONV3D, namespace)  # noqa: S102
    torch.manual_seed(0)
    net = namespace["Net"]()
    return make_model_package(
        folder, architecture_source=CONV3D, callable_name="Net", kwargs={},
        state_dict=net.state_dict(), ndim=3, out_channels=2, size=(16, 8), halo=2, name="conv3d",
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small model, a uint16 volume as Zarr, HDF5, uncompressed and compressed TIFF, and a
    semantic configuration."""
    import h5py
    import scipy.ndimage as ndi
    import tifffile
    import zarr

    root = tmp_path_factory.mktemp("chunks")
    model = conv3d_package(root)
    volume = ndi.gaussian_filter(np.random.default_rng(1).random((40, 48, 56)), 2)
    volume = (volume * 60000).astype(np.uint16)
    store = zarr.create_array(store=str(root / "vol.zarr"), shape=volume.shape,
                              dtype=volume.dtype, chunks=(16, 16, 16))  # fmt: skip
    store[...] = volume
    with h5py.File(root / "vol.h5", "w") as handle:
        handle["volumes/raw"] = volume[:, None]  # ZCYX
        handle["volumes/other"] = volume[:2]
    tifffile.imwrite(root / "vol.tif", volume)
    tifffile.imwrite(root / "volz.tif", volume, compression="zlib", tile=(16, 16))
    config = root / "cfg.yaml"
    config.write_text(semantic_config((24, 24, 24), (4, 4, 4), 0.25))
    return {"root": root, "model": model, "config": config}


def _run(setup: dict[str, Path], image: str, out: str, *extra: str) -> int:
    from biapy_runner.cli import main

    args = ["run", "--config", str(setup["config"]), "--images", str(setup["root"] / image),
            "--model", str(setup["model"]), "--out", str(setup["root"] / out), "--no-report",
            *extra]  # fmt: skip
    try:
        return int(main(args) or 0)
    except SystemExit as stop:
        return int(stop.code or 0)


@pytest.fixture(scope="module")
def in_memory(setup: dict[str, Path]) -> dict[str, np.ndarray]:
    """The in-memory prediction of the volume (channel first) and its semantic labels."""
    import tifffile

    assert _run(setup, "vol.zarr", "memory", "--memory-budget", "4G") == 0
    raw = tifffile.imread(setup["root"] / "memory" / "raw" / "vol.tif")  # ImageJ ZCYX
    labels = tifffile.imread(setup["root"] / "memory" / "post_proc" / "vol.tif")
    return {"raw": np.moveaxis(raw, 1, 0), "labels": labels}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("image", "extra"),
    [
        ("vol.zarr", []),
        ("vol.h5", ["--set", "DATA.TEST.INPUT_ZARR_MULTIPLE_DATA=True", "--set",
                    "DATA.TEST.INPUT_ZARR_MULTIPLE_DATA_RAW_PATH=volumes.raw", "--set",
                    "DATA.TEST.INPUT_IMG_AXES_ORDER=ZCYX"]),
        ("vol.tif", []),
        ("volz.tif", []),
    ],
)  # fmt: skip
def test_by_chunks_equals_in_memory(
    setup: dict[str, Path], in_memory: dict[str, np.ndarray], image: str, extra: list[str]
) -> None:
    import zarr

    out = f"chunks_{image.replace('.', '_')}"
    code = _run(setup, image, out, "--memory-budget", "2M",
                "--set", "TEST.BY_CHUNKS.ENABLE=True", *extra)  # fmt: skip
    assert code == 0
    stem = Path(image).stem
    raw = zarr.open_array(str(setup["root"] / out / "raw" / f"{stem}.zarr"), mode="r")
    assert raw.shape == (2, 40, 48, 56) and raw.attrs["axes"] == "CZYX" and raw.attrs["complete"]
    assert float(np.abs(raw[...] - in_memory["raw"]).max()) <= 1e-5
    labels = zarr.open_array(str(setup["root"] / out / "post_proc" / f"{stem}.zarr"), mode="r")
    np.testing.assert_array_equal(labels[...], in_memory["labels"])
    assert 0 < np.count_nonzero(in_memory["labels"]) < in_memory["labels"].size


@pytest.mark.slow
def test_automatic_switch_with_a_tiny_budget_and_tiff_out(
    setup: dict[str, Path], in_memory: dict[str, np.ndarray], capfd: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    capfd.readouterr()
    code = _run(setup, "vol.zarr", "auto", "--memory-budget", "2M",
                "--set", "TEST.BY_CHUNKS.SAVE_OUT_TIF=True")  # fmt: skip
    err = capfd.readouterr().err
    assert code == 0
    line = next(x for x in err.splitlines() if "by chunks (automatic" in x)
    # 40 x 48 x 56 voxels: uint16 image, two float32 copies, 2 x 2 float32 output channels
    assert "needs ~2.7 MiB beside the " in line and "memory budget 2.0 MiB (--memory-budget)" in line
    assert "groups of one tile, slower; give a larger --memory-budget" in err
    # SAVE_OUT_TIF: a TIFF is written when it fits a quarter of the room left (here the least
    # room, 1 MiB: the labels, 105 KiB, fit; the raw prediction, 840 KiB, does not)
    labels = tifffile.imread(setup["root"] / "auto" / "post_proc" / "vol.tif")
    np.testing.assert_array_equal(labels, in_memory["labels"])
    assert "raw/vol.tif not written (TEST.BY_CHUNKS.SAVE_OUT_TIF)" in err
    assert not (setup["root"] / "auto" / "raw" / "vol.tif").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("image", "extra", "message"),
    [
        ("vol.h5", ["--dataset", "volumes/missing"], "has no dataset 'volumes/missing'"),
        ("vol.zarr", ["--set", "DATA.TEST.INPUT_IMG_AXES_ORDER=ZYXQ"], "'ZYXQ'"),
        ("vol.h5", ["--set", "DATA.TEST.INPUT_IMG_AXES_ORDER=ZYX", "--dataset", "volumes/raw"],
         "do not fit its shape"),
        ("vol.h5", ["--set", "DATA.TEST.INPUT_ZARR_MULTIPLE_DATA=True"],
         "INPUT_ZARR_MULTIPLE_DATA_RAW_PATH is empty"),
    ],
)  # fmt: skip
def test_bad_chunked_inputs_exit_2_with_one_paragraph(
    setup: dict[str, Path], capfd: pytest.CaptureFixture[str], image: str, extra: list[str],
    message: str,
) -> None:
    capfd.readouterr()
    code = _run(setup, image, "bad", "--set", "TEST.BY_CHUNKS.ENABLE=True", *extra)
    err = capfd.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (setup["root"] / "bad").exists()


@pytest.mark.slow
def test_median_filter_decoded_on_grown_slabs(setup: dict[str, Path]) -> None:
    import tifffile
    import zarr

    median = ["--set", "TEST.POST_PROCESSING.MEDIAN_FILTER=True", "--set",
              "TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS=['zy', 'z']", "--set",
              "TEST.POST_PROCESSING.MEDIAN_FILTER_SIZE=[5, 3]"]  # fmt: skip
    assert _run(setup, "vol.zarr", "median_memory", "--memory-budget", "4G", *median) == 0
    # a budget below the runner's own memory: the least room (1 MiB), slabs of 6 planes of the
    # raw prediction, each grown by 2 + 1 planes
    assert _run(setup, "vol.zarr", "median_chunks", "--memory-budget", "1M",
                "--set", "TEST.BY_CHUNKS.ENABLE=True", *median) == 0  # fmt: skip
    expected = tifffile.imread(setup["root"] / "median_memory" / "post_proc" / "vol.tif")
    labels = zarr.open_array(str(setup["root"] / "median_chunks" / "post_proc" / "vol.zarr"))
    np.testing.assert_array_equal(labels[...], expected)


def test_lazy_regions_equal_read_image(setup: dict[str, Path]) -> None:
    region = (slice(3, 19), slice(5, 40), slice(0, 56))
    for name, axes, dataset in (
        ("vol.zarr", None, None), ("vol.h5", "ZCYX", "volumes/raw"), ("vol.tif", None, None),
        ("volz.tif", None, None),
    ):  # fmt: skip
        path = setup["root"] / name
        lazy = open_lazy(path, ndim=3, axes=axes, dataset=dataset)
        whole = read_image(path, ndim=3, axes=axes, dataset=dataset).data
        assert lazy.shape == whole.shape == (1, 40, 48, 56)
        np.testing.assert_array_equal(lazy.read(region), whole[(slice(None), *region)])
        lazy.close()


def test_ome_zarr_reads_level_0_with_its_axes(tmp_path: Path) -> None:
    import zarr

    data = np.arange(2 * 12 * 10 * 8, dtype=np.uint16).reshape(12, 2, 10, 8)  # ZCYX
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=(4, 2, 5, 8))[...] = data
    group.create_array("1", shape=(6, 2, 5, 4), dtype=data.dtype)
    group.attrs["multiscales"] = [{
        "axes": [{"name": n} for n in "zcyx"], "datasets": [{"path": "0"}, {"path": "1"}],
    }]  # fmt: skip
    lazy = open_lazy(tmp_path / "ome.zarr", ndim=3)
    assert lazy.source_axes == "ZCYX" and lazy.shape == (2, 12, 10, 8)
    region = (slice(2, 7), slice(0, 10), slice(3, 8))
    np.testing.assert_array_equal(
        lazy.read(region), np.moveaxis(data, 1, 0)[(slice(None), *region)]
    )


def test_streaming_statistics_are_exact() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4000, size=(2, 30, 20, 10)).astype(np.uint16)
    moments = _Moments(2)
    quantiles = _Quantiles(data.dtype, 2, data[0].size)
    for start in range(0, 30, 7):
        moments.add(data[:, start : start + 7])
        quantiles.add(data[:, start : start + 7])
    flat = data.reshape(2, -1).astype(np.float64)
    np.testing.assert_allclose(moments.mean, flat.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(moments.std(), flat.std(axis=1), rtol=1e-12)
    for q in (0.001, 0.2, 0.5, 0.995):
        assert quantiles.quantile(q, 1) == pytest.approx(np.quantile(flat[1], q), abs=1e-9)
        assert quantiles.quantile(q, None) == pytest.approx(np.quantile(flat, q), abs=1e-9)


def test_memory_budget_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    from biapy_runner.inference.chunked import memory_budget

    monkeypatch.setenv("BIAPY_RUNNER_MEMORY_BUDGET", "800M")
    monkeypatch.setenv("GALAXY_MEMORY_MB", "4096")
    assert memory_budget("1.5G") == (int(1.5 * 2**30), "--memory-budget")
    assert memory_budget(None) == (800 * 2**20, "$BIAPY_RUNNER_MEMORY_BUDGET")
    monkeypatch.delenv("BIAPY_RUNNER_MEMORY_BUDGET")
    assert memory_budget(None) == (2 * 2**30, "50% of $GALAXY_MEMORY_MB")
    monkeypatch.delenv("GALAXY_MEMORY_MB")
    budget, origin = memory_budget(None)
    assert budget > 0 and origin.startswith("50% of ") and origin.endswith("available")


def test_memory_sizes() -> None:
    assert parse_size("1.5G", "--memory-budget") == int(1.5 * 2**30)
    assert parse_size("300MiB", "x") == 300 * 2**20 and parse_size("4096", "x") == 4096
    with pytest.raises(InputError, match="not a memory size"):
        parse_size("lots", "--memory-budget")

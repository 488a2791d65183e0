"""Image I/O: formats, axes detection, errors, GT pairing and TIFF writing."""

from __future__ import annotations

from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr
from biapy_runner.errors import InputError
from biapy_runner.io.images import (
    list_images,
    pair_by_stem,
    read_gt_image,
    read_image,
    stem_of,
    write_tiff,
)

DATA = Path(__file__).parent / "data"
RNG = np.random.default_rng(7)


def _vol(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(0, 1000, size=shape).astype(dtype)


# --------------------------------------------------------------------------- real images


def test_real_2d_tiff(test_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = read_image(test_data / "dsb_nuclei.tif", ndim=2)
    assert image.data.shape == (1, 256, 256)
    assert image.axes == "cyx" and image.source_axes == "YX"
    assert image.dtype == np.uint8 and image.spatial_shape == (256, 256)
    assert int(image.data.sum()) == 1384075 and int(image.data[0, 100, 100]) == 14
    assert image.stem == "dsb_nuclei"
    assert "dsb_nuclei.tif: axes YX" in capsys.readouterr().err
    gt = read_gt_image(test_data / "dsb_nuclei_mask.tif", image)
    assert gt.shape == (256, 256) and gt.dtype == np.uint16 and int(gt.max()) == 65


def test_real_3d_stack_without_axes_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    image = read_image(DATA / "nuclei3d_crop.tif", ndim=3)
    assert image.data.shape == (1, 12, 128, 128) and image.axes == "czyx"
    assert image.source_axes == "ZYX" and image.dtype == np.uint16
    assert int(image.data.sum()) == 1600864965 and int(image.data[0, 5, 60, 60]) == 5074
    log = capsys.readouterr().err
    assert "axes ZYX (file says QYX" in log and "-> czyx (1, 12, 128, 128) uint16" in log
    gt = read_gt_image(DATA / "nuclei3d_crop_label.tif", image)
    assert gt.shape == (12, 128, 128) and gt.dtype == np.uint32
    assert sorted(np.unique(gt).tolist()) == [0, 2, 3, 4, 7, 8, 11, 12, 13, 14]


def test_real_3d_stack_in_2d_run_is_an_error() -> None:
    with pytest.raises(InputError) as err:
        read_image(DATA / "nuclei3d_crop.tif", ndim=2)
    message = str(err.value)
    assert "nuclei3d_crop.tif" in message and "(12, 128, 128)" in message
    assert "PROBLEM.NDIM" in message and "TEST.ANALIZE_2D_IMGS_AS_3D_STACK" in message
    assert err.value.exit_code == 2


# --------------------------------------------------------------------------- TIFF flavours


def test_imagej_hyperstack_zcyx(tmp_path: Path) -> None:
    stack = _vol((5, 2, 16, 17))
    tifffile.imwrite(tmp_path / "hs.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    image = read_image(tmp_path / "hs.tif", ndim=3)
    assert image.source_axes == "ZCYX" and image.data.shape == (2, 5, 16, 17)
    np.testing.assert_array_equal(image.data, stack.transpose(1, 0, 2, 3))
    assert image.data[1, 3, 4, 5] == stack[3, 1, 4, 5]


def test_ome_tiff(tmp_path: Path) -> None:
    stack = _vol((3, 4, 10, 12), "float32")
    tifffile.imwrite(tmp_path / "a.ome.tiff", stack, ome=True, metadata={"axes": "CZYX"})
    image = read_image(tmp_path / "a.ome.tiff", ndim=3)
    assert image.stem == "a" and image.dtype == np.float32
    assert image.data.shape == (3, 4, 10, 12)
    np.testing.assert_array_equal(image.data, stack)


def test_imagej_rgb_tiff_and_time_of_one(tmp_path: Path) -> None:
    rgb = _vol((1, 9, 11, 3), "uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", metadata={"axes": "TYXS"})
    image = read_image(tmp_path / "rgb.tif", ndim=2)
    assert image.data.shape == (3, 9, 11)
    np.testing.assert_array_equal(image.data, rgb[0].transpose(2, 0, 1))


def test_plain_multipage_tiff(tmp_path: Path) -> None:
    stack = _vol((7, 10, 11), "uint8")
    tifffile.imwrite(tmp_path / "p.tif", stack, shaped=False, photometric="minisblack")
    image = read_image(tmp_path / "p.tif", ndim=3)
    assert image.source_axes == "ZYX" and image.data.shape == (1, 7, 10, 11)
    np.testing.assert_array_equal(image.data[0], stack)
    with pytest.raises(InputError, match="looks like a 3D stack"):
        read_image(tmp_path / "p.tif", ndim=2)


def test_time_series_is_an_error(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "t.tif", _vol((4, 8, 8)), photometric="minisblack", metadata={"axes": "TYX"}
    )
    with pytest.raises(InputError, match="4 time points.*--axes"):
        read_image(tmp_path / "t.tif", ndim=2)
    image = read_image(tmp_path / "t.tif", ndim=3, axes="zyx")
    assert image.data.shape == (1, 4, 8, 8)


# --------------------------------------------------------------------------- other formats


def test_png_rgb_has_three_channels(tmp_path: Path) -> None:
    rgb = _vol((20, 30, 3), "uint8")
    iio.imwrite(tmp_path / "c.png", rgb)
    image = read_image(tmp_path / "c.png", ndim=2)
    assert image.source_axes == "YXS" and image.data.shape == (3, 20, 30)
    np.testing.assert_array_equal(image.data, rgb.transpose(2, 0, 1))


def test_png_gray_and_jpg(tmp_path: Path) -> None:
    gray = _vol((20, 30), "uint8")
    iio.imwrite(tmp_path / "g.png", gray)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", ndim=2).data[0], gray)
    flat = np.full((16, 16, 3), 120, np.uint8)
    iio.imwrite(tmp_path / "j.jpg", flat)
    image = read_image(tmp_path / "j.jpg", ndim=2)
    assert image.data.shape == (3, 16, 16)
    assert abs(int(image.data.astype(int).mean()) - 120) <= 1
    with pytest.raises(InputError, match="2D image"):
        read_image(tmp_path / "g.png", ndim=3)


def test_hdf5_single_and_named_dataset(tmp_path: Path) -> None:
    vol = _vol((6, 10, 12, 2))
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f.create_dataset("group/raw", data=vol)
    image = read_image(tmp_path / "one.h5", ndim=3)
    assert image.source_axes == "ZYXC" and image.data.shape == (2, 6, 10, 12)
    np.testing.assert_array_equal(image.data, np.moveaxis(vol, -1, 0))
    with h5py.File(tmp_path / "two.hdf5", "w") as f:
        f.create_dataset("raw", data=vol[..., 0])
        f.create_dataset("labels", data=vol[..., 1] % 3)
    with pytest.raises(InputError, match=r"2 datasets \(labels, raw\).*--dataset"):
        read_image(tmp_path / "two.hdf5", ndim=3)
    labels = read_image(tmp_path / "two.hdf5", ndim=3, dataset="labels")
    np.testing.assert_array_equal(labels.data[0], vol[..., 1] % 3)
    with pytest.raises(InputError, match="no dataset 'nope'.*labels, raw"):
        read_image(tmp_path / "two.hdf5", ndim=3, dataset="nope")


def test_hdf5_axes_attribute(tmp_path: Path) -> None:
    vol = _vol((3, 6, 10, 12))
    with h5py.File(tmp_path / "ax.h5", "w") as f:
        f.create_dataset("raw", data=vol).attrs["axes"] = "czyx"
    image = read_image(tmp_path / "ax.h5", ndim=3)
    assert image.source_axes == "CZYX"
    np.testing.assert_array_equal(image.data, vol)


def test_zarr_array_group_and_ome(tmp_path: Path) -> None:
    arr = _vol((2, 24, 25))
    zarr.open_array(tmp_path / "a.zarr", mode="w", shape=arr.shape, dtype=arr.dtype)[...] = arr
    image = read_image(tmp_path / "a.zarr", ndim=2)
    assert image.stem == "a" and image.source_axes == "CYX"
    np.testing.assert_array_equal(image.data, arr)
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("x/raw", shape=arr.shape, dtype=arr.dtype)[...] = arr
    group.create_array("x/mask", shape=arr.shape[1:], dtype="uint8")[...] = 1
    with pytest.raises(InputError, match="2 datasets"):
        read_image(tmp_path / "g.zarr", ndim=2)
    np.testing.assert_array_equal(
        read_image(tmp_path / "g.zarr", ndim=2, dataset="x/raw").data, arr
    )
    ome = zarr.open_group(tmp_path / "o.ome.zarr", mode="w")
    vol = _vol((3, 24, 25))
    ome.create_array("0", shape=vol.shape, dtype=vol.dtype)[...] = vol
    ome.create_array("1", shape=(3, 12, 12), dtype="uint16")[...] = 0
    axes = [{"name": "z", "type": "space"}, {"name": "y"}, {"name": "x"}]
    ome.attrs["multiscales"] = [{"axes": axes, "datasets": [{"path": "0"}, {"path": "1"}]}]
    image = read_image(tmp_path / "o.ome.zarr", ndim=3)
    assert image.stem == "o" and image.source_axes == "ZYX" and image.data.shape == (1, 3, 24, 25)
    np.testing.assert_array_equal(image.data[0], vol)


@pytest.mark.parametrize(
    ("shape", "ndim", "axes", "out_shape"),
    [
        ((30, 40), 2, "YX", (1, 30, 40)),
        ((30, 40, 3), 2, "YXC", (3, 30, 40)),
        ((2, 30, 40), 2, "CYX", (2, 30, 40)),
        ((1, 1, 30, 40), 2, "QCYX", (1, 30, 40)),
        ((5, 30, 40), 3, "ZYX", (1, 5, 30, 40)),
        ((5, 30, 40, 2), 3, "ZYXC", (2, 5, 30, 40)),
        ((3, 5, 30, 40), 3, "CZYX", (3, 5, 30, 40)),
    ],
)
def test_npy_axes_from_shape(
    tmp_path: Path, shape: tuple[int, ...], ndim: int, axes: str, out_shape: tuple[int, ...]
) -> None:
    arr = _vol(shape, "float32")
    np.save(tmp_path / "x.npy", arr)
    image = read_image(tmp_path / "x.npy", ndim=ndim)
    assert image.source_axes == axes and image.data.shape == out_shape
    assert image.dtype == np.float32
    assert float(image.data.sum()) == pytest.approx(float(arr.sum()))
    letters = axes.replace("Q", "")
    order = [letters.index(a) for a in ("CYX" if ndim == 2 else "CZYX") if a in letters]
    expected = arr.reshape([n for n, a in zip(shape, axes) if a != "Q"]).transpose(order)
    np.testing.assert_array_equal(image.data.reshape(expected.shape), expected)


@pytest.mark.parametrize(
    ("shape", "ndim", "match"),
    [
        ((3, 30, 4), 2, "ambiguous: both its first and last"),
        ((2, 5, 30, 3), 3, "ambiguous: both its first and last"),
        ((8, 5, 30, 40), 3, "ambiguous: 4 dimensions"),
        ((7, 30, 40), 2, "looks like a 3D stack"),
        ((2, 7, 30, 40), 2, "has 4 dimensions"),
        ((30, 40, 3), 3, "2D image"),
    ],
)
def test_ambiguous_or_wrong_ndim(
    tmp_path: Path, shape: tuple[int, ...], ndim: int, match: str
) -> None:
    np.save(tmp_path / "x.npy", np.zeros(shape, np.uint8))
    with pytest.raises(InputError, match=match) as err:
        read_image(tmp_path / "x.npy", ndim=ndim)
    assert "--axes" in str(err.value) and "x.npy" in str(err.value)


def test_explicit_axes(tmp_path: Path) -> None:
    arr = _vol((3, 30, 4))
    np.save(tmp_path / "x.npy", arr)
    image = read_image(tmp_path / "x.npy", ndim=2, axes="cyx")
    np.testing.assert_array_equal(image.data, arr)
    image = read_image(tmp_path / "x.npy", ndim=3, axes="ZYX")
    assert image.data.shape == (1, 3, 30, 4)
    with pytest.raises(InputError, match="do not fit its shape"):
        read_image(tmp_path / "x.npy", ndim=2, axes="YX")
    with pytest.raises(InputError, match="letters other than"):
        read_image(tmp_path / "x.npy", ndim=2, axes="QYX")
    with pytest.raises(InputError, match="3D stack"):
        read_image(tmp_path / "x.npy", ndim=2, axes="ZYX")


# --------------------------------------------------------------------------- broken files


def test_missing_empty_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as err:
        read_image(tmp_path / "missing.tif", ndim=2)
    assert err.value.exit_code == 2
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.tif is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.tif", ndim=2)
    (tmp_path / "bad.tif").write_bytes(b"this is not a tiff file at all")
    with pytest.raises(InputError, match="bad.tif could not be read"):
        read_image(tmp_path / "bad.tif", ndim=2)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(InputError, match="bad.png could not be read"):
        read_image(tmp_path / "bad.png", ndim=2)
    np.save(tmp_path / "zero.npy", np.zeros((0, 5)))
    with pytest.raises(InputError, match=r"zero.npy holds an empty array of shape \(0, 5\)"):
        read_image(tmp_path / "zero.npy", ndim=2)
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(InputError, match="unsupported extension"):
        read_image(tmp_path / "x.bmp", ndim=2)


def test_values_that_are_not_numbers_are_refused(tmp_path: Path) -> None:
    for name, array, words in (
        ("complex.npy", np.ones((8, 8), np.complex64), "complex64 (complex numbers)"),
        ("text.npy", np.full((8, 8), "ab"), "<U2 (text)"),
    ):
        np.save(tmp_path / name, array)
        with pytest.raises(InputError) as err:
            read_image(tmp_path / name, ndim=2)
        assert str(tmp_path / name) in str(err.value) and words in str(err.value)
        assert "integer or floating-point" in str(err.value)


def test_axes_metadata_with_repeated_letters_is_ignored(tmp_path: Path) -> None:
    """A (1, 1, 1) TIFF reads back with the axes "XYX": not metadata, an ambiguous shape."""
    path = tmp_path / "dot.tif"
    tifffile.imwrite(path, np.ones((1, 1, 1), bool))
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "XYX"
    with pytest.raises(InputError, match="dot.tif .*ambiguous.*--axes"):
        read_image(path, ndim=2)
    assert read_image(path, ndim=2, axes="CYX").data.shape == (1, 1, 1)


# --------------------------------------------------------------------------- ground truth


def test_gt_shapes(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", _vol((2, 30, 40)))
    image = read_image(tmp_path / "img.npy", ndim=2)
    labels = (_vol((30, 40)) % 5).astype(np.uint16)
    np.save(tmp_path / "gt1.npy", labels[np.newaxis])
    np.testing.assert_array_equal(read_gt_image(tmp_path / "gt1.npy", image), labels)
    rgb = np.repeat((labels > 2).astype(np.uint8)[..., np.newaxis] * 255, 3, axis=2)
    iio.imwrite(tmp_path / "gt2.png", rgb)
    gt = read_gt_image(tmp_path / "gt2.png", image)
    assert gt.shape == (30, 40) and int(gt.sum()) == 255 * int((labels > 2).sum())
    np.save(tmp_path / "gt3.npy", labels[:, :20])
    with pytest.raises(InputError) as err:
        read_gt_image(tmp_path / "gt3.npy", image)
    message = str(err.value)
    assert "gt3.npy" in message and "img.npy" in message
    assert "(30, 20)" in message and "(30, 40)" in message


def test_gt_with_several_channels_is_an_error(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", _vol((30, 40)))
    image = read_image(tmp_path / "img.npy", ndim=2)
    np.save(tmp_path / "gt.npy", _vol((30, 40, 2)))
    with pytest.raises(InputError, match="2 different channels"):
        read_gt_image(tmp_path / "gt.npy", image)


# --------------------------------------------------------------------------- names and pairing


def test_stem_of() -> None:
    assert stem_of("a.ome.tiff") == "a"
    assert stem_of(Path("d/b.OME.TIF")) == "b"
    assert stem_of("c.tif") == "c"
    assert stem_of("x.y.png") == "x.y"
    assert stem_of("v.ome.zarr") == "v"
    assert stem_of("n.npy") == "n"
    assert stem_of("plain.txt") == "plain"


def test_list_images(tmp_path: Path) -> None:
    for name in ["b.tif", "a.PNG", ".hidden.tif", "notes.txt", "c.npy", "d.ome.tiff"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "e.zarr").mkdir()
    (tmp_path / "sub").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.PNG", "b.tif", "c.npy", "d.ome.tiff", "e.zarr"]
    with pytest.raises(InputError, match="not a folder"):
        list_images(tmp_path / "b.tif")


def test_pair_by_stem_with_suffixes() -> None:
    images = [
        Path("i/b.tif"),
        Path("i/a.tif"),
        Path("i/c.ome.tif"),
        Path("i/d.png"),
        Path("i/E.tif"),
    ]
    gts = [
        Path("g/a_mask.tif"),
        Path("g/B.tif"),
        Path("g/c-Labels.tif"),
        Path("g/d_GT.tif"),
        Path("g/e seg.tif"),
    ]
    pairs = pair_by_stem(images, gts)
    assert [(i.name, g.name) for i, g in pairs] == [
        ("b.tif", "B.tif"),
        ("a.tif", "a_mask.tif"),
        ("c.ome.tif", "c-Labels.tif"),
        ("d.png", "d_GT.tif"),
        ("E.tif", "e seg.tif"),
    ]


def test_pair_prefers_exact_stem() -> None:
    pairs = pair_by_stem([Path("a.tif"), Path("a_mask.tif")], [Path("a_mask.tif"), Path("a.png")])
    assert [(i.name, g.name) for i, g in pairs] == [
        ("a.tif", "a.png"),
        ("a_mask.tif", "a_mask.tif"),
    ]


def test_pair_unpaired_lists_both_sides() -> None:
    with pytest.raises(InputError) as err:
        pair_by_stem([Path("a.tif"), Path("b.tif")], [Path("a_mask.tif"), Path("z_mask.tif")])
    message = str(err.value)
    assert "Images without ground truth: b.tif." in message
    assert "Ground truth without image: z_mask.tif." in message
    assert err.value.exit_code == 2


def test_pair_ambiguous() -> None:
    with pytest.raises(InputError, match="a.tif: a_mask.tif, a_gt.tif"):
        pair_by_stem([Path("a.tif")], [Path("a_mask.tif"), Path("a_gt.tif")])
    with pytest.raises(InputError, match="same name stem 'a'"):
        pair_by_stem([Path("x/a.tif"), Path("y/a.png")], [Path("a.tif")])


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    ("dtype", "axes", "shape"),
    [
        ("float32", "czyx", (2, 5, 12, 13)),
        ("uint16", "cyx", (3, 12, 13)),
        ("uint8", "zyx", (4, 12, 13)),
        ("uint32", "zyx", (4, 12, 13)),
        ("int64", "yx", (12, 13)),
        ("float32", "czyx", (2, 1, 12, 13)),
        ("float64", "cyx", (1, 12, 13)),
    ],
)
def test_write_tiff_round_trip(
    tmp_path: Path, dtype: str, axes: str, shape: tuple[int, ...]
) -> None:
    arr = _vol(shape, dtype)
    path = tmp_path / "out.tif"
    write_tiff(path, arr, axes)
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.is_imagej == (dtype in ("float32", "uint16", "uint8") and shape[1] != 1)
        stored = tif.series[0].asarray()
    assert stored.dtype == np.dtype(dtype)
    ndim = 3 if "z" in axes else 2
    image = read_image(path, ndim=ndim)
    expected = arr if "c" in axes else arr[np.newaxis]
    assert image.data.shape == expected.shape
    np.testing.assert_array_equal(image.data, expected)


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_write_tiff_threads_write_the_same_bytes(tmp_path: Path, dtype: str) -> None:
    # pages compressed in parallel (the run's --threads) land in the file as one thread writes them
    arr = _vol((2, 6, 40, 48), dtype)
    write_tiff(tmp_path / "one.tif", arr, "czyx", threads=1)
    write_tiff(tmp_path / "two.tif", arr, "czyx", threads=2)
    assert (tmp_path / "one.tif").read_bytes() == (tmp_path / "two.tif").read_bytes()
    with tifffile.TiffFile(tmp_path / "two.tif") as tif:
        assert len(tif.pages) == 12
        np.testing.assert_array_equal(tif.asarray(), arr.transpose(1, 0, 2, 3))


def test_write_tiff_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    write_tiff(path, np.ones((4, 4), np.uint8), "yx")
    with pytest.raises(ValueError):
        write_tiff(path, np.zeros((4, 4), np.uint8), "zyx")
    write_tiff(path, np.full((1, 4, 4), 7, np.uint8), "cyx")
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
    assert int(tifffile.imread(path).sum()) == 7 * 16

"""Images larger than memory: lazy readers and chunked Zarr writers.

``open_lazy`` opens a Zarr store (a plain array, a group, an OME-Zarr image's level 0), an HDF5
dataset or a TIFF file (memory-mapped when uncompressed, else through tifffile's Zarr store)
without reading its pixels, and returns a :class:`LazyImage`: the runner's channel-first
``(C, Z, Y, X)`` / ``(C, Y, X)`` view of it whose ``read(region)`` reads one spatial region from
the file. The axes are decided exactly as ``io.images.read_image`` decides them (the same
functions: file metadata, the axes given, the shape), so a lazy image and an in-memory read of
the same file give the same array.

The prediction of a chunked run is a Zarr array (``create_zarr``): ``(C, *spatial)`` float32,
chunked like the tiles, ``axes`` attribute ``"CZYX"``/``"CYX"``; ``open_prediction`` reads one
back as a :class:`LazyImage` (what a by-chunks decoder gets).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner import log
from biapy_runner.errors import InputError
from biapy_runner.io.images import (
    _HDF5,
    _TIFF,
    SUPPORTED_EXTENSIONS,
    _axes_attr,
    _choose_dataset,
    _infer_ndim,
    _ome_zarr_default,
    _Raw,
    _resolve_axes,
    _to_channel_first,
    check_axes_letters,
    stem_of,
)

#: Formats ``open_lazy`` reads region by region (others are read whole by ``read_image``).
LAZY_EXTENSIONS = _TIFF + _HDF5 + (".zarr",)
#: Region = one ``slice`` per spatial axis (z, y, x) or (y, x), steps of 1.
Region = tuple[slice, ...]


def zarr_dataset_path(dotted: str) -> str:
    """BiaPy's INPUT_ZARR_MULTIPLE_DATA_RAW_PATH / GT_PATH (``"volumes.raw"``) as a path inside
    the file (``"volumes/raw"``); a path with slashes is kept."""
    text = str(dotted).strip().strip("/")
    return text if "/" in text else text.replace(".", "/")


@dataclass
class LazyImage:
    """A channel-first image whose pixels stay in the file until a region is read.

    ``shape``: ``(C, *spatial)``; ``dtype``: the stored dtype; ``axes``: ``"cyx"``/``"czyx"``;
    ``source_axes``: the stored array's axes (upper case, as ``Image.source_axes``).
    """

    path: Path
    stem: str
    array: Any
    source_axes: str
    ndim: int
    shape: tuple[int, ...]
    dtype: np.dtype
    handle: Any = None
    how: str = ""

    def announce(self) -> None:
        """Log the axes found and the channel-first shape, as ``read_image`` does."""
        log.info(
            f"{self.path.name}: axes {self.source_axes} ({self.how}) -> {self.axes} {self.shape} "
            f"{self.dtype}, read by chunks"
        )

    @property
    def axes(self) -> str:
        """``"cyx"`` or ``"czyx"``."""
        return "cyx" if self.ndim == 2 else "czyx"

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the channel axis."""
        return self.shape[1:]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole image in its stored dtype."""
        return int(math.prod(self.shape)) * self.dtype.itemsize

    def read(self, region: Region | None = None, channels: slice | None = None) -> np.ndarray:
        """The pixels of ``region`` as a ``(C, *region)`` array, stored dtype: all channels, or
        ``channels`` (read alone when the store has one channel axis)."""
        region = tuple(slice(0, n) for n in self.spatial_shape) if region is None else region
        if len(region) != self.ndim:
            raise ValueError(f"region {region} does not have {self.ndim} spatial axes")
        spatial = dict(zip("ZYX" if self.ndim == 3 else "YX", region))
        alone = channels is not None and self.source_axes.count("C") == 1 \
            and "S" not in self.source_axes  # fmt: skip
        if alone:
            spatial["C"] = channels
        index = tuple(spatial.get(letter, slice(None)) for letter in self.source_axes)
        block = np.asarray(self.array[index])
        block = _to_channel_first(self.path, block, self.source_axes, self.ndim)
        return block if channels is None or alone else block[channels]

    def blocks(self, max_bytes: int) -> Iterator[Region]:
        """Regions (slabs along the first spatial axis) of at most ``max_bytes`` each (at least
        one plane), covering the image in order."""
        plane = self.nbytes // self.spatial_shape[0]
        step = max(1, int(max_bytes // max(plane, 1)))
        rest = tuple(slice(0, n) for n in self.spatial_shape[1:])
        for start in range(0, self.spatial_shape[0], step):
            yield (slice(start, min(start + step, self.spatial_shape[0])), *rest)

    def close(self) -> None:
        """Close the file behind the array (HDF5, TIFF); nothing to do for Zarr."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _zarr_array(path: Path, dataset: str | None) -> tuple[Any, str | None, str]:
    """The array of a Zarr store to read, and its axes from the metadata."""
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        if dataset is not None:
            raise InputError(f"The Zarr store {path} is a single array; leave the dataset unset.")
        return node, _axes_attr(node.attrs.get("axes")), "Zarr attribute"
    ome_path, ome_axes = _ome_zarr_default(node)
    names = [n for n, m in node.members(max_depth=None) if isinstance(m, zarr.Array)]
    if dataset is None and ome_path is not None:
        dataset = ome_path
    name = _choose_dataset(path, names, dataset, "Zarr").strip("/")
    array = node[name]
    if name == ome_path:
        return array, ome_axes, "OME-Zarr metadata"
    return array, _axes_attr(array.attrs.get("axes")), "Zarr attribute"


def _hdf5_array(path: Path, dataset: str | None) -> tuple[Any, str | None, str, Any]:
    import h5py

    handle = h5py.File(path, "r")
    try:
        names: list[str] = []
        handle.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        node = handle[_choose_dataset(path, names, dataset, "HDF5")]
        return node, _axes_attr(node.attrs.get("axes")), "HDF5 'axes' attribute", handle
    except BaseException:
        handle.close()
        raise


def _tiff_array(path: Path) -> tuple[Any, str | None, str, Any]:
    """Memory-mapped pixels of an uncompressed TIFF, else tifffile's Zarr store of the file."""
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(f"The TIFF file {path} holds no image.")
        axes = tif.series[0].axes.upper()
    try:
        return tifffile.memmap(path, mode="r"), axes, "TIFF metadata (memory-mapped)", None
    except ValueError:  # compressed or tiled: not one contiguous block on disk
        store = tifffile.imread(path, aszarr=True)
        return zarr.open(store, mode="r"), axes, "TIFF metadata (tifffile Zarr store)", store


def open_lazy(
    path: Path, *, ndim: int, axes: str | None = None, dataset: str | None = None,
    announce: bool = True,
) -> LazyImage:
    """Open ``path`` (Zarr, HDF5 or TIFF) for region reads, channel first, for a ``ndim``-D run.

    ``axes`` (the stored array's axes, e.g. DATA.TEST.INPUT_IMG_AXES_ORDER or ``--axes``) and
    ``dataset`` (the array inside an HDF5/Zarr file) mean what they mean to ``read_image``;
    ``announce``: log the axes now (else ``LazyImage.announce`` later).

    Raises
    ------
    InputError
        Missing file, unknown dataset (the file's datasets listed), axes that do not fit the
        array, a format that cannot be read by regions.
    """
    path = Path(path)
    lower = path.name.lower()
    if not path.exists():
        raise InputError(f"The image file {path} does not exist; check the path.")
    if not lower.endswith(LAZY_EXTENSIONS):
        raise InputError(
            f"The image {path} cannot be read by chunks: give a Zarr store, an HDF5 file or a "
            f"TIFF ({', '.join(LAZY_EXTENSIONS)}), or run without TEST.BY_CHUNKS."
        )
    if axes is not None:
        check_axes_letters(axes, str(path))
    handle = None
    try:
        if lower.endswith(".zarr"):
            array, file_axes, origin = _zarr_array(path, dataset)
        elif lower.endswith(_HDF5):
            array, file_axes, origin, handle = _hdf5_array(path, dataset)
        else:
            if dataset is not None:
                raise InputError(f"A dataset ({dataset!r}) was given, but {path} is a TIFF file.")
            array, file_axes, origin, handle = _tiff_array(path)
    except InputError:
        raise
    except Exception as exc:  # each format's library has its own exceptions for broken files
        raise InputError(
            f"The image file {path} could not be opened ({type(exc).__name__}: {exc}); it may be "
            "corrupt or not the format its extension says."
        ) from exc
    try:
        lazy = _lazy_image(path, array, file_axes, origin, ndim, axes, handle)
    except BaseException:
        if handle is not None:
            handle.close()
        raise
    if announce:
        lazy.announce()
    return lazy


def _lazy_image(
    path: Path, array: Any, file_axes: str | None, origin: str, ndim: int,
    axes: str | None, handle: Any,
) -> LazyImage:
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf":
        raise InputError(
            f"The image file {path} holds values of type {dtype}; give an image of integer or "
            "floating-point values."
        )
    if file_axes is not None and not len(file_axes) == len(set(file_axes)) == array.ndim:
        file_axes = None
    raw = _Raw(array, file_axes, origin)
    ndim = _infer_ndim(path, raw, axes) if ndim is None else ndim
    source_axes, how = _resolve_axes(path, raw, ndim, axes)
    shape = _channel_first_shape(path, tuple(array.shape), source_axes, ndim, dtype)
    return LazyImage(path, stem_of(path), array, source_axes, ndim, shape, dtype, handle, how)


def _channel_first_shape(
    path: Path, shape: tuple[int, ...], axes: str, ndim: int, dtype: np.dtype
) -> tuple[int, ...]:
    """The ``(C, *spatial)`` shape ``read_image`` would return, checked the same way, from a
    zero-strided stand-in whose spatial axes have one pixel (nothing is read)."""
    spatial = {"Y", "X"} | ({"Z"} if ndim == 3 else set())
    probe_shape = tuple(1 if a in spatial else n for a, n in zip(axes, shape))
    probe = np.broadcast_to(np.zeros((), dtype=dtype), probe_shape)
    channels = _to_channel_first(path, probe, axes, ndim).shape[0]
    sizes = dict(zip(axes, shape))
    return (channels, *(sizes[a] for a in ("ZYX" if ndim == 3 else "YX")))


# --------------------------------------------------------------------------- chunked outputs


def chunk_shape(shape: Sequence[int], target: Sequence[int]) -> tuple[int, ...]:
    """Chunks for an array of ``(C, *spatial)`` ``shape``: all channels in one chunk, the
    spatial axes ``target`` (e.g. the tiles' cores) clipped to the array."""
    return (int(shape[0]), *(max(1, min(int(t), int(n))) for t, n in zip(target, shape[1:])))


def create_zarr(
    path: Path, shape: Sequence[int], dtype: Any, chunks: Sequence[int],
    attrs: dict[str, Any] | None = None,
) -> Any:
    """A new Zarr array at ``path`` (a ``.zarr`` folder, replaced if present) filled with 0,
    compressed with Blosc-LZ4 (fast enough not to slow a prediction down)."""
    import zarr

    array = zarr.create_array(
        store=str(path), shape=tuple(int(n) for n in shape), dtype=dtype,
        chunks=tuple(int(c) for c in chunks), fill_value=0, overwrite=True,
        compressors=[zarr.codecs.BloscCodec(cname="lz4", clevel=3, shuffle="shuffle")],
    )  # fmt: skip
    if attrs:
        array.attrs.update(attrs)
    return array


def open_prediction(path: Path) -> LazyImage:
    """A prediction or result written by a chunked run (``raw/<stem>.zarr``,
    ``post_proc/<stem>.zarr``), as a ``LazyImage`` (a label array without channel axis reads
    as one channel). Refuses a store whose ``complete`` attribute is not set."""
    import zarr

    array = zarr.open_array(str(path), mode="r")
    if not array.attrs.get("complete"):
        raise InputError(
            f"The Zarr store {path} is not a complete prediction (its 'complete' attribute is not "
            "set): the run that wrote it did not finish; predict the image again."
        )
    axes = str(array.attrs.get("axes", "CZYX" if array.ndim == 4 else "CYX")).upper()
    ndim = len(axes.replace("C", ""))
    shape = tuple(int(n) for n in array.shape)
    channel_first = shape if "C" in axes else (1, *shape)
    return LazyImage(Path(path), stem_of(path), array, axes, ndim, channel_first,
                     np.dtype(array.dtype))


def is_lazy_format(path: Path) -> bool:
    """Whether ``path`` can be read by regions (Zarr, HDF5, TIFF)."""
    name = Path(path).name.lower()
    return name.endswith(LAZY_EXTENSIONS) and name.endswith(SUPPORTED_EXTENSIONS)

"""Reading and writing images: formats, axes, ground-truth pairing.

Every image is returned channel first, ``(C, Y, X)`` in 2D and ``(C, Z, Y, X)`` in 3D, in its
original dtype. Axes come from the file's metadata when it has some (ImageJ, OME, tifffile's own
shaped metadata, OME-Zarr), else from the dimension count of the run and the shape; anything
that cannot be decided is an ``InputError`` telling the user how to state the axes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner import log
from biapy_runner.errors import InputError
from biapy_runner.io.atomic import replacing

#: File extensions read by ``read_image`` (lower case); ``.zarr`` folders as well.
SUPPORTED_EXTENSIONS = (
    ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".h5", ".hdf5", ".hdf", ".npy", ".zarr",
)  # fmt: skip
_TIFF = (".tif", ".tiff")
_PLAIN = (".png", ".jpg", ".jpeg")
_HDF5 = (".h5", ".hdf5", ".hdf")
#: A channel axis has at most this many entries when guessing axes from the shape.
MAX_GUESSED_CHANNELS = 4
#: Suffixes that mark a ground-truth file of an image (after ``_``, ``-``, ``.`` or a space).
GT_SUFFIXES = (
    "mask", "masks", "label", "labels", "lbl", "gt", "seg", "segmentation", "annotation",
    "annotations", "groundtruth", "ground_truth", "target", "instances",
)  # fmt: skip
_GT_SUFFIX = re.compile(r"[_\-. ](" + "|".join(GT_SUFFIXES) + r")$", re.IGNORECASE)
_AXES_HINT = (
    "State the axes of the stored array with the --axes option (the DATA.TEST.INPUT_AXES-style "
    "setting), e.g. --axes ZYXC or --axes CYX, using the letters C, Z, Y, X (T and S allowed)."
)
_KNOWN_AXES = "CZYXTS"  # any other letter (tifffile's Q, I, E, ...) says nothing usable
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_KIND_NAMES = {"c": "complex numbers", "O": "Python objects", "U": "text", "S": "bytes",
               "V": "records", "M": "dates", "m": "time spans"}  # fmt: skip


@dataclass
class Image:
    """One input image, channel first.

    ``data``: ``(C, Y, X)`` or ``(C, Z, Y, X)`` in the file's dtype; ``axes``: ``"cyx"`` or
    ``"czyx"``; ``source_axes``: the axes of the array as stored in the file (upper case, e.g.
    ``"ZCYX"`` for an ImageJ hyperstack, ``"YXS"`` for RGB, letters guessed from the shape where
    the file says nothing; dropped singleton axes keep their letter, e.g. ``"QYX"``).
    """

    path: Path
    stem: str
    data: np.ndarray
    axes: str
    source_axes: str
    dtype: np.dtype

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the channel axis: ``(Y, X)`` or ``(Z, Y, X)``."""
        return tuple(int(n) for n in self.data.shape[1:])


# --------------------------------------------------------------------------- names and pairing


def label_dtype(max_label: int) -> type[np.unsignedinteger]:
    """The dtype of a label image (instances, points) whose largest label is ``max_label``:
    uint16 when it fits (what BiaPy writes), else uint32."""
    return np.uint16 if max_label < 2**16 else np.uint32


def class_dtype(max_class: int) -> type[np.unsignedinteger]:
    """The dtype of a class map (semantic classes, point classes) whose largest class id is
    ``max_class``: uint8 when it fits, else uint16."""
    return np.uint8 if max_class < 2**8 else np.uint16


def stem_of(path: Path | str) -> str:
    """The name of ``path`` without its image extension (``a.ome.tiff`` -> ``a``)."""
    name = Path(path).name
    lower = name.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            name = name[: -len(ext)]
            break
    else:
        return Path(name).stem or name
    if name.lower().endswith(".ome") and len(name) > 4:
        name = name[:-4]
    return name


def list_images(folder: Path) -> list[Path]:
    """The readable images in ``folder`` (not recursive), sorted by name; hidden files skipped.

    ``.zarr`` folders count as images; other folders are ignored. Raises ``InputError`` when
    ``folder`` is not a folder; returns an empty list when it holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"The image folder {folder} does not exist or is not a folder.")
    found = []
    for entry in folder.iterdir():
        lower = entry.name.lower()
        if entry.name.startswith(".") or not lower.endswith(SUPPORTED_EXTENSIONS):
            continue
        if entry.is_dir() == lower.endswith(".zarr"):
            found.append(entry)
    return sorted(found, key=lambda p: p.name)


def _gt_key(path: Path) -> str:
    return _GT_SUFFIX.sub("", stem_of(path)).lower()


def check_unique_stems(paths: Sequence[Path], what: str) -> None:
    """Refuse two ``paths`` with one name stem (case-insensitive): their outputs and table rows,
    named by the stem, would collide. ``what`` names them in the message (e.g. ``"images"``).

    Raises
    ------
    InputError
        Naming both files (or the one file given twice).
    """
    seen: dict[str, Path] = {}
    for path in paths:
        key = stem_of(path).lower()
        first = seen.setdefault(key, path)
        if first is path:
            continue
        if first.resolve() == path.resolve():
            raise InputError(f"The file {path} is given twice among the {what}; give it once.")
        raise InputError(
            f"The {what} {first} and {path} have the same name stem {key!r}: outputs and table "
            "rows are named by the stem, so one would overwrite the other; rename one of them."
        )


def pair_by_stem(
    images: Sequence[Path], gts: Sequence[Path], extra_gt: str = "error"
) -> list[tuple[Path, Path]]:
    """Pair each image with its ground truth by file stem, never by position.

    A GT file pairs with the image of the same stem (case-insensitive), or else with the image
    whose stem it extends by a suffix such as ``_mask``, ``_label(s)``, ``_gt``, ``_seg`` or
    ``-mask``. Any image or GT left unpaired, two GT for one image, or two images with one stem
    is an ``InputError`` listing both sides. With ``extra_gt="ignore"`` (a Galaxy job mapped over
    a collection sees one image and every GT) GT files that pair with no image are listed in the
    log and left out; an image without GT is still an error. Returns the pairs in the order of
    ``images``.
    """
    check_unique_stems(images, "images")
    by_stem = {stem_of(path).lower(): path for path in images}
    matches: dict[str, list[Path]] = {key: [] for key in by_stem}
    unpaired_gt = []
    for gt in gts:
        exact = stem_of(gt).lower()
        key = exact if exact in by_stem else _gt_key(gt)
        if key in matches:
            matches[key].append(gt)
        else:
            unpaired_gt.append(gt)
    doubles = {by_stem[k]: v for k, v in matches.items() if len(v) > 1}
    if doubles:
        listed = "; ".join(
            f"{img.name}: {', '.join(g.name for g in v)}" for img, v in doubles.items()
        )
        raise InputError(
            f"More than one ground-truth file matches an image ({listed}); keep one GT file per "
            "image (GT is paired by file stem, optionally followed by _mask, _label, _gt, ...)."
        )
    unpaired_img = [by_stem[k] for k, v in matches.items() if not v]
    if unpaired_gt and extra_gt == "ignore":
        log.info(f"ground truth without image, ignored (--gt-extra ignore): {_names(unpaired_gt)}")
        unpaired_gt = []
    if unpaired_img or unpaired_gt:
        raise InputError(
            "Images and ground truth could not all be paired by file stem (a GT file is named "
            "like its image, optionally with a suffix such as _mask, _label, _gt or _seg). "
            f"Images without ground truth: {_names(unpaired_img)}. "
            f"Ground truth without image: {_names(unpaired_gt)}."
        )
    return [(path, matches[stem_of(path).lower()][0]) for path in images]


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(p.name for p in paths) if paths else "none"


# --------------------------------------------------------------------------- reading files


@dataclass
class _Raw:
    """An array as stored, with the axes its file declares (``None``: no usable metadata)."""

    data: np.ndarray
    axes: str | None
    origin: str


def _read_tiff(path: Path) -> _Raw:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(f"The TIFF file {path} holds no image.")
        series = tif.series[0]
        data = series.asarray()
        if tif.is_imagej:
            origin = "ImageJ metadata"
        elif tif.is_ome:
            origin = "OME metadata"
        elif tif.is_shaped:
            origin = "tifffile metadata"
        else:
            origin = "TIFF structure"
        if len(tif.series) > 1 and not tif.is_ome:
            log.warn(f"{path.name}: {len(tif.series)} image series in the file; reading the first")
        return _Raw(np.asarray(data), series.axes.upper(), origin)


def _read_plain(path: Path) -> _Raw:
    import imageio.v3 as iio

    data = np.asarray(iio.imread(path))
    axes = "YX" if data.ndim == 2 else "YXS" if data.ndim == 3 else None
    return _Raw(data, axes, "image format")


def _choose_dataset(path: Path, names: list[str], dataset: str | None, kind: str) -> str:
    listed = ", ".join(names) if names else "none"
    if dataset is not None:
        if dataset.strip("/") not in [n.strip("/") for n in names]:
            raise InputError(
                f"The {kind} file {path} has no dataset {dataset!r}; its datasets are: {listed}."
            )
        return dataset
    if len(names) != 1:
        raise InputError(
            f"The {kind} file {path} holds {len(names)} datasets ({listed}); say which one to "
            "read with the dataset option (--dataset PATH)."
        )
    return names[0]


def _read_hdf5(path: Path, dataset: str | None) -> _Raw:
    import h5py

    with h5py.File(path, "r") as handle:
        names: list[str] = []
        handle.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        node = handle[_choose_dataset(path, names, dataset, "HDF5")]
        data = np.asarray(node[()])
        axes = node.attrs.get("axes")
    return _Raw(data, _axes_attr(axes), "HDF5 'axes' attribute")


def _axes_attr(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return value.upper()
    return "".join(str(v.decode() if isinstance(v, bytes) else v) for v in value).upper()


def _read_zarr(path: Path, dataset: str | None) -> _Raw:
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        if dataset is not None:
            raise InputError(f"The Zarr store {path} is a single array; leave the dataset unset.")
        return _Raw(np.asarray(node[...]), _axes_attr(node.attrs.get("axes")), "Zarr attribute")
    ome_path, ome_axes = _ome_zarr_default(node)
    names = [n for n, m in node.members(max_depth=None) if isinstance(m, zarr.Array)]
    if dataset is None and ome_path is not None:
        dataset = ome_path
    name = _choose_dataset(path, names, dataset, "Zarr")
    array = node[name.strip("/")]
    axes = ome_axes if name.strip("/") == ome_path else _axes_attr(array.attrs.get("axes"))
    return _Raw(np.asarray(array[...]), axes, "OME-Zarr metadata")


def _ome_zarr_default(group: Any) -> tuple[str | None, str | None]:
    """The full-resolution array of an OME-Zarr image and its axes, when the group is one."""
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        return None, None
    first = multiscales[0]
    path = str(first["datasets"][0]["path"])
    axes = first.get("axes")
    if not axes:
        return path, None
    letters = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
    return path, "".join(x[0] for x in letters).upper()


def _read_npy(path: Path) -> _Raw:
    return _Raw(np.load(path, allow_pickle=False), None, "")


def _read_any(path: Path, dataset: str | None) -> _Raw:
    path = Path(path)
    if not path.exists():
        raise InputError(f"The image file {path} does not exist; check the path.")
    lower = path.name.lower()
    if not lower.endswith(SUPPORTED_EXTENSIONS):
        raise InputError(
            f"The file {path} has an unsupported extension; readable formats are "
            f"{', '.join(SUPPORTED_EXTENSIONS)}."
        )
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"The image file {path} is empty (0 bytes); provide a valid image.")
    if dataset is not None and not lower.endswith(_HDF5 + (".zarr",)):
        raise InputError(f"A dataset ({dataset!r}) was given, but {path} is not HDF5 or Zarr.")
    try:
        if lower.endswith(_TIFF):
            raw = _read_tiff(path)
        elif lower.endswith(_PLAIN):
            raw = _read_plain(path)
        elif lower.endswith(_HDF5):
            raw = _read_hdf5(path, dataset)
        elif lower.endswith(".zarr"):
            raw = _read_zarr(path, dataset)
        else:
            raw = _read_npy(path)
    except InputError:
        raise
    except Exception as exc:  # every reader has its own exceptions for broken files
        raise InputError(
            f"The image file {path} could not be read ({type(exc).__name__}: {exc}); it may be "
            "corrupt or not the format its extension says."
        ) from exc
    if raw.data.size == 0:
        raise InputError(f"The image file {path} holds an empty array of shape {raw.data.shape}.")
    if raw.data.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(
            f"The image file {path} holds values of type {raw.data.dtype} "
            f"({_KIND_NAMES.get(raw.data.dtype.kind, 'not numbers')}); give an image of integer "
            "or floating-point values."
        )
    if raw.axes is not None and not len(raw.axes) == len(set(raw.axes)) == raw.data.ndim:
        raw.axes = None  # metadata that does not describe the array (e.g. "XYX") is no metadata
    return raw


# --------------------------------------------------------------------------- axes


def _wrong_ndim(path: Path, shape: tuple[int, ...], ndim: int, detail: str) -> InputError:
    if ndim == 2:
        advice = (
            "This is a 2D run (PROBLEM.NDIM 2D): set PROBLEM.NDIM to 3D for a 3D model, or "
            "TEST.ANALIZE_2D_IMGS_AS_3D_STACK to True to run the 2D model slice by slice."
        )
    else:
        advice = "This is a 3D run (PROBLEM.NDIM 3D): give 3D volumes, or set PROBLEM.NDIM to 2D."
    return InputError(
        f"The image {path} (shape {shape}) {detail}. {advice} If these are not its axes: "
        + _AXES_HINT
    )


def _guess_axes(path: Path, shape: tuple[int, ...], ndim: int) -> str:
    """Axes of an array without metadata, from the run's dimension count and the shape."""
    lead = 0
    while len(shape) - lead > ndim + 1 and shape[lead] == 1:
        lead += 1
    core = shape[lead:]
    prefix = "Q" * lead
    if len(core) == 3 == ndim and core[-1] <= MAX_GUESSED_CHANNELS < core[0]:
        raise _wrong_ndim(path, shape, ndim, "looks like a 2D image with channels last (Y, X, C)")
    if len(core) == ndim:
        return prefix + ("YX" if ndim == 2 else "ZYX")
    if len(core) != ndim + 1:
        raise _wrong_ndim(path, shape, ndim, f"has {len(shape)} dimensions")
    first, last = core[0] <= MAX_GUESSED_CHANNELS, core[-1] <= MAX_GUESSED_CHANNELS
    spatial = "YX" if ndim == 2 else "ZYX"
    if first and last:
        raise InputError(
            f"The axes of the image {path} (shape {shape}) are ambiguous: both its first and "
            f"last dimensions could be channels. {_AXES_HINT}"
        )
    if last:
        return prefix + spatial + "C"
    if first:
        return prefix + "C" + spatial
    if ndim == 2:
        raise _wrong_ndim(
            path, shape, ndim, "looks like a 3D stack (no dimension is a channel axis)"
        )
    raise InputError(
        f"The axes of the image {path} (shape {shape}) are ambiguous: 4 dimensions, none of "
        f"which looks like a channel axis (at most {MAX_GUESSED_CHANNELS} entries). {_AXES_HINT}"
    )


def check_axes_letters(axes: str, given_for: str) -> str:
    """``axes`` in upper case when it uses only the letters C, Z, Y, X, T, S, each once.

    Raises
    ------
    InputError
        Naming ``axes`` and what it was given for (an option or a file).
    """
    letters = axes.upper()
    if not letters or set(letters) - set("CZYXTS") or len(set(letters)) != len(letters):
        raise InputError(
            f"The axes {axes!r} given for {given_for} use letters other than C, Z, Y, X, T, S, "
            "or one twice. " + _AXES_HINT
        )
    return letters


def _check_axes_argument(path: Path, axes: str, shape: tuple[int, ...]) -> str:
    letters = check_axes_letters(axes, str(path))
    if len(letters) != len(shape):
        raise InputError(
            f"The axes {axes!r} given for {path} do not fit its shape {shape}: give one distinct "
            f"letter per dimension ({len(shape)} letters). " + _AXES_HINT
        )
    return letters


def _to_channel_first(path: Path, data: np.ndarray, axes: str, ndim: int) -> np.ndarray:
    """Reorder ``data`` stored with ``axes`` to ``(C, [Z,] Y, X)``, dropping singleton axes."""
    shape = data.shape
    keep = []
    for index, letter in enumerate(axes):
        if letter in "CZYXS":
            keep.append(index)
        elif shape[index] != 1:
            what = "time points" if letter == "T" else f"entries along axis {letter!r}"
            raise InputError(
                f"The image {path} (axes {axes}, shape {shape}) has {shape[index]} {what}, which "
                "this runner cannot process as such; split the file, or if that axis is a Z stack "
                "or channels, say so. " + _AXES_HINT
            )
    data = data.squeeze(tuple(i for i in range(len(shape)) if i not in keep))
    kept = "".join(axes[i] for i in keep)
    data, kept = _merge_channels(path, data, kept, axes, shape)
    if "Y" not in kept or "X" not in kept:
        raise InputError(
            f"The image {path} (axes {axes}, shape {shape}) has no Y and X axes. {_AXES_HINT}"
        )
    if "Z" in kept and ndim == 2:
        if data.shape[kept.index("Z")] != 1:
            raise _wrong_ndim(path, shape, ndim, f"is a 3D stack (axes {axes})")
        data, kept = data.squeeze(kept.index("Z")), kept.replace("Z", "")
    if "Z" not in kept and ndim == 3:
        raise _wrong_ndim(path, shape, ndim, f"is a 2D image (axes {axes}, no Z axis)")
    if "C" not in kept:
        data, kept = data[np.newaxis], "C" + kept
    order = "CYX" if ndim == 2 else "CZYX"
    return np.ascontiguousarray(np.transpose(data, [kept.index(a) for a in order]))


def _merge_channels(
    path: Path, data: np.ndarray, kept: str, axes: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, str]:
    """Turn S (samples per pixel) into C; both of size > 1 are combined into one C axis."""
    if "S" not in kept:
        return data, kept
    if "C" not in kept:
        return data, kept.replace("S", "C")
    c, s = kept.index("C"), kept.index("S")
    data = np.moveaxis(data, [c, s], [0, 1])
    rest = "".join(a for a in kept if a not in "CS")
    log.warn(f"{path.name}: axes {axes} (shape {shape}): channels C and samples S merged")
    return data.reshape((-1,) + data.shape[2:]), "C" + rest


def _resolve_axes(path: Path, raw: _Raw, ndim: int, axes: str | None) -> tuple[str, str]:
    """The axes of the stored array and where they come from."""
    shape = raw.data.shape
    if axes is not None:
        return _check_axes_argument(path, axes, shape), "given"
    if raw.axes is not None:
        dropped = [a not in _KNOWN_AXES and n == 1 for a, n in zip(raw.axes, shape)]
        if all(a in _KNOWN_AXES or drop for a, drop in zip(raw.axes, dropped)):
            return raw.axes, f"from {raw.origin}"
        squeezed = tuple(n for n, drop in zip(shape, dropped) if not drop)
        guessed = iter(_guess_axes(path, squeezed, ndim))
        letters = "".join(a if drop else next(guessed) for a, drop in zip(raw.axes, dropped))
        return letters, f"file says {raw.axes}; guessed from the shape for {ndim}D"
    return _guess_axes(path, shape, ndim), f"guessed from the shape for {ndim}D"


def _infer_ndim(path: Path, raw: _Raw, axes: str | None) -> int:
    """2 or 3 spatial dimensions for an image read without a run's PROBLEM.NDIM (``evaluate``).

    From the axes given, else the file's axes metadata (a Z axis longer than 1 makes 3D), else
    the shape without singleton axes: 2 axes are 2D, 4 or more 3D, and 3 axes are 3D for integer
    (label) images, which have no channel axis, and for float images where no end axis looks like
    channels; a float image whose first or last axis could be channels (but not both) is 2D.
    """
    if axes is not None:
        return 3 if "Z" in axes.upper() else 2
    shape = raw.data.shape
    if raw.axes is not None and all(a in _KNOWN_AXES or n == 1 for a, n in zip(raw.axes, shape)):
        return 3 if any(a == "Z" and n > 1 for a, n in zip(raw.axes, shape)) else 2
    core = [n for n in shape if n != 1]
    if len(core) != 3:
        return 2 if len(core) <= 2 else 3
    if raw.data.dtype.kind in "biu":
        return 3
    first, last = core[0] <= MAX_GUESSED_CHANNELS, core[-1] <= MAX_GUESSED_CHANNELS
    if first != last:
        return 2
    if not first:
        return 3
    raise InputError(
        f"The image {path} (shape {shape}, {raw.data.dtype}) could be a 2D image with channels or "
        "a small 3D volume: say which with --set PROBLEM.NDIM=2D (or 3D). " + _AXES_HINT
    )


def read_image(
    path: Path, *, ndim: int | None, axes: str | None = None, dataset: str | None = None
) -> Image:
    """Read one image as a channel-first array for a ``ndim``-D (2 or 3) run.

    ``axes`` states the axes of the stored array (letters C, Z, Y, X, T, S, any case), overriding
    what the file says; ``dataset`` names the array inside an HDF5 file or a Zarr store (default:
    its only array, or an OME-Zarr image's full resolution). For a 2D model run over 3D stacks
    (TEST.ANALIZE_2D_IMGS_AS_3D_STACK), read with ``ndim=3``. ``ndim=None`` takes the dimension
    count from the file (see ``_infer_ndim``; for stored predictions and labels). Raises
    ``InputError`` for missing, empty, corrupt or ambiguous files and for a wrong number of
    dimensions.
    """
    if ndim not in (2, 3, None):
        raise ValueError(f"ndim must be 2, 3 or None, not {ndim}")
    path = Path(path)
    raw = _read_any(path, dataset)
    inferred = ndim is None
    ndim = _infer_ndim(path, raw, axes) if ndim is None else ndim
    source_axes, how = _resolve_axes(path, raw, ndim, axes)
    how += f"; {ndim}D from the file" if inferred else ""
    data = _to_channel_first(path, raw.data, source_axes, ndim)
    image = Image(
        path=path,
        stem=stem_of(path),
        data=data,
        axes="cyx" if ndim == 2 else "czyx",
        source_axes=source_axes,
        dtype=data.dtype,
    )
    log.info(f"{path.name}: axes {source_axes} ({how}) -> {image.axes} {data.shape} {data.dtype}")
    return image


def check_finite(image: Image) -> None:
    """Refuse an image with NaN or infinite values: the model's output would be NaN there.

    Raises
    ------
    InputError
        Naming the file and how many values are NaN and infinite.
    """
    if image.data.dtype.kind not in "fc":
        return
    finite = np.isfinite(image.data)
    bad = int(finite.size - np.count_nonzero(finite))
    if bad:
        nan = int(np.count_nonzero(np.isnan(image.data)))
        raise InputError(
            f"The image {image.path} holds {bad} non-finite value(s) of {image.data.size} ({nan} "
            f"NaN, {bad - nan} infinite); a model cannot predict from them. Replace them (e.g. "
            "with the background value) and run again."
        )


def read_gt_image(path: Path, image: Image) -> np.ndarray:
    """Read the label/mask image paired with ``image``: ``(Y, X)`` or ``(Z, Y, X)``.

    The GT must have the image's spatial shape; a singleton channel is dropped, as are the
    channels of an RGB(A) mask whose colour channels are all equal. Otherwise, or when its values
    are not non-negative integers (``check_labels``), ``InputError`` naming the file.
    """
    labels = _gt_labels(Path(path), image)
    check_labels(labels, path, "ground truth")
    return labels


def _gt_labels(path: Path, image: Image) -> np.ndarray:
    raw = _read_any(path, None)
    target = image.spatial_shape
    squeezed = tuple(n for n in raw.data.shape if n != 1)
    if raw.data.shape == target:
        return raw.data
    if squeezed == tuple(n for n in target if n != 1) and raw.data.size == np.prod(target):
        return raw.data.reshape(target)
    data = _gt_channel_first(path, raw, len(target))
    if data is not None and data.shape[1:] == target:
        if data.shape[0] == 1 or all(np.array_equal(data[0], c) for c in data[1:]):
            return data[0]
        raise InputError(
            f"The ground truth {path} has {data.shape[0]} different channels; give a single "
            "label or mask image (one integer label per pixel)."
        )
    raise InputError(
        f"The ground truth {path} (shape {raw.data.shape}) does not match the image {image.path} "
        f"(spatial shape {target}, {image.axes} {image.data.shape}); GT must have the image's "
        "size, without a channel axis."
    )


def check_labels(data: np.ndarray, path: Path, what: str) -> None:
    """Refuse a label image (``what``: "prediction", "ground truth") whose values are not
    non-negative integers (integer dtype, or floats without fraction), naming ``path``.

    A negative label would wrap around in an unsigned label type (-1 becomes 65535, one huge
    object), and a fraction has no meaning as a label.
    """
    if data.dtype.kind in "bu":
        return
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        bad = int(np.count_nonzero(~finite)) + int(np.count_nonzero(np.mod(data[finite], 1)))
        if bad:
            raise InputError(
                f"The {what} {path} is read as a label image but {bad} of its values are not "
                "whole numbers (or not finite); give integer labels (0 for background, 1, 2, ... "
                "for the objects or classes), or probabilities where the workflow accepts them."
            )
    negative = int(np.count_nonzero(data < 0))
    if negative:
        raise InputError(
            f"The {what} {path} has {negative} negative label value(s) (minimum "
            f"{data.min():g}); labels must be 0 (background) or positive integers. Relabel the "
            "image (e.g. set the negative values to 0) and try again."
        )


def stored_labels(image: Image, *, channels_ok: bool = False) -> np.ndarray:
    """The labels of a stored prediction read by ``read_image`` (``evaluate``), checked.

    One channel, or channels that are all equal (a grey image saved as RGB), give ``(*spatial)``.
    Several different channels are refused for a colour (RGB/RGBA) image, and otherwise also
    unless ``channels_ok`` (then ``(C, *spatial)`` is returned, e.g. one mask per class). Values
    must be non-negative integers (``check_labels``). Errors name the file and what to do.
    """
    data = image.data
    if data.shape[0] == 1 or all(np.array_equal(data[0], c) for c in data[1:]):
        data = data[0]
    elif "S" in image.source_axes or not channels_ok:
        kind = "a colour (RGB/RGBA) image" if "S" in image.source_axes else "an image"
        raise InputError(
            f"The prediction {image.path} is {kind} with {data.shape[0]} different channels "
            f"(axes {image.source_axes}, shape {image.data.shape}), but evaluate needs one label "
            "per pixel: save the label image itself (single channel, integer labels), not a "
            "coloured rendering of it; or give --axes if one of its axes is Z, not channels."
        )
    check_labels(data, image.path, "prediction")
    return data


def _gt_channel_first(path: Path, raw: _Raw, ndim: int) -> np.ndarray | None:
    try:
        return _to_channel_first(path, raw.data, _resolve_axes(path, raw, ndim, None)[0], ndim)
    except InputError:
        return None


# --------------------------------------------------------------------------- writing


_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_MAX_CLASSIC_TIFF = 2**32 - 2**25  # leave room for tags and offsets


def write_tiff(path: Path, array: np.ndarray, axes: str, threads: int | None = None) -> None:
    """Write ``array`` with ``axes`` (e.g. ``"czyx"``, ``"yx"``) as a zlib-compressed TIFF
    (level 1 for floats, 6 otherwise); ``threads`` compress its pages in parallel (the same
    bytes; None: tifffile's default, half the CPU cores).

    ImageJ hyperstack metadata when the dtype allows it (uint8, uint16, float32) and no Z axis
    of size 1 would be lost, tifffile's shaped metadata (readable back with the axes) otherwise.
    The file is written under a temporary name in the same folder and renamed when complete.
    """
    import tifffile

    path = Path(path)
    letters = axes.upper()
    if (
        len(letters) != array.ndim
        or set(letters) - set("TZCYXS")
        or len(set(letters)) != len(letters)
    ):
        raise ValueError(f"axes {axes!r} do not describe an array of shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    imagej = (
        array.dtype.type in _IMAGEJ_DTYPES
        and array.nbytes < _MAX_CLASSIC_TIFF
        and not ("Z" in letters and array.shape[letters.index("Z")] == 1)
    )
    if imagej:
        order = "".join(a for a in "TZCYXS" if a in letters)
        array = np.transpose(array, [letters.index(a) for a in order])
        letters = order
    photometric = "rgb" if letters.endswith("S") and array.shape[-1] in (3, 4) else "minisblack"
    with replacing(path) as temporary:
        tifffile.imwrite(
            temporary,
            np.ascontiguousarray(array),
            imagej=imagej,
            bigtiff=array.nbytes >= _MAX_CLASSIC_TIFF,
            metadata={"axes": letters},
            photometric=photometric,
            compression="zlib",
            # float predictions barely compress: the fastest level (a third less time, same size)
            compressionargs={"level": 1 if array.dtype.kind == "f" else 6},
            maxworkers=threads,
        )

"""Slab files: one job's share of a volume split along z (``run --z-range``), stitched by ``merge``.

A slab file is one TIFF: the raw prediction of the slab (float32, ``CZYX``: the model's output
channels over the slab's z slices at the output scale, after the model's postprocessing; what
``raw/<stem>.tif`` holds for those slices in a whole-volume run) with JSON metadata in the image
description under ``biapy_slab``: the format version, the image stem, the input volume's spatial
shape, the slab's z range in input and output slices, the slices read for its context, the
output shape of the whole volume and the run's PROBLEM.TYPE and model. Why a TIFF: it is one
file, so Galaxy carries it as a dataset of its ``tiff`` type (a Zarr store is a folder, which a
dataset is not), every image tool and tifffile read it (with the metadata) and it may exceed
4 GiB (BigTIFF). Only the slab's own slices are stored: the context it was predicted with stays
in the job, and ``merge`` decodes the stitched volume with the halos it needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from biapy_runner.errors import InputError
from biapy_runner.io.atomic import replacing

if TYPE_CHECKING:
    from biapy_runner.io.chunked import LazyImage

FORMAT = "biapy-runner slab 1"
_KEY = "biapy_slab"


@dataclass(frozen=True)
class SlabInfo:
    """What a slab file says about itself (all ranges ``[start, end)``)."""

    stem: str
    volume_shape: tuple[int, ...]
    z_range: tuple[int, int]
    out_z_range: tuple[int, int]
    out_shape: tuple[int, ...]
    context_rows: tuple[int, int]
    problem_type: str
    model: str
    format: str = FORMAT


def slab_name(stem: str, start: int, end: int) -> str:
    """The slab file's name: ``<stem>.z<start>-<end>.tif`` (zero-padded, so names sort by z)."""
    return f"{stem}.z{start:06d}-{end:06d}.tif"


def write_slab(path: Path, raw: np.ndarray, info: SlabInfo) -> None:
    """Write the slab prediction ``raw`` ``(C, z, y, x)`` float32 with ``info`` (atomically)."""
    import tifffile

    raw = np.ascontiguousarray(raw, dtype=np.float32)
    expected = (info.out_shape[0], info.out_z_range[1] - info.out_z_range[0], *info.out_shape[2:])
    if raw.shape != expected:
        raise ValueError(f"slab of shape {raw.shape}, expected {expected}")
    path = Path(path)
    with replacing(path) as temporary:
        tifffile.imwrite(
            temporary, raw, bigtiff=raw.nbytes > 2**31, compression="zlib",
            metadata={"axes": "CZYX", _KEY: json.dumps(asdict(info))},
        )  # fmt: skip


def _not_a_slab(path: Path, why: str) -> InputError:
    return InputError(
        f"{path} is not a slab of biapy-runner run --z-range ({why}); give the TIFF files that "
        "the run jobs wrote under slabs/."
    )


def read_slab_info(path: Path) -> SlabInfo:
    """The metadata of a slab file (no pixels read)."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
            shape = tuple(tif.series[0].shape)
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise _not_a_slab(path, f"cannot read it as a TIFF: {err}") from err
    if _KEY not in meta:
        raise _not_a_slab(path, "no slab metadata")
    try:
        fields = json.loads(meta[_KEY])
        info = SlabInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    except (TypeError, ValueError) as err:
        raise _not_a_slab(path, f"unreadable slab metadata: {err}") from err
    if info.format != FORMAT:
        raise _not_a_slab(path, f"format {info.format!r}, this runner reads {FORMAT!r}")
    if shape[1] != info.out_z_range[1] - info.out_z_range[0] or shape[0] != info.out_shape[0]:
        raise _not_a_slab(path, f"pixels of shape {shape} do not match its metadata")
    return info


def open_slab(path: Path) -> LazyImage:
    """The pixels of a slab file ``(C, z, y, x)`` float32, read by regions: its pages (one per
    channel and plane) are read only when a region needs them (``LazyImage.read``)."""
    from biapy_runner.io.chunked import open_lazy

    return open_lazy(Path(path), ndim=3, axes="CZYX", announce=False)


def order_slabs(paths: Sequence[Path]) -> list[tuple[Path, SlabInfo]]:
    """The slabs of one volume sorted by z, checked to cover it exactly once.

    Raises
    ------
    InputError
        Slabs of different images, volume shapes, workflows or models; a gap or an overlap
        between two slabs, or slices missing at the volume's start or end (naming the files and
        the z ranges).
    """
    slabs = sorted(((Path(p), read_slab_info(p)) for p in paths), key=lambda s: s[1].z_range)
    if not slabs:
        raise InputError("merge needs the slab files of run --z-range: give them with --slabs.")
    first_path, first = slabs[0]
    for path, info in slabs[1:]:
        for name in ("stem", "volume_shape", "out_shape", "problem_type", "model"):
            if getattr(info, name) != getattr(first, name):
                raise InputError(
                    f"The slabs {first_path} and {path} come from different runs ({name} "
                    f"{getattr(first, name)!r} and {getattr(info, name)!r}); merge the slabs of "
                    "one volume, predicted with one configuration and model."
                )
    expected = 0
    for path, info in slabs:
        start, end = info.z_range
        if start != expected:
            what = "missing" if start > expected else "predicted twice"
            raise InputError(
                f"z slices {min(start, expected)}..{max(start, expected) - 1} of {first.stem} "
                f"are {what}: {path} starts at z = {start} but the slabs before it end at "
                f"z = {expected}. Give one slab per z range of the split, covering the volume "
                "once (biapy-runner split lists the ranges)."
            )
        expected = end
    depth = first.volume_shape[0]
    if expected != depth:
        raise InputError(
            f"z slices {expected}..{depth - 1} of {first.stem} are missing: the last slab ends "
            f"at z = {expected} and the volume has {depth} slices."
        )
    return slabs


def split_ranges(depth: int, jobs: int, step: int = 1) -> list[tuple[int, int]]:
    """``jobs`` z ranges ``[start, end)`` covering ``depth`` slices, as even as possible with
    the split points on multiples of ``step`` (BiaPy requires them on its tile grid); fewer
    ranges when the volume has fewer steps than jobs."""
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: give the number of jobs to split the volume into, >= 1.")
    step = max(1, int(step))
    cuts = sorted({min(depth, round(i * depth / jobs / step) * step) for i in range(jobs)})
    cuts.append(depth)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]

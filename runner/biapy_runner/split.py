"""One volume across several jobs: ``split`` (the z ranges), ``run --z-range`` (one slab per
job) and ``merge`` (stitch the slabs, decode, score, write the usual outputs).

``split`` writes the ranges as a table and as one small text file per job (``START:END``), which
a Galaxy workflow maps the run tool over. Each ``run --z-range`` job predicts its slab from the
whole volume's tile grid (``inference/slab.py``) with the whole volume's normalisation
statistics and writes ``slabs/<stem>.z<start>-<end>.tif`` (``io/slabs.py``). ``merge`` checks that
the slabs cover the volume once, stitches them into the volume's raw prediction and decodes it
(whole, or by chunks: ``Workflow.decode_by_chunks``, instance labels made consistent across
chunk borders), then writes ``raw/``, ``post_proc/``, the tables and, with GT, the metrics, as
``run`` does. By chunks it works out of core, as ``run`` by chunks: the slabs are stitched by
windows of planes into ``raw/<stem>.zarr`` and ``chunked_run.Chunks.results`` decodes, writes
and scores from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner import log
from biapy_runner.config.load import Config, load_config
from biapy_runner.config.support import check_implemented
from biapy_runner.errors import ConfigError, InputError
from biapy_runner.io.images import Image, check_finite, read_image
from biapy_runner.io.outputs import OutputStage, check_output_dir
from biapy_runner.io.slabs import (
    SlabInfo,
    open_slab,
    order_slabs,
    slab_name,
    split_ranges,
    write_slab,
)
from biapy_runner.pipeline import (
    RunOptions,
    TiledPredictor,
    _configure,
    _ndim,
    _process,
    _report,
    check_model_kind,
    check_model_ndim,
    check_options,
    input_files,
    model_info,
    ran_config,
    resolve_threads,
)
from biapy_runner.workflows.base import Workflow, workflow_for


def _check_splittable(cfg: Config, workflow: Workflow, what: str) -> None:
    """Slabs are z ranges of 3D volumes predicted without test-time augmentation."""
    if _ndim(cfg) != 3:
        raise ConfigError(
            f"{what} splits 3D volumes along z, but PROBLEM.NDIM is {cfg.get('PROBLEM.NDIM')}; "
            "run 2D images whole (Galaxy maps the run over a collection of images)."
        )
    if cfg.get("TEST.AUGMENTATION"):
        raise ConfigError(
            f"{what} does not combine with TEST.AUGMENTATION (its flips and rotations mix the "
            "volume's z slices across slabs); set TEST.AUGMENTATION: False."
        )
    if not workflow.writes_raw or workflow.classifies_images:
        raise ConfigError(
            f"{what}: PROBLEM.TYPE {workflow.problem_type} has no per-voxel prediction to split."
        )


def _z_step(cfg: Config) -> int:
    """BiaPy's tile step along z: (DATA.PATCH_SIZE[0] - 2 * DATA.TEST.PADDING[0]) *
    TEST.BY_CHUNKS.WORKFLOW_PROCESS.PATCHES_PER_TILE[0]; split points on it share no tile."""
    patch = int(cfg.get("DATA.PATCH_SIZE")[0])
    padding = int(cfg.get("DATA.TEST.PADDING")[0])
    per_tile = int(cfg.get("TEST.BY_CHUNKS.WORKFLOW_PROCESS.PATCHES_PER_TILE")[0])
    return max(1, (patch - 2 * padding) * per_tile)


def split(
    image: Path, jobs: int, out: Path, config: Path | None = None,
    overrides: tuple[str, ...] = (), axes: str | None = None, dataset: str | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """Write the z ranges of ``jobs`` jobs for the volume ``image`` under ``out``:
    ``ranges.tsv`` (job, z_start, z_end) and ``ranges/<stem>.job<NN>.txt`` holding
    ``START:END`` (for ``run --z-range``). With a configuration (3D), the split points fall on
    BiaPy's tile step along z; the volume's size is read without reading its pixels when the
    format allows it."""
    import pandas as pd

    cfg = load_config(config, [*overrides, "PROBLEM.NDIM=3D"])
    depth, stem = _volume_depth(image, axes, dataset)
    ranges = split_ranges(depth, jobs, _z_step(cfg) if config else 1)
    check_output_dir(out)
    with OutputStage(out) as stage:
        for number, (start, end) in enumerate(ranges, start=1):
            stage.write_text(f"ranges/{stem}.job{number:03d}.txt", f"{start}:{end}\n")
        frame = pd.DataFrame(
            [{"job": n, "z_start": a, "z_end": b} for n, (a, b) in enumerate(ranges, start=1)]
        )
        stage.add_tables({"ranges.tsv": frame}, stem)
        stage.publish()
    log.info(f"{stem}: {depth} z slices in {len(ranges)} job(s): "
             + ", ".join(f"{a}:{b}" for a, b in ranges))  # fmt: skip
    return ranges


def _volume_depth(image: Path, axes: str | None, dataset: str | None) -> tuple[int, str]:
    """The number of z slices of a 3D volume and its stem."""
    from biapy_runner.io.chunked import is_lazy_format, open_lazy

    if is_lazy_format(image):
        lazy = open_lazy(image, ndim=3, axes=axes, dataset=dataset)
        try:
            return int(lazy.spatial_shape[0]), lazy.stem
        finally:
            lazy.close()
    whole = read_image(image, ndim=3, axes=axes, dataset=dataset)
    return int(whole.data.shape[1]), whole.stem


def run_slab(opts: RunOptions, z_range: tuple[int, int]) -> Path:
    """``run --z-range``: predict one slab of one volume and write it under ``slabs/``."""
    from biapy_runner.inference.slab import resolve_z_range

    check_options(opts)
    cfg = _configure(opts)
    workflow = workflow_for(cfg)
    _check_splittable(cfg, workflow, "--z-range")
    check_output_dir(opts.out)
    images, gts = input_files(opts, cfg, workflow)
    if len(images) != 1:
        raise InputError(
            f"--z-range predicts a slab of one volume, but {len(images)} images were given; "
            "give the one volume with --images."
        )
    if gts:
        log.info("--z-range: the ground truth is for merge (a slab is not scored)")
    threads, origin = resolve_threads(opts.threads, cfg)
    volume = _open_volume(images[0], opts)
    data = volume.data if isinstance(volume, Image) else volume
    stem, shape = volume.stem, tuple(int(n) for n in data.shape[1:])
    start, end = resolve_z_range(*z_range, shape[0])
    log.info(f"{stem}: slab z {start}:{end} of {shape[0]}, {threads} CPU thread(s) ({origin})")
    from biapy_runner.inference.chunked import memory_budget
    from biapy_runner.models.runnable import open_model

    with OutputStage(opts.out) as stage:
        model = open_model(
            cfg, device=opts.device, cache_dir=opts.cache_dir, threads=threads,
            backend=opts.backend,
        )  # fmt: skip
        check_model_kind(workflow, model)
        check_model_ndim(model, cfg)
        workflow.check_model(model.out_channels, model.out_channel_names)
        if not getattr(model, "postprocess_is_pointwise", True):
            raise ConfigError(
                f"--z-range: the model {model.name!r}'s postprocessing uses statistics of its "
                "whole output, which one slab cannot reproduce; run the volume in one job."
            )
        predictor = TiledPredictor(model, cfg, opts.batch_size, opts.amp)
        try:
            raw, rows = predictor.slab(data, start, end, memory_budget(opts.memory_budget)[0])
        finally:
            if not isinstance(volume, Image):
                volume.close()
        scale = round(model.scale[0])
        info = SlabInfo(
            stem=stem,
            volume_shape=shape,
            z_range=(start, end),
            out_z_range=(start * scale, end * scale),
            out_shape=(int(raw.shape[0]), shape[0] * scale, *raw.shape[2:]),
            context_rows=rows,
            problem_type=str(cfg.get("PROBLEM.TYPE")),
            model=model_info(model, cfg)["source"],
        )
        (stage.root / "slabs").mkdir()
        write_slab(stage.root / "slabs" / slab_name(stem, start, end), raw, info)
        stage.write_text("config.yaml", ran_config(cfg, workflow, opts.config, images, []))
        stage.publish()
    log.info(f"slab written to {opts.out / 'slabs' / slab_name(stem, start, end)}")
    return opts.out


def _merge_gt(workflow: Workflow, stem: str, gt: list[Path]) -> Any:
    """The GT of the merged volume: the file pairing with its stem, else the only one given."""
    if not gt:
        return None
    pairs = workflow.pair_gt([Path(stem + ".tif")], gt, "ignore")
    if pairs and pairs[0][1] is not None:
        return pairs[0][1]
    if len(gt) == 1:
        log.info(f"merge: {gt[0].name} is the ground truth of {stem} (the only one given)")
        return gt[0]
    raise InputError(f"None of the ground truth files {', '.join(map(str, gt))} pairs with the "
                     f"volume {stem} (same file name stem): give its GT alone.")  # fmt: skip


def _decodes_by_chunks(cfg: Config, info: SlabInfo, option: str | None) -> bool:
    """Whether the merge works by chunks (out of core): TEST.BY_CHUNKS.ENABLE, or the
    stitched float32 prediction plus the decoder's copies (about three) exceed the memory
    budget."""
    from biapy_runner.inference.chunked import by_chunks, memory_budget

    needed = 3 * 4 * int(np.prod(info.out_shape))
    budget, origin = memory_budget(option)
    numbers = f"~{needed / 2**30:.2f} GiB, memory budget {budget / 2**30:.2f} GiB ({origin})"
    return by_chunks(bool(cfg.get("TEST.BY_CHUNKS.ENABLE")), needed > budget, numbers,
                     "merge: decoding ")  # fmt: skip


def _open_volume(path: Path, opts: RunOptions) -> Any:
    """The volume of a slab job: opened for region reads when its format allows it (TIFF,
    HDF5, Zarr: the job then reads the slices its tiles need, after a statistics pass), else
    read whole."""
    from biapy_runner.io.chunked import is_lazy_format, open_lazy

    if is_lazy_format(path):
        return open_lazy(path, ndim=3, axes=opts.axes, dataset=opts.dataset)
    image = read_image(path, ndim=3, axes=opts.axes, dataset=opts.dataset)
    check_finite(image)
    return image


def stitch(paths: list[Path]) -> tuple[np.ndarray, SlabInfo]:
    """The raw prediction of the whole volume from its slabs (checked to cover it once)."""
    slabs = order_slabs(paths)
    info = slabs[0][1]
    raw = np.empty(info.out_shape, dtype=np.float32)
    stitch_into(slabs, raw, info.out_shape[1])
    return raw, info


def stitch_into(slabs: Sequence[tuple[Path, SlabInfo]], dest: Any, planes: int) -> None:
    """Copy the pixels of the ordered ``slabs`` into ``dest`` (the volume's raw prediction
    ``(C, Z, Y, X)``: numpy or an array that slices like it, e.g. a chunked Zarr), at most
    ``planes`` output planes at a time: no more than that is read or held at once."""
    from biapy_runner.decode.chunked import plane_blocks

    for path, part in slabs:
        slab = open_slab(path)
        try:
            rest = tuple(slice(0, n) for n in slab.spatial_shape[1:])
            offset = part.out_z_range[0]
            for window in plane_blocks(slab.spatial_shape[0], planes):
                dest[:, offset + window.start : offset + window.stop] = slab.read((window, *rest))
        finally:
            slab.close()
        log.info(f"  {path.name}: z {part.z_range[0]}:{part.z_range[1]}")


def stitch_zarr(
    slabs: Sequence[tuple[Path, SlabInfo]], path: Path, cfg: Config, budget: int,
    source: Path,
) -> None:  # fmt: skip
    """Stitch the ordered ``slabs`` into the Zarr ``path`` (``raw/<stem>.zarr`` as ``run`` by
    chunks writes it: float32 ``(C, Z, Y, X)``, chunks of the decoding's chunk size, the
    ``complete`` attribute set last) by windows of planes within an eighth of the ``budget``'s
    room (whole chunk rows when they fit it): the volume is never held."""
    from biapy_runner.decode.chunked import chunk_geometry
    from biapy_runner.inference.chunked import room
    from biapy_runner.io.chunked import chunk_shape, create_zarr

    shape = slabs[0][1].out_shape
    chunks = chunk_shape(shape, chunk_geometry(cfg, 3)[0])
    dest = create_zarr(path, shape, np.float32, chunks, {
        "axes": "CZYX", "source": str(Path(source).resolve()),
        "slabs": [p.name for p, _ in slabs],
    })  # fmt: skip
    planes = max(1, room(budget) // 8 // (4 * int(np.prod(shape)) // shape[1]))
    if planes >= chunks[1]:  # whole chunks along z: no chunk written twice
        planes -= planes % chunks[1]
    stitch_into(slabs, dest, planes)
    dest.attrs["complete"] = True


def merge(
    slabs: list[Path], out: Path, config: Path | None, overrides: tuple[str, ...] = (),
    gt: list[Path] | None = None, image: Path | None = None, axes: str | None = None,
    dataset: str | None = None, report: bool = True, memory_budget: str | None = None,
) -> Path:  # fmt: skip
    """Stitch the slabs of one volume, decode the prediction and write the results (and, with
    ``gt``, the metrics) under ``out`` as ``run`` writes them: by chunks, out of core, with
    TEST.BY_CHUNKS.ENABLE or when the volume's results would not fit the memory budget
    (``raw/<stem>.zarr``, ``<folder>/<stem>.zarr``), else whole in memory, exactly as one
    ``run`` of the volume; ``image``: the input volume, drawn under the results in the report
    (no report without it)."""
    started, mark = time.monotonic(), log.warning_count()
    cfg = load_config(config, list(overrides))
    check_implemented(cfg)
    workflow = workflow_for(cfg)
    _check_splittable(cfg, workflow, "merge")
    check_output_dir(out)
    infos = order_slabs(slabs)
    first = infos[0][1]
    if first.problem_type != cfg.get("PROBLEM.TYPE"):
        raise ConfigError(
            f"The slabs were predicted for PROBLEM.TYPE {first.problem_type} but the "
            f"configuration {config} runs {cfg.get('PROBLEM.TYPE')}; merge with the "
            "configuration the run jobs used."
        )
    gt_ref = _merge_gt(workflow, first.stem, gt or [])
    log.info(f"merge: {len(infos)} slab(s) of {first.stem} {first.volume_shape}")
    by_chunks = _decodes_by_chunks(cfg, first, memory_budget)
    source = image or Path(first.stem)

    with OutputStage(out) as stage:
        chunks = None
        if by_chunks:
            from biapy_runner.chunked_run import Chunks

            chunks = Chunks(cfg, workflow, None, stage, RunOptions(
                config, out, axes=axes, dataset=dataset, memory_budget=memory_budget))  # fmt: skip

        def produce(_: Path) -> tuple[Image, np.ndarray | None, Any]:
            if chunks is not None:  # out of core: stitched into raw/<stem>.zarr, decoded from it
                from dataclasses import replace

                from biapy_runner.io.chunked import open_prediction

                raw_path = chunks.raw_path(first.stem)
                stitch_zarr(infos, raw_path, cfg, chunks.budget, image or infos[0][0])
                stitched = replace(open_prediction(raw_path), stem=first.stem)
                return chunks.results(stitched, source=image or infos[0][0])
            raw, _info = stitch([p for p, _ in infos])
            whole = Image(source, first.stem, raw, "czyx", "CZYX", raw.dtype)
            return whole, raw, workflow.decode(raw, whole)

        items = _process(stage, cfg, workflow, [(source, gt_ref)], produce, cfg.to_yaml)
        if report and image is not None:
            from biapy_runner.report.build import RunInfo
            from biapy_runner.report.panels import Reader, ResultSet

            info = RunInfo("merge", str(cfg.get("PROBLEM.TYPE")), 3, 0.0,
                           {"name": first.model, "source": first.model},
                           config=str(cfg.source or ""))  # fmt: skip
            reader = Reader(3, axes, dataset, *([chunks.preview_voxels()] if chunks else []))
            _report(stage, info, (started, mark), items, [ResultSet("", stage.root)], reader)
        stage.publish()
    log.info(f"results written to {out}")
    return out

"""The ``run`` and ``evaluate`` commands: config + inputs -> model -> tiles -> workflow -> outputs."""

from __future__ import annotations

import copy
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biapy_runner import log
from biapy_runner.config.load import Config, load_config
from biapy_runner.config.support import check_implemented, check_model_implemented
from biapy_runner.errors import ConfigError, InputError, ModelError
from biapy_runner.io.images import (
    SUPPORTED_EXTENSIONS,
    Image,
    check_axes_letters,
    check_finite,
    check_unique_stems,
    list_images,
    pair_by_stem,
    read_image,
    stem_of,
)
from biapy_runner.io.outputs import OutputStage, check_output_dir
from biapy_runner.workflows.base import Workflow, workflow_for

if TYPE_CHECKING:  # torch and the model load only once the configuration and inputs are checked
    from biapy_runner.inference.tiling import TilePlan
    from biapy_runner.io.chunked import LazyImage
    from biapy_runner.models.runnable import RunnableModel
    from biapy_runner.report.build import RunInfo
    from biapy_runner.report.panels import Item, Reader, ResultSet


@dataclass
class RunOptions:
    """Everything the ``run`` command needs besides the configuration file's content."""

    config: Path | None
    out: Path
    images: list[Path] = field(default_factory=list)
    gt: list[Path] = field(default_factory=list)
    model: str | None = None
    overrides: list[str] = field(default_factory=list)
    device: str = "auto"
    threads: int | None = None
    axes: str | None = None
    dataset: str | None = None
    cache_dir: Path | None = None
    batch_size: int | None = None
    amp: bool = False
    backend: str = "auto"
    memory_budget: str | None = None
    report: bool = True
    gt_extra: str = "error"
    workflow: str | None = None
    #: ``--z-range START:END``: predict that slab of one volume (``split.run_slab``)
    z_range: str | None = None


@dataclass
class PredictionSet:
    """Predictions scored by ``evaluate``: their files and the name that tells them apart in
    the report and the comparison table (empty when there is only one set)."""

    files: list[Path]
    name: str = ""


class TiledPredictor:
    """Runs a loaded model over whole images as the configuration asks (``Predictor``).

    ``batch_size`` None: chosen per image from the free memory and the tile's measured cost."""

    def __init__(
        self, model: RunnableModel, cfg: Config, batch_size: int | None, amp: bool
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.batch_size = batch_size
        self.amp = amp
        self._noted: set[str] = set()
        #: called once, when the first batch of tiles is done (e.g. ``preload_report``)
        self.after_first_batch: Callable[[], None] | None = None

    def prepare(self, data: np.ndarray) -> np.ndarray:
        """The model's own preprocessing, after DATA.NORMALIZATION when the configuration sets
        it and the rdf does not normalise the input itself (statistics over the whole image), or
        always for a BiaPy checkpoint (trained with it).

        A model whose rdf has no normalisation and a configuration that does not ask for one get
        the image as it is: such a model declares that it takes raw intensities."""
        from biapy_runner.inference.normalization import normalize

        wanted = self.model.expects_config_normalization or any(
            key.startswith("DATA.NORMALIZATION.") for key in self.cfg.user_keys
        )
        if wanted and not self.model.normalizes_input:
            data = normalize(data, self.cfg)
        return self.model.preprocess(data)

    def tiled(self, data: np.ndarray) -> np.ndarray:
        """Whole-image preprocessing, tiled prediction (with test-time augmentation when
        TEST.AUGMENTATION is set) and the model's postprocessing."""
        from biapy_runner.inference.tiling import predict_tta

        prepared = self.prepare(data)
        if not self.cfg.get("TEST.AUGMENTATION"):
            return self._predict_one(prepared)
        mode = str(self.cfg.get("TEST.AUGMENTATION_MODE"))
        log.info(f"  test-time augmentation ({mode} of flips and 90-degree rotations)")
        return predict_tta(prepared, self._predict_one, ndim=data.ndim - 1, mode=mode)

    def slab(
        self, volume: np.ndarray | LazyImage, start: int, end: int, budget: int
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """The prediction of z slices ``[start, end)`` of ``volume`` ``(C, Z, Y, X)`` as
        ``tiled`` predicts them (the volume's tile grid, its statistics; no test-time
        augmentation), and the input slices its tiles read (``inference/slab.py``). A
        ``LazyImage`` is read by regions: statistics in passes of at most a quarter of
        ``budget`` bytes, then only the slices the slab's tiles need."""
        from biapy_runner.inference.slab import plan_slab, predict_slab
        from biapy_runner.inference.tiling import first_tile, tile_grid

        if not isinstance(volume, np.ndarray) and not hasattr(self.model, "input_measures"):
            volume = volume.read()  # a model without region preprocessing: the whole volume
        if isinstance(volume, np.ndarray):
            prepared = self.prepare(volume)

            def read_rows(a: int, b: int) -> np.ndarray:
                return prepared[:, a:b]

            shape = prepared.shape[1:]
        else:
            read_rows = self._lazy_rows(volume, budget)
            shape = volume.spatial_shape
        plan = self._plan(shape)
        probe = read_rows(0, min(int(shape[0]), plan.patch[0]))
        choice = self.model.select_backend(first_tile(probe, plan))
        sub = plan_slab(shape, plan, start, end)
        tiles = (sub.grid if sub is not None else tile_grid(shape, plan)).count
        output, rows = predict_slab(
            read_rows, shape, self.model.forward, plan, start, end,
            out_channels=self.model.out_channels,
            batch_size=self._batch(plan, tiles, choice.peak_bytes),
            device=self.model.device, amp=self.amp,
            on_batch=_BatchLogger(self._first_batch_done),
        )
        return self.model.postprocess(output), rows

    def _lazy_rows(self, image: LazyImage, budget: int) -> Callable[[int, int], np.ndarray]:
        """Reads slices ``a..b-1`` of ``image`` preprocessed with the whole image's statistics
        (computed now, by regions)."""
        prepare = self.region_preparer(image, budget)

        def read_rows(a: int, b: int) -> np.ndarray:
            rest = (slice(0, n) for n in image.spatial_shape[1:])
            return prepare(image.read((slice(a, b), *rest)))

        return read_rows

    def region_preparer(self, image: LazyImage, budget: int) -> Callable[[np.ndarray], np.ndarray]:
        """The preprocessing of regions of ``image`` with the whole image's statistics
        (DATA.NORMALIZATION when asked and the model's own), computed now in passes over
        regions of at most a quarter of ``budget`` bytes."""
        from biapy_runner.inference.chunked import check_region_input, input_statistics
        from biapy_runner.inference.normalization import normalize

        check_region_input(image, self.model.in_channels)
        wanted = any(key.startswith("DATA.NORMALIZATION.") for key in self.cfg.user_keys)
        normalizes = wanted and not self.model.normalizes_input
        stats = input_statistics(image, self.cfg, self.model, normalizes, budget)

        def prepare(block: np.ndarray) -> np.ndarray:
            if stats.normalization is not None:
                block = normalize(block, self.cfg, stats.normalization)
            return self.model.preprocess(block, stat=stats.model_stat)

        return prepare

    def chunked(
        self, image: LazyImage, out: Path, budget: int,
        on_slab: Callable[[tuple[slice, ...], np.ndarray], None] | None = None,
    ) -> Any:
        """Predict ``image`` (read by regions) into the Zarr ``out`` within ``budget`` bytes:
        the whole image's statistics first, then groups of tiles (``inference/chunked.py``);
        ``on_slab(region, prediction)`` gets each finished slab of the prediction."""
        from biapy_runner.inference.chunked import ChunkedModel, check_chunkable, predict_chunked

        check_chunkable(self.cfg, self.model)
        prepare = self.region_preparer(image, budget)

        def batch(tile_bytes: int, tiles: int) -> int:
            return self._batch(plan, tiles, tile_bytes)

        plan = self._plan(image.spatial_shape)
        model = ChunkedModel(
            self.model.forward, prepare, self.model.postprocess, self.model.select_backend,
            self.model.out_channels, self.model.device, batch, self.amp,
        )
        attrs = {
            "axes": image.axes.upper(), "source": str(image.path.resolve()),
            "tile_plan": {"patch": list(plan.patch), "padding": list(plan.padding),
                          "overlap": list(plan.overlap), "scale": list(plan.scale)},
        }  # fmt: skip
        return predict_chunked(
            image, model, plan, out, budget=budget, attrs=attrs,
            on_batch=_BatchLogger(self._first_batch_done), on_slab=on_slab,
        )

    def whole(self, data: np.ndarray) -> np.ndarray:
        """One forward pass on ``data`` as it is, with the model's pre- and postprocessing."""
        import torch

        prepared = self.prepare(data)
        batch = torch.from_numpy(np.ascontiguousarray(prepared[None])).to(self.model.device)
        with torch.inference_mode():
            output = self.model.forward(batch)[0].float().cpu().numpy()
        return self.model.postprocess(output)

    def _predict_one(self, prepared: np.ndarray) -> np.ndarray:
        from biapy_runner.inference.tiling import first_tile, predict_tiled, tile_grid

        plan = self._plan(prepared.shape[1:])
        choice = self.model.select_backend(first_tile(prepared, plan))
        tiles = tile_grid(prepared.shape[1:], plan).count
        output = predict_tiled(
            prepared,
            self.model.forward,
            plan,
            out_channels=self.model.out_channels,
            batch_size=self._batch(plan, tiles, choice.peak_bytes),
            device=self.model.device,
            amp=self.amp,
            on_batch=_BatchLogger(self._first_batch_done),
        )
        return self.model.postprocess(output)

    def _first_batch_done(self) -> None:
        hook, self.after_first_batch = self.after_first_batch, None
        if hook is not None:
            hook()

    def _batch(self, plan: Any, tiles: int, tile_bytes: int) -> int:
        """--batch-size, else the batch that the free memory allows; logged with the tile count."""
        size, why = self.batch_size, "--batch-size"
        if not size:
            from biapy_runner.inference.batching import auto_batch_size, free_memory

            voxels = int(np.prod(plan.patch))
            out_voxels = voxels * int(np.prod(plan.scale))
            io_bytes = 4 * (self.model.in_channels * voxels + self.model.out_channels * out_voxels)
            free = free_memory(self.model.device)
            size = auto_batch_size(tile_bytes, io_bytes, free, tiles, self.model.device.type)
            cost = f"{tile_bytes / 2**20:.0f} MiB measured" if tile_bytes else "not measured"
            why = f"{free / 2**30:.1f} GiB free on {self.model.device}, one tile {cost}"
        note = f"{tiles} tile(s) {tuple(plan.patch)}, batches of {size}"
        if note not in self._noted:  # once per run, not once per TTA transform or image
            self._noted.add(note)  # (the free memory in ``why`` varies from image to image)
            log.info(f"  {note} ({why})")
        return size

    def _plan(self, spatial_shape: Sequence[int]) -> TilePlan:
        """Tiles from DATA.PATCH_SIZE / TEST.PADDING / TEST.OVERLAP (per spatial axis, their
        lengths checked against PROBLEM.NDIM by the config); padding covers the model's halo. The
        plan's notes (tile size changed, and why) are logged once per run."""
        from biapy_runner.inference.tiling import plan_tiles

        halo = [int(np.ceil(h / s)) for h, s in zip(self.model.halo, self.model.scale)]
        plan = plan_tiles(
            tuple(spatial_shape),
            patch=tuple(self.cfg.get("DATA.PATCH_SIZE"))[:-1],
            padding=tuple(max(p, h) for p, h in zip(self.cfg.get("DATA.TEST.PADDING"), halo)),
            overlap=tuple(self.cfg.get("DATA.TEST.OVERLAP")),
            scale=tuple(round(s) for s in self.model.scale),
            reflect=bool(self.cfg.get("DATA.REFLECT_TO_COMPLETE_SHAPE")),
            valid_size=self.model.valid_size,
            size_rule=self.model.size_rule,
            full_image=bool(self.cfg.get("TEST.FULL_IMG")),
        )
        for note in plan.notes:
            if note not in self._noted:  # once per run, not once per TTA transform or image
                self._noted.add(note)
                log.info(f"  {note}")
        return plan


class _BatchLogger(log.Progress):
    """Tile progress (``log.Progress``: every few seconds and at the end, to keep job logs
    short); calls ``each`` after every batch first (the predictor's once-per-run hook)."""

    def __init__(self, each: Callable[[], None]) -> None:
        super().__init__("tiles")
        self.each = each

    def __call__(self, done: int, total: int) -> None:
        self.each()
        super().__call__(done, total)


def check_model_kind(workflow: Workflow, model: RunnableModel) -> None:
    """A classifier (no spatial output axes) runs only in a workflow that classifies whole
    images, and an image model only in one that does not; checked once, before any image."""
    is_classifier = not model.out_spatial_axes
    if is_classifier == workflow.classifies_images:
        return
    gives = (
        "gives one score per class for the whole image (a classifier)"
        if is_classifier
        else "outputs an image, not one score per class"
    )
    raise ModelError(
        f"The model {model.name!r} {gives}, which does not fit {workflow.problem_type} "
        "(PROBLEM.TYPE); choose the PROBLEM.TYPE the model was trained for."
    )


def check_options(opts: RunOptions) -> None:
    """Refuse option values that cannot work before any file is read or model loaded.

    Raises
    ------
    InputError
        ``--threads`` or ``--batch-size`` below 1 (``--threads`` left out means
        SYSTEM.NUM_CPUS, else $GALAXY_SLOTS, else all cores), ``--axes`` with letters other
        than C, Z, Y, X, T, S or a repeated letter, an empty ``--dataset``.
    """
    if opts.threads is not None and opts.threads < 1:
        raise InputError(
            f"--threads {opts.threads}: give the number of CPU threads to use, at least 1; leave "
            "--threads out to use SYSTEM.NUM_CPUS, else $GALAXY_SLOTS, else all cores."
        )
    if opts.batch_size is not None and opts.batch_size < 1:
        raise InputError(
            f"--batch-size {opts.batch_size}: give the number of tiles per forward pass, at "
            "least 1 (leave it out to size batches from the free memory)."
        )
    if opts.axes is not None:
        check_axes_letters(opts.axes, "--axes")
    if opts.dataset is not None and not opts.dataset.strip("/ "):
        raise InputError("--dataset is empty: give the path of the array in the HDF5/Zarr file.")


def resolve_threads(requested: int | None, cfg: Config) -> tuple[int, str]:
    """The CPU threads to use and where the number comes from: --threads, else
    SYSTEM.NUM_CPUS (when positive), else $GALAXY_SLOTS, else all cores."""
    if requested:
        return requested, "--threads"
    configured = int(cfg.get("SYSTEM.NUM_CPUS"))
    if configured > 0:
        return configured, "SYSTEM.NUM_CPUS"
    slots = os.environ.get("GALAXY_SLOTS", "")
    if slots.isdigit() and int(slots) > 0:
        return int(slots), "$GALAXY_SLOTS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1, "all cores"


def check_model_ndim(model: RunnableModel, cfg: Config) -> None:
    """A 2D model runs in a 2D run and a 3D model in a 3D run; checked once, before any image.

    Raises
    ------
    ConfigError
        Naming PROBLEM.NDIM and the value that fits the model.
    """
    model_ndim = len(model.spatial_axes)
    if model_ndim == _ndim(cfg):
        return
    patch = "(z, y, x, channels)" if model_ndim == 3 else "(y, x, channels)"
    raise ConfigError(
        f"The model {model.name!r} is a {model_ndim}D model (spatial axes "
        f"{', '.join(model.spatial_axes)}) but PROBLEM.NDIM is {cfg.get('PROBLEM.NDIM')}: set "
        f"PROBLEM.NDIM to {model_ndim}D (e.g. --set PROBLEM.NDIM={model_ndim}D) with a "
        f"{model_ndim}D DATA.PATCH_SIZE {patch}, or choose a {_ndim(cfg)}D model."
    )


def _ndim(cfg: Config) -> int:
    return 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2


def _folder_files(
    cfg: Config, key: str, lister: Callable[[Path], list[Path]] = list_images
) -> list[Path]:
    folder = Path(str(cfg.get(key)))
    if not folder.is_dir():
        raise InputError(
            f"{key} is {str(folder)!r}, which is not a folder; give the images with --images "
            f"(and --gt) or set {key} to an existing folder."
        )
    files = lister(folder)
    if not files:
        raise InputError(f"The folder {folder} ({key}) holds no image this runner can read.")
    return files


def _listed(paths: Sequence[Path], option: str, lister: Callable[[Path], list[Path]]) -> list[Path]:
    """``paths`` with each folder replaced by the files ``lister`` finds in it (as the YAML's
    DATA.TEST.PATH is read); a ``.zarr`` store is one image, not a folder of images."""
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"The file {path} given to {option} does not exist; check the path.")
        if not path.is_dir() or path.name.lower().endswith(".zarr"):
            files.append(path)
            continue
        found = lister(path)
        if not found:
            raise InputError(
                f"The folder {path} given to {option} holds no file this runner can read "
                f"({', '.join(SUPPORTED_EXTENSIONS)}); give image files or a folder of them."
            )
        if found != [path]:
            log.info(f"{option} {path}: {len(found)} file(s) in the folder")
        files += found
    return files


def input_files(opts: RunOptions, cfg: Config, workflow: Workflow) -> tuple[list[Path], list[Path]]:
    """The image files and GT paths of a run: ``--images``/``--gt`` (folders replaced by their
    files), else the YAML's DATA.TEST.PATH / GT_PATH folders (classification: the class
    sub-folders of DATA.TEST.PATH name the images' classes). Two images with one name stem
    (whose outputs would collide) are an ``InputError`` naming both."""
    if opts.images:
        images = _listed(opts.images, "--images", workflow.list_inputs)
    else:
        images = _folder_files(cfg, "DATA.TEST.PATH", workflow.list_inputs)
    check_unique_stems(images, "images")
    gts = _listed(opts.gt, "--gt", workflow.gt_files)
    if not gts and not opts.images and cfg.get("DATA.TEST.LOAD_GT"):
        if workflow.classifies_images:  # BiaPy: the class folders of DATA.TEST.PATH
            return images, images
        gts = _folder_files(cfg, "DATA.TEST.GT_PATH", workflow.list_gt)
    return images, gts


def _pair(
    workflow: Workflow, images: list[Path], gts: list[Path], gt_extra: str = "error"
) -> list[tuple[Path, Any]]:
    """Each image with its GT reference (``None`` without GT); ``gt_extra``: what GT without
    image is (``"error"`` or ``"ignore"``)."""
    if not gts:
        return [(path, None) for path in images]
    return workflow.pair_gt(images, gts, gt_extra)


def collect_inputs(opts: RunOptions, cfg: Config, workflow: Workflow) -> list[tuple[Path, Any]]:
    """The images to process, each with its GT reference (``None`` without GT)."""
    return _pair(workflow, *input_files(opts, cfg, workflow), opts.gt_extra)


def _common_folder(files: Sequence[Path]) -> Path | None:
    """The one folder holding ``files`` (a single folder given as such: itself), else None."""
    if len(files) == 1 and files[0].is_dir() and not files[0].name.lower().endswith(".zarr"):
        return files[0]
    folders = {path.parent for path in files}
    return folders.pop() if len(folders) == 1 else None


def ran_config(
    cfg: Config, workflow: Workflow, config: Path | None, images: list[Path], gts: list[Path]
) -> str:
    """``config.yaml``: the resolved configuration with DATA.TEST.PATH / GT_PATH / LOAD_GT set
    to what ran (the folder of the files when they share one, else empty), under a header that
    lists the files and the command that re-runs exactly them (``cfg`` itself is unchanged)."""
    cfg = copy.deepcopy(cfg)
    image_folder, gt_folder = _common_folder(images), _common_folder(gts)
    cfg.set("DATA.TEST.PATH", str(image_folder or ""))
    cfg.set("DATA.TEST.LOAD_GT", bool(gts))
    if gts:
        cfg.set("DATA.TEST.GT_PATH", str(gt_folder or ""))
    rerun = ["biapy-runner", "run", "--config", "config.yaml", "--out", "NEW_FOLDER"]
    folders_suffice = image_folder is not None and set(list_images(image_folder)) == set(images)
    if gts:
        folders_suffice &= gt_folder is not None and set(workflow.list_gt(gt_folder)) == set(gts)
    if not folders_suffice:
        rerun += ["--images", *map(str, images)] + (["--gt", *map(str, gts)] if gts else [])
    header = [
        "# The configuration that ran: BiaPy's defaults"
        + (f" + {config}" if config else "")
        + " + the command line's overrides.",
        "# DATA.TEST.PATH and GT_PATH name the folders of the files that ran (empty when they",
        "# came from several folders).",
        f"# Images ({len(images)}): " + ", ".join(map(str, images)),
    ]
    if gts:
        header.append(f"# Ground truth ({len(gts)}): " + ", ".join(map(str, gts)))
    header.append(f"# Re-run (from {Path.cwd()}): " + shlex.join(rerun))
    return "\n".join(header) + "\n" + cfg.to_yaml()


def _configure(opts: RunOptions) -> Config:
    overrides = list(opts.overrides)
    if opts.model:
        overrides += ["MODEL.SOURCE=bmz", f"MODEL.BMZ.SOURCE_MODEL_ID={opts.model}"]
    cfg = load_config(opts.config, overrides)
    check_implemented(cfg)
    if opts.workflow and cfg.get("PROBLEM.TYPE") != opts.workflow:
        raise ConfigError(
            f"The configuration {opts.config} runs PROBLEM.TYPE {cfg.get('PROBLEM.TYPE')}, but "
            f"{opts.workflow} was expected (--workflow); choose the workflow the file runs."
        )
    if not cfg.get("TRAIN.ENABLE"):  # training builds its network (training.py checks it)
        check_model_source(cfg)
    return cfg


def check_model_source(cfg: Config) -> None:
    """The model that inference runs is configured (MODEL.SOURCE and its keys)."""
    source = cfg.get("MODEL.SOURCE")
    if source == "biapy":
        from biapy_runner.models.checkpoint import checkpoint_file

        check_model_implemented(cfg)
        checkpoint_file(cfg)
        return
    if source != "bmz":
        raise ConfigError(
            f"MODEL.SOURCE is {source!r}: this runner runs BioImage.IO models (MODEL.SOURCE: "
            "bmz with MODEL.BMZ.SOURCE_MODEL_ID, or --model) and BiaPy checkpoints "
            "(MODEL.SOURCE: biapy with PATHS.CHECKPOINT_FILE)."
        )
    if not str(cfg.get("MODEL.BMZ.SOURCE_MODEL_ID") or "").strip():
        raise ConfigError(
            "No model given: set MODEL.BMZ.SOURCE_MODEL_ID in the configuration or pass --model "
            "with a BioImage.IO id, DOI, URL or a local .zip package."
        )


def run(opts: RunOptions) -> Path:
    """Run the configured workflow on the images and write every output under ``opts.out``
    (with TRAIN.ENABLE: train first, see ``biapy_runner.training``; with ``--z-range``: one slab
    of a volume, see ``biapy_runner.split``).

    Options, configuration, inputs (existence, distinct name stems, GT pairing) and the output
    folder are checked before the model is loaded.
    """
    if opts.z_range is not None:
        from biapy_runner.inference.slab import parse_z_range
        from biapy_runner.split import run_slab

        return run_slab(opts, parse_z_range(opts.z_range))
    check_options(opts)
    since = (time.monotonic(), log.warning_count())
    cfg = _configure(opts)
    if cfg.get("TRAIN.ENABLE"):
        from biapy_runner import training

        return training.train(training.TrainOptions.from_run(opts), cfg, since)
    workflow = workflow_for(cfg)
    check_output_dir(opts.out)
    images, gts = input_files(opts, cfg, workflow)
    with OutputStage(opts.out) as stage:
        test(stage, opts, cfg, workflow, (images, gts), since)
        stage.publish()
    log.info(f"results written to {opts.out}")
    return opts.out


def test(
    stage: OutputStage,
    opts: RunOptions,
    cfg: Config,
    workflow: Workflow,
    files: tuple[list[Path], list[Path]],
    since: tuple[float, int],
    model: RunnableModel | None = None,
) -> None:
    """Predict, decode, write and score ``files`` (images, GT) into ``stage``, then the report;
    ``since``: the command's start (``time.monotonic()``) and the warning count then; ``model``:
    the model to run (default: the configured one, loaded now). Images too large for the memory
    budget (or with TEST.BY_CHUNKS.ENABLE) are predicted by chunks."""
    images, gts = files
    inputs = _pair(workflow, images, gts, opts.gt_extra)
    threads, origin = resolve_threads(opts.threads, cfg)
    stage.write_threads = threads
    log.info(
        f"{cfg.get('PROBLEM.TYPE')} {cfg.get('PROBLEM.NDIM')}: {len(inputs)} image(s), "
        f"{'with' if gts else 'without'} ground truth, {threads} CPU thread(s) ({origin})"
    )
    if model is None:
        model = load_configured_model(cfg, opts, threads)
    check_model_kind(workflow, model)
    check_model_ndim(model, cfg)
    workflow.check_model(model.out_channels, model.out_channel_names)
    from biapy_runner.chunked_run import Chunks

    predictor = TiledPredictor(model, cfg, opts.batch_size, opts.amp)
    if opts.report:
        predictor.after_first_batch = preload_report
    chunks = Chunks(cfg, workflow, predictor, stage, opts)

    def predict(path: Path) -> tuple[Image, np.ndarray | None, Any]:
        lazy = chunks.open(path)
        if lazy is not None:
            return chunks.predict(lazy)
        axes, dataset = chunks.axes_and_dataset(path)
        image = read_image(path, ndim=_ndim(cfg), axes=axes, dataset=dataset)
        check_finite(image)
        raw = workflow.predict(image, predictor)
        return image, raw, workflow.decode(raw, image)

    config_text = ran_config(cfg, workflow, opts.config, images, gts)
    items = _process(stage, cfg, workflow, inputs, predict, config_text)
    if opts.report:
        from biapy_runner.report.build import RunInfo
        from biapy_runner.report.panels import Reader, ResultSet

        info = RunInfo(
            "run", str(cfg.get("PROBLEM.TYPE")), _ndim(cfg), 0.0, model_info(model, cfg),
            str(model.device), str(cfg.source or ""),
        )
        reader = Reader(_ndim(cfg), opts.axes, opts.dataset, chunks.preview_voxels())
        _report(stage, info, since, items, [ResultSet("", stage.root)], reader)


def preload_report() -> None:
    """Import the report's modules (matplotlib: ~0.6 s) in a background thread, so that the
    import overlaps with the tiles (the forward releases the GIL) instead of following the
    writing. Importing the report later waits for this import, if it is still running."""
    import importlib
    import threading

    threading.Thread(
        target=importlib.import_module, args=("biapy_runner.report.build",),
        name="biapy-report-import", daemon=True,
    ).start()


def load_configured_model(cfg: Config, opts: RunOptions, threads: int) -> RunnableModel:
    """The model the configuration names (MODEL.SOURCE), loaded for inference on
    ``opts.device``."""
    from biapy_runner.models.runnable import open_model  # torch: once the inputs are checked

    return open_model(
        cfg, device=opts.device, cache_dir=opts.cache_dir, threads=threads, backend=opts.backend
    )


def model_info(model: RunnableModel, cfg: Config) -> dict[str, str]:
    """Name, source, weights format, backend and version of ``model`` for the report."""
    source = cfg.get("MODEL.BMZ.SOURCE_MODEL_ID") if cfg.get("MODEL.SOURCE") == "bmz" else model.source
    return {
        "name": model.name,
        "source": str(source),
        "weights": str(model.weight_format),
        "backend": str(model.backend or ""),
        "version": model.version,
    }


def evaluate(
    workflow_type: str,
    sets: Sequence[PredictionSet],
    gts: Sequence[Path],
    out: Path,
    config: Path | None = None,
    overrides: Sequence[str] = (),
    axes: str | None = None,
    images: Sequence[Path] = (),
    report: bool = True,
    gt_extra: str = "error",
) -> Path:
    """Score existing predictions against GT (paired by stem) without running a model.

    One set writes the usual layout; several (each with a distinct name) write their results
    under ``predictions/<name>/`` and one ``metrics/metrics.tsv`` comparing them (a
    ``prediction`` column first). ``images`` (optional, paired by stem) are drawn under the
    predictions in the report. Without PROBLEM.NDIM in the configuration or overrides, each
    prediction is 2D or 3D as its file says (a 3-axis integer label image is a 3D volume: labels
    have no channel axis).
    """
    started, mark = time.monotonic(), log.warning_count()
    cfg = load_config(config, [*overrides, f"PROBLEM.TYPE={workflow_type}"])
    check_implemented(cfg)
    workflow = workflow_for(cfg)
    check_output_dir(out)
    if not gts:
        raise InputError("evaluate needs ground truth: give the GT files with --gt.")
    _check_sets(sets)
    backgrounds = _images_by_stem(images, sets[0].files)
    ndim = _ndim(cfg) if "PROBLEM.NDIM" in cfg.user_keys else None

    def decode(path: Path) -> tuple[Image, np.ndarray | None, Any]:
        image = workflow.read_prediction(path, ndim, axes)
        if ndim is None and image.data.size:  # config.yaml says what ran
            cfg.set("PROBLEM.NDIM", f"{len(image.spatial_shape)}D")
        return image, None, workflow.decode_file(path, image)

    named = len(sets) > 1
    per_set = [
        collect_inputs(
            RunOptions(config=config, out=out, images=list(pset.files), gt=list(gts), axes=axes,
                       gt_extra=gt_extra),
            cfg, workflow,
        )
        for pset in sets
    ]
    from biapy_runner.report.panels import ResultSet

    result_sets, rows, items = [], [], []
    with OutputStage(out) as stage:
        for pset, inputs in zip(sets, per_set):
            part = stage.under(f"predictions/{pset.name}/" if named else "")
            if named:
                log.info(f"prediction set {pset.name}: {len(inputs)} image(s)")
            found = _process(
                part, cfg, workflow, inputs, decode, cfg.to_yaml, rows_out=rows, label=pset.name
            )
            items = items or found
            result_sets.append(ResultSet(pset.name if named else "", part.folder))
        if named:
            stage.add_tables({"metrics/metrics.tsv": _table(rows)}, "")
            stage.write_text("config.yaml", cfg.to_yaml())
        if report:
            from biapy_runner.report.build import RunInfo
            from biapy_runner.report.panels import Reader

            for item in items:
                item.image = backgrounds.get(item.stem)
            info = RunInfo("evaluate", str(cfg.get("PROBLEM.TYPE")), _ndim(cfg), 0.0,
                           config=str(cfg.source or ""))
            _report(stage, info, (started, mark), items, result_sets, Reader(_ndim(cfg), axes))
        stage.publish()
    log.info(f"results written to {out}")
    return out


def _report(
    stage: OutputStage,
    info: RunInfo,
    since: tuple[float, int],
    items: list[Item],
    sets: list[ResultSet],
    reader: Reader,
) -> None:
    """Write the staged tables, then the report from them; ``since``: the command's start
    (``time.monotonic()``) and the warning count then, for the time and warnings it shows."""
    from biapy_runner.report.build import write_report

    stage.write_tables()
    info.seconds = time.monotonic() - since[0]
    info.warnings = log.warnings_since(since[1])
    write_report(stage.root, info, items, sets, reader)


def _check_sets(sets: Sequence[PredictionSet]) -> None:
    """Several prediction sets need distinct names that are plain folder names."""
    if len(sets) < 2:
        return
    names = [s.name for s in sets]
    bad = [n for n in names if not n or n in (".", "..") or "/" in n or "\\" in n]
    if bad or len(set(names)) != len(names):
        raise InputError(
            f"Prediction sets need distinct, non-empty names without '/' (got {names}); give "
            "each --pred a --pred-name before it, e.g. --pred-name swan --pred a.tif."
        )


def _images_by_stem(images: Sequence[Path], preds: Sequence[Path]) -> dict[str, Path]:
    """The images drawn under the predictions in the report, by the stem of the prediction
    they pair with (same rule as GT pairing)."""
    if not images:
        return {}
    return {stem_of(pred): image for pred, image in pair_by_stem(preds, images, "ignore")}


class _Stack:
    """TEST.ANALIZE_2D_IMGS_AS_3D_STACK: the 2D predictions (and label GT) of all images stacked
    along z into one 3D volume that the workflow decodes and scores once more as a whole."""

    STEM = "stack"

    def __init__(self) -> None:
        self.raws: list[np.ndarray] = []
        self.gts: list[Any] = []

    def add(self, image: Image, raw: np.ndarray, gt: Any) -> None:
        """Keep one image's prediction and GT; all images must share one YX size."""
        if self.raws and raw.shape != self.raws[0].shape:
            raise InputError(
                f"TEST.ANALIZE_2D_IMGS_AS_3D_STACK needs images of one size, but {image.path} "
                f"gives a prediction of shape {raw.shape[1:]} and the first one "
                f"{self.raws[0].shape[1:]}; process images of different sizes separately."
            )
        self.raws.append(raw)
        self.gts.append(gt)

    def volume(self) -> tuple[Image, np.ndarray, Any]:
        """The stacked image (``czyx``), its prediction and its GT (None unless every image
        has a label GT)."""
        raw = np.stack(self.raws, axis=1)
        image = Image(Path(self.STEM), self.STEM, raw, "czyx", "stacked 2D", raw.dtype)
        with_gt = all(isinstance(g, np.ndarray) for g in self.gts)
        return image, raw, np.stack(self.gts) if with_gt else None


def _table(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows)


def _process(
    stage: OutputStage,
    cfg: Config,
    workflow: Workflow,
    inputs: list[tuple[Path, Any]],
    produce: Callable[[Path], tuple[Image, np.ndarray | None, Any]],
    config_text: str | Callable[[], str],
    rows_out: list[dict[str, Any]] | None = None,
    label: str = "",
) -> list[Item]:
    """Produce, write and score every image, then the dataset tables and ``config.yaml``
    (``config_text``, or what it returns once every image is done); the images for the report.
    ``rows_out`` collects the metric rows (with a ``prediction`` column = ``label``) for a table
    comparing several sets."""
    from biapy_runner.chunked_run import ChunkedResult
    from biapy_runner.report.panels import Item

    metric_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    items: list[Item] = []
    stacked = _ndim(cfg) == 2 and cfg.get("TEST.ANALIZE_2D_IMGS_AS_3D_STACK")
    stack = _Stack() if stacked and workflow.writes_raw else None
    for index, (path, gt_ref) in enumerate(inputs, start=1):
        log.info(f"image {index}/{len(inputs)}: {path.name}")
        image, raw, decoded = produce(path)
        item = Item(image.stem, path, gt_ref if isinstance(gt_ref, Path) else None)
        if isinstance(decoded, ChunkedResult):  # written by chunks, scored streaming
            summary_rows.append({"image": image.stem, **decoded.summary})
            scored = None if gt_ref is None else decoded.score(gt_ref)
            if scored is not None:
                metric_rows.append(_scored_row(stage, image.stem, scored))
            items.append(item)  # its preview reads the Zarr results thinned (report.panels)
            continue
        gt = None if gt_ref is None else workflow.load_gt(gt_ref, image)
        summary, scores = _write_result(stage, workflow, image, raw, decoded, gt)
        summary_rows.append(summary)
        items.append(item)
        if scores is not None:
            metric_rows.append(scores)
        if stack is not None and raw is not None:
            stack.add(image, raw, gt)
    stage.add_tables({"metrics/summary.tsv": _table(summary_rows)}, "")
    if metric_rows:
        total = _write_metrics(stage, workflow, metric_rows, "metrics/metrics.tsv")
        if rows_out is not None:
            rows_out += [{"prediction": label, **r} for r in [*metric_rows, total]]
    if stack is not None and stack.raws:
        _write_stack(stage, workflow, stack)
    stage.write_text("config.yaml", config_text() if callable(config_text) else config_text)
    return items


def _write_result(
    stage: OutputStage,
    workflow: Workflow,
    image: Image,
    raw: np.ndarray | None,
    decoded: Any,
    gt: Any,
    prefix: str = "",
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Write one image's outputs (folders under ``prefix``); its summary and metric rows."""
    if raw is not None and workflow.writes_raw:
        stage.write_image(prefix + "raw", image.stem, raw.astype(np.float32), image.axes)
    for folder, array in decoded.images.items():
        axes = image.axes if array.ndim == len(image.axes) else image.axes[1:]
        stage.write_image(prefix + folder, image.stem, array, axes)
    stage.add_tables(decoded.tables, image.stem)
    summary = {"image": image.stem, **workflow.summarize(decoded, image)}
    if gt is None:
        return summary, None
    return summary, _scored_row(stage, image.stem, workflow.score(decoded, gt, image))


def _scored_row(stage: OutputStage, stem: str, scored: Any) -> dict[str, Any]:
    """The metrics row of one image's ``scored`` results (its tables staged)."""
    stage.add_tables(scored.tables, stem)
    log.info("  " + _format_row(scored.row))
    return {"image": stem, **scored.row}


def _write_metrics(
    stage: OutputStage, workflow: Workflow, rows: list[dict[str, Any]], name: str
) -> dict[str, Any]:
    """The metrics table ``name``: the per-image rows and the dataset (ALL) row (returned)."""
    total = workflow.aggregate([{k: v for k, v in r.items() if k != "image"} for r in rows])
    stage.add_tables(total.tables, "ALL")
    all_row = {"image": "ALL", **total.row}
    stage.add_tables({name: _table([*rows, all_row])}, "")
    log.info("dataset: " + _format_row(total.row))
    return all_row


def _write_stack(stage: OutputStage, workflow: Workflow, stack: _Stack) -> None:
    """Decode and score the stacked 2D predictions as one 3D volume under ``stack_3d/``."""
    image, raw, gt = stack.volume()
    log.info(f"2D predictions stacked as a 3D volume {raw.shape[1:]}: decoding it as a whole")
    summary, scores = _write_result(
        stage, workflow, image, raw, workflow.decode(raw, image), gt, prefix="stack_3d/"
    )
    stage.add_tables({"stack_3d/summary.tsv": _table([summary])}, "")
    if scores is not None:
        _write_metrics(stage, workflow, [scores], "stack_3d/metrics.tsv")


def _format_row(row: dict[str, Any], limit: int = 8) -> str:
    """A short ``key=value`` rendering of a metrics row for the log."""
    items = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more

"""The ``train`` command (and ``run`` with TRAIN.ENABLE): train, then test with the trained model.

Inputs, configuration and the output folder are checked before any image is read; images are
read, normalised (DATA.NORMALIZATION) and paired with their targets (``train.targets``), the
network is built from MODEL.ARCHITECTURE (``models.architectures``) or loaded from
PATHS.CHECKPOINT_FILE (MODEL.LOAD_CHECKPOINT, resuming the epoch and optimizer when
MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT says so), trained by ``train.loop``, and, when test images
are given (``--test-images`` / TEST.ENABLE with DATA.TEST.PATH), the best checkpoint runs the
usual inference path (MODEL.SOURCE: biapy) on them, into the same output folder:

- ``checkpoints/<name>-checkpoint-best.pth`` (and ``-<epoch>.pth`` every MODEL.SAVE_CKPT_FREQ
  epochs), BiaPy's ``.pth`` layout;
- ``train_log.tsv`` (epoch, train_loss, val_loss, train_/val_ metrics, lr, seconds) and
  ``train_curves.png``;
- the test outputs of ``run`` (``post_proc/``, ``metrics/``, ...), ``config.yaml`` and the report.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner import log
from biapy_runner.config.load import Config
from biapy_runner.config.support import check_model_implemented
from biapy_runner.errors import ConfigError, InputError
from biapy_runner.io.images import check_finite, read_image, stem_of
from biapy_runner.io.outputs import (
    CHECKPOINT_DIR,
    TRAIN_CURVES,
    TRAIN_LOG,
    OutputStage,
    check_output_dir,
    write_table,
)
from biapy_runner.pipeline import (
    RunOptions,
    _configure,
    _folder_files,
    _listed,
    _ndim,
    check_model_kind,
    check_model_ndim,
    input_files,
    load_configured_model,
    resolve_threads,
    test,
)
from biapy_runner.train.export import (
    export_trained,
    fine_tuning,
    start_from_package,
    wants_package,
)
from biapy_runner.workflows.base import Workflow, workflow_for

#: workflows whose GT is an image normalised like the input (BiaPy's default target norm)
IMAGE_TARGETS = ("SUPER_RESOLUTION", "IMAGE_TO_IMAGE")


@dataclass
class TrainOptions(RunOptions):
    """``run``'s options (``images``/``gt`` are the test set) plus the training inputs."""

    train_images: list[Path] = field(default_factory=list)
    train_gt: list[Path] = field(default_factory=list)
    val_images: list[Path] = field(default_factory=list)
    val_gt: list[Path] = field(default_factory=list)
    name: str = "model"

    @classmethod
    def from_run(cls, opts: RunOptions) -> TrainOptions:
        """``run``'s options with the training inputs from the configuration's folders."""
        return cls(**{f.name: getattr(opts, f.name) for f in fields(RunOptions)})


@dataclass
class Inputs:
    """The files of a training run: training, validation and test (images, GT references)."""

    train: list[tuple[Path, Any]]
    val: list[tuple[Path, Any]]
    test: tuple[list[Path], list[Path]] | None


def run_train(opts: TrainOptions) -> Path:
    """The ``train`` command: TRAIN.ENABLE is implied; returns the output folder."""
    since = (time.monotonic(), log.warning_count())
    opts.overrides = [*opts.overrides, "TRAIN.ENABLE=True"]
    if opts.images:
        opts.overrides.append("TEST.ENABLE=True")
    return train(opts, _configure(opts), since)


def train(opts: TrainOptions, cfg: Config, since: tuple[float, int]) -> Path:
    """Train as ``cfg`` says, then test when TEST.ENABLE; everything under ``opts.out``.

    Parameters
    ----------
    opts : TrainOptions
        Inputs, output folder, device, threads.
    cfg : Config
        The loaded configuration (TRAIN.ENABLE set).
    since : tuple of (float, int)
        The command's start (``time.monotonic()``) and warning count then.

    Returns
    -------
    Path
        The output folder.
    """
    check_trainable_model(cfg)
    if not opts.name or "/" in opts.name or opts.name.startswith("."):
        raise InputError(f"--name {opts.name!r}: give a plain name for the checkpoint files.")
    workflow = workflow_for(cfg)
    check_output_dir(opts.out)
    if fine_tuning(cfg):
        check_package_fits(cfg, workflow, opts)
    inputs = collect(opts, cfg, workflow)
    threads, origin = resolve_threads(opts.threads, cfg)
    import torch  # only once the inputs are checked

    from biapy_runner.models.model import resolve_device

    torch.set_num_threads(threads)
    device = resolve_device(opts.device)
    log.info(
        f"training {cfg.get('PROBLEM.TYPE')} {cfg.get('PROBLEM.NDIM')} on {device}: "
        f"{len(inputs.train)} training image(s), {len(inputs.val)} validation image(s), "
        f"{threads} CPU thread(s) ({origin})"
    )
    data = training_data(cfg, read_samples(inputs.train, cfg, workflow, opts),
                         read_samples(inputs.val, cfg, workflow, opts))
    with OutputStage(opts.out) as stage:
        best = fit(stage.root, cfg, data, device, opts)
        package = None
        if wants_package(cfg):
            package = export_trained(stage.root, cfg, best, inputs.train[0][0],
                                     counts=(len(inputs.train), len(inputs.val)),
                                     axes=opts.axes, dataset=opts.dataset)
        tested = tested_config(cfg, opts.out / CHECKPOINT_DIR / best.name)
        if fine_tuning(cfg):  # the package runs the fine-tuned network with its own code
            tested = tested_package_config(cfg, opts.out / package.relative_to(stage.root))
        if inputs.test is not None:
            log.info(f"testing the trained model ({best.name})")
            if fine_tuning(cfg):
                from biapy_runner.models.model import load_model

                model = load_model(package, device=device.type, threads=threads)
            else:
                model = trained_model(tested, best, device)
            test(stage, opts, tested, workflow, inputs.test, since, model)
        else:
            stage.write_text("config.yaml", _trained_config(tested))
            if opts.report:
                _report_training(stage, cfg, since)
        stage.publish()
    log.info(f"results written to {opts.out}")
    return opts.out


def check_trainable_model(cfg: Config) -> None:
    """Training builds the network of MODEL.ARCHITECTURE (MODEL.SOURCE: biapy), which must be
    one the runner builds, or fine-tunes a BioImage.IO package (MODEL.SOURCE: bmz); checked
    before any image is read."""
    if fine_tuning(cfg):
        return
    source = cfg.get("MODEL.SOURCE")
    if source != "biapy":
        raise ConfigError(
            f"MODEL.SOURCE is {source!r}: training builds the network of MODEL.ARCHITECTURE "
            "(MODEL.SOURCE: biapy)."
        )
    check_model_implemented(cfg)


def check_package_fits(cfg: Config, workflow: Workflow, opts: TrainOptions) -> None:
    """Fine-tuning: the package (MODEL.BMZ.SOURCE_MODEL_ID) must fit the configuration as
    ``run`` requires (a classifier or an image model, PROBLEM.NDIM, the output channels the
    workflow names), output the channels the configuration trains (``output_channels``), and
    take DATA.PATCH_SIZE as input; checked before any image is read (ConfigError, exit 2)."""
    from biapy_runner.models.architectures import output_channels

    model = load_configured_model(cfg, opts, 1)
    check_model_kind(workflow, model)
    check_model_ndim(model, cfg)
    workflow.check_model(model.out_channels, model.out_channel_names)
    trained = [name for name, _ in output_channels(cfg)]
    if len(trained) != model.out_channels:
        raise ConfigError(
            f"The model {model.name!r} outputs {model.out_channels} channel(s) "
            f"({', '.join(model.out_channel_names)}) but the configuration trains "
            f"{len(trained)} ({', '.join(trained)}): set DATA.N_CLASSES or the workflow's "
            "channels to what the model was trained for (see its BioImage.IO description)."
        )
    patch = tuple(int(v) for v in cfg.get("DATA.PATCH_SIZE"))[: _ndim(cfg)]
    if model.valid_size(patch) != patch:
        raise ConfigError(
            f"DATA.PATCH_SIZE {patch} (without channels) is not an input size of the model "
            f"{model.name!r}: {model.size_rule}; set DATA.PATCH_SIZE to one, e.g. "
            f"{model.valid_size(patch)} with the channels."
        )


def trained_model(cfg: Config, staged: Path, device: Any) -> Any:
    """The trained checkpoint ``staged`` (still in the staging folder) as ``run`` opens it with
    MODEL.SOURCE: biapy, named by its published path (PATHS.CHECKPOINT_FILE of ``cfg``)."""
    from biapy_runner.models.checkpoint import load_checkpoint
    from biapy_runner.models.runnable import BiapyModel

    net, info = load_checkpoint(staged, cfg)
    return BiapyModel(net, cfg, Path(str(cfg.get("PATHS.CHECKPOINT_FILE"))), device, info["epoch"])


def collect(opts: TrainOptions, cfg: Config, workflow: Workflow) -> Inputs:
    """The training, validation and test files, paired with their GT, checked before reading:
    ``--train-images``/``--train-gt`` else DATA.TRAIN.PATH/GT_PATH; ``--val-images``/``--val-gt``
    else DATA.VAL.PATH/GT_PATH when DATA.VAL.FROM_TRAIN is off and the configuration sets
    DATA.VAL.PATH (else no validation); the test set (``run``'s inputs) when TEST.ENABLE."""
    train = _pairs(cfg, workflow, opts.train_images, opts.train_gt, "TRAIN")
    val: list[tuple[Path, Any]] = []
    if opts.val_images or "DATA.VAL.PATH" in cfg.user_keys and not cfg.get("DATA.VAL.FROM_TRAIN"):
        val = _pairs(cfg, workflow, opts.val_images, opts.val_gt, "VAL")
    elif not cfg.get("DATA.VAL.FROM_TRAIN"):
        log.info("no validation (DATA.VAL.FROM_TRAIN is off and no validation images given)")
    tested = None
    if cfg.get("TEST.ENABLE"):
        if not opts.images and "DATA.TEST.PATH" not in cfg.user_keys:
            raise InputError(
                "TEST.ENABLE is set but no test images are given: pass them with --test-images "
                "(`train`) or --images (`run`), with their GT, or set DATA.TEST.PATH; or set "
                "TEST.ENABLE: False to train only."
            )
        tested = input_files(opts, cfg, workflow)
    if cfg.get("MODEL.LOAD_CHECKPOINT"):
        start_checkpoint(cfg)
    return Inputs(train, val, tested)


def _pairs(
    cfg: Config, workflow: Workflow, images: Sequence[Path], gts: Sequence[Path], split: str
) -> list[tuple[Path, Any]]:
    """Images of one split with their GT (``None`` for workflows without GT)."""
    option = f"--{split.lower()}-images"
    if images:
        files = _listed(images, option, workflow.list_inputs)
    else:
        files = _folder_files(cfg, f"DATA.{split}.PATH", workflow.list_inputs)
    if not needs_gt(cfg):
        return [(path, None) for path in files]
    gt_option = f"--{split.lower()}-gt"
    if gts:
        gt_files = _listed(gts, gt_option, workflow.gt_files)
    elif workflow.classifies_images:  # BiaPy's <folder>/<class>/<image>: the folder is the GT
        gt_files = files
    elif images:
        raise InputError(
            f"{option} given without {gt_option}: {cfg.get('PROBLEM.TYPE')} trains on images "
            f"paired with their ground truth; give the GT files with {gt_option} (paired by "
            "file stem)."
        )
    else:
        gt_files = _folder_files(cfg, f"DATA.{split}.GT_PATH", workflow.list_gt)
    pairs = workflow.pair_gt(files, gt_files, "error")
    if workflow.classifies_images:
        _check_classes(cfg, [int(gt) for _, gt in pairs], split)
    return pairs


def _check_classes(cfg: Config, classes: Sequence[int], split: str) -> None:
    """The class numbers of a classification split fit DATA.N_CLASSES (BiaPy asks for one
    class folder per class in training)."""
    n = int(cfg.get("DATA.N_CLASSES"))
    found = sorted(set(classes))
    if found[-1] >= n or split == "TRAIN" and len(found) != n:
        which = "training" if split == "TRAIN" else "validation"
        raise InputError(
            f"The {which} images are in {len(found)} class(es) (numbers {found}) but "
            f"DATA.N_CLASSES is {n}: put the images of each of the {n} classes in one "
            "sub-folder per class (<folder>/<class name>/<image>; folders named by numbers are "
            f"those class numbers, 0 to {n - 1}) or set DATA.N_CLASSES to the number of classes."
        )


def needs_gt(cfg: Config) -> bool:
    """Whether training pairs images with GT (not denoising, unless
    PROBLEM.DENOISING.LOAD_GT_DATA, and not self-supervised learning)."""
    problem = cfg.get("PROBLEM.TYPE")
    if problem == "DENOISING":
        return bool(cfg.get("PROBLEM.DENOISING.LOAD_GT_DATA"))
    return problem != "SELF_SUPERVISED"


def read_samples(
    pairs: Sequence[tuple[Path, Any]], cfg: Config, workflow: Workflow, opts: RunOptions
) -> list[Any]:
    """Each image read, normalised (DATA.NORMALIZATION) and paired with its training target."""
    from biapy_runner.inference.normalization import normalize
    from biapy_runner.train.data import make_sample
    from biapy_runner.train.targets import make_targets

    problem = cfg.get("PROBLEM.TYPE")
    samples = []
    for index, (path, ref) in enumerate(pairs):
        image = read_image(path, ndim=_ndim(cfg), axes=opts.axes, dataset=opts.dataset)
        check_finite(image)
        _check_channels(cfg, image.data.shape[0], path)
        data = normalize(image.data, cfg)
        gt = None if ref is None else workflow.load_gt(ref, image)
        if problem in IMAGE_TARGETS and gt is not None:
            gt = normalize(np.asarray(gt), cfg)
        target = make_targets(cfg, gt, data)
        if problem == "SELF_SUPERVISED":  # the input is made once per raw image, as BiaPy does
            from biapy_runner.train.inputs import ssl_input

            rng = np.random.default_rng([int(cfg.get("SYSTEM.SEED")), 2, index])
            data = normalize(ssl_input(cfg, image.data, rng), cfg)
        samples.append(make_sample(stem_of(path), data, target, cfg))
    return samples


def _check_channels(cfg: Config, channels: int, path: Path) -> None:
    expected = int(cfg.get("DATA.PATCH_SIZE")[-1])
    if channels != expected:
        raise InputError(
            f"The image {path} has {channels} channel(s) but DATA.PATCH_SIZE ends with "
            f"{expected} (the channels the network takes): set the last entry of "
            "DATA.PATCH_SIZE to the images' channel count, or give images with that many."
        )


def training_data(cfg: Config, train: list[Any], val: list[Any]) -> Any:
    """The batches of training (augmented with AUGMENTOR.*, prepared per crop) and validation."""
    from biapy_runner.train.augment import Augmenter
    from biapy_runner.train.data import build_training_data
    from biapy_runner.train.inputs import prepare_for

    data = build_training_data(cfg, train, val, Augmenter.from_config(cfg) or None,
                               prepare_for(cfg))
    log.info(data.describe())
    return data


def fit(root: Path, cfg: Config, data: Any, device: Any, opts: TrainOptions) -> Path:
    """Build (or load) the network, train it on ``data``, write the checkpoints,
    ``train_log.tsv`` and the curves under ``root``; returns the checkpoint the test uses (the
    best one, or the last epoch's with MODEL.LOAD_CHECKPOINT_EPOCH last_on_train)."""
    from biapy_runner.train.loop import Trainer, seed_everything
    from biapy_runner.train.losses import loss_for, metrics_for

    model, resumed = _initial_model(cfg, int(data.train.samples[0].image.shape[0]))
    model.to(device)
    channels = _channels(cfg)
    folder = root / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, state: Any, net: Any, optimizer: Any, schedule: Any) -> Path:
        from biapy_runner.models.checkpoint import save_checkpoint

        path = folder / name
        save_checkpoint(path, net, cfg, state.epoch, optimizer=[optimizer],
                        extra=state.extra(schedule))
        written.append(path)
        return path

    trainer = Trainer(model, loss_for(cfg, channels), metrics_for(cfg, channels), data, cfg,
                      device, save, opts.name, amp=opts.amp)
    if resumed is not None:
        trainer.resume(*resumed)
        log.info(f"resuming after epoch {trainer.state.epoch} of {cfg.get('TRAIN.EPOCHS')}")
    seed_everything(int(cfg.get("SYSTEM.SEED")))
    state = trainer.fit()
    import pandas as pd

    table = pd.DataFrame(state.rows, columns=trainer.columns)
    write_table(root / TRAIN_LOG, table)
    from biapy_runner.report.charts import training_curves

    training_curves(table, root / TRAIN_CURVES)
    last = folder / f"{opts.name}-checkpoint-{state.epoch}.pth"
    if cfg.get("MODEL.LOAD_CHECKPOINT_EPOCH") == "last_on_train":
        if last not in written:
            save(last.name, state, model, trainer.optimizer, trainer.schedule)
        return last
    best = folder / f"{opts.name}-checkpoint-best.pth"
    if not best.exists():  # no epoch gave a finite loss
        raise InputError(
            "Training gave no finite loss in any epoch, so no checkpoint was kept: check the "
            "images and GT (DATA.NORMALIZATION, LOSS.*) and lower TRAIN.LR."
        )
    return best


def _channels(cfg: Config) -> list[tuple[str, str]]:
    from biapy_runner.models.architectures import output_channels

    return output_channels(cfg)


def _initial_model(cfg: Config, in_channels: int) -> tuple[Any, tuple[int, Any, Any] | None]:
    """The network to train and, when resuming, ``(epoch, optimizer state, extra)``: BiaPy's
    MODEL.ARCHITECTURE (seeded with SYSTEM.SEED), or PATHS.CHECKPOINT_FILE's network when
    MODEL.LOAD_CHECKPOINT (its epoch and optimizer when MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT
    lists them)."""
    from biapy_runner.train.loop import seed_everything

    seed_everything(int(cfg.get("SYSTEM.SEED")))
    if fine_tuning(cfg):
        return start_from_package(cfg), None
    if not cfg.get("MODEL.LOAD_CHECKPOINT"):
        from biapy_runner.models.architectures import build_model

        return build_model(cfg, in_channels=in_channels), None
    path = start_checkpoint(cfg)
    from biapy_runner.models.checkpoint import load_checkpoint

    model, info = load_checkpoint(path, cfg)
    items = set(cfg.get("MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT"))
    log.info(f"starting from the checkpoint {path} ({', '.join(sorted(items))})")
    if "epoch" not in items:
        return model, None
    epoch = info["epoch"] if isinstance(info["epoch"], int) else 0
    optimizer = info["optimizer"] if "optimizer" in items else None
    return model, (epoch, optimizer, info["content"])


def start_checkpoint(cfg: Config) -> Path:
    """PATHS.CHECKPOINT_FILE, checked to be a file (training with MODEL.LOAD_CHECKPOINT)."""
    path = Path(str(cfg.get("PATHS.CHECKPOINT_FILE") or ""))
    if not path.is_file():
        raise InputError(
            f"MODEL.LOAD_CHECKPOINT is set but PATHS.CHECKPOINT_FILE {str(path)!r} is not a "
            "file: give the .pth checkpoint to start from (or set MODEL.LOAD_CHECKPOINT: False)."
        )
    return path


def tested_config(cfg: Config, checkpoint: Path) -> Config:
    """The configuration the test phase runs (and ``config.yaml`` keeps): the trained
    checkpoint through MODEL.SOURCE: biapy, no training."""
    tested = copy.deepcopy(cfg)
    tested.set("MODEL.SOURCE", "biapy")
    tested.set("MODEL.LOAD_CHECKPOINT", True)
    tested.set("PATHS.CHECKPOINT_FILE", str(checkpoint))
    tested.set("TRAIN.ENABLE", False)
    return tested


def tested_package_config(cfg: Config, package: Path) -> Config:
    """The configuration that tests (and ``config.yaml`` keeps) a network fine-tuned from a
    package: its exported package through MODEL.SOURCE: bmz, no training."""
    tested = copy.deepcopy(cfg)
    tested.set("MODEL.BMZ.SOURCE_MODEL_ID", str(package))
    tested.set("TRAIN.ENABLE", False)
    return tested


def _trained_config(tested: Config) -> str:
    header = (
        "# The configuration that trained (BiaPy's defaults + the file + the command line's "
        "overrides),\n# set to test with the trained model: biapy-runner run --config "
        "config.yaml --images ... --out NEW_FOLDER\n"
    )
    return header + tested.to_yaml()


def _report_training(stage: OutputStage, cfg: Config, since: tuple[float, int]) -> None:
    """The report of a training run without test images: its curves."""
    from biapy_runner.pipeline import _report
    from biapy_runner.report.build import RunInfo
    from biapy_runner.report.panels import Reader, ResultSet

    info = RunInfo("train", str(cfg.get("PROBLEM.TYPE")), _ndim(cfg), 0.0,
                   config=str(cfg.source or ""))
    _report(stage, info, since, [], [ResultSet("", stage.root)], Reader(_ndim(cfg)))

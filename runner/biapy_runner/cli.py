"""Command line: ``biapy-runner run | train | evaluate | split | merge | make-config`` (also
``python -m biapy_runner``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType
from pathlib import Path
from typing import Any

from biapy_runner import __version__, log
from biapy_runner.config import wizard as make_config
from biapy_runner.config.wizard import PROBLEM_TYPES
from biapy_runner.errors import RunnerError, Stopped

#: Signals that stop a run cleanly (staging folder removed, exit 128 + signal): Ctrl-C, and the
#: signals Galaxy, Slurm, Kubernetes and closing terminals use to stop a job.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

#: ``--backend`` values (models/backends/choice.py's CHOICES; spelled here so that parsing the
#: command line does not import torch; tests/test_backends.py checks they agree).
BACKEND_CHOICES = ("auto", "torch", "torch-channels-last", "torchscript", "onnxruntime", "openvino")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a BiaPy configuration with a BioImage.IO model")
    p.add_argument("--config", type=Path, required=True, help="BiaPy YAML configuration")
    p.add_argument("--images", type=Path, nargs="+", default=[], help="test images")
    p.add_argument("--gt", type=Path, nargs="+", default=[], help="ground truth, paired by stem")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", help="overrides MODEL.BMZ.SOURCE_MODEL_ID (id, DOI, URL or zip)")
    _add_execution(p, "TEST.AUGMENTATION=True")
    p.add_argument("--cache-dir", type=Path, help="model cache (default $BIAPY_RUNNER_CACHE or "
                   "~/.cache/biapy-runner/models)")
    p.add_argument("--batch-size", type=int, help="tiles per forward pass (default: as many as "
                   "half the free memory holds, at most 4 on CPU and 32 on a GPU)")
    p.add_argument("--memory-budget", metavar="SIZE",
                   help="RAM the prediction may use, e.g. 1.5G: larger images (Zarr, HDF5, TIFF) "
                   "are predicted by chunks (default $BIAPY_RUNNER_MEMORY_BUDGET, else half the "
                   "available memory)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="how the model runs (default auto: the fastest that gives the same "
                   "results, measured on the first tile and remembered in the model cache)")
    p.add_argument("--z-range", metavar="START:END",
                   help="predict only z slices START..END-1 of one 3D volume (BiaPy's "
                   "TEST.BY_CHUNKS.Z_START/Z_END) into slabs/, for biapy-runner merge; a file "
                   "holding START:END is read too (what split writes)")
    _add_common(p)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a BiaPy configuration's network, then test it (TEST.ENABLE)",
        description="Train MODEL.ARCHITECTURE on the training images (TRAIN.ENABLE is implied); "
        "with test images, test the best checkpoint as `run` does. Under --out: "
        "checkpoints/<name>-checkpoint-best.pth (and -<epoch>.pth every MODEL.SAVE_CKPT_FREQ "
        "epochs), train_log.tsv, train_curves.png, config.yaml, the report and the test outputs.",
    )
    p.add_argument("--config", type=Path, required=True, help="BiaPy YAML configuration")
    p.add_argument("--train-images", type=Path, nargs="+", default=[],
                   help="training images or folders (default DATA.TRAIN.PATH)")
    p.add_argument("--train-gt", type=Path, nargs="+", default=[],
                   help="training ground truth, paired by stem (default DATA.TRAIN.GT_PATH)")
    p.add_argument("--val-images", type=Path, nargs="+", default=[],
                   help="validation images (default: split from training, DATA.VAL.SPLIT_TRAIN)")
    p.add_argument("--val-gt", type=Path, nargs="+", default=[], help="validation ground truth")
    p.add_argument("--test-images", dest="images", type=Path, nargs="+", default=[],
                   help="test images (implies TEST.ENABLE; default DATA.TEST.PATH when set)")
    p.add_argument("--test-gt", dest="gt", type=Path, nargs="+", default=[],
                   help="test ground truth, paired by stem")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--name", default="model",
                   help="job name: the checkpoints' prefix, <name>-checkpoint-best.pth")
    _add_execution(p, "TRAIN.EPOCHS=50")
    _add_common(p)


def _add_execution(p: argparse.ArgumentParser, example: str) -> None:
    """The options ``run`` and ``train`` share: overrides, device, threads, axes, dataset, AMP,
    expected workflow."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override a configuration key, e.g. --set {example} (repeatable)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="CPU threads (default SYSTEM.NUM_CPUS, "
                   "else $GALAXY_SLOTS, else all)")
    p.add_argument("--axes", help="axes of the stored images when metadata cannot tell, e.g. ZYXC")
    p.add_argument("--dataset", help="dataset path inside HDF5 / Zarr inputs")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16) on CUDA")
    p.add_argument("--workflow", choices=sorted(PROBLEM_TYPES),
                   help="the workflow the configuration must run (checked against PROBLEM.TYPE)")


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="the z ranges that split one volume across N jobs")
    p.add_argument("--image", type=Path, required=True, help="the 3D volume")
    p.add_argument("--jobs", type=int, required=True, help="number of jobs")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: ranges.tsv and ranges/<stem>.jobNNN.txt (START:END)")
    p.add_argument("--config", type=Path,
                   help="BiaPy YAML: split points on its tile step along z")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--axes", help="axes of the stored volume when metadata cannot tell")
    p.add_argument("--dataset", help="dataset path inside HDF5 / Zarr inputs")
    p = sub.add_parser("merge", help="stitch the slabs of run --z-range, decode and score")
    p.add_argument("--slabs", type=Path, nargs="+", required=True,
                   help="slab files (or folders of them) written by run --z-range")
    p.add_argument("--config", type=Path, required=True, help="the run jobs' BiaPy YAML")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--gt", type=Path, nargs="+", default=[], help="ground truth of the volume")
    p.add_argument("--image", type=Path, help="the input volume (drawn in the report)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--axes", help="axes of the stored volume when metadata cannot tell")
    p.add_argument("--dataset", help="dataset path inside HDF5 / Zarr inputs")
    p.add_argument("--memory-budget", metavar="SIZE",
                   help="decode by chunks when the volume's results exceed it (as run's option)")
    p.add_argument(
        "--report", action=argparse.BooleanOptionalAction, default=True,
        help="write report/index.html (needs --image; default: on)",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report", action=argparse.BooleanOptionalAction, default=True,
        help="write report/index.html with previews and charts (default: on)",
    )
    p.add_argument(
        "--gt-extra", choices=("error", "ignore"), default="error",
        help="ground truth that pairs with no image: an error (default) or listed in the log "
        "and ignored (a Galaxy job mapped over a collection sees every GT)",
    )


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score existing predictions against ground truth")
    p.add_argument("--workflow", choices=sorted(PROBLEM_TYPES), required=True)
    p.add_argument(
        "--pred", type=Path, nargs="+", action="append", required=True,
        help="predictions; repeat (each after its --pred-name) to compare several sets",
    )
    p.add_argument(
        "--pred-name", action="append", default=[], metavar="NAME",
        help="name of the next --pred set in the report and the comparison table",
    )
    p.add_argument("--gt", type=Path, nargs="+", required=True, help="ground truth, by stem")
    p.add_argument("--images", type=Path, nargs="+", default=[],
                   help="the input images, drawn under the predictions in the report")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--config", type=Path, help="BiaPy YAML with the metric settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--axes", help="axes of the stored predictions, e.g. ZYX")
    _add_common(p)


def _add_galaxy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("galaxy-stage", help="(Galaxy tool) link datasets named by identifier")
    p.add_argument("--manifest", type=Path, required=True, help="identifier, path, ext per line")
    p.add_argument("--into", type=Path, required=True, help="folder for the links")
    p.add_argument("--group", help="only the manifest lines of this group (4th column)")
    p = sub.add_parser("galaxy-collect", help="(Galaxy tool) gather outputs for collections")
    p.add_argument("--manifest", type=Path, required=True, help="the images' manifest")
    p.add_argument("--out", type=Path, required=True, help="the run's output folder")
    p.add_argument("--into", type=Path, required=True, help="folder of the collections")
    p.add_argument("--group", help="only the manifest lines of this group (4th column)")
    p.add_argument("--wanted", help="comma-separated collections to gather (default: all)")
    p = sub.add_parser("galaxy-train-config", help="(Galaxy tool) the train mode's configuration")
    p.add_argument("--form", type=Path, required=True, help="the form's answers (JSON)")
    p.add_argument("--config", type=Path, help="the user's BiaPy YAML (default: BiaPy's defaults)")
    p.add_argument("--out", type=Path, required=True, help="the configuration to write")


def build_parser() -> argparse.ArgumentParser:
    """The ``biapy-runner`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="biapy-runner",
        description="Run BiaPy workflows with BioImage.IO models on microscopy images.",
    )
    parser.add_argument("--version", action="version", version=f"biapy-runner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_split(sub)
    make_config.add_arguments(
        sub.add_parser("make-config", help="write a BiaPy configuration from plain options")
    )
    _add_galaxy(sub)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "make-config":
        return make_config.run(args)
    if args.command.startswith("galaxy-"):
        from biapy_runner import galaxy

        if args.command == "galaxy-train-config":
            galaxy.write_train_config(args.form, args.config, args.out)
            return 0
        entries = galaxy.read_manifest(args.manifest, getattr(args, "group", None))
        if args.command == "galaxy-stage":
            print("\n".join(str(p) for p in galaxy.stage(entries, args.into)))
        else:
            wanted = None if args.wanted is None else set(args.wanted.split(","))
            galaxy.collect(entries, args.out, args.into, wanted)
        return 0
    from biapy_runner import pipeline  # imports torch: only for the commands that need it

    if args.command == "train":
        from biapy_runner import training

        training.run_train(training.TrainOptions(
            config=args.config, out=args.out, images=args.images, gt=args.gt,
            overrides=args.overrides, device=args.device, threads=args.threads, axes=args.axes,
            dataset=args.dataset, amp=args.amp, report=args.report, gt_extra=args.gt_extra,
            workflow=PROBLEM_TYPES[args.workflow] if args.workflow else None,
            train_images=args.train_images, train_gt=args.train_gt, val_images=args.val_images,
            val_gt=args.val_gt, name=args.name,
        ))
        return 0
    if args.command == "run":
        opts = pipeline.RunOptions(
            config=args.config, out=args.out, images=args.images, gt=args.gt, model=args.model,
            overrides=args.overrides, device=args.device, threads=args.threads, axes=args.axes,
            dataset=args.dataset, cache_dir=args.cache_dir, batch_size=args.batch_size,
            amp=args.amp, backend=args.backend, memory_budget=args.memory_budget,
            report=args.report, gt_extra=args.gt_extra,
            workflow=PROBLEM_TYPES[args.workflow] if args.workflow else None,
            z_range=_z_range(args.z_range),
        )
        pipeline.run(opts)
    elif args.command in ("split", "merge"):
        from biapy_runner import split

        if args.command == "split":
            split.split(args.image, args.jobs, args.out, args.config, tuple(args.overrides),
                        args.axes, args.dataset)  # fmt: skip
        else:
            split.merge(
                _slab_files(args.slabs), args.out, args.config, tuple(args.overrides), args.gt,
                args.image, args.axes, args.dataset, args.report, args.memory_budget,
            )  # fmt: skip
    else:
        pipeline.evaluate(
            PROBLEM_TYPES[args.workflow], prediction_sets(args.pred, args.pred_name), args.gt,
            args.out, config=args.config, overrides=args.overrides, axes=args.axes,
            images=args.images, report=args.report, gt_extra=args.gt_extra,
        )
    return 0


def _z_range(value: str | None) -> str | None:
    """``--z-range``: START:END, or a file holding it (a Galaxy job gets one of split's files)."""
    if value is None or ":" in value:
        return value
    path = Path(value)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return value  # parse_z_range names the bad value


def _slab_files(paths: list[Path]) -> list[Path]:
    """``--slabs``: files, or folders whose TIFF files are slabs (a run's output folder)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.tif") if not p.name.startswith("."))
        else:
            files.append(path)
    return files


def _stop(signum: int, frame: FrameType | None) -> None:
    """Turn a stop signal into ``Stopped``; later ones are ignored so that cleanup finishes."""
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Raise ``Stopped`` on SIGINT, SIGTERM and SIGHUP while the command runs (main thread
    only); the previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def prediction_sets(preds: list[list[Path]], names: list[str]) -> list[Any]:
    """``evaluate``'s prediction sets: each ``--pred`` group with its ``--pred-name`` (names
    given for every group, or none for a single group)."""
    from biapy_runner.errors import InputError
    from biapy_runner.pipeline import PredictionSet

    if not names and len(preds) > 1:
        files = [p for group in preds for p in group]
        return [PredictionSet(files)]
    if names and len(names) != len(preds):
        raise InputError(
            f"{len(names)} --pred-name for {len(preds)} --pred set(s): name every set "
            "(--pred-name swan --pred a.tif --pred-name buffalo --pred b.tif)."
        )
    return [PredictionSet(list(group), name) for group, name in zip(preds, names or [""])]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 input/config, 3 model, 1 other, 128 + signal
    when stopped by SIGINT, SIGTERM or SIGHUP)."""
    args = build_parser().parse_args(argv)
    try:
        with _stop_on_signals():
            return _dispatch(args)
    except RunnerError as error:
        print(f"ERROR: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except (Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        log.warn(f"stopped by {signal.Signals(signum).name}")
        return 128 + signum
    except Exception:  # noqa: BLE001  (internal error: keep the traceback for the report)
        traceback.print_exc()
        print("ERROR: internal error in biapy-runner (traceback above); please report it.",
              file=sys.stderr)
        return 1


def entry() -> None:
    """The console script: :func:`main` with a scratch folder of its own for every temporary
    file (its own and those of the libraries, e.g. the imported architecture files and the
    covers bioimageio.spec draws for packages without one), removed at the end; then an
    immediate exit once everything is written and flushed, skipping the interpreter's teardown
    of torch and the other runtimes (about a second on a quiet machine, several on a loaded
    one), which would otherwise be what deletes temporary folders."""
    tempfile.tempdir = tempfile.mkdtemp(prefix="biapy-runner-")
    try:
        code = main()
    finally:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

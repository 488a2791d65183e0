"""``biapy-runner make-config``: a BiaPy YAML built from the plain options of the Galaxy wizard.

The options mirror the questions of the tool's guided mode: dimensionality, workflow, model,
typical object size (which chooses the patch size), channels and the decoding settings users
actually tune per workflow. The written file is an ordinary BiaPy 3.x configuration for inference
(training keys are left at BiaPy's defaults, which do not train): it runs with
``biapy-runner run --config`` and can be edited and re-used in the Galaxy tool's
configuration-file mode.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import yaml

from biapy_runner import log
from biapy_runner.config.convert import convert
from biapy_runner.config.schema import (
    GUIDED_INSTANCE_CHANNELS,
    GUIDED_LEGACY_CHANNELS,
    LEGACY_THRESHOLD_DEFAULTS,
)
from biapy_runner.errors import InputError

#: Wizard workflow names and the PROBLEM.TYPE they stand for.
PROBLEM_TYPES = {
    "semantic": "SEMANTIC_SEG",
    "instance": "INSTANCE_SEG",
    "detection": "DETECTION",
    "denoising": "DENOISING",
    "super-resolution": "SUPER_RESOLUTION",
    "self-supervised": "SELF_SUPERVISED",
    "classification": "CLASSIFICATION",
    "image-to-image": "IMAGE_TO_IMAGE",
}

#: Instance channel sets the guided mode offers (the Galaxy form's choices; schema's vocabulary):
#: BiaPy 3.7's sets, written ``F,C,M`` (each with the process that decodes it), then the older
#: strings (``BC``, ``BCM``, ...).
INSTANCE_CHANNELS = tuple(dict.fromkeys((
    *(",".join(channels) for channels, _ in GUIDED_INSTANCE_CHANNELS), *GUIDED_LEGACY_CHANNELS
)))

#: Patch edge (pixels) when no object size is given: 2D / 3D.
DEFAULT_PATCH = {2: 256, 3: 64}
#: Smallest and largest patch edge the wizard chooses from an object size.
PATCH_RANGE = (32, 512)
#: Patch edge relative to the typical object size.
OBJECT_TO_PATCH = 4
#: Classification models see whole images of this size.
CLASSIFICATION_PATCH = 224


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the wizard's options to ``parser`` (the ``make-config`` subcommand)."""
    parser.add_argument("--out", type=Path, required=True, help="YAML file to write")
    parser.add_argument("--ndim", choices=("2D", "3D", "2D-stack"), default="2D",
                        help="2D images, 3D volumes, or 2D slices processed as one stack")
    parser.add_argument("--workflow", choices=sorted(PROBLEM_TYPES), required=True)
    parser.add_argument("--model", help="BioImage.IO model id, DOI, URL or package path")
    parser.add_argument("--object-size", type=int, metavar="PIXELS",
                        help="typical object diameter; the patch is a power of two >= 4x it")
    parser.add_argument("--slices", type=int, help="number of slices of the 3D images")
    parser.add_argument("--channels", type=int, default=1, help="channels of the images")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation")

    inst = parser.add_argument_group("instance segmentation")
    inst.add_argument("--instance-channels", choices=INSTANCE_CHANNELS, default="BC",
                      help="channels the model predicts, in its output order: BiaPy 3.7's "
                      "F,C / F,C,M / Db,R (StarDist) / F,Gv,Gh (Cellpose flows) / A "
                      "(affinities) ... or an older string (BC, BCM, ...)")
    inst.add_argument("--threshold-mode", choices=("auto", "manual"), default="auto",
                      help="seed thresholds by Otsu (auto) or the values below (manual)")
    th = LEGACY_THRESHOLD_DEFAULTS
    inst.add_argument("--th-binary", type=float, default=th["DATA_MW_TH_BINARY_MASK"],
                      help="seed threshold on B")
    inst.add_argument("--th-contour", type=float, default=th["DATA_MW_TH_CONTOUR"],
                      help="seed threshold on C")
    inst.add_argument("--th-foreground", type=float, default=th["DATA_MW_TH_FOREGROUND"],
                      help="foreground threshold limiting the growth of seeds")
    inst.add_argument("--th-distance", type=float, default=th["DATA_MW_TH_DISTANCE"],
                      help="seed threshold on D")
    inst.add_argument("--voronoi", action="store_true",
                      help="grow instances with Voronoi inside the foreground mask")
    inst.add_argument("--min-size", type=int, default=0,
                      help="remove objects smaller than this many pixels (0 keeps all)")
    inst.add_argument("--clear-border", action="store_true",
                      help="remove objects touching the image border")

    det = parser.add_argument_group("detection")
    det.add_argument("--peak-threshold", type=float, default=0.2,
                     help="minimum probability of a peak to be a detection")
    det.add_argument("--min-distance", type=int, default=1,
                     help="minimum distance between peaks (pixels)")
    det.add_argument("--tolerance", type=float, default=10,
                     help="maximum distance to a GT point to count as a match (pixels)")


def run(args: argparse.Namespace) -> int:
    """Write the YAML built from ``args`` to ``args.out``; returns the exit code (0)."""
    config = build_config(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_yaml(config), encoding="utf-8")
    log.info(f"make-config: wrote {args.out} ({PROBLEM_TYPES[args.workflow]} {args.ndim})")
    return 0


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The nested BiaPy configuration for the wizard options ``args``."""
    _check(args)
    spatial = 3 if args.ndim == "3D" else 2
    patch = patch_size(spatial, args.object_size, args.slices, args.workflow)
    config: dict[str, Any] = {
        "PROBLEM": {"TYPE": PROBLEM_TYPES[args.workflow], "NDIM": "3D" if spatial == 3 else "2D"},
        "DATA": {
            "PATCH_SIZE": _tuple((*patch, args.channels)),
            "TEST": {"PADDING": _tuple(tuple(p // 8 for p in patch))},
        },
        "MODEL": {"SOURCE": "bmz"},
        "TEST": {"ENABLE": True, "AUGMENTATION": bool(args.tta)},
    }
    if args.model:
        config["MODEL"]["BMZ"] = {"SOURCE_MODEL_ID": args.model}
    if args.ndim == "2D-stack":
        config["TEST"]["ANALIZE_2D_IMGS_AS_3D_STACK"] = True
    _merge(config, WORKFLOW_SETTINGS.get(args.workflow, _no_settings)(args))
    converted, _ = convert(config)  # the answers use BiaPy 3.6's words; write 3.7.1's keys
    return converted


def to_yaml(config: dict[str, Any]) -> str:
    """The configuration as BiaPy-style YAML text, with a header saying where it came from."""
    from biapy_runner import __version__

    header = (
        f"# BiaPy configuration written by biapy-runner {__version__} make-config.\n"
        "# Edit it if needed, then run it with `biapy-runner run --config <this file>`, or give\n"
        "# it to the Galaxy BiaPy tool's configuration-file mode, or to BiaPy itself.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def patch_size(spatial: int, object_size: int | None, slices: int | None,
               workflow: str) -> tuple[int, ...]:
    """Patch shape (z, y, x) or (y, x): a power of two >= 4x the object size, within limits.

    In 3D the z edge is at most the number of slices (the largest power of two not above it).
    Classification models see whole images: a fixed 224 edge.
    """
    if workflow == "classification":
        return (CLASSIFICATION_PATCH,) * spatial
    if object_size:
        edge = 2 ** math.ceil(math.log2(OBJECT_TO_PATCH * object_size))
        edge = min(max(edge, PATCH_RANGE[0]), PATCH_RANGE[1])
    else:
        edge = DEFAULT_PATCH[spatial]
    if spatial == 2:
        return (edge, edge)
    depth = edge if not slices else min(edge, 2 ** int(math.log2(slices)))
    return (depth, edge, edge)


def _check(args: argparse.Namespace) -> None:
    """Reject values no configuration can hold, naming the option."""
    checks = [
        ("--object-size", args.object_size, args.object_size is None or args.object_size > 0),
        ("--slices", args.slices, args.slices is None or args.slices > 0),
        ("--channels", args.channels, args.channels > 0),
        ("--min-size", args.min_size, args.min_size >= 0),
        ("--min-distance", args.min_distance, args.min_distance >= 1),
        ("--tolerance", args.tolerance, args.tolerance > 0),
    ]
    for name in ("th_binary", "th_contour", "th_foreground", "peak_threshold"):
        value = getattr(args, name)
        checks.append((f"--{name.replace('_', '-')}", value, 0.0 <= value <= 1.0))
    for option, value, ok in checks:
        if not ok:
            raise InputError(
                f"make-config: {option} is {value}, which is out of range. Give a positive size "
                "or count, and thresholds between 0 and 1."
            )
    if args.slices and args.ndim != "3D":
        log.warn("make-config: --slices only matters for 3D images; ignored")


def _instance_channels(value: str) -> tuple[Any, str]:
    """DATA_CHANNELS (a list for BiaPy 3.7's sets, the string for older ones) and the process."""
    for channels, process in GUIDED_INSTANCE_CHANNELS:
        if value == ",".join(channels):
            return list(channels), process
    return value, "watershed"


def _instance(args: argparse.Namespace) -> dict[str, Any]:
    channels, process = _instance_channels(args.instance_channels)
    seg: dict[str, Any] = {
        "DATA_CHANNELS": channels,
        "INSTANCE_CREATION_PROCESS": process,
        "DATA_MW_TH_TYPE": args.threshold_mode,
        "DATA_REMOVE_SMALL_OBJ_BEFORE": args.min_size,
        # the switch without which BiaPy ignores the size (seeds smaller than it are removed
        # before the watershed, so no object smaller than it is grown)
        "DATA_REMOVE_BEFORE_MW": args.min_size > 0,
    }
    if isinstance(channels, list) and args.threshold_mode == "manual":
        log.warn("make-config: manual thresholds apply to the older channel strings; "
                 f"{args.instance_channels} uses BiaPy's automatic (Otsu) thresholds")
    if args.threshold_mode == "manual" and not isinstance(channels, list):
        seg.update({
            "DATA_MW_TH_BINARY_MASK": args.th_binary,
            "DATA_MW_TH_CONTOUR": args.th_contour,
            "DATA_MW_TH_FOREGROUND": args.th_foreground,
            "DATA_MW_TH_DISTANCE": args.th_distance,
        })
    return {
        "PROBLEM": {"INSTANCE_SEG": seg},
        "TEST": {"POST_PROCESSING": {
            "VORONOI_ON_MASK": bool(args.voronoi),
            "CLEAR_BORDER": bool(args.clear_border),
        }},
    }


def _detection(args: argparse.Namespace) -> dict[str, Any]:
    return {"TEST": {
        "DET_MIN_TH_TO_BE_PEAK": args.peak_threshold,
        "DET_PEAK_LOCAL_MAX_MIN_DISTANCE": args.min_distance,
        "DET_TOLERANCE": args.tolerance,
    }}


def _no_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {}


WORKFLOW_SETTINGS = {"instance": _instance, "detection": _detection}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge the nested dict ``extra`` into ``base`` in place."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _tuple(values: tuple[int, ...]) -> str:
    """A tuple written as BiaPy writes it in YAML: ``"(256, 256, 1)"``."""
    return "(" + ", ".join(str(v) for v in values) + ")"

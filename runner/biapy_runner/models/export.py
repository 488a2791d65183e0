"""Export a trained network as a BioImage.IO model package (format 0.5, bioimageio.spec 0.5.12).

The package holds the network as ``pytorch_state_dict`` weights with its architecture source
(self-contained, rebuilt from the file with its kwargs: what BiaPy and bioimageio.core load) and
as TorchScript (traced, checked on a second input size), a test input (a crop of a training
image, as read) and the matching test output, a cover image, documentation, and the
``MODEL.BMZ.EXPORT.*`` metadata (:mod:`.export_settings`). The input preprocessing is
``DATA.NORMALIZATION`` (as BiaPy exports it); the activations of the output channels are applied
inside the network (BiaPy's ``explicit_activations: true``), so the package's outputs are
probabilities and distances like BiaPy's. Instance models name their output channels (F, C, ...)
and end their description with BiaPy's ``Instance segmentation representation: F + C`` line.

Before the zip is published (written beside its final name, then renamed) it is loaded back with
bioimageio.core and each weight format must reproduce the test output; a package that does not
is never published.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError, ModelError, real_cause
from biapy_runner.io.atomic import temporary_sibling
from biapy_runner.log import info, warn
from biapy_runner.models.backends.pytorch_state_dict import import_architecture
from biapy_runner.models.description import SPATIAL_ORDER
from biapy_runner.models.export_docs import write_cover, write_documentation
from biapy_runner.models.export_settings import (
    KEY,
    ExportSettings,
    export_settings,
    with_representation,
)
from biapy_runner.models.trainable import package_kwargs

Architecture = tuple[Path, str, dict[str, Any]]
#: tolerance of the check that every weight format reproduces the test output
TOLERANCE = 1e-4
INPUT_ID, OUTPUT_ID = "input0", "output0"


def shipped_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The kwargs a package ships: BiaPy's ``explicit_activations`` and ``return_one_tensor``
    on (the network applies its output activations itself), as BiaPy exports them."""
    return package_kwargs(dict(kwargs), training=False)


def rebuild(architecture: Architecture, state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The network built from the architecture file with ``shipped_kwargs`` and ``state_dict``
    (strict), on CPU in eval mode: what a consumer of the package gets."""
    path, callable_name, kwargs = architecture
    try:
        build = getattr(import_architecture(path.read_bytes(), path.name), callable_name)
    except ImportError as err:
        raise ModelError(
            f"Cannot import the architecture file {path} ({real_cause(err)})."
        ) from err
    except AttributeError:
        raise ModelError(f"The architecture file {path} defines no {callable_name!r}.") from None
    net = build(**shipped_kwargs(kwargs))
    try:
        net.load_state_dict({k: v.detach().cpu() for k, v in state_dict.items()}, strict=True)
    except RuntimeError as err:
        raise ModelError(
            f"The trained weights do not fit the architecture {callable_name} of {path.name} "
            f"({real_cause(err)})."
        ) from err
    return net.eval()


# -- test tensors -----------------------------------------------------------------------------


def patch_shape(cfg: Config) -> tuple[int, ...]:
    """DATA.PATCH_SIZE without its channel: the spatial size of the test input."""
    ndim = 3 if str(cfg.get("PROBLEM.NDIM")) == "3D" else 2
    return tuple(int(s) for s in tuple(cfg.get("DATA.PATCH_SIZE"))[:ndim])


def test_input(sample: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """The test input ``(1, C, *patch)`` float32: the centre of ``sample`` ``(C, *spatial)``,
    padded by reflection (edge values for tiny images) where it is smaller than the patch."""
    arr = np.asarray(sample, dtype=np.float32)
    if arr.ndim != len(patch) + 1:
        raise ModelError(
            f"The sample for the test input has shape {arr.shape}; a channel-first image with "
            f"{len(patch)} spatial axes was expected."
        )
    slices = [slice(None)]
    for size, want in zip(arr.shape[1:], patch):
        start = max(0, (size - want) // 2)
        slices.append(slice(start, start + want))
    arr = arr[tuple(slices)]
    pad = [(0, 0)] + [(0, want - size) for size, want in zip(arr.shape[1:], patch)]
    if any(after for _, after in pad):
        mode = "reflect" if all(s > p for s, (_, p) in zip(arr.shape, pad)) else "edge"
        arr = np.pad(arr, pad, mode=mode)
    return np.ascontiguousarray(arr[None])


# -- preprocessing ----------------------------------------------------------------------------


def _single_value(cfg: Config, key: str) -> float | None:
    """A fixed normalisation value (-1: unset); one value for every channel, as the rdf's
    clip takes one."""
    raw = cfg.get(key)
    values = [float(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
    if not values or any(v == -1 for v in values):
        return None
    if len(set(values)) > 1:
        raise ConfigError(
            f"{key} is {raw!r}: a BioImage.IO clip takes one value for all channels; give one "
            "value to export the model."
        )
    return values[0]


def _clip(cfg: Config, spatial: Sequence[str]) -> list[dict[str, Any]]:
    norm = "DATA.NORMALIZATION.PERC_CLIP"
    if not cfg.get(f"{norm}.ENABLE"):
        return []
    low, high = (_single_value(cfg, f"{norm}.{k}") for k in ("LOWER_VALUE", "UPPER_VALUE"))
    if low is not None and high is not None:
        return [{"id": "clip", "kwargs": {"min": low, "max": high}}]
    low_p, high_p = (_single_value(cfg, f"{norm}.{k}") for k in ("LOWER_PERC", "UPPER_PERC"))
    if low_p is None or high_p is None:
        raise ConfigError(f"{norm} is enabled without LOWER_PERC/UPPER_PERC or values.")
    # per channel, over the spatial axes (BiaPy and the runner clip channel by channel)
    axes = list(spatial)
    return [{"id": "clip", "kwargs": {"min_percentile": low_p, "max_percentile": high_p,
                                      "axes": axes}}]


def preprocessing(cfg: Config, x: np.ndarray, spatial: Sequence[str]) -> list[dict[str, Any]]:
    """The rdf preprocessing that does what ``DATA.NORMALIZATION`` does in training (per
    channel over the spatial axes), as BiaPy exports it: ``clip`` for PERC_CLIP,
    ``scale_linear`` for ``div`` (1/255, or 1/65535 when the test input ``x`` exceeds 255),
    ``scale_range`` (0-100 %), ``zero_mean_unit_variance`` or, with MEAN_VAL/STD_VAL set,
    ``fixed_zero_mean_unit_variance``."""
    steps = _clip(cfg, spatial)
    kind = str(cfg.get("DATA.NORMALIZATION.TYPE"))
    axes = list(spatial)
    if kind == "div":
        gain = 1.0 / (65535.0 if float(x.max()) > 255 else 255.0)
        steps.append({"id": "scale_linear", "kwargs": {"gain": gain, "offset": 0.0}})
    elif kind == "scale_range":
        steps.append({"id": "scale_range",
                      "kwargs": {"axes": axes, "min_percentile": 0.0, "max_percentile": 100.0}})
    elif kind in ("zero_mean_unit_variance", "custom"):
        zmuv = "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR"
        means, stds = (cfg.get(f"{zmuv}.{k}") for k in ("MEAN_VAL", "STD_VAL"))
        means = [float(v) for v in (means if isinstance(means, (list, tuple)) else [means])]
        stds = [float(v) for v in (stds if isinstance(stds, (list, tuple)) else [stds])]
        if -1 in means or -1 in stds:
            steps.append({"id": "zero_mean_unit_variance", "kwargs": {"axes": axes}})
        elif len(means) == 1 and len(stds) == 1:
            steps.append({"id": "fixed_zero_mean_unit_variance",
                          "kwargs": {"mean": means[0], "std": stds[0]}})
        else:
            steps.append({"id": "fixed_zero_mean_unit_variance",
                          "kwargs": {"mean": means, "std": stds, "axis": "channel"}})
    else:
        raise ConfigError(f"DATA.NORMALIZATION.TYPE {kind!r} cannot be exported to BioImage.IO.")
    return steps


def _processing(entries: Sequence[Any], *, pre: bool) -> list[Any]:
    """Spec processing descriptions from dicts (descriptions pass through)."""
    from bioimageio.spec.model import v0_5
    from pydantic import TypeAdapter

    adapter = TypeAdapter(v0_5.PreprocessingDescr if pre else v0_5.PostprocessingDescr)
    return [e if not isinstance(e, dict) else adapter.validate_python(e) for e in entries]


# -- geometry ---------------------------------------------------------------------------------


def _forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        y = net(x)
    if isinstance(y, Mapping):
        y = y["pred"]
    if isinstance(y, (list, tuple)):
        y = y[0]
    return y


def size_steps(net: torch.nn.Module, x: torch.Tensor, scale: Sequence[float]) -> tuple[int, ...]:
    """Per spatial axis, the smallest step (1, 2, 4, ... 64) by which the input may grow and
    give an output ``scale`` times as large; 0 (a fixed size) when none does. Shapes only: the
    probes run on a copy of ``net`` on torch's ``meta`` device (no computation)."""
    meta = copy.deepcopy(net).to("meta")
    steps = []
    for axis in range(2, x.dim()):
        found = 0
        for step in (1, 2, 4, 8, 16, 32, 64):
            shape = list(x.shape)
            shape[axis] += step
            try:
                y = _forward(meta, torch.empty(shape, device="meta"))
            except (RuntimeError, ValueError, IndexError):
                continue
            if tuple(y.shape[2:]) == tuple(round(s * f) for s, f in zip(shape[2:], scale)):
                found = step
                break
        steps.append(found)
    return tuple(steps)


def halos(
    cfg: Config, out_spatial: Sequence[int], scale: Sequence[float], steps: Sequence[int]
) -> tuple[int, ...]:
    """Output pixels a consumer discards at tile borders, per spatial axis: DATA.TEST.PADDING
    (input pixels) when set, else BiaPy's rule (an eighth of the output size, even). Consumers
    pad the input by the halo, so twice the halo (in input pixels) is kept a multiple of the
    input step (no halo for a fixed input size); less than half the output size."""
    padding = tuple(int(p) for p in tuple(cfg.get("DATA.TEST.PADDING")))
    out = []
    for i, (size, factor, step) in enumerate(zip(out_spatial, scale, steps)):
        pad = padding[i] if i < len(padding) else 0
        halo_in = pad if any(padding) else int(size / factor) // 8
        half_step = max(1, step // 2) if step else 0
        halo_in = halo_in - halo_in % half_step if half_step else 0
        halo_in = min(halo_in, int((size / factor - 1) // 2))
        out.append(round(halo_in * factor))
    return tuple(out)


# -- the description ---------------------------------------------------------------------------


def _author(entry: Mapping[str, str], cls: Any) -> Any:
    return cls(**{k: v for k, v in entry.items()})


def _describe(
    settings: ExportSettings,
    work: Path,
    *,
    spatial: Sequence[str],
    in_channels: int,
    out_names: Sequence[str] | None,
    out_channels: int,
    min_size: Sequence[int],
    steps: Sequence[int],
    out_geometry: tuple[Sequence[int], Sequence[float]] | None,
    pre: Sequence[Any],
    post: Sequence[Any],
    architecture: tuple[str, str, dict[str, Any]],
    torchscript: bool,
    attachments: Sequence[str],
) -> Any:
    """The v0_5 model description of the files in ``work`` (relative names)."""
    from bioimageio.spec.model import v0_5

    def sized(size: int, step: int) -> Any:
        return v0_5.ParameterizedSize(min=size, step=step) if step else size

    in_axes = [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(
            channel_names=[v0_5.Identifier(f"channel{c}") for c in range(in_channels)]
        ),
    ] + [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=sized(s, st))
         for a, s, st in zip(spatial, min_size, steps)]
    names = list(out_names) if out_names else [f"channel{c}" for c in range(out_channels)]
    out_axes: list[Any] = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=names)]
    if out_geometry is not None:
        halo, scale = out_geometry
        for a, h, f in zip(spatial, halo, scale):
            ref = v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(a))
            if h:
                out_axes.append(v0_5.SpaceOutputAxisWithHalo(
                    id=v0_5.AxisId(a), size=ref, halo=int(h), scale=1.0 / f))
            else:
                out_axes.append(v0_5.SpaceOutputAxis(id=v0_5.AxisId(a), size=ref, scale=1.0 / f))
    arch_file, callable_name, kwargs = architecture
    torch_version = v0_5.Version(torch.__version__.split("+")[0])
    weights = {
        "pytorch_state_dict": v0_5.PytorchStateDictWeightsDescr(
            source=work / "weights.pt",
            architecture=v0_5.ArchitectureFromFileDescr(
                source=work / arch_file, callable=v0_5.Identifier(callable_name), kwargs=kwargs
            ),
            pytorch_version=torch_version,
        )
    }
    if torchscript:
        weights["torchscript"] = v0_5.TorchscriptWeightsDescr(
            source=work / "weights_torchscript.pt", pytorch_version=torch_version,
            parent="pytorch_state_dict",
        )
    authors = [_author(a, v0_5.Author) for a in settings.authors]
    maintainers = [_author(a, v0_5.Maintainer) for a in settings.authors if "github_user" in a]
    cite = [v0_5.CiteEntry(**{k: (v0_5.Doi(v) if k == "doi" else v) for k, v in c.items()})
            for c in settings.cite]
    dataset_id = settings.dataset.get("dataset_id")
    return v0_5.ModelDescr(
        name=settings.name,
        description=settings.description,
        authors=authors,
        maintainers=maintainers,
        cite=cite,
        license=v0_5.LicenseId(settings.license),
        documentation=v0_5.FileDescr(source=work / "README.md"),
        covers=[v0_5.FileDescr(source=work / "cover.png")],
        tags=settings.tags,
        version=v0_5.Version(settings.version),
        training_data=v0_5.LinkedDataset(id=v0_5.DatasetId(dataset_id)) if dataset_id else None,
        attachments=[v0_5.FileDescr(source=work / a) for a in attachments],
        inputs=[v0_5.InputTensorDescr(
            id=v0_5.TensorId(INPUT_ID), axes=in_axes,
            test_tensor=v0_5.FileDescr(source=work / "test_input.npy"),
            data=v0_5.IntervalOrRatioDataDescr(type="float32"), preprocessing=list(pre),
        )],
        outputs=[v0_5.OutputTensorDescr(
            id=v0_5.TensorId(OUTPUT_ID), axes=out_axes,
            test_tensor=v0_5.FileDescr(source=work / "test_output.npy"),
            data=v0_5.IntervalOrRatioDataDescr(type="float32"), postprocessing=list(post),
        )],
        weights=v0_5.WeightsDescr(**weights),
    )


def _torchscript(net: torch.nn.Module, x: torch.Tensor, other: torch.Tensor | None,
                 path: Path) -> bool:
    """Trace ``net`` on ``x`` and save it at ``path`` if the trace also reproduces ``net`` on
    ``other`` (another valid input size); False (and a warning) when it does not."""
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(net, x, check_trace=False, strict=False)
            for probe in (x,) if other is None else (x, other):
                diff = (_forward(traced, probe) - _forward(net, probe)).abs().max().item()
                if diff > TOLERANCE:
                    raise ValueError(
                        f"the trace differs by {diff:.2g} on shape {tuple(probe.shape)}"
                    )
        except Exception as err:  # noqa: BLE001 - a network that cannot be traced: warn, skip
            warn(f"BioImage.IO export: no TorchScript weights ({real_cause(err)})")
            return False
    traced.save(str(path))
    return True


def predict_test_input(descr: Any, weight_format: str) -> np.ndarray:
    """The output bioimageio.core's ``test_model`` computes for the package's test input with
    ``weight_format`` (pre/postprocessing, no halo padding or cropping), with its batch axis."""
    from bioimageio.core import create_prediction_pipeline
    from bioimageio.core.digest_spec import get_test_input_sample

    with create_prediction_pipeline(descr, weight_format=weight_format, devices=["cpu"]) as pipe:
        out = pipe.predict_sample_without_blocking(
            get_test_input_sample(descr), skip_input_padding=True, skip_output_cropping=True
        )
    return np.asarray(out.members[descr.outputs[0].id].data, dtype=np.float32)


def check_package(path: Path, expected: np.ndarray) -> list[str]:
    """Load the package at ``path`` with bioimageio and run its test input through each weight
    format; returns the formats checked. ModelError when one does not reproduce ``expected``."""
    from bioimageio.spec import InvalidDescr, load_description

    descr = load_description(path, format_version="discover")
    if isinstance(descr, InvalidDescr):
        raise ModelError(f"The exported package {path.name} does not validate: "
                         f"{descr.validation_summary.format()}")
    formats = [f for f in ("pytorch_state_dict", "torchscript") if getattr(descr.weights, f)]
    for fmt in formats:
        diff = float(np.abs(predict_test_input(descr, fmt) - expected).max())
        if diff > TOLERANCE:
            raise ModelError(
                f"The exported package {path.name}: its {fmt} weights give outputs that differ "
                f"from the trained network's by {diff:.3g} on the test input."
            )
    return formats


def _publish(descr: Any, out_path: Path) -> Path:
    """Save the package zip next to ``out_path`` and rename it into place."""
    from bioimageio.spec import save_bioimageio_package

    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_sibling(out_path, ".partial.zip")
    try:
        save_bioimageio_package(descr, output_path=partial)
    except Exception as err:
        partial.unlink(missing_ok=True)
        raise ModelError(f"Cannot write the BioImage.IO package: {real_cause(err)}.") from err
    return partial


def export_model(
    cfg: Config,
    model: torch.nn.Module,
    sample: np.ndarray,
    out_path: Path,
    *,
    architecture: Architecture | None = None,
    channels: Sequence[tuple[str, str]] | None = None,
    attachments: Sequence[Path] = (),
    training: Mapping[str, Any] | None = None,
    postprocessing: Sequence[Any] = (),
) -> Path:
    """Write the BioImage.IO package (zip) of the trained ``model`` at ``out_path``.

    Parameters
    ----------
    cfg : the configuration the model was trained with (PROBLEM.*, DATA.PATCH_SIZE,
        DATA.NORMALIZATION, MODEL.ARCHITECTURE, MODEL.BMZ.EXPORT.*)
    model : the trained network (BiaPy's module: pre-activation outputs); its state dict is
        exported, the module itself is not changed
    sample : a training image as read, channel first ``(C, *spatial)``: its centre (padded to
        DATA.PATCH_SIZE) is the package's test input
    out_path : the zip to write (replaced atomically)
    architecture : ``(source file, class name, kwargs)`` of ``model`` (default:
        :func:`~biapy_runner.models.architectures.architecture_source` of ``cfg``)
    channels : ``(name, activation)`` per output channel (default:
        :func:`~biapy_runner.models.architectures.output_channels` of ``cfg``)
    attachments : files shipped with the package (e.g. the configuration, ``train_log.tsv``)
    training : facts about the training for the documentation (``{"epochs": 20, ...}``)
    postprocessing : the output's rdf postprocessing (spec descriptions; none for BiaPy's
        networks, which apply their activations themselves; a fine-tuned package keeps its own)

    Returns
    -------
    Path
        ``out_path``. ConfigError (exit 2) for bad MODEL.BMZ.EXPORT keys, ModelError (exit 3)
        when the package cannot be built or does not reproduce the network.
    """
    if architecture is None or channels is None:
        from biapy_runner.models.architectures import architecture_source, output_channels

        architecture = architecture or architecture_source(cfg)
        channels = channels if channels is not None else output_channels(cfg)
    arch_name = str(cfg.get("MODEL.ARCHITECTURE"))
    settings = export_settings(cfg, architecture=arch_name)
    problem = str(cfg.get("PROBLEM.TYPE"))
    names = [str(name) for name, _ in channels]
    if problem == "INSTANCE_SEG":
        settings.description = with_representation(settings.description, _representation(names))
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="biapy-runner-export-") as tmp:
        work = Path(tmp)
        partial = _build(cfg, model, sample, work, out_path, settings=settings,
                         architecture=architecture, channel_names=_unique(names),
                         attachments=attachments, training=training,
                         postprocessing=postprocessing)
    os.replace(partial, out_path)
    info(f"BioImage.IO package written: {out_path}")
    return out_path


def _build(
    cfg: Config,
    model: torch.nn.Module,
    sample: np.ndarray,
    work: Path,
    out_path: Path,
    *,
    settings: ExportSettings,
    architecture: Architecture,
    channel_names: Sequence[str],
    attachments: Sequence[Path],
    training: Mapping[str, Any] | None,
    postprocessing: Sequence[Any],
) -> Path:
    """Write the package's files into ``work``, build, save and check it; returns the partial
    zip beside ``out_path``."""
    from bioimageio.spec import ValidationContext

    arch_path, callable_name, kwargs = architecture
    shutil.copyfile(arch_path, work / arch_path.name)
    net = rebuild((work / arch_path.name, callable_name, kwargs), model.state_dict())
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, work / "weights.pt")
    spatial = SPATIAL_ORDER[-len(patch_shape(cfg)):]
    x = test_input(sample, patch_shape(cfg))
    np.save(work / "test_input.npy", x)
    pre = _processing(preprocessing(cfg, x, spatial), pre=True)
    post = _processing(postprocessing, pre=False)
    files = []
    for path in attachments:
        shutil.copyfile(path, work / Path(path).name)
        files.append(Path(path).name)

    def describe(geometry: Any, steps: Sequence[int], out_channels: int, torchscript: bool,
                 post: Sequence[Any] = post) -> Any:
        return _describe(
            settings, work, spatial=spatial, in_channels=x.shape[1],
            out_names=channel_names if len(channel_names) == out_channels else None,
            out_channels=out_channels, min_size=x.shape[2:], steps=steps,
            out_geometry=geometry, pre=pre, post=post,
            architecture=(arch_path.name, callable_name, shipped_kwargs(kwargs)),
            torchscript=torchscript, attachments=files,
        )

    np.save(work / "test_output.npy", np.ones((1, 1), np.float32))
    write_cover(work / "cover.png", x[0], x[0])
    write_documentation(work / "README.md", cfg, settings, channel_names, training)
    # a first description gives the preprocessed input: run the network to know its output
    with ValidationContext(perform_io_checks=False):
        probe = describe(None, (0,) * len(spatial), 1, torchscript=False, post=())
    x_norm = torch.from_numpy(_preprocessed(probe, x))
    try:
        y = _forward(net, x_norm).numpy()
    except Exception as err:
        raise ModelError(f"The network does not run on the test input {x.shape}: "
                         f"{real_cause(err)}.") from err
    geometry, steps = None, (0,) * len(spatial)
    if y.ndim > 2:
        scale = tuple(o / i for o, i in zip(y.shape[2:], x.shape[2:]))
        steps = size_steps(net, x_norm, scale)
        geometry = (halos(cfg, y.shape[2:], scale, steps), scale)
    bigger = None
    if any(steps):
        shape = [*x_norm.shape[:2], *(s + st for s, st in zip(x_norm.shape[2:], steps))]
        bigger = torch.from_numpy(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    torchscript = _torchscript(net, x_norm, bigger, work / "weights_torchscript.pt")
    # the test output is what bioimageio.core's test_model computes
    np.save(work / "test_output.npy", np.ones_like(y))
    try:
        with ValidationContext(perform_io_checks=False):
            descr = describe(geometry, steps, y.shape[1], torchscript)
    except Exception as err:
        raise ConfigError(f"The BioImage.IO description cannot be built from {KEY}.*: "
                          f"{real_cause(err)}") from err
    y = predict_test_input(descr, "pytorch_state_dict")
    np.save(work / "test_output.npy", y)
    write_cover(work / "cover.png", x[0], y[0])
    partial = _publish(describe(geometry, steps, y.shape[1], torchscript), out_path)
    try:
        formats = check_package(partial, y)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    info(f"BioImage.IO package checked: {', '.join(formats)} reproduce the test output")
    return partial


def _preprocessed(descr: Any, x: np.ndarray) -> np.ndarray:
    """``x`` after ``descr``'s preprocessing (bioimageio.core's operators)."""
    from bioimageio.core import Sample, Tensor
    from bioimageio.core.proc_setup import setup_pre_and_postprocessing

    dims = tuple(str(a.id) for a in descr.inputs[0].axes)
    sample = Sample(members={INPUT_ID: Tensor(x, dims=dims)}, stat={}, id="test")
    for op in setup_pre_and_postprocessing(descr, dataset_for_initial_statistics=[]).pre:
        op(sample)
    return np.ascontiguousarray(sample.members[INPUT_ID].data, dtype=np.float32)


def _distinct(names: Sequence[str]) -> list[str]:
    """Channel names with consecutive repeats collapsed (R per ray -> R)."""
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


def _representation(names: Sequence[str]) -> list[str]:
    """The instance channels BiaPy's representation line names: the output channels without
    the class head's (``class<i>``, its second ``output_channels`` entry), repeats collapsed."""
    return [n for n in _distinct(names) if not n.startswith("class")]


def _unique(names: Sequence[str]) -> list[str]:
    """Channel names made unique for the rdf (a repeated name gets its index: R0, R1, ...)."""
    counts = {n: names.count(n) for n in names}
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if counts[n] == 1:
            out.append(n)
        else:
            out.append(f"{n}{seen.get(n, 0)}")
            seen[n] = seen.get(n, 0) + 1
    return out

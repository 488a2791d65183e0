"""Fine-tuning from a BioImage.IO package: its ``pytorch_state_dict`` network as a trainable
torch module (``MODEL.SOURCE: bmz`` with ``TRAIN.ENABLE``).

The network is built as bioimageio.core builds it (the package's architecture code, imported
from the package, called with its kwargs, then the state dict), except that BiaPy's
``explicit_activations`` / ``return_one_tensor`` kwargs are turned off as BiaPy does when it
consumes a package: the module returns pre-activation outputs, which BiaPy's losses take.
Packages with TorchScript or ONNX weights only cannot be fine-tuned (exit 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError, ModelError, real_cause
from biapy_runner.log import info
from biapy_runner.models.description import load_description
from biapy_runner.models.sources import resolve_model

SOURCE_KEY = "MODEL.BMZ.SOURCE_MODEL_ID"


def package_description(cfg: Config, cache_dir: Path | None = None) -> Any:
    """The validated description of the package ``MODEL.BMZ.SOURCE_MODEL_ID`` names (fetched
    into the model cache when it is an id, DOI or URL)."""
    source = str(cfg.get(SOURCE_KEY) or "").strip()
    if not source:
        raise ConfigError(
            f"MODEL.SOURCE is bmz but {SOURCE_KEY} is empty: name the BioImage.IO model to "
            "fine-tune (an id, DOI, URL or a local package)."
        )
    return load_description(resolve_model(source, cache_dir), source)


def _state_dict_weights(descr: Any) -> Any:
    weights = getattr(descr.weights, "pytorch_state_dict", None)
    if weights is None:
        present = [f for f, w in descr.weights if w is not None]
        raise ModelError(
            f"The model {descr.name!r} has {', '.join(present)} weights only: fine-tuning needs "
            "pytorch_state_dict weights (the network's architecture code and state dict), "
            "which TorchScript and ONNX weights do not replace. Choose a package that has "
            "them, or train from scratch (MODEL.SOURCE: biapy)."
        )
    return weights


def _kwargs(weights: Any) -> dict[str, Any]:
    """The architecture kwargs of format 0.4 (``weights.kwargs``) or 0.5 weights."""
    architecture = weights.architecture
    return dict(getattr(architecture, "kwargs", None) or getattr(weights, "kwargs", {}) or {})


#: BiaPy's kwargs that are on in a package (the network applies its activations and returns
#: one tensor) and off in training (pre-activation outputs; BiaPy's adapt_bmz_model_kwargs)
PACKAGE_ONLY_KWARGS = ("explicit_activations", "return_just_preds", "return_one_tensor")


def package_kwargs(kwargs: dict[str, Any], *, training: bool) -> dict[str, Any]:
    """``kwargs`` with BiaPy's package-only switches (:data:`PACKAGE_ONLY_KWARGS`, where
    present) off for ``training``, on for a package."""
    return {k: (not training if k in PACKAGE_ONLY_KWARGS else v) for k, v in kwargs.items()}


def _for_training(weights: Any) -> Any:
    """A copy of ``weights`` whose kwargs have BiaPy's package-only switches off."""
    kwargs = _kwargs(weights)
    if not any(k in kwargs for k in PACKAGE_ONLY_KWARGS):
        return weights
    kwargs = package_kwargs(kwargs, training=True)
    if hasattr(weights.architecture, "kwargs"):  # format 0.5
        architecture = weights.architecture.model_copy(update={"kwargs": kwargs})
        return weights.model_copy(update={"architecture": architecture})
    return weights.model_copy(update={"kwargs": kwargs})


def trainable_from_package(
    cfg: Config, *, device: str | torch.device = "cpu", cache_dir: Path | None = None
) -> torch.nn.Module:
    """The package's network, ready to train: built from its architecture code and kwargs,
    its state dict loaded, on ``device``, in train mode with every parameter trainable.

    Parameters
    ----------
    cfg : the configuration (``MODEL.BMZ.SOURCE_MODEL_ID`` names the package)
    device : where the module lives
    cache_dir : the model cache (default: the runner's)

    Returns
    -------
    torch.nn.Module
        Pre-activation outputs for BiaPy-exported packages (``explicit_activations`` off);
        other packages' networks as they are (their rdf postprocessing is not part of the
        module). ModelError (exit 3) when the package has no pytorch_state_dict weights or its
        architecture cannot be built.
    """
    from bioimageio.core.backends.pytorch_backend import load_torch_model

    descr = package_description(cfg, cache_dir)
    weights = _for_training(_state_dict_weights(descr))
    try:
        module = load_torch_model(weights, devices=[torch.device(device)])
    except Exception as err:
        raise ModelError(
            f"Cannot build the network of the model {descr.name!r} for fine-tuning from its "
            f"pytorch_state_dict weights: {real_cause(err)}."
        ) from err
    module.train()
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    count = sum(p.numel() for p in module.parameters())
    info(f"model {descr.name}: fine-tuning its pytorch_state_dict network ({count} parameters)")
    return module


def package_architecture(descr: Any, folder: Path) -> tuple[Path, str, dict[str, Any]]:
    """The package's architecture as ``(source file written into folder, callable, kwargs)``,
    to export the fine-tuned network with the same code."""
    from bioimageio.spec.common import FileDescr

    weights = _state_dict_weights(descr)
    architecture = weights.architecture
    source = getattr(architecture, "source", None) or getattr(architecture, "source_file", None)
    name = getattr(architecture, "callable", None) or getattr(architecture, "callable_name", None)
    if source is None:
        raise ModelError(
            f"The model {descr.name!r} imports its architecture from an installed library, not "
            "from a file in the package; a fine-tuned copy cannot be exported with it."
        )
    reader = (architecture if isinstance(architecture, FileDescr)
              else FileDescr(source=source)).get_reader()
    path = Path(folder) / (reader.original_file_name or "architecture.py")
    path.write_bytes(reader.read())
    return path, str(name), _kwargs(weights)


def _preprocessing_steps(descr: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(id, kwargs)`` of the input's preprocessing (format 0.4 names them ``name``)."""
    steps = []
    for step in descr.inputs[0].preprocessing or []:
        name = str(getattr(step, "id", None) or getattr(step, "name", ""))
        kwargs = getattr(step, "kwargs", None)
        steps.append((name, kwargs.model_dump() if hasattr(kwargs, "model_dump") else {}))
    return steps


def adopt_package_normalization(cfg: Config, descr: Any) -> list[str]:
    """Set DATA.NORMALIZATION to what the package's input preprocessing does, as BiaPy does
    before fine-tuning a package (``zero_mean_unit_variance`` with its fixed mean/std when given,
    ``scale_linear`` -> ``div``, ``scale_range`` and ``clip`` -> percentile or value clipping);
    returns the keys changed."""
    norm = "DATA.NORMALIZATION"
    values: dict[str, Any] = {}
    for name, kwargs in _preprocessing_steps(descr):
        if name in ("zero_mean_unit_variance", "fixed_zero_mean_unit_variance"):
            mean, std = kwargs.get("mean", -1.0), kwargs.get("std", -1.0)
            values[f"{norm}.TYPE"] = "zero_mean_unit_variance"
            values[f"{norm}.ZERO_MEAN_UNIT_VAR.MEAN_VAL"] = [float(v) for v in _listed(mean)]
            values[f"{norm}.ZERO_MEAN_UNIT_VAR.STD_VAL"] = [float(v) for v in _listed(std)]
        elif name == "scale_linear":
            values[f"{norm}.TYPE"] = "div"
        elif name in ("scale_range", "clip"):
            if name == "scale_range":
                values[f"{norm}.TYPE"] = "scale_range"
            low = float(kwargs.get("min_percentile") or 0.0)
            high = float(kwargs.get("max_percentile") or 100.0)
            if (low, high) != (0.0, 100.0):
                values.update({f"{norm}.PERC_CLIP.ENABLE": True,
                               f"{norm}.PERC_CLIP.LOWER_PERC": low,
                               f"{norm}.PERC_CLIP.UPPER_PERC": high})
            elif name == "clip" and None not in (kwargs.get("min"), kwargs.get("max")):
                values.update({f"{norm}.PERC_CLIP.ENABLE": True,
                               f"{norm}.PERC_CLIP.LOWER_VALUE": [float(kwargs["min"])],
                               f"{norm}.PERC_CLIP.UPPER_VALUE": [float(kwargs["max"])]})
    changed = [key for key, value in values.items() if cfg.get(key) != value]
    for key in changed:
        cfg.set(key, values[key])
    if changed:
        info(f"model {descr.name}: DATA.NORMALIZATION set from its preprocessing "
             f"({', '.join(f'{k.removeprefix(norm + chr(46))}={values[k]}' for k in changed)})")
    return changed


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]

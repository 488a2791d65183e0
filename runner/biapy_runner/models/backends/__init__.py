"""Running a model's weights: one module per weight format behind one interface.

Each backend module has ``load(weights, device, threads) -> Forward``: a callable that takes a
float32 torch tensor in the model's own axis order (on ``device``) and returns its first output
as a torch tensor on the same device; ``weights`` (:class:`Weights`) reads the files the
description names. A backend whose runtime is not installed raises :class:`BackendUnavailable`
with a sentence saying what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from biapy_runner.errors import ModelError, real_cause
from biapy_runner.log import info

Forward = Callable[[torch.Tensor], Any]

#: Weight formats in order of preference, and what each needs to run.
WEIGHT_FORMATS: dict[str, str] = {
    "pytorch_state_dict": "torch and the packages its architecture code imports",
    "torchscript": "torch",
    "onnx": "onnxruntime (pip install onnxruntime)",
}
_UNSUPPORTED_FORMATS = {
    "tensorflow_saved_model_bundle": "TensorFlow, which this runner does not support",
    "tensorflow_js": "TensorFlow.js, which this runner does not support",
    "keras_hdf5": "Keras/TensorFlow, which this runner does not support",
    "keras_v3": "Keras, which this runner does not support",
}


class BackendUnavailable(Exception):
    """The runtime a weight format needs is not installed; the message says which."""


@dataclass
class Weights:
    """One weight format of a package: its entry in the model's digest (``source``: a file of
    the package or a URL; the architecture for ``pytorch_state_dict``) and ``read``, which gives
    the bytes of a file the description names."""

    format: str
    entry: dict[str, Any]
    read: Callable[[str], bytes]

    @property
    def remote(self) -> str | None:
        """The URL of the weights when they are not in the package."""
        source = str(self.entry.get("source", ""))
        return source if source.lower().startswith(("http://", "https://")) else None

    def data(self) -> bytes:
        """The weight file's bytes."""
        return self.read(str(self.entry["source"]))


def _load(weights: Weights, device: torch.device, threads: int | None) -> Forward:
    module = importlib.import_module(f"{__name__}.{weights.format}")
    return module.load(weights, device, threads)


def _missing_module(err: BaseException) -> str | None:
    """The name of the package whose import failed somewhere in ``err``'s chain."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name.split(".")[0]
        current = current.__cause__ or current.__context__
    return None


def _order(weights: Mapping[str, Weights], wanted: str | None) -> list[str]:
    """The formats :func:`load_weights` tries, in order: those whose weights are in the package
    first (a URL may be unreachable on offline nodes)."""
    if wanted:
        return [wanted]
    runnable = [f for f in WEIGHT_FORMATS if f in weights]
    return sorted(runnable, key=lambda f: bool(weights[f].remote))


def first_format(weights: Mapping[str, Weights], wanted: str | None) -> str | None:
    """The format :func:`load_weights` tries first (None when there is none or it is not in
    the package)."""
    order = _order(weights, wanted)
    return order[0] if order and order[0] in weights and not weights[order[0]].remote else None


def load_weights(
    weights: Mapping[str, Weights],
    name: str,
    device: torch.device,
    wanted: str | None,
    threads: int | None,
) -> tuple[str, Forward]:
    """Load the first runnable weight format of ``weights`` (or only ``wanted``).

    Parameters
    ----------
    weights : the package's weight formats, by format
    name : the model's name, for messages
    device : where the weights run
    wanted : a key of :data:`WEIGHT_FORMATS`, or None for the first that loads
    threads : CPU threads for runtimes that take them, or None

    Returns
    -------
    (weight format, forward callable); the log says why formats before it were skipped.
    A :class:`~biapy_runner.errors.ModelError` says why none could run.
    """
    present = [f for f in (*WEIGHT_FORMATS, *_UNSUPPORTED_FORMATS) if f in weights]
    order = _order(weights, wanted)
    if wanted and wanted not in present:
        raise ModelError(
            f"The model {name!r} has no {wanted} weights; it has: {', '.join(present)}."
        )
    reasons: dict[str, str] = {f: f"needs {why}" for f, why in _UNSUPPORTED_FORMATS.items()}
    missing: str | None = None
    for fmt in order:
        try:
            loaded = _load(weights[fmt], device, threads)
        except BackendUnavailable as err:
            reasons[fmt] = str(err)
            continue
        except Exception as err:  # noqa: BLE001 - reported below with its cause
            module = _missing_module(err)
            missing = module or missing
            reasons[fmt] = _failure(weights[fmt], err, module)
            continue
        skipped = [f"{f}: {reasons[f]}" for f in present if f in reasons]
        note = f" (skipped {'; '.join(skipped)})" if skipped else ""
        info(f"model {name}: running {fmt} weights on {device}{note}")
        return fmt, loaded
    fetch_failed = all(weights[f].remote for f in order)
    raise ModelError(_no_runnable_message(name, present, reasons, missing, fetch_failed))


def _failure(weights: Weights, err: BaseException, module: str | None) -> str:
    """Why the weights failed to load, in words."""
    if module:
        return f"its architecture code imports the package {module!r}, which is not installed"
    url = weights.remote
    if url is not None:
        return (
            f"its weights are not in the package but at {url}, which could not be fetched "
            f"({real_cause(err)}); run once with network access or give a package that holds "
            "them"
        )
    return f"failed to load ({real_cause(err)})"


def _no_runnable_message(
    name: str,
    present: Sequence[str],
    reasons: dict[str, str],
    missing: str | None,
    fetch_failed: bool,
) -> str:
    details = "; ".join(f"{f}: {reasons.get(f, 'not tried')}" for f in present)
    if fetch_failed:  # the reasons already say what to do
        return f"No weight format of the model {name!r} can run here ({details})."
    hint = (
        f" Install {missing!r} next to the runner (pip install {missing}), or run the runner's "
        "container, which ships torchvision and the runner's own dependencies."
        if missing
        else f" Runnable formats and what they need: "
        f"{'; '.join(f'{f} ({w})' for f, w in WEIGHT_FORMATS.items())}."
    )
    return f"No weight format of the model {name!r} can run here ({details}).{hint}"


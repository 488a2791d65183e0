"""Running a model's weights: one module per weight format behind one interface.

Each backend module has ``load(descr, device, threads) -> Forward``: a callable that takes a
float32 torch tensor in the model's own axis order (on ``device``) and returns its first output
as a torch tensor on the same device. A backend whose runtime is not installed raises
:class:`BackendUnavailable` with a sentence saying what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
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


def _load(fmt: str, descr: Any, device: torch.device, threads: int | None) -> Forward:
    module = importlib.import_module(f"{__name__}.{fmt}")
    return module.load(descr, device, threads)


def _missing_module(err: BaseException) -> str | None:
    """The name of the package whose import failed somewhere in ``err``'s chain."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name.split(".")[0]
        current = current.__cause__ or current.__context__
    return None


def load_weights(
    descr: Any, name: str, device: torch.device, wanted: str | None, threads: int | None
) -> tuple[str, Forward]:
    """Load the first runnable weight format of ``descr`` (or only ``wanted``).

    Parameters
    ----------
    descr : bioimageio model description (format 0.4 or 0.5)
    name : the model's name, for messages
    device : where the weights run
    wanted : a key of :data:`WEIGHT_FORMATS`, or None for the first that loads
    threads : CPU threads for runtimes that take them, or None

    Returns
    -------
    (weight format, forward callable); the log says why formats before it were skipped.
    A :class:`~biapy_runner.errors.ModelError` says why none could run.
    """
    present = [
        f for f in (*WEIGHT_FORMATS, *_UNSUPPORTED_FORMATS) if getattr(descr.weights, f, None)
    ]
    # formats whose weights are in the package first: a URL may be unreachable (offline nodes)
    runnable = [f for f in WEIGHT_FORMATS if f in present]
    order = [wanted] if wanted else sorted(runnable, key=lambda f: bool(remote_weights(descr, f)))
    if wanted and wanted not in present:
        raise ModelError(
            f"The model {name!r} has no {wanted} weights; it has: {', '.join(present)}."
        )
    reasons: dict[str, str] = {f: f"needs {why}" for f, why in _UNSUPPORTED_FORMATS.items()}
    missing: str | None = None
    for fmt in order:
        try:
            loaded = _load(fmt, descr, device, threads)
        except BackendUnavailable as err:
            reasons[fmt] = str(err)
            continue
        except Exception as err:  # noqa: BLE001 - reported below with its cause
            module = _missing_module(err)
            missing = module or missing
            reasons[fmt] = _failure(descr, fmt, err, module)
            continue
        skipped = [f"{f}: {reasons[f]}" for f in present if f in reasons]
        note = f" (skipped {'; '.join(skipped)})" if skipped else ""
        info(f"model {name}: running {fmt} weights on {device}{note}")
        return fmt, loaded
    fetch_failed = all(remote_weights(descr, f) for f in order)
    raise ModelError(_no_runnable_message(name, present, reasons, missing, fetch_failed))


def remote_weights(descr: Any, fmt: str) -> str | None:
    """The URL of the ``fmt`` weights when the rdf gives them as a URL (not in the package)."""
    source = str(getattr(getattr(descr.weights, fmt, None), "source", ""))
    return source if source.lower().startswith(("http://", "https://")) else None


def _failure(descr: Any, fmt: str, err: BaseException, module: str | None) -> str:
    """Why the ``fmt`` weights failed to load, in words."""
    if module:
        return f"its architecture code imports the package {module!r}, which is not installed"
    url = remote_weights(descr, fmt)
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


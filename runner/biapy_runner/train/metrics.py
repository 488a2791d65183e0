"""The metrics BiaPy 3.7.1 logs during training, per workflow (``TRAIN.METRICS`` or its defaults).

``metrics_for(cfg, channels)`` returns ``{name: fn(pred, target) -> float}`` for one batch, with
``pred`` the net's pre-activation output and ``target`` the batched training target (as for the
loss). Names are BiaPy's log names:

- SEMANTIC_SEG, DETECTION: ``IoU`` (foreground IoU of the probability > 0.5 for one sigmoid
  channel, ``metrics.masks.binary_iou``; the mean per-class IoU of the arg-max over the classes
  present for several).
- INSTANCE_SEG: ``IoU (X channel)`` for binary channels (probability > 0.5 against target > 0.5),
  ``L1 (X channel)`` for distance-like channels (activated output).
- DENOISING: ``MAE``, ``MSE``; SUPER_RESOLUTION, SELF_SUPERVISED, IMAGE_TO_IMAGE: ``PSNR``,
  ``MAE``, ``MSE``, ``SSIM`` (``metrics.restoration``: the data range is the target's; for
  DENOISING the values and the Noise2Void mask are compared at the masked pixels only).
- CLASSIFICATION: ``Accuracy`` (and ``Top-5-accuracy``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError
from biapy_runner.metrics import restoration
from biapy_runner.metrics.masks import binary_iou
from biapy_runner.train.instance_targets import (
    BINARY_CHANNELS,
    FLOWS,
    channel_options,
    instance_channel_names,
)
from biapy_runner.train.losses import FLOW_SCALE, activate

Metric = Callable[[torch.Tensor, torch.Tensor], float]
#: BiaPy's default TRAIN.METRICS per workflow
DEFAULT_METRICS = {
    "SEMANTIC_SEG": ("iou",),
    "INSTANCE_SEG": ("iou",),
    "DETECTION": ("iou",),
    "DENOISING": ("mae", "mse"),
    "SUPER_RESOLUTION": ("psnr", "mae", "mse", "ssim"),
    "SELF_SUPERVISED": ("psnr", "mae", "mse", "ssim"),
    "IMAGE_TO_IMAGE": ("psnr", "mae", "mse", "ssim"),
    "CLASSIFICATION": ("accuracy",),
}


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def class_iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """IoU of one sigmoid channel (> 0.5) or the mean IoU of the arg-max classes present."""
    if pred.shape[1] == 1:
        return binary_iou(_np(torch.sigmoid(pred)) > 0.5, _np(target) > 0.5)
    labels = _np(pred.argmax(1))
    truth = _np(target[:, 0]).astype(np.int64)
    scores = [binary_iou(labels == c, truth == c) for c in range(pred.shape[1])]
    present = [s for c, s in enumerate(scores) if (labels == c).any() or (truth == c).any()]
    return float(np.mean(present)) if present else 0.0


def _instance_metrics(cfg: Config, channels: Sequence[tuple[str, str]]) -> dict[str, Metric]:
    names = [n for n in instance_channel_names(cfg) if n not in ("We", "I")]
    opts = channel_options(cfg, names)
    out: dict[str, Metric] = {}
    p = t = 0
    for name in names:
        width = int(opts[name].get("nrays", 1)) if name == "R" else 1
        discrete = name == "Db" and opts[name].get("val_type") == "discretize"
        ps, ts = slice(p, p + (11 if discrete else width)), slice(t, t + width)
        act = channels[p][1] if p < len(channels) else "linear"
        if name in BINARY_CHANNELS:
            out[f"IoU ({name} channel{'s' if name == 'A' else ''})"] = (
                lambda pred, target, ps=ps, ts=ts: binary_iou(
                    _np(torch.sigmoid(pred[:, ps])) > 0.5, _np(target[:, ts]) > 0.5
                )
            )
        elif discrete:
            out["L1 (Db channel)"] = lambda pred, target, ps=ps, ts=ts: float(
                torch.mean(
                    torch.abs(pred[:, ps].argmax(1, keepdim=True).float() - target[:, ts].float())
                )
            )
        else:
            label = f"L1 ({name} channel{'s' if name == 'R' else ''})"
            scale = FLOW_SCALE if name in FLOWS else 1.0
            out[label] = lambda pred, target, ps=ps, ts=ts, act=act, scale=scale: float(
                torch.mean(torch.abs(activate(pred[:, ps], act) - scale * target[:, ts].float()))
            )
        p, t = ps.stop, ts.stop
    return out


def _activated(channels: Sequence[tuple[str, str]]) -> Callable[[torch.Tensor], torch.Tensor]:
    acts = [a for _, a in channels] or ["linear"]

    def apply(pred: torch.Tensor) -> torch.Tensor:
        if len(set(acts)) == 1:
            return activate(pred, acts[0])
        return torch.cat([activate(pred[:, i : i + 1], a) for i, a in enumerate(acts)], 1)

    return apply


def _restoration_metrics(
    names: Sequence[str], channels: Sequence[tuple[str, str]], masked: bool
) -> dict[str, Metric]:
    act = _activated(channels)

    def pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        p = _np(act(pred))
        y = _np(target)
        if masked:  # Noise2Void: values then mask
            c = p.shape[1]
            hit = y[:, c:] > 0
            return y[:, :c][hit], p[hit]
        return y, p

    table: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float]]] = {
        "psnr": ("PSNR", restoration.psnr),
        "mae": ("MAE", restoration.mae),
        "mse": ("MSE", restoration.mse),
        "ssim": (
            "SSIM",
            lambda y, p: float(np.mean([restoration.ssim(a, b) for a, b in zip(y, p)])),
        ),
    }
    out: dict[str, Metric] = {}
    for name in names:
        if name not in table or (masked and name == "ssim"):
            raise ConfigError(f"TRAIN.METRICS {name!r} is not implemented for this workflow.")
        label, fn = table[name]
        out[label] = lambda pred, target, fn=fn: float(fn(*pair(pred, target)))
    return out


def _accuracy(k: int) -> Metric:
    def fn(pred: torch.Tensor, target: torch.Tensor) -> float:
        top = pred.topk(min(k, pred.shape[1]), dim=1).indices
        return float((top == target.long().reshape(-1, 1)).any(1).float().mean())

    return fn


def metrics_for(cfg: Config, channels: Sequence[tuple[str, str]]) -> dict[str, Metric]:
    """Training metrics of ``cfg``'s workflow.

    Parameters
    ----------
    cfg : Config
        ``PROBLEM.TYPE``, ``TRAIN.METRICS`` (BiaPy's defaults when empty).
    channels : sequence of (str, str)
        ``(name, activation)`` per output channel of the net.

    Returns
    -------
    dict of str to callable
        BiaPy's metric name -> ``fn(pred, target) -> float`` over one batch.
    """
    problem = cfg.get("PROBLEM.TYPE")
    names = [str(m).lower() for m in cfg.get("TRAIN.METRICS")] or list(DEFAULT_METRICS[problem])
    if problem in ("SEMANTIC_SEG", "DETECTION", "INSTANCE_SEG"):
        if names != ["iou"] and names != ["jaccard_index"]:
            raise ConfigError(f"TRAIN.METRICS must be ['iou'] for {problem}, got {names}.")
        if problem == "INSTANCE_SEG":
            return _instance_metrics(cfg, channels)
        if problem == "DETECTION":
            return {"IoU": lambda pred, target: class_iou(pred[:, :1], target[:, :1])}
        return {"IoU": class_iou}
    if problem == "CLASSIFICATION":
        table = {"accuracy": ("Accuracy", 1), "top-5-accuracy": ("Top-5-accuracy", 5)}
        return {table[n][0]: _accuracy(table[n][1]) for n in names}
    return _restoration_metrics(names, channels, masked=problem == "DENOISING")

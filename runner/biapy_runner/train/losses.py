"""Training losses per workflow with BiaPy 3.7.1's ``LOSS.*`` keys (engine/metrics.py).

``loss_for(cfg, channels)`` returns ``loss(pred, target) -> scalar tensor`` where ``pred`` is the
net's pre-activation output ``(B, C, *spatial)`` and ``target`` what ``train.targets.make_targets``
builds (batched). ``channels`` is one ``(name, activation)`` per output channel of the net
(``models.architectures.output_channels``). Binary channels go to BCE on logits and class maps
to cross-entropy on logits; every other loss (L1, MSE, ...) compares the *activated* output, so
the net is trained on what inference reads. (BiaPy 3.7.1 leaves a ``Db`` channel's sigmoid out
of its L1 loss during training; here it is applied.)

Semantic: ``LOSS.TYPE`` ``["CE"]`` (default), ``["DICE"]`` or both (``LOSS.WEIGHTS``), class
weights with ``LOSS.CLASS_REBALANCE: manual`` / ``LOSS.CLASS_WEIGHTS``, ``LOSS.IGNORE_INDEX``.
Instance: BiaPy's per-channel losses (``DATA_CHANNELS_LOSSES`` or its defaults: BCE for F, B, C,
P, T, M; L1 for H, V, Z, Db, Dc, Dn, R; MSE for D), ``DATA_CHANNEL_WEIGHTS``, the foreground/
background rebalance of ``CLASS_REBALANCE_WITHIN_CHANNELS``, ``mask_values`` and the U-Net border
weights ``We``. Detection: BCE with the same rebalance. Denoising: Noise2Void's masked MSE.
Super-resolution, self-supervised, image-to-image: the weighted sum of ``LOSS.TYPE`` (MAE, MSE,
CHARBONNIER, PCC). Classification: cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError
from biapy_runner.train.instance_targets import (
    BINARY_CHANNELS,
    FLOWS,
    channel_options,
    instance_channel_names,
)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IS = "PROBLEM.INSTANCE_SEG."
#: Cellpose and Omnipose compare the flow outputs with five times the unit flows
FLOW_SCALE = 5.0
#: continuous-image losses implemented (BiaPy also has SSIM, VGG, LPIPS, LAPLACIAN, FFT, RFFT)
IMAGE_LOSSES = ("MAE", "MSE", "CHARBONNIER", "PCC")


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """Apply a channel activation by name (``linear``/empty, ``sigmoid``, ``tanh``, ``relu``,
    ``softmax`` over the channel axis; BiaPy's ``ce_`` prefix is ignored)."""
    name = (activation or "linear").lower().removeprefix("ce_")
    if name in ("linear", "identity", "none"):
        return x
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return torch.relu(x)
    if name == "softmax":
        return torch.softmax(x, dim=1)
    raise ValueError(f"Unknown activation {activation!r}.")


def binary_ratio_weights(target: torch.Tensor) -> torch.Tensor:
    """BiaPy's ``weight_binary_ratio``: the rarer of foreground (non-zero) and background gets the
    weight ``max(r, 1 - r) / min(r, 1 - r)`` (r, the foreground fraction, clamped to [0.05, 0.95]),
    the other 1; all ones for a constant target."""
    if torch.max(target) == torch.min(target):
        return torch.ones_like(target, dtype=torch.float32)
    label = (target != 0).double()
    ratio = torch.clamp(label.mean(), 0.05, 0.95)
    factor = torch.maximum(ratio, 1 - ratio) / torch.minimum(ratio, 1 - ratio)
    if ratio > 1 - ratio:
        label = 1 - label
    return (factor * label + (1 - label)).float()


def dice_loss(probs: torch.Tensor, onehot: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """``1 - mean_c (2 |P∩T| + s) / (|P| + |T| + s)``, sums over the batch and space (BiaPy's
    batch Dice)."""
    axes = [0, *range(2, probs.ndim)]
    inter = torch.sum(probs * onehot, dim=axes)
    union = torch.sum(probs, dim=axes) + torch.sum(onehot, dim=axes)
    return 1.0 - torch.mean((2.0 * inter + smooth) / (union + smooth))


def _names_and_weights(cfg: Config, default: str) -> tuple[list[str], list[float]]:
    names = [str(n).upper() for n in cfg.get("LOSS.TYPE")] or [default]
    weights = [float(w) for w in cfg.get("LOSS.WEIGHTS")] or [1.0] * len(names)
    if len(names) != len(weights):
        raise ConfigError(
            f"LOSS.TYPE {names} and LOSS.WEIGHTS {weights} must have the same length."
        )
    return names, weights


def _class_weights(cfg: Config) -> torch.Tensor | None:
    if cfg.get("LOSS.CLASS_REBALANCE") != "manual":
        return None
    weights = list(cfg.get("LOSS.CLASS_WEIGHTS"))
    n_classes = int(cfg.get("DATA.N_CLASSES"))
    if len(weights) != n_classes:
        raise ConfigError(
            f"LOSS.CLASS_REBALANCE is 'manual': LOSS.CLASS_WEIGHTS needs {n_classes} values "
            f"(DATA.N_CLASSES), got {weights}."
        )
    return torch.tensor(weights, dtype=torch.float32)


def semantic_loss(cfg: Config) -> Loss:
    """CE (BCE for one sigmoid channel), Dice, or ``w_ce CE + w_dice Dice``."""
    names, weights = _names_and_weights(cfg, "CE")
    if set(names) not in ({"CE"}, {"DICE"}, {"CE", "DICE"}):
        raise ConfigError(
            f"LOSS.TYPE for SEMANTIC_SEG must be ['CE'], ['DICE'] or both, got {names}."
        )
    by_name = dict(zip(names, weights)) if len(names) == 2 else {names[0]: 1.0}
    class_weights = _class_weights(cfg)
    ignore = int(cfg.get("LOSS.IGNORE_INDEX"))
    ignore = ignore if ignore != -1 else -100

    def ce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape[1] == 1:
            weight = (
                None
                if class_weights is None
                else class_weights.to(pred.device)[target.long().clamp(0, 1)]
            )
            return F.binary_cross_entropy_with_logits(pred, target.float(), weight=weight)
        w = None if class_weights is None else class_weights.to(pred.device)
        return F.cross_entropy(pred, target[:, 0].long(), weight=w, ignore_index=ignore)

    def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape[1] == 1:
            return dice_loss(torch.sigmoid(pred), target.float())
        onehot = F.one_hot(target[:, 0].long().clamp(0, pred.shape[1] - 1), pred.shape[1])
        return dice_loss(torch.softmax(pred, 1), onehot.movedim(-1, 1).float())

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        if "CE" in by_name:
            total = total + by_name["CE"] * ce(pred, target)
        if "DICE" in by_name:
            total = total + by_name["DICE"] * dice(pred, target)
        return total

    return loss


def _default_instance_loss(name: str, opts: dict) -> str:
    if name in BINARY_CHANNELS:
        return "bce"
    if name == "D" or name in FLOWS:
        return "mse"
    if name == "Db" and opts.get("val_type") == "discretize":
        return "ce"
    return "l1"


def _elementwise(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    if kind == "ce":
        return F.cross_entropy(pred, target[:, 0].long(), reduction="none")[:, None]
    if kind in ("l1", "mae"):
        return torch.abs(pred - target)
    if kind == "mse":
        return (pred - target) ** 2
    raise ConfigError(
        f"{IS}DATA_CHANNELS_LOSSES: loss {kind!r} is not implemented (bce, ce, l1, mae, mse)."
    )


def instance_loss(cfg: Config, channels: Sequence[tuple[str, str]]) -> Loss:
    """BiaPy's ``instance_segmentation_loss``: one loss per channel, weighted sum."""
    if int(cfg.get("DATA.N_CLASSES")) > 2:
        raise ConfigError(
            "Training instance segmentation with DATA.N_CLASSES > 2 (a separate class head) is not "
            "implemented; set DATA.N_CLASSES to 2."
        )
    names = [n for n in instance_channel_names(cfg) if n not in ("We", "I")]
    borders = cfg.get(IS + "BORDER_EXTRA_WEIGHTS", "") == "unet-like"
    opts = channel_options(cfg, names)
    losses = [str(x).lower() for x in cfg.get(IS + "DATA_CHANNELS_LOSSES")]
    if not losses:
        losses = [_default_instance_loss(n, opts[n]) for n in names]
    weights = [float(w) for w in cfg.get(IS + "DATA_CHANNEL_WEIGHTS")]
    if len(weights) != len(names) and weights in ([1.0, 1.0], [1.0]):
        weights = [1.0] * len(names)
    if len(losses) != len(names) or len(weights) != len(names):
        raise ConfigError(
            f"{IS}DATA_CHANNELS_LOSSES {losses} and {IS}DATA_CHANNEL_WEIGHTS {weights} need one "
            f"entry per channel of {names}."
        )
    rebalance = bool(cfg.get(IS + "CLASS_REBALANCE_WITHIN_CHANNELS"))
    # (name, loss, weight, prediction slice, target slice)
    layout = []
    p = t = 0
    for name, kind, w in zip(names, losses, weights):
        width = int(opts[name].get("nrays", 1)) if name == "R" else 1
        p_width = 11 if kind == "ce" and name == "Db" else width
        layout.append((name, kind, w, slice(p, p + p_width), slice(t, t + width)))
        p += p_width
        t += width
    n_target = t  # We, then I (the labels, no loss), follow the channels
    if len(channels) != p:
        raise ValueError(f"The net has {len(channels)} output channels; {names} need {p}.")
    acts = [a for _, a in channels]
    # BiaPy's foreground for masked distances: F, M or B, else Db > 0
    fg_index = next((i for i, (n, *_rest) in enumerate(layout) if n in ("F", "M", "B")), None)
    if fg_index is None:
        fg_index = next((i for i, (n, *_rest) in enumerate(layout) if n == "Db"), None)

    def foreground(target: torch.Tensor) -> torch.Tensor | None:
        if fg_index is None:
            return None
        name, _, _, _, ts = layout[fg_index]
        ch = target[:, ts.start : ts.start + 1]
        return (ch == 0).float() if name == "B" else (ch > 0).float()

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float()
        w_borders = target[:, n_target : n_target + 1] if borders else None  # after the channels
        total = pred.new_zeros(())
        for name, kind, w, ps, ts in layout:
            y_pred = pred[:, ps]
            y_true = target[:, ts] * FLOW_SCALE if name in FLOWS else target[:, ts]
            if kind not in ("bce", "ce"):
                y_pred = activate(y_pred, acts[ps.start])
            mask = None
            if name in ("Db", "Dc", "Dn", "R") and opts[name].get("mask_values", False):
                mask = foreground(target)
                if mask is None:
                    mask = (y_true > 0).float()
            elif opts[name].get("mask_values", False):
                mask = (y_true != 0).float()
            values = _elementwise(kind, y_pred.float(), y_true)
            spatial = None
            if kind == "bce":
                balance = (
                    binary_ratio_weights(y_true) if rebalance and name in BINARY_CHANNELS else None
                )
                if balance is not None and w_borders is not None:
                    spatial = balance + w_borders
                else:
                    spatial = balance if balance is not None else w_borders
                if spatial is not None:
                    values = values * spatial
            elif w_borders is not None:
                values = values * w_borders
            if mask is not None:
                values = values * mask
                factor = values.shape[1] // mask.shape[1]
                weight_sum = (spatial * mask).sum() if spatial is not None else mask.sum()
                denom = weight_sum.clamp_min(1.0) * factor
            elif spatial is not None:
                denom = spatial.sum().clamp_min(1.0)
            else:
                denom = torch.tensor(float(values.numel()), device=values.device)
            total = total + w * values.sum() / denom
        return total

    return loss


def detection_loss(cfg: Config) -> Loss:
    """BCE on the point mask's channel 0, rebalanced by ``CLASS_REBALANCE_WITHIN_CHANNELS``."""
    if int(cfg.get("DATA.N_CLASSES")) > 2:
        raise ConfigError(
            "Training detection with DATA.N_CLASSES > 2 (a separate class head) is not implemented; "
            "set DATA.N_CLASSES to 2."
        )
    rebalance = bool(cfg.get("PROBLEM.DETECTION.CLASS_REBALANCE_WITHIN_CHANNELS"))

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y_true = target[:, 0].float()
        weight = binary_ratio_weights(y_true) if rebalance else None
        return F.binary_cross_entropy_with_logits(pred[:, 0], y_true, weight=weight)

    return loss


def n2v_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Noise2Void's masked MSE: ``target`` holds the original values then the mask (``2C``
    channels); ``sum((y - pred * m)^2) / sum(m)`` (0 without masked pixels)."""
    c = pred.shape[1]
    values, mask = target[:, :c], target[:, c:]
    return torch.sum(torch.square(values - pred * mask)) / torch.sum(mask).clamp_min(1.0)


def pcc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - Pearson correlation`` per sample, averaged over the batch."""
    p = pred.reshape(pred.shape[0], -1).float()
    t = target.reshape(target.shape[0], -1).float()
    p = p - p.mean(dim=1, keepdim=True)
    t = t - t.mean(dim=1, keepdim=True)
    pcc = (p * t).sum(1) / torch.sqrt(p.pow(2).sum(1) * t.pow(2).sum(1) + eps)
    return (1.0 - pcc).mean()


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``mean(sqrt((pred - target)^2 + eps^2))``."""
    diff = (pred - target).float()
    return torch.mean(torch.sqrt(diff * diff + eps**2))


_IMAGE_LOSS_FUNCTIONS: dict[str, Loss] = {
    "MAE": F.l1_loss,
    "MSE": F.mse_loss,
    "CHARBONNIER": charbonnier_loss,
    "PCC": pcc_loss,
}


def image_loss(cfg: Config, default: str) -> Loss:
    """``sum_i w_i loss_i(pred, target)`` over ``LOSS.TYPE`` / ``LOSS.WEIGHTS`` (zero weights
    dropped)."""
    names, weights = _names_and_weights(cfg, default)
    unknown = [n for n in names if n not in _IMAGE_LOSS_FUNCTIONS]
    if unknown:
        raise ConfigError(
            f"LOSS.TYPE {unknown} is not implemented for {cfg.get('PROBLEM.TYPE')} training "
            f"(implemented: {', '.join(IMAGE_LOSSES)})."
        )
    terms = [(w, _IMAGE_LOSS_FUNCTIONS[n]) for n, w in zip(names, weights) if w != 0]
    if not terms:
        raise ConfigError(f"LOSS.WEIGHTS needs a non-zero entry (LOSS.TYPE {names}).")

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for w, fn in terms:
            total = total + w * fn(pred, target.float())
        return total

    return loss


def _activated(loss: Loss, channels: Sequence[tuple[str, str]]) -> Loss:
    acts = [a for _, a in channels]
    if all((a or "linear") == "linear" for a in acts):
        return loss
    if len(set(acts)) == 1:
        return lambda pred, target: loss(activate(pred, acts[0]), target)

    def wrapped(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = [activate(pred[:, i : i + 1], a) for i, a in enumerate(acts)]
        return loss(torch.cat(parts, 1), target)

    return wrapped


def loss_for(cfg: Config, channels: Sequence[tuple[str, str]]) -> Loss:
    """The training loss of ``cfg``'s workflow.

    Parameters
    ----------
    cfg : Config
        ``PROBLEM.TYPE`` and the ``LOSS.*`` / workflow keys.
    channels : sequence of (str, str)
        ``(name, activation)`` per output channel of the net.

    Returns
    -------
    callable
        ``loss(pred, target) -> scalar tensor``; ``pred`` pre-activation ``(B, C, *spatial)``
        (``(B, N_CLASSES)`` for classification), ``target`` batched ``make_targets`` output.
    """
    problem = cfg.get("PROBLEM.TYPE")
    if problem == "SEMANTIC_SEG":
        return semantic_loss(cfg)
    if problem == "INSTANCE_SEG":
        return instance_loss(cfg, channels)
    if problem == "DETECTION":
        return detection_loss(cfg)
    if problem == "DENOISING":
        names, _ = _names_and_weights(cfg, "MSE")
        if names != ["MSE"]:
            raise ConfigError(
                f"LOSS.TYPE {names} for DENOISING is not implemented (only ['MSE'], Noise2Void)."
            )
        return _activated(n2v_loss, channels)
    if problem in ("SUPER_RESOLUTION", "SELF_SUPERVISED", "IMAGE_TO_IMAGE"):
        return _activated(image_loss(cfg, "MAE"), channels)
    if problem == "CLASSIFICATION":
        names, _ = _names_and_weights(cfg, "CE")
        if names != ["CE"]:
            raise ConfigError(f"LOSS.TYPE must be ['CE'] for CLASSIFICATION, got {names}.")
        return lambda pred, target: F.cross_entropy(pred, target.long().reshape(-1))
    raise ValueError(f"PROBLEM.TYPE {problem!r} has no training loss.")


def metrics_for(
    cfg: Config, channels: Sequence[tuple[str, str]]
) -> dict[str, Callable[[torch.Tensor, torch.Tensor], float]]:
    """The training metrics of ``cfg``'s workflow (``train.metrics.metrics_for``, also reachable
    here beside the loss)."""
    from biapy_runner.train.metrics import metrics_for as build  # train.metrics uses activate

    return build(cfg, channels)

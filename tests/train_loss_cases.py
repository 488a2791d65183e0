"""Losses of the training-loss parity test: configurations, seeded inputs, and their generation.

``tests/data/biapy371_losses.json`` holds, per case, the loss BiaPy 3.7.1's own classes
(engine/metrics.py: ``instance_segmentation_loss``, ``CrossEntropyLoss_wrapper``, ``DiceLoss``,
``DiceCELoss``, ``detection_loss``, ``n2v_loss_mse``) give for the inputs :func:`inputs` makes,
computed by a scratch script outside the repository that executes those class definitions from
BiaPy's sdist (see tests/data/README.md). BiaPy applies the non-logit activations (tanh) before
its loss in training; the reference does the same.
"""

from __future__ import annotations

import numpy as np
import torch
from biapy_runner.config.load import load_config
from biapy_runner.train.targets import make_targets
from train_target_cases import LABELS

IS = "PROBLEM.INSTANCE_SEG."
#: case -> (overrides, (name, activation) per output channel, batch size)
CASES: dict[str, tuple[list[str], list[tuple[str, str]], int]] = {
    "instance_fc": ([f"{IS}DATA_CHANNELS=['F','C']"], [("F", "sigmoid"), ("C", "sigmoid")], 2),
    "instance_bcdc": (
        [f"{IS}DATA_CHANNELS=['B','C','Dc']"],
        [("B", "sigmoid"), ("C", "sigmoid"), ("Dc", "linear")],
        2,
    ),
    "instance_fdp_weighted": (
        [f"{IS}DATA_CHANNELS=['F','D','P']", f"{IS}DATA_CHANNEL_WEIGHTS=(1, 0.3, 2)"],
        [("F", "sigmoid"), ("D", "tanh"), ("P", "sigmoid")],
        2,
    ),
    "instance_fdnhv_unbalanced": (
        [f"{IS}DATA_CHANNELS=['F','Dn','H','V']", f"{IS}CLASS_REBALANCE_WITHIN_CHANNELS=False"],
        [("F", "sigmoid"), ("Dn", "linear"), ("H", "linear"), ("V", "linear")],
        2,
    ),
    # one sample: with several, BiaPy broadcasts the border weights across the batch
    "instance_fc_borders": (
        [f"{IS}DATA_CHANNELS=['F','C']", f"{IS}BORDER_EXTRA_WEIGHTS=unet-like"],
        [("F", "sigmoid"), ("C", "sigmoid")],
        1,
    ),
    "semantic_bce": (["PROBLEM.TYPE=SEMANTIC_SEG"], [("foreground", "sigmoid")], 2),
    "semantic_dice": (
        ["PROBLEM.TYPE=SEMANTIC_SEG", "LOSS.TYPE=['DICE']"],
        [("foreground", "sigmoid")],
        2,
    ),
    "semantic_ce3": (["PROBLEM.TYPE=SEMANTIC_SEG", "DATA.N_CLASSES=3"], [("c", "softmax")] * 3, 2),
    "semantic_ce_dice3": (
        [
            "PROBLEM.TYPE=SEMANTIC_SEG",
            "DATA.N_CLASSES=3",
            "LOSS.TYPE=['CE','DICE']",
            "LOSS.WEIGHTS=[1.0, 0.5]",
        ],
        [("c", "softmax")] * 3,
        2,
    ),
    "semantic_bce_dice": (
        ["PROBLEM.TYPE=SEMANTIC_SEG", "LOSS.TYPE=['CE','DICE']", "LOSS.WEIGHTS=[0.7, 1.0]"],
        [("foreground", "sigmoid")],
        2,
    ),
    "detection": (["PROBLEM.TYPE=DETECTION"], [("points", "sigmoid")], 2),
    "denoising": (["PROBLEM.TYPE=DENOISING"], [("channel0", "linear")], 2),
}


def config(name: str):
    overrides, _, _ = CASES[name]
    base = (
        []
        if any(o.startswith("PROBLEM.TYPE") for o in overrides)
        else ["PROBLEM.TYPE=INSTANCE_SEG"]
    )
    return load_config(None, base + overrides)


def inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded pre-activation outputs and the targets of case ``name``."""
    cfg = config(name)
    _, channels, batch = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    problem = cfg.get("PROBLEM.TYPE")
    if problem == "INSTANCE_SEG":
        labels = [LABELS["2d"], LABELS["2d"][::-1]][:batch]
        target = np.stack([make_targets(cfg, lab) for lab in labels])
    elif problem == "DENOISING":
        mask = (rng.uniform(size=(batch, 1, 32, 32)) > 0.8).astype(np.float32)
        target = np.concatenate([rng.normal(size=(batch, 1, 32, 32)) * mask, mask], 1)
    else:
        n = int(cfg.get("DATA.N_CLASSES"))
        target = rng.integers(0, n, size=(batch, 1, 32, 32)).astype(np.float32)
        if problem == "DETECTION":
            target = (rng.uniform(size=(batch, 1, 32, 32)) > 0.8).astype(np.float32)
    pred = rng.normal(size=(batch, len(channels), 32, 32))
    return torch.from_numpy(pred.astype(np.float32)), torch.from_numpy(
        np.asarray(target, np.float32)
    )

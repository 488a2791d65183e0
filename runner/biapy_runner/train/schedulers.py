"""TRAIN.OPTIMIZER and TRAIN.LR_SCHEDULER.* as BiaPy sets them up, and early stopping.

Optimizers: ``SGD``, ``ADAM``, ``ADAMW`` with ``TRAIN.LR``, ``TRAIN.W_DECAY`` and (Adam)
``TRAIN.OPT_BETAS``. Schedulers, stepped where BiaPy steps them:

- ``reduceonplateau``: torch's ``ReduceLROnPlateau`` on the validation loss after each epoch
  (``REDUCEONPLATEAU_PATIENCE``, ``REDUCEONPLATEAU_FACTOR``, ``MIN_LR``);
- ``warmupcosine``: linear warm-up from 0 over ``WARMUP_COSINE_DECAY_EPOCHS``, held at
  ``TRAIN.LR`` until the decay starts (``COSINE_DECAY_FRACTION``), half-cosine down to
  ``MIN_LR`` at the last epoch; set before every iteration at the fractional epoch;
- ``onecycle``: torch's ``OneCycleLR`` with ``TRAIN.LR`` as the peak, stepped after every
  optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError

_S = "TRAIN.LR_SCHEDULER."


def _first(value: Any) -> Any:
    """BiaPy 3.7 lists one value per optimizer; the runner trains one network (one optimizer)."""
    return value[0] if isinstance(value, (list, tuple)) else value


def build_optimizer(cfg: Config, parameters: Any) -> Any:
    """The torch optimizer of TRAIN.OPTIMIZER over ``parameters``; its learning rate starts at
    TRAIN.LR (``MIN_LR`` with ``warmupcosine``, as in BiaPy: the schedule sets it each step)."""
    import torch

    kind = str(_first(cfg.get("TRAIN.OPTIMIZER"))).upper()
    lr = float(_first(cfg.get("TRAIN.LR")))
    if str(cfg.get(_S + "NAME")) == "warmupcosine":
        lr = max(float(_first(cfg.get(_S + "MIN_LR"))), 0.0)
    decay = float(cfg.get("TRAIN.W_DECAY"))
    if kind == "SGD":
        return torch.optim.SGD(parameters, lr=lr, weight_decay=decay)
    betas = tuple(float(b) for b in _first(cfg.get("TRAIN.OPT_BETAS")))
    cls = torch.optim.Adam if kind == "ADAM" else torch.optim.AdamW
    return cls(parameters, lr=lr, betas=betas, weight_decay=decay)


@dataclass
class WarmupCosine:
    """BiaPy's warm-up + hold + cosine decay, as a function of the (fractional) epoch."""

    lr: float
    min_lr: float
    warmup_epochs: int
    decay_start: int
    epochs: int

    def value(self, epoch: float) -> float:
        """The learning rate at ``epoch`` (0-based, fractional within an epoch)."""
        if epoch < self.warmup_epochs:
            return self.lr * epoch / self.warmup_epochs
        if epoch < self.decay_start or self.epochs <= self.decay_start:
            return self.lr
        progress = (epoch - self.decay_start) / (self.epochs - self.decay_start)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Schedule:
    """The configured learning-rate schedule of one optimizer, with hooks where BiaPy steps it.

    Parameters
    ----------
    cfg : Config
        TRAIN.LR_SCHEDULER.*, TRAIN.LR, TRAIN.EPOCHS.
    optimizer : torch.optim.Optimizer
        The optimizer whose learning rate is set.
    steps_per_epoch : int
        Batches per epoch (``onecycle``).
    """

    def __init__(self, cfg: Config, optimizer: Any, steps_per_epoch: int) -> None:
        import torch

        self.name = str(cfg.get(_S + "NAME"))
        self.optimizer = optimizer
        self.torch_scheduler: Any = None
        self.cosine: WarmupCosine | None = None
        lr = float(_first(cfg.get("TRAIN.LR")))
        min_lr = float(_first(cfg.get(_S + "MIN_LR")))
        epochs = int(cfg.get("TRAIN.EPOCHS"))
        if self.name == "reduceonplateau":
            patience = int(cfg.get(_S + "REDUCEONPLATEAU_PATIENCE"))
            if patience < 0:
                raise ConfigError(
                    f"{_S}NAME is reduceonplateau but {_S}REDUCEONPLATEAU_PATIENCE is {patience}: "
                    "give the epochs without improvement before the learning rate drops (>= 0)."
                )
            self.torch_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, patience=patience, factor=float(cfg.get(_S + "REDUCEONPLATEAU_FACTOR")),
                min_lr=max(min_lr, 0.0),
            )
        elif self.name == "warmupcosine":
            if min_lr < 0:
                raise ConfigError(
                    f"{_S}NAME is warmupcosine but {_S}MIN_LR is {min_lr}: give the learning "
                    "rate the cosine decays to (>= 0)."
                )
            warmup = max(int(cfg.get(_S + "WARMUP_COSINE_DECAY_EPOCHS")), 0)
            fraction = float(cfg.get(_S + "COSINE_DECAY_FRACTION"))
            start = round(epochs * (1.0 - fraction)) if fraction > 0 else warmup
            self.cosine = WarmupCosine(lr, min_lr, warmup, max(start, warmup), epochs)
        elif self.name == "onecycle":
            self.torch_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, lr, epochs=epochs, steps_per_epoch=max(steps_per_epoch, 1)
            )

    def before_step(self, epoch: int, step: int, steps: int) -> None:
        """Before iteration ``step`` of ``steps`` in ``epoch`` (``warmupcosine``)."""
        if self.cosine is not None:
            self.set_lr(self.cosine.value(epoch + step / max(steps, 1)))

    def after_step(self) -> None:
        """After each optimizer step (``onecycle``)."""
        if self.name == "onecycle":
            self.torch_scheduler.step()

    def after_validation(self, val_loss: float) -> None:
        """After each epoch's validation (``reduceonplateau``)."""
        if self.name == "reduceonplateau" and np.isfinite(val_loss):
            self.torch_scheduler.step(val_loss)

    def set_lr(self, lr: float) -> None:
        """Set every parameter group's learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def lr(self) -> float:
        """The current (largest) learning rate."""
        return max(float(g["lr"]) for g in self.optimizer.param_groups)

    def state_dict(self) -> dict[str, Any]:
        """The torch scheduler's state (to resume), empty for the stateless ones."""
        return self.torch_scheduler.state_dict() if self.torch_scheduler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        if self.torch_scheduler is not None and state:
            self.torch_scheduler.load_state_dict(state)


class EarlyStopping:
    """TRAIN.PATIENCE: stop once the validation loss has not improved for ``patience`` epochs in
    a row, as BiaPy's callback does (a loss equal to the best counts as an improvement, one above
    it or not finite does not)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.counter = 0

    def __call__(self, val_loss: float) -> bool:
        """Record one epoch's validation loss; True when training should stop."""
        if math.isfinite(val_loss) and not val_loss > self.best:
            self.best = val_loss
            self.counter = 0
            return False
        self.counter += 1
        return self.counter >= self.patience

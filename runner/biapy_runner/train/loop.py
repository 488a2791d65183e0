"""The training loop: epochs of batches, validation, early stopping, schedules, checkpoints.

One epoch as in BiaPy's engine: the learning-rate schedule set before each iteration
(``warmupcosine``), forward, loss (a batch whose loss or gradient is not finite is skipped),
backward, gradient clipping (``TRAIN.GRADIENT_CLIP_NORM``), optimizer step, ``onecycle`` step;
then the validation pass, ``reduceonplateau`` on the validation loss, the best checkpoint when the
validation loss improves (the training loss without validation), the periodic checkpoint
(``MODEL.SAVE_CKPT_FREQ``), and early stopping (``TRAIN.PATIENCE``).

Determinism: epoch ``e``'s crops, augmentation and dropout draw from generators seeded with
``(SYSTEM.SEED, e)``, so the same seed gives the same losses on CPU, and a run resumed from a
checkpoint continues exactly as the uninterrupted run would have. Mixed precision
(``torch.autocast`` + ``GradScaler``) runs on CUDA only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner import log
from biapy_runner.config.load import Config
from biapy_runner.train.data import TrainingData
from biapy_runner.train.schedulers import EarlyStopping, Schedule, build_optimizer

#: ``(pre-activation output, target) -> scalar tensor``
LossFn = Callable[[Any, Any], Any]
#: the columns of ``train_log.tsv`` before the metrics
LOG_COLUMNS = ("epoch", "train_loss", "val_loss")
#: the columns of ``train_log.tsv`` after the metrics
LOG_TAIL = ("lr", "seconds")


@dataclass
class LoopSettings:
    """What the loop needs of the configuration (TRAIN.*, MODEL.SAVE_CKPT_FREQ, SYSTEM.SEED)."""

    epochs: int
    patience: int = -1
    save_every: int = -1
    grad_clip: float = 0.0
    seed: int = 0
    amp: bool = False

    @classmethod
    def from_config(cls, cfg: Config, amp: bool = False) -> LoopSettings:
        """The settings of ``cfg``; ``amp`` asks for mixed precision (used on CUDA only)."""
        return cls(
            epochs=int(cfg.get("TRAIN.EPOCHS")),
            patience=int(cfg.get("TRAIN.PATIENCE")),
            save_every=int(cfg.get("MODEL.SAVE_CKPT_FREQ")),
            grad_clip=float(cfg.get("TRAIN.GRADIENT_CLIP_NORM")),
            seed=int(cfg.get("SYSTEM.SEED")),
            amp=amp,
        )


@dataclass
class TrainState:
    """Where training stands: the epochs done, the log rows so far, the best loss and the
    early-stopping counter (kept in checkpoints to resume)."""

    epoch: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    stop_counter: int = 0
    stopped_early: bool = False

    def extra(self, schedule: Schedule) -> dict[str, Any]:
        """What a checkpoint keeps beside BiaPy's keys to resume exactly."""
        return {
            "train_log": [dict(r) for r in self.rows],
            "best_loss": self.best_loss,
            "stop_counter": self.stop_counter,
            "lr_scheduler": schedule.state_dict(),
        }


#: ``(file name, state, model, optimizer, schedule)``: writes one checkpoint
SaveFn = Callable[[str, TrainState, Any, Any, Schedule], Path]


def seed_everything(seed: int, epoch: int = -1) -> np.random.Generator:
    """Seed torch (dropout, initialisation) and return numpy's generator for ``epoch``
    (``-1``: before training, for building the model)."""
    import torch

    torch.manual_seed(seed * 100_003 + epoch + 1)
    return np.random.default_rng([seed, epoch + 1])


def _device_batch(arrays: tuple[np.ndarray, np.ndarray], device: Any) -> tuple[Any, Any]:
    import torch

    return tuple(torch.from_numpy(a).to(device, non_blocking=True) for a in arrays)  # type: ignore[return-value]


def _value(result: Any) -> float:
    return float(result.detach().float().item()) if hasattr(result, "detach") else float(result)


class Trainer:
    """Trains ``model`` on ``data`` as ``cfg`` says.

    Parameters
    ----------
    model : torch.nn.Module
        The network (pre-activation outputs), on ``device``.
    loss : LossFn
        The training loss.
    metrics : mapping of str to callable
        Training metrics ``(output, target) -> value`` averaged over batches, logged for
        training and validation.
    data : TrainingData
        Training and validation batches.
    cfg : Config
        TRAIN.* / MODEL.SAVE_CKPT_FREQ / SYSTEM.SEED.
    device : torch.device
        Where the model runs.
    save : SaveFn
        Writes a checkpoint (BiaPy's file names are chosen by the loop).
    job : str
        The checkpoint files' prefix: ``<job>-checkpoint-<epoch>.pth`` / ``-best.pth``.
    amp : bool
        Mixed precision on CUDA.
    """

    def __init__(
        self,
        model: Any,
        loss: LossFn,
        metrics: Mapping[str, Callable[[Any, Any], Any]],
        data: TrainingData,
        cfg: Config,
        device: Any,
        save: SaveFn,
        job: str,
        amp: bool = False,
    ) -> None:
        self.model = model
        self.loss = loss
        self.metrics = dict(metrics)
        self.data = data
        self.settings = LoopSettings.from_config(cfg, amp)
        self.device = device
        self.save = save
        self.job = job
        self.optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        self.schedule = Schedule(cfg, self.optimizer, len(data.train))
        self.amp = amp and getattr(device, "type", str(device)) == "cuda"
        self.state = TrainState()

    @property
    def columns(self) -> list[str]:
        """``train_log.tsv``'s columns: epoch, losses, metrics (train then val), lr, seconds."""
        names = [f"train_{m}" for m in self.metrics]
        if self.data.val is not None:
            names += [f"val_{m}" for m in self.metrics]
        return [*LOG_COLUMNS, *names, *LOG_TAIL]

    def resume(self, epoch: int, optimizer: Any = None, extra: Mapping[str, Any] | None = None) -> None:
        """Continue after ``epoch`` epochs: the optimizer's state (BiaPy keeps a list, one per
        optimizer) and what :meth:`TrainState.extra` kept, when the checkpoint has them."""
        if optimizer:
            states = optimizer if isinstance(optimizer, list) else [optimizer]
            self.optimizer.load_state_dict(states[0])
        extra = extra or {}
        self.state = TrainState(
            epoch=epoch,
            rows=[dict(r) for r in extra.get("train_log", [])][:epoch],
            best_loss=float(extra.get("best_loss", math.inf)),
            stop_counter=int(extra.get("stop_counter", 0)),
        )
        self.schedule.load_state_dict(dict(extra.get("lr_scheduler") or {}))

    def fit(self) -> TrainState:
        """Train from ``state.epoch`` to TRAIN.EPOCHS (or early stopping); returns the state
        with one log row per epoch."""
        import torch

        s = self.settings
        stopper = EarlyStopping(s.patience) if s.patience >= 0 and self.data.val else None
        if stopper is not None:
            stopper.best, stopper.counter = self.state.best_loss, self.state.stop_counter
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.state.epoch >= s.epochs:
            log.info(f"already trained for {self.state.epoch} epoch(s) (TRAIN.EPOCHS {s.epochs})")
        for epoch in range(self.state.epoch, s.epochs):
            started = time.monotonic()
            train = self._train_epoch(epoch, scaler)
            val = self._validate() if self.data.val is not None else None
            row = self._row(epoch, train, val, time.monotonic() - started)
            self.state.rows.append(row)
            self.state.epoch = epoch + 1
            monitored = row["val_loss"] if val is not None else row["train_loss"]
            if val is not None:
                self.schedule.after_validation(monitored)
            if stopper is not None:
                self.state.stopped_early = stopper(monitored)
                self.state.stop_counter = stopper.counter
            improved = monitored < self.state.best_loss
            if improved:
                self.state.best_loss = monitored
            self._log(row, improved)
            self._checkpoints(epoch + 1, improved)
            if self.state.stopped_early:
                log.info(
                    f"early stopping: validation loss not improved for {s.patience} epoch(s) "
                    f"(TRAIN.PATIENCE), best {self.state.best_loss:.5g}"
                )
                break
        return self.state

    def _train_epoch(self, epoch: int, scaler: Any) -> dict[str, float]:
        import torch

        rng = seed_everything(self.settings.seed, epoch)
        self.model.train()
        steps = len(self.data.train)
        losses: list[float] = []
        sums: dict[str, float] = dict.fromkeys(self.metrics, 0.0)
        for step, arrays in enumerate(self.data.train.epoch(rng)):
            self.schedule.before_step(epoch, step, steps)
            images, targets = _device_batch(arrays, self.device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                output = self.model(images)
                loss = self.loss(output, targets)
            value = _value(loss)
            if not math.isfinite(value):
                log.warn(f"epoch {epoch + 1} step {step + 1}: loss {value}; batch skipped")
                continue
            self.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if self._finite_gradients(scaler):
                if self.settings.grad_clip > 0:
                    scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
                scaler.step(self.optimizer)
                self.schedule.after_step()
            scaler.update()
            losses.append(value)
            self._add_metrics(sums, output.detach(), targets)
        return self._averages(losses, sums)

    def _finite_gradients(self, scaler: Any) -> bool:
        """BiaPy skips the update when a gradient is not finite (AMP: the scaler decides)."""
        if scaler.is_enabled():
            return True
        import torch

        return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in self.model.parameters())

    def _validate(self) -> dict[str, float]:
        import torch

        assert self.data.val is not None
        self.model.eval()
        losses: list[float] = []
        sums: dict[str, float] = dict.fromkeys(self.metrics, 0.0)
        with torch.no_grad():
            for arrays in self.data.val.ordered():
                images, targets = _device_batch(arrays, self.device)
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                    output = self.model(images)
                    losses.append(_value(self.loss(output, targets)))
                self._add_metrics(sums, output, targets)
        return self._averages(losses, sums)

    def _add_metrics(self, sums: dict[str, float], output: Any, targets: Any) -> None:
        for name, metric in self.metrics.items():
            sums[name] += _value(metric(output.float(), targets))

    @staticmethod
    def _averages(losses: list[float], sums: dict[str, float]) -> dict[str, float]:
        """Mean over batches (BiaPy's averaged stats), NaN when every batch was skipped."""
        count = len(losses)
        means = {"loss": float(np.mean(losses)) if count else math.nan}
        means.update({k: v / count if count else math.nan for k, v in sums.items()})
        return means

    def _row(
        self, epoch: int, train: dict[str, float], val: dict[str, float] | None, seconds: float
    ) -> dict[str, float]:
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": train["loss"],
            "val_loss": val["loss"] if val is not None else math.nan,
        }
        row.update({f"train_{m}": train[m] for m in self.metrics})
        if val is not None:
            row.update({f"val_{m}": val[m] for m in self.metrics})
        row["lr"] = self.schedule.lr()
        row["seconds"] = round(seconds, 3)
        return row

    def _log(self, row: dict[str, float], improved: bool) -> None:
        parts = [f"loss {row['train_loss']:.5g}"]
        if not math.isnan(row["val_loss"]):
            parts.append(f"val_loss {row['val_loss']:.5g}" + (" (best)" if improved else ""))
        parts += [f"{k} {v:.4g}" for k, v in row.items() if k.startswith(("train_", "val_"))
                  and k not in LOG_COLUMNS]
        parts.append(f"lr {row['lr']:.3g}")
        log.info(
            f"epoch {int(row['epoch'])}/{self.settings.epochs}: {', '.join(parts)} "
            f"({row['seconds']:.1f}s)"
        )

    def _checkpoints(self, epoch: int, improved: bool) -> None:
        every = self.settings.save_every
        last = epoch == self.settings.epochs or self.state.stopped_early
        if every > 0 and (epoch % every == 0 or last):
            self.save(f"{self.job}-checkpoint-{epoch}.pth", self.state, self.model,
                      self.optimizer, self.schedule)
        if improved:
            self.save(f"{self.job}-checkpoint-best.pth", self.state, self.model,
                      self.optimizer, self.schedule)

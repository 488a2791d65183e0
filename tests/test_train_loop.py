"""The training loop's parts: crops, the validation split, batches, schedules, early stopping,
determinism and resuming (tiny nets, a few iterations on CPU)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from biapy_runner.config.load import load_config
from biapy_runner.errors import InputError
from biapy_runner.train.data import (
    Sample,
    build_training_data,
    foreground_weights,
    grid_origins,
    make_sample,
    split_indices,
)
from biapy_runner.train.loop import Trainer, TrainState
from biapy_runner.train.schedulers import EarlyStopping, Schedule, WarmupCosine, build_optimizer


def test_grid_origins_cover_the_image_with_the_last_crop_flush() -> None:
    assert grid_origins((100,), (32,)) == [(0,), (32,), (64,), (68,)]
    assert grid_origins((64, 40), (32, 40)) == [(0, 0), (32, 0)]
    # 50% overlap: steps of 16
    assert [o[0] for o in grid_origins((64,), (32,), (0.5,))] == [0, 16, 32]


def test_split_is_scikit_learns_train_test_split() -> None:
    # sklearn.model_selection.train_test_split(range(10), test_size=0.1, random_state=0)
    train, val = split_indices(10, 0.1, shuffle=True, seed=0)
    assert val == [2]
    assert train == [8, 4, 9, 1, 6, 7, 3, 0, 5]
    # without shuffling the last ceil(fraction * n) items are held out
    assert split_indices(10, 0.25, shuffle=False, seed=0) == (list(range(7)), [7, 8, 9])
    with pytest.raises(InputError, match="SPLIT_TRAIN"):
        split_indices(1, 0.1, shuffle=True, seed=0)


def _cfg(*sets: str):
    return load_config(None, ["PROBLEM.TYPE=SEMANTIC_SEG", "PROBLEM.NDIM=2D",
                              "DATA.PATCH_SIZE=(16, 16, 1)", "TRAIN.ENABLE=True", *sets])


def test_patch_bigger_than_image_is_refused_with_the_key() -> None:
    cfg = _cfg("DATA.PATCH_SIZE=(64, 64, 1)")
    with pytest.raises(InputError, match="DATA.PATCH_SIZE") as err:
        make_sample("tiny", np.zeros((1, 32, 48)), np.zeros((1, 32, 48)), cfg)
    assert "REFLECT_TO_COMPLETE_SHAPE" in str(err.value)
    padded = make_sample("tiny", np.zeros((1, 32, 48)), np.zeros((1, 32, 48)),
                         _cfg("DATA.PATCH_SIZE=(64, 64, 1)", "DATA.REFLECT_TO_COMPLETE_SHAPE=True"))
    assert padded.image.shape == (1, 64, 64) and padded.target.shape == (1, 64, 64)


def test_gt_of_another_size_is_refused() -> None:
    with pytest.raises(InputError, match="pairs with the right image"):
        make_sample("a", np.zeros((1, 32, 32)), np.zeros((1, 30, 32)), _cfg())


def test_super_resolution_targets_are_cut_at_the_matching_place() -> None:
    image = np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32)
    target = np.kron(image, np.ones((1, 2, 2), np.float32))
    data = build_training_data(_cfg("DATA.VAL.FROM_TRAIN=False"), [Sample("a", image, target)])
    for images, targets in data.train.epoch(np.random.default_rng(0)):
        assert targets.shape[2:] == (32, 32) and images.shape[2:] == (16, 16)
        np.testing.assert_array_equal(targets[:, :, ::2, ::2], images)


def test_split_by_crop_and_replicate_and_random_patches() -> None:
    image = np.zeros((1, 64, 64), np.float32)
    samples = [Sample("a", image, image.copy())]
    data = build_training_data(_cfg("DATA.VAL.SPLIT_TRAIN=0.25"), samples)
    assert len(data.train.crops) == 12 and data.val is not None and len(data.val.crops) == 4
    assert not set(data.train.crops) & set(data.val.crops)
    data = build_training_data(
        _cfg("DATA.VAL.FROM_TRAIN=False", "DATA.TRAIN.EXTRACT_RANDOM_PATCH=True",
             "DATA.TRAIN.REPLICATE=5", "TRAIN.BATCH_SIZE=2"), samples)
    assert len(data.train.crops) == 5 and len(data.train) == 3 and data.val is None


def test_probability_map_centres_crops_on_foreground() -> None:
    target = np.zeros((1, 200, 200), np.float32)
    target[0, 150:160, 20:30] = 1
    weights = foreground_weights(target, 0.94, 0.06)
    assert weights.sum() == pytest.approx(1.0)
    assert weights.reshape(200, 200)[155, 25] == pytest.approx(0.94 / 100)
    data = build_training_data(
        _cfg("DATA.VAL.FROM_TRAIN=False", "DATA.TRAIN.EXTRACT_RANDOM_PATCH=True",
             "DATA.TRAIN.PROBABILITY_MAP=True", "DATA.TRAIN.REPLICATE=200", "TRAIN.BATCH_SIZE=200"),
        [Sample("a", target.copy(), target)])
    _, targets = next(data.train.epoch(np.random.default_rng(0)))
    hit = (targets.reshape(200, -1).max(axis=1) > 0).mean()
    assert hit > 0.85  # uniform crops would hit the 10x10 square about 4% of the time


def test_warmup_cosine_follows_biapys_three_phases() -> None:
    sched = WarmupCosine(lr=1.0, min_lr=0.0, warmup_epochs=2, decay_start=4, epochs=8)
    assert [sched.value(e) for e in (0, 1, 2, 3)] == [0.0, 0.5, 1.0, 1.0]
    assert sched.value(6) == pytest.approx(0.5)
    assert sched.value(8) == pytest.approx(0.0)


def test_onecycle_and_reduce_on_plateau_step_where_biapy_steps_them() -> None:
    net = torch.nn.Linear(2, 1)
    cfg = _cfg("TRAIN.LR_SCHEDULER.NAME=reduceonplateau", "TRAIN.LR=[0.1]",
               "TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_PATIENCE=1",
               "TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_FACTOR=0.5")
    opt = build_optimizer(cfg, net.parameters())
    schedule = Schedule(cfg, opt, steps_per_epoch=4)
    for loss in (1.0, 1.0, 1.0):
        schedule.after_validation(loss)
    assert schedule.lr() == pytest.approx(0.05)
    cfg = _cfg("TRAIN.LR_SCHEDULER.NAME=onecycle", "TRAIN.LR=[0.1]", "TRAIN.EPOCHS=2",
               "TRAIN.OPTIMIZER=ADAM")
    opt = build_optimizer(cfg, net.parameters())
    schedule = Schedule(cfg, opt, steps_per_epoch=4)
    lrs = []
    for _ in range(7):
        opt.step()
        schedule.after_step()
        lrs.append(schedule.lr())
    assert max(lrs) == pytest.approx(0.1, rel=0.05) and lrs[-1] < 0.01 < lrs[0] < 0.09


def test_early_stopping_on_a_constructed_validation_sequence() -> None:
    stopper = EarlyStopping(patience=2)
    losses = [1.0, 0.8, 0.8, 0.9, 0.85, 0.7, 0.75, 0.9]
    stops = [stopper(v) for v in losses]
    # 0.8 again counts as an improvement (BiaPy's rule); 0.9 and 0.85 do not -> stop at epoch 5
    assert stops.index(True) == 4


class _Tiny(torch.nn.Module):
    def __init__(self, ndim: int = 2) -> None:
        super().__init__()
        conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d
        self.body = torch.nn.Sequential(conv(1, 4, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.1), conv(4, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _blobs(seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.float32)
    for y, x in rng.integers(4, size - 4, (8, 2)):
        mask[y - 3:y + 3, x - 3:x + 3] = 1
    return (mask + rng.normal(0, 0.3, mask.shape)).astype(np.float32)[None], mask[None]


def _trainer(tmp_path: Path, *sets: str, saved: dict | None = None) -> Trainer:
    torch.manual_seed(0)
    cfg = _cfg("TRAIN.OPTIMIZER=ADAM", "TRAIN.LR=[0.01]", "TRAIN.BATCH_SIZE=4",
               "TRAIN.EPOCHS=4", "DATA.NORMALIZATION.TYPE=scale_range", *sets)
    samples = [make_sample(f"s{i}", *_blobs(i), cfg) for i in range(2)]
    data = build_training_data(cfg, samples)
    net = _Tiny()
    saved = {} if saved is None else saved

    def save(name, state, model, optimizer, schedule):
        saved[name] = {
            "model": {k: v.clone() for k, v in model.state_dict().items()},
            "optimizer": [copy.deepcopy(optimizer.state_dict())],  # as torch.save freezes it
            "epoch": state.epoch,
            **state.extra(schedule),
        }
        return tmp_path / name

    loss = torch.nn.BCEWithLogitsLoss()
    return Trainer(net, loss, {"IoU": _iou}, data, cfg, torch.device("cpu"), save, "job")


def _iou(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = output > 0
    truth = target > 0.5
    return (pred & truth).sum() / (pred | truth).sum().clamp(min=1)


def test_loss_decreases_and_the_same_seed_gives_the_same_losses(tmp_path: Path) -> None:
    first = _trainer(tmp_path).fit()
    again = _trainer(tmp_path).fit()
    losses = [r["train_loss"] for r in first.rows]
    assert losses[-1] < losses[0]
    assert [r["train_loss"] for r in again.rows] == losses
    assert [r["val_loss"] for r in again.rows] == [r["val_loss"] for r in first.rows]
    assert list(first.rows[0]) == ["epoch", "train_loss", "val_loss", "train_IoU", "val_IoU",
                                   "lr", "seconds"]
    other = _trainer(tmp_path, "SYSTEM.SEED=5").fit()
    assert [r["train_loss"] for r in other.rows] != losses


def test_resume_continues_where_the_uninterrupted_run_would_be(tmp_path: Path) -> None:
    saved: dict = {}
    straight = _trainer(tmp_path, "MODEL.SAVE_CKPT_FREQ=2", saved=saved).fit()
    assert {"job-checkpoint-2.pth", "job-checkpoint-4.pth", "job-checkpoint-best.pth"} <= set(saved)
    ckpt = saved["job-checkpoint-2.pth"]
    resumed = _trainer(tmp_path)
    resumed.model.load_state_dict(ckpt["model"])
    resumed.resume(ckpt["epoch"], ckpt["optimizer"], ckpt)
    state = resumed.fit()
    assert [r["epoch"] for r in state.rows] == [1, 2, 3, 4]
    for got, want in zip(state.rows, straight.rows):
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-6)
        assert got["val_loss"] == pytest.approx(want["val_loss"], abs=1e-6)


def test_trainer_stops_early_at_the_right_epoch(tmp_path: Path, monkeypatch) -> None:
    trainer = _trainer(tmp_path, "TRAIN.PATIENCE=2", "TRAIN.EPOCHS=10")
    sequence = iter([1.0, 0.8, 0.9, 0.85, 0.7, 0.9])
    monkeypatch.setattr(trainer, "_validate", lambda: {"loss": next(sequence), "IoU": 0.0})
    state: TrainState = trainer.fit()
    assert state.stopped_early and state.epoch == 4
    assert state.best_loss == pytest.approx(0.8)
    assert math.isnan(state.rows[-1]["val_IoU"]) is False


def test_training_curves_png_has_one_panel_per_curve(tmp_path: Path) -> None:
    import pandas as pd
    from biapy_runner.report.charts import training_curves
    from PIL import Image

    table = pd.DataFrame({
        "epoch": [1, 2, 3], "train_loss": [0.9, 0.6, 0.5], "val_loss": [1.0, 0.7, 0.65],
        "train_IoU": [0.2, 0.5, 0.6], "val_IoU": [0.1, 0.4, 0.55], "lr": [1e-3, 1e-3, 5e-4],
        "seconds": [1.0, 1.1, 1.0],
    })
    path = training_curves(table, tmp_path / "curves.png")
    with Image.open(path) as png:
        assert png.size == (3 * 400, 320)  # loss, IoU, lr: 4 x 3.2 inches each at 100 dpi
    assert training_curves(table.iloc[:0], tmp_path / "none.png") is None


def test_one_optimizers_scalars_become_biapy_37_lists(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("TRAIN:\n  OPTIMIZER: ADAMW\n  LR: 1.E-3\n  OPT_BETAS: (0.9, 0.99)\n"
                    "  LR_SCHEDULER:\n    NAME: warmupcosine\n    MIN_LR: 1.E-5\n")
    cfg = load_config(path)
    cfg.check_training_keys()
    assert cfg.get("TRAIN.OPTIMIZER") == ["ADAMW"] and cfg.get("TRAIN.LR") == [0.001]
    assert cfg.get("TRAIN.OPT_BETAS") == [[0.9, 0.99]]
    assert cfg.get("TRAIN.LR_SCHEDULER.MIN_LR") == [1e-05]
    assert any("TRAIN.LR: 0.001 -> [0.001]" in note for note in cfg.conversions)

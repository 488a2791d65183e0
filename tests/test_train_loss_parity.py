"""Training losses equal BiaPy 3.7.1's loss classes on seeded inputs (tests/train_loss_cases.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from biapy_runner.train.losses import loss_for
from train_loss_cases import CASES, config, inputs

REFERENCE = json.loads((Path(__file__).parent / "data" / "biapy371_losses.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_matches_biapy(name: str) -> None:
    pred, target = inputs(name)
    value = loss_for(config(name), CASES[name][1])(pred, target)
    assert float(value) == pytest.approx(REFERENCE[name], rel=1e-5)

"""Instance training targets equal BiaPy 3.7.1's ``labels_into_channels`` on small label images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.train.targets import make_targets
from train_target_cases import CASES, LABELS

REFERENCE = np.load(Path(__file__).parent / "data" / "biapy371_train_targets.npz")
IS = "PROBLEM.INSTANCE_SEG."
#: float32 rounding of the distances (BiaPy's edt computes in float32, scipy in float64)
ATOL = 1e-5


@pytest.mark.parametrize("name", sorted(CASES))
def test_instance_targets_match_biapy(name: str) -> None:
    labels_key, channels, opts = CASES[name]
    labels = LABELS[labels_key]
    overrides = [
        "PROBLEM.TYPE=INSTANCE_SEG",
        f"PROBLEM.NDIM={labels_key.upper()}",
        f"{IS}DATA_CHANNELS={[c for c in channels if c not in ('We', 'I')]}",
        f"{IS}DATA_CHANNELS_EXTRA_OPTS=[{json.dumps(opts)}]",
    ]
    if "We" in channels:
        overrides.append(f"{IS}BORDER_EXTRA_WEIGHTS=unet-like")
    ours = make_targets(load_config(None, overrides), labels)
    expected = REFERENCE[name]
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=1e-5)

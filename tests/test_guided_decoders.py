"""The guided mode with a non-watershed decoder, as the Galaxy form runs it: make-config for an
affinity model (channels ``A``) then ``run`` decodes the volume by BiaPy 3.7's agglomeration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"


@pytest.mark.slow
def test_affinity_model_from_the_guided_mode(tmp_path: Path) -> None:
    from biapy_runner.cli import main

    cfg = tmp_path / "cfg.yaml"
    assert main(["make-config", "--out", str(cfg), "--workflow", "instance", "--ndim", "3D",
                 "--slices", "24", "--instance-channels", "A",
                 "--model", str(TEST_DATA / "affinities3d.zip")]) == 0
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--images", str(TEST_DATA / "cells3d.tif"),
                 "--gt", str(TEST_DATA / "cells3d_mask.tif"), "--out", str(out)]) == 0
    labels = tifffile.imread(out / "post_proc" / "cells3d.tif")
    gt = tifffile.imread(TEST_DATA / "cells3d_mask.tif")
    assert labels.shape == gt.shape == (24, 48, 48)
    assert len(np.unique(labels)) - 1 == 4
    row = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t").set_index("image").loc["ALL"]
    assert row["tp@0.5"] == 4 and row["fp@0.5"] == 0
    assert row["mean_matched_score@0.5"] == pytest.approx(0.758052, abs=1e-4)

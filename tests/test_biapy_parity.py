"""The non-watershed decoders give BiaPy 3.7.1's labels on noisy predictions (same partition).

The reference labels were computed by BiaPy 3.7.1's own post-processing functions
(``tests/biapy_parity_cases.py`` says how); only the partition is compared, not the label ids.
"""

from __future__ import annotations

import numpy as np
import pytest
from biapy_parity_cases import REFERENCE, cases
from biapy_runner.config.load import load_config

CASES = cases()
REF = dict(np.load(REFERENCE))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b)) and bool(
        np.all((a == 0) == (b == 0))
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_labels_as_biapy(name: str) -> None:
    case = CASES[name]()
    labels = case.module.decode(case.raw, case.channels, load_config(None, case.overrides))
    ref = REF[name]
    assert labels.shape == ref.shape
    assert int(labels.max()) == int(ref.max())
    assert _same_partition(labels, ref)


def test_reference_counts() -> None:
    """BiaPy found every object of the noisy inputs."""
    counts = {k: int(v.max()) for k, v in REF.items()}
    assert counts == {
        "agglomeration_3d": 3,
        "cellpose_2d_rescaled": 5,
        "cellpose_3d": 3,
        "embedseg_2d": 5,
        "embedseg_3d": 3,
        "omnipose_2d": 5,
        "omnipose_2d_dbscan": 5,
        "omnipose_3d": 3,
        "stardist_2d": 5,
        "stardist_3d": 3,
    }

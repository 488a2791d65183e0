"""Reference data of BiaPy 3.7.1's architectures (``tests/data/biapy371_architectures.npz``).

Each case (its ``index`` entry) names BiaPy's class, the keyword arguments it was built with,
its state dict's parameter names and shapes, and a seed; the weights are :func:`fill` of that
seed, and ``<case>__input`` / ``<case>__output`` the input and BiaPy's output (eval mode, a
classification head's channels after the others).

How the file was made (outside the repository, never by the tests): a scratch script put the
unpacked ``biapy-3.7.1`` sdist's ``biapy`` and ``biapy.models`` folders on ``sys.modules`` as
bare packages (their ``__init__`` pulls bioimageio and yacs), stubbed the two ``torchvision.ops``
names ``blocks.py`` and the U-NeXt modules import (``Permute``: ``torch.permute``;
``StochasticDepth``: the identity in eval mode, both without parameters), built each case's class from
``biapy.models.<module>`` with its ``kwargs``, loaded :func:`fill` (seed = the case's position)
with ``strict=True``, and stored ``state_dict()``'s names and shapes, the input (a seeded normal
array) and ``net(input.copy())`` under ``torch.no_grad()``, with torch 2.13.0 on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

REFERENCE = Path(__file__).parent / "data" / "biapy371_architectures.npz"
#: BiaPy 3.7.1's classifier ``simple_CNN``, made the same way (seeds 100 + the case's position,
#: the input ``(2, C, *spatial)``; see tests/data/README.md)
CLASSIFIERS = Path(__file__).parent / "data" / "biapy371_classifiers.npz"


def fill(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic weights for a state dict: scaled normal weights, normal biases around 0,
    norm weights around 1, positive running variances; integer buffers kept."""
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(state):
        t = state[key]
        if t.dtype == torch.long:
            out[key] = t.clone()
            continue
        shape = tuple(t.shape)
        if key.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean"):
            v = 0.1 * rng.standard_normal(shape)
        elif len(shape) >= 2:
            v = rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[1:]))))
        elif key.endswith("weight"):
            v = 1 + 0.1 * rng.standard_normal(shape)
        else:
            v = 0.1 * rng.standard_normal(shape)
        out[key] = torch.from_numpy(np.asarray(v, dtype=np.float32))
    return out


def load_cases(path: Path = REFERENCE) -> tuple[list[dict[str, Any]], Any]:
    """The cases (name, class, kwargs, seed, keys) and the open npz ``path``."""
    data = np.load(path)
    return json.loads(str(data["index"])), data

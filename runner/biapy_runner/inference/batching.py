"""How many tiles go through the model at once: from the memory free on the device.

A tile's cost is the peak memory of one forward measured when the backend was chosen (GPU memory
on CUDA, resident memory on CPU), or a rough multiple of its input and output when it was not
measured. Half of the free memory (``MemAvailable`` on CPU, ``cudaMemGetInfo`` on a GPU) is shared
out, up to a cap per device kind: CPUs gain little from large batches (one tile already uses every
core), GPUs need them to stay busy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

#: Largest automatic batch per device kind.
CAPS = {"cpu": 4, "cuda": 32}
#: Share of the free memory the batch may use.
FRACTION = 0.5
#: Memory of one forward per byte of its input and output when it was not measured (activations
#: of a U-Net are tens of times its input).
UNMEASURED_FACTOR = 32


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: GPU memory on CUDA, ``MemAvailable`` on the host (0 unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def auto_batch_size(
    tile_bytes: int, io_bytes: int, free_bytes: int, tiles: int, device_kind: str
) -> int:
    """The batch size for ``tiles`` tiles costing ``tile_bytes`` each (0: not measured, then
    estimated from ``io_bytes``, a tile's input plus output) with ``free_bytes`` free; at least 1,
    at most the device kind's cap (:data:`CAPS`), balanced so that batches are even."""
    per_tile = tile_bytes if tile_bytes > 0 else UNMEASURED_FACTOR * io_bytes
    if per_tile <= 0 or free_bytes <= 0 or tiles <= 1:
        return 1
    fits = int(FRACTION * free_bytes // per_tile)
    largest = max(1, min(tiles, CAPS.get(device_kind, 1), fits))
    return math.ceil(tiles / math.ceil(tiles / largest))

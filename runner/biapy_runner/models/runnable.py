"""What ``run`` needs of a model, whatever its source, and opening one from the configuration.

:class:`RunnableModel` is the interface the pipeline and the workflows use; a BioImage.IO
package (:class:`~biapy_runner.models.model.BmzModel`, MODEL.SOURCE: bmz) and a BiaPy
checkpoint (:class:`BiapyModel`, MODEL.SOURCE: biapy) both provide it, so the tiled prediction,
the decoding and the report do not depend on where the weights came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from biapy_runner.config.load import Config
from biapy_runner.errors import InputError
from biapy_runner.log import info
from biapy_runner.models.backends.choice import Choice

SPATIAL = ("z", "y", "x")


class RunnableModel(Protocol):
    """A loaded model in the runner's layout (channel first, spatial axes z, y, x).

    ``expects_config_normalization``: DATA.NORMALIZATION must be applied to its input even when
    the configuration leaves it at BiaPy's default (a BiaPy checkpoint was trained with it).
    """

    name: str
    source: str
    version: str
    weight_format: str
    device: torch.device
    spatial_axes: tuple[str, ...]
    out_spatial_axes: tuple[str, ...]
    in_channels: int
    out_channels: int
    out_channel_names: list[str]
    halo: tuple[int, ...]
    scale: tuple[float, ...]
    normalizes_input: bool
    expects_config_normalization: bool

    @property
    def size_rule(self) -> str: ...

    @property
    def backend(self) -> str | None: ...

    def valid_size(self, requested: Sequence[int]) -> tuple[int, ...]: ...

    def preprocess(self, arr: np.ndarray) -> np.ndarray: ...

    def postprocess(self, arr: np.ndarray) -> np.ndarray: ...

    def forward(self, batch: torch.Tensor) -> torch.Tensor: ...

    def select_backend(self, tile: np.ndarray) -> Choice: ...


def _activation_groups(channels: list[tuple[str, str]]) -> list[tuple[str, slice]]:
    """Runs of output channels sharing one activation (softmax acts over its whole run:
    the classes, or a discretized distance's bins), as BiaPy applies them."""
    groups: list[tuple[str, slice]] = []
    start = 0
    for i in range(1, len(channels) + 1):
        if i < len(channels):
            (name, act), (prev_name, prev_act) = channels[i], channels[i - 1]
            same_run = act == prev_act == "softmax" and (
                name == prev_name or name.startswith("class") and prev_name.startswith("class")
            )
            if same_run:
                continue
        groups.append((channels[start][1], slice(start, i)))
        start = i
    return groups


def apply_activations(y: torch.Tensor, channels: list[tuple[str, str]]) -> torch.Tensor:
    """BiaPy's inference activations on a pre-activation output ``(B, C, ...)``."""
    parts = []
    for act, where in _activation_groups(channels):
        part = y[:, where]
        if act == "sigmoid":
            part = torch.sigmoid(part)
        elif act == "softmax":
            part = torch.softmax(part, dim=1)
        elif act == "tanh":
            part = torch.tanh(part)
        elif act not in ("linear", "none"):
            raise ValueError(f"unknown activation {act!r}")
        parts.append(part)
    return torch.cat(parts, dim=1)


def network_stride(kwargs: dict[str, Any], class_name: str, ndim: int) -> tuple[int, ...]:
    """How much the network downsamples each spatial axis (input sizes must be multiples)."""
    if class_name == "MultiResUnet":
        z, yx = math.prod(kwargs["z_down"]), 16
    elif class_name.startswith("U_NeXt"):  # the patchifying stem, then one stride per level
        levels = slice(0, len(kwargs["feature_maps"]) - 1)
        stem = kwargs["stem_k_size"]
        z = stem * max(kwargs["z_down"][0] // stem, 1) * math.prod(kwargs["z_down"][levels])
        yx = stem * math.prod(kwargs["yx_down"][levels])
    else:
        levels = len(kwargs["feature_maps"]) - 1
        used = slice(1, levels) if class_name == "ResUNetPlusPlus" else slice(0, levels)
        z = math.prod(kwargs["z_down"][used])
        yx = math.prod(kwargs["yx_down"][used])
    return (z, yx, yx) if ndim == 3 else (yx, yx)


class BiapyModel:
    """A BiaPy checkpoint run with the runner's architectures (MODEL.SOURCE: biapy).

    The forward pass applies BiaPy's activations per tile (as BiaPy does before merging), so
    the postprocessing is the identity. Input sizes are multiples of the network's total
    downsampling per axis; DATA.NORMALIZATION is applied to the input
    (``expects_config_normalization``), as BiaPy always does.
    """

    normalizes_input = False
    expects_config_normalization = True
    weight_format = "biapy_checkpoint"

    def __init__(self, net: torch.nn.Module, cfg: Config, path: Path, device: torch.device,
                 epoch: Any = None) -> None:
        from biapy_runner.models.architectures import (
            CLASSES,
            architecture_source,
            output_channels,
        )

        ndim = 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2
        self.net = net.to(device).eval()
        self.device = device
        self.source = str(path)
        self.version = "" if epoch is None else f"epoch {epoch}"
        arch = str(cfg.get("MODEL.ARCHITECTURE")).lower()
        self.name = f"{arch} ({path.name})"
        self.spatial_axes = self.out_spatial_axes = SPATIAL[-ndim:]
        _, class_name, kwargs = architecture_source(cfg)
        assert class_name == CLASSES[arch]
        #: a classifier's input size is fixed (its linear layer's size), its output has no axes
        self._fixed: tuple[int, ...] | None = None
        if class_name == CLASSES["simple_cnn"]:
            self._fixed = tuple(int(s) for s in kwargs["image_shape"][:-1])
            self.out_spatial_axes = ()
        else:
            self._stride = network_stride(kwargs, class_name, ndim)
        self.in_channels = int(cfg.get("DATA.PATCH_SIZE")[-1])
        self.channels = output_channels(cfg)
        self.out_channels = len(self.channels)
        self.out_channel_names = [name for name, _ in self.channels]
        upscaling = tuple(cfg.get("PROBLEM.SUPER_RESOLUTION.UPSCALING") or ())
        sr = cfg.get("PROBLEM.TYPE") == "SUPER_RESOLUTION" and upscaling
        self.scale = tuple(float(s) for s in upscaling) if sr else (1.0,) * ndim
        self.halo = (0,) * ndim
        self.choice: Choice | None = None

    @property
    def size_rule(self) -> str:
        """The input sizes the network accepts, in words."""
        if self._fixed is not None:
            return f"the network takes inputs of exactly {self._fixed} (DATA.PATCH_SIZE)"
        return f"the network takes input sizes that are multiples of {self._stride}"

    @property
    def backend(self) -> str | None:
        """``torch`` once chosen (the network runs as built)."""
        return None if self.choice is None else self.choice.name

    def valid_size(self, requested: Sequence[int]) -> tuple[int, ...]:
        """The smallest multiple of the network's downsampling >= ``requested`` per axis (a
        classifier's fixed input size whatever is requested)."""
        if len(requested) != len(self.spatial_axes):
            raise InputError(
                f"A size for the {len(self.spatial_axes)} spatial axes {self.spatial_axes} of "
                f"the network was expected, got {tuple(requested)}."
            )
        if self._fixed is not None:
            return self._fixed
        return tuple(max(s, math.ceil(int(r) / s) * s) for r, s in zip(requested, self._stride))

    def preprocess(self, arr: np.ndarray) -> np.ndarray:
        """The (already normalised) image as float32, its channels checked."""
        arr = np.asarray(arr)
        if arr.ndim != len(self.spatial_axes) + 1 or arr.shape[0] != self.in_channels:
            raise InputError(
                f"The network {self.name!r} takes {len(self.spatial_axes)}D images with "
                f"{self.in_channels} channel(s) (DATA.PATCH_SIZE), but the image has shape "
                f"{arr.shape} (channel first). Select or combine channels to match."
            )
        return np.ascontiguousarray(arr, dtype=np.float32)

    def postprocess(self, arr: np.ndarray) -> np.ndarray:
        """Identity: the activations are applied per tile by :meth:`forward`."""
        return np.asarray(arr, dtype=np.float32)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The network on ``batch`` ``(B, C, *spatial)`` with BiaPy's activations; a
        classification head's channels follow the others."""
        with torch.inference_mode():
            y = self.net(batch.clone())  # BiaPy's first activation may work in place
            if isinstance(y, dict):
                y = torch.cat([y["pred"], y["class"]], dim=1)
            return apply_activations(y, self.channels)

    def select_backend(self, tile: np.ndarray) -> Choice:
        """The network runs as built (``torch``); nothing is probed."""
        if self.choice is None:
            info(f"model {self.name}: backend torch (BiaPy checkpoint)")
            self.choice = Choice("torch", self.forward)
        return self.choice

    def __repr__(self) -> str:
        return (f"BiapyModel({self.name!r}, {self.device}, axes={self.spatial_axes}, channels "
                f"{self.in_channels}->{self.out_channels})")


def open_model(cfg: Config, *, device: str = "auto", cache_dir: Path | None = None,
               threads: int | None = None, backend: str = "auto") -> RunnableModel:
    """The model MODEL.SOURCE names: a BioImage.IO package (``bmz``:
    MODEL.BMZ.SOURCE_MODEL_ID) or a BiaPy checkpoint (``biapy``: PATHS.CHECKPOINT_FILE)."""
    if cfg.get("MODEL.SOURCE") == "biapy":
        from biapy_runner.models.checkpoint import checkpoint_file, load_checkpoint
        from biapy_runner.models.model import resolve_device

        torch_device = resolve_device(device)
        if threads:
            torch.set_num_threads(int(threads))
        path = checkpoint_file(cfg)
        net, found = load_checkpoint(path, cfg)
        return BiapyModel(net, cfg, path, torch_device, found["epoch"])
    from biapy_runner.models.model import load_model

    return load_model(
        str(cfg.get("MODEL.BMZ.SOURCE_MODEL_ID")), device=device, cache_dir=cache_dir,
        threads=threads, backend=backend,
    )

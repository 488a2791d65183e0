"""BiaPy 3.7's instance creation processes: which decoder turns a prediction into instances.

``PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS`` names the process (values in
``config.schema.INSTANCE_CREATION_PROCESSES``; empty = chosen from the channels). As in BiaPy
3.7.1, the channels decide first: radial distances ``R`` are StarDist, ``E_offset`` embeddings,
``Gv``/``Gh``/``Gz`` gradient flows; otherwise ``agglomeration`` when configured, else the
watershed. Every decoder has the signature ``decode(raw, channels, cfg) -> labels`` with ``raw``
the channel-first prediction ``(C, *spatial)`` after the model's postprocessing, ``channels`` the
channel names in order and ``labels`` integer instances of the spatial shape. The decoders other
than the watershed live in their own modules, imported when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.config.schema import INSTANCE_CREATION_PROCESSES, creation_process
from biapy_runner.decode.channels import Channels
from biapy_runner.decode.watershed import watershed_by_channels, watershed_settings
from biapy_runner.errors import ConfigError

IS = "PROBLEM.INSTANCE_SEG."
KEY = IS + "INSTANCE_CREATION_PROCESS"

Decoder = Callable[[np.ndarray, Sequence[str], Config], np.ndarray]

#: process -> module of ``biapy_runner.decode`` with its ``decode`` function (not the watershed)
MODULES = {
    "gradient-flow": "gradient_flow",
    "embeddings": "embeddings",
    "stardist": "stardist",
    "agglomeration": "agglomeration",
}
#: processes whose channels decide, whatever INSTANCE_CREATION_PROCESS says (as BiaPy 3.7.1 runs)
BY_CHANNELS = ("stardist", "embeddings", "gradient-flow")


@dataclass
class Instances:
    """The labels a process made, plus named intermediate maps (watershed inputs)."""

    labels: np.ndarray
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def resolve_process(channels: Channels, configured: str) -> str:
    """The process BiaPy 3.7.1 runs for ``channels`` with ``INSTANCE_CREATION_PROCESS`` set to
    ``configured`` (``""`` = from the channels).

    Parameters
    ----------
    channels
        The configured channels.
    configured
        The value of ``PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS``.

    Returns
    -------
    str
        One of ``INSTANCE_CREATION_PROCESSES``.
    """
    if configured and configured not in INSTANCE_CREATION_PROCESSES:
        raise ConfigError(
            f"{KEY} = {configured!r} is not one of {', '.join(INSTANCE_CREATION_PROCESSES)}."
        )
    decided = creation_process(channels.names)
    return decided if decided in BY_CHANNELS else configured or decided


def decoder_for(process: str) -> Decoder:
    """The ``decode`` function of a non-watershed ``process`` (its module imported now).

    Raises ``ConfigError`` when this runner does not have that decoder.
    """
    module = MODULES[process]
    try:
        mod = importlib.import_module(f"biapy_runner.decode.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"biapy_runner.decode.{module}":
            raise
        raise ConfigError(
            f"{KEY} = {process!r} (chosen from {IS}DATA_CHANNELS) is not implemented in this "
            "runner; use a model decoded by the watershed (e.g. channels ['F', 'C'])."
        ) from exc
    return mod.decode


def check_process(channels: Channels, cfg: Config) -> str:
    """Resolve the process for ``cfg`` and check that it can run (before any image is read).

    Returns
    -------
    str
        The process name.
    """
    process = resolve_process(channels, str(cfg.get(KEY) or ""))
    if process == "watershed":
        watershed_settings(cfg, channels)
    elif process != "watershed":
        decoder_for(process)
    return process


def create_instances(
    raw: np.ndarray,
    channels: Channels,
    cfg: Config,
) -> Instances:
    """Instance labels from the prediction ``raw`` ``(C, *spatial)`` by the configured process.

    Parameters
    ----------
    raw
        Channel-first float prediction.
    channels
        The configured channels.
    cfg
        The configuration.

    Returns
    -------
    Instances
        The labels and, for the watershed, its seed map, surface and growth mask.
    """
    process = resolve_process(channels, str(cfg.get(KEY) or ""))
    if process == "watershed":
        result = watershed_by_channels(raw, channels, watershed_settings(cfg, channels))
        return Instances(result.labels, result.maps)
    labels = decoder_for(process)(np.asarray(raw, dtype=np.float32), list(channels.names), cfg)
    return Instances(np.asarray(labels))

"""What the runner implements of a loaded configuration: refuse, before any image, what it would
otherwise get wrong.

A configuration always loads (so that it can be inspected, converted and written back); running
it needs every key that changes BiaPy's inference results to be one the runner implements. The
vocabulary (``NOT_IMPLEMENTED``, the creation processes, the decodable channels) is
``biapy_runner.config.schema``'s.
"""

from __future__ import annotations

from typing import Any

from biapy_runner.config.load import Config
from biapy_runner.config.schema import (
    AUGMENTOR_OTHER_KEYS,
    CREATION_PROCESS_CHANNELS,
    DEFAULTS,
    IMPLEMENTED_AUGMENTATIONS,
    IMPLEMENTED_CREATION_PROCESSES,
    IMPLEMENTED_REFINEMENT_OPERATIONS,
    IMPLEMENTED_WATERSHED_CHANNELS,
    NOT_IMPLEMENTED,
    creation_process,
)
from biapy_runner.errors import ConfigError

_IS = "PROBLEM.INSTANCE_SEG."
_REFINE = "TEST.POST_PROCESSING.INSTANCE_REFINEMENT."


def _same(value: Any, allowed: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(allowed, (list, tuple)):
        return list(value) == list(allowed)
    return bool(value == allowed)


def unimplemented(cfg: Config) -> list[str]:
    """One line per configured value that changes BiaPy's results but that the runner does not
    implement (empty when everything configured is implemented or ignored).

    Parameters
    ----------
    cfg : Config
        A loaded configuration.

    Returns
    -------
    list of str
        ``"KEY = value (what it does)"`` lines.
    """
    problems = []
    for key, (allowed, meaning) in NOT_IMPLEMENTED.items():
        value = cfg.get(key)
        if not any(_same(value, a) for a in allowed):
            problems.append(f"{key} = {value!r} ({meaning})")
    if cfg.get("PROBLEM.TYPE") == "INSTANCE_SEG":
        problems += _instance_problems(cfg)
    if cfg.get("TRAIN.ENABLE"):
        problems += augmentor_problems(cfg)
    return problems


def augmentor_problems(cfg: Config) -> list[str]:
    """One line per ``AUGMENTOR`` key set away from BiaPy's default that training does not
    implement (``schema.IMPLEMENTED_AUGMENTATIONS``); none when ``AUGMENTOR.ENABLE`` is false.

    Parameters
    ----------
    cfg : Config
        A loaded configuration.

    Returns
    -------
    list of str
        ``"AUGMENTOR.KEY = value (data augmentation)"`` lines.
    """
    if not cfg.get("AUGMENTOR.ENABLE"):
        return []
    honoured = set(AUGMENTOR_OTHER_KEYS)
    for flag, keys in IMPLEMENTED_AUGMENTATIONS.items():
        honoured.update((flag, *keys))
    problems = []
    for key, default in DEFAULTS["AUGMENTOR"].items():
        value = cfg.get("AUGMENTOR." + key)
        if key not in honoured and not _same(value, default):
            problems.append(f"AUGMENTOR.{key} = {value!r} (data augmentation)")
    return problems


def _instance_problems(cfg: Config) -> list[str]:
    if cfg.get(_IS + "TYPE") != "regular":
        return [f"{_IS}TYPE = {cfg.get(_IS + 'TYPE')!r} (synapse detection)"]
    channels = cfg.get(_IS + "DATA_CHANNELS")
    if isinstance(channels, str):
        return [f"{_IS}DATA_CHANNELS = {channels!r} (a synapse channel string)"]
    process = creation_process(channels, cfg.get(_IS + "INSTANCE_CREATION_PROCESS"))
    problems = []
    if process not in IMPLEMENTED_CREATION_PROCESSES:
        problems.append(f"{_IS}INSTANCE_CREATION_PROCESS = {process!r} (its instance decoder)")
    foreign = [c for c in channels if c not in CREATION_PROCESS_CHANNELS[process]]
    if foreign:
        problems.append(
            f"{_IS}DATA_CHANNELS = {channels} with {process!r} ({foreign} cannot be decoded by "
            f"{process!r}; BiaPy refuses this combination too)"
        )
    elif process == "watershed":
        missing = [c for c in channels if c not in IMPLEMENTED_WATERSHED_CHANNELS]
        if missing:
            problems.append(f"{_IS}DATA_CHANNELS = {channels} (watershed with {missing})")
    if cfg.get(_REFINE + "ENABLE"):
        ops = [o for o in cfg.get(_REFINE + "OPERATIONS") if o not in IMPLEMENTED_REFINEMENT_OPERATIONS]
        if ops:
            problems.append(f"{_REFINE}OPERATIONS with {ops} (instance refinement)")
    return problems


def check_implemented(cfg: Config) -> None:
    """Raise ConfigError (one paragraph) when ``cfg`` asks for something not implemented."""
    problems = unimplemented(cfg)
    if problems:
        where = f" in {cfg.source}" if cfg.source else ""
        raise ConfigError(
            f"The configuration{where} sets what changes BiaPy's results but is not "
            f"implemented by this runner: {'; '.join(problems)}. Set these keys back to BiaPy's "
            "defaults (or remove them) to run with the rest of the configuration; README lists "
            "what is honoured, ignored and refused."
        )

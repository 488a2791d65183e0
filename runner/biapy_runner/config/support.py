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
    CLASSIFIER_ARCHITECTURES,
    CREATION_PROCESS_CHANNELS,
    DEFAULTS,
    IMPLEMENTED_ARCHITECTURES,
    IMPLEMENTED_AUGMENTATIONS,
    IMPLEMENTED_CREATION_PROCESSES,
    IMPLEMENTED_REFINEMENT_OPERATIONS,
    IMPLEMENTED_WATERSHED_CHANNELS,
    NOT_IMPLEMENTED,
    TRAINABLE_INSTANCE_CHANNELS,
    TRAINING_CHANNEL_LOSSES,
    TRAINING_LOSSES,
    TRAINING_NOT_IMPLEMENTED,
    TRAINING_OPTIMIZERS,
    TRAINING_SCHEDULERS,
    THIRD_PARTY_ARCHITECTURES,
    UNBUILT_MODEL_OPTIONS,
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
    problems = _table_problems(cfg, NOT_IMPLEMENTED)
    if cfg.get("PROBLEM.TYPE") == "INSTANCE_SEG":
        problems += _instance_problems(cfg)
    return problems + _chunk_problems(cfg)


def _chunk_problems(cfg: Config) -> list[str]:
    """What of TEST.BY_CHUNKS and the one-file Zarr/H5 inputs the runner does not do."""
    problems = []
    if cfg.get("DATA.TEST.INPUT_ZARR_MULTIPLE_DATA") and cfg.get("DATA.TEST.LOAD_GT"):
        problems.append(
            "DATA.TEST.INPUT_ZARR_MULTIPLE_DATA with DATA.TEST.LOAD_GT (ground truth read from "
            "the image's own Zarr/H5 file; give the GT as its own file instead)"
        )
    phases = list(cfg.get("TEST.BY_CHUNKS.PHASES"))
    if "prediction" not in phases:
        problems.append(f"TEST.BY_CHUNKS.PHASES = {phases} (a job without the prediction phase)")
    for key in ("TEST.BY_CHUNKS.Z_START", "TEST.BY_CHUNKS.Z_END"):
        if cfg.get(key) != -1:
            problems.append(f"{key} = {cfg.get(key)!r} (predicting a range of Z slices)")
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


def _table_problems(cfg: Config, table: dict[str, tuple[tuple[Any, ...], str]]) -> list[str]:
    """``"KEY = value (what it does)"`` for each key of ``table`` set to a value not listed."""
    problems = []
    for key, (allowed, meaning) in table.items():
        value = cfg.get(key)
        if not any(_same(value, a) for a in allowed):
            problems.append(f"{key} = {value!r} ({meaning})")
    return problems


def check_implemented(cfg: Config) -> None:
    """Raise ConfigError (one paragraph) when ``cfg`` asks for something not implemented (with
    TRAIN.ENABLE: also an unknown or badly typed training key, or what training does not
    implement)."""
    if cfg.get("TRAIN.ENABLE"):
        cfg.check_training_keys()
    _refuse(
        cfg, unimplemented(cfg) + training_problems(cfg), "sets what changes BiaPy's results but "
        "is not implemented by this runner", "Set these keys back to BiaPy's defaults (or remove "
        "them) to run with the rest of the configuration; README lists what is honoured, "
        "ignored and refused.",
    )


def _refuse(cfg: Config, problems: list[str], what: str, advice: str) -> None:
    """One ConfigError paragraph listing ``problems`` (nothing when there are none)."""
    if problems:
        where = f" in {cfg.source}" if cfg.source else ""
        raise ConfigError(f"The configuration{where} {what}: {'; '.join(problems)}. {advice}")


def model_problems(cfg: Config) -> list[str]:
    """What the runner cannot build of the configured BiaPy network (MODEL.SOURCE: biapy, or
    training): ``"KEY = value (why)"`` lines, empty when it builds it.

    A run with a BioImage.IO model never builds one, so these keys are only checked when a
    network is built from MODEL.* (see :func:`check_model_implemented`).

    Parameters
    ----------
    cfg : Config
        The configuration whose MODEL.* (and PROBLEM.TYPE) describe the network.

    Returns
    -------
    list of str
        One line per value refused.
    """
    problem = cfg.get("PROBLEM.TYPE")
    problems = _architecture_problems(cfg, str(problem))
    for key, (refused, meaning) in UNBUILT_MODEL_OPTIONS.items():
        if _same(cfg.get(key), refused):
            problems.append(f"{key} = {refused!r} ({meaning})")
    if problem == "SELF_SUPERVISED" and cfg.get("PROBLEM.SELF_SUPERVISED.PRETEXT_TASK") == "masking":
        problems.append("PROBLEM.SELF_SUPERVISED.PRETEXT_TASK = 'masking' (the MAE network)")
    return problems


def _architecture_problems(cfg: Config, problem: str) -> list[str]:
    """MODEL.ARCHITECTURE not built by the runner (those BiaPy takes from torchvision or timm
    named as such), or a classifier for an image-to-image workflow and the reverse."""
    arch = str(cfg.get("MODEL.ARCHITECTURE")).lower()
    value = f"MODEL.ARCHITECTURE = {cfg.get('MODEL.ARCHITECTURE')!r}"
    classifies = problem == "CLASSIFICATION"
    builders = [v for k, v in THIRD_PARTY_ARCHITECTURES.items() if arch.startswith(k)]
    if builders:
        library, what = builders[0]
        return [
            f"{value} (BiaPy builds it with {library} ({what}), which this runner does not "
            "depend on; train simple_cnn instead, or run a BioImage.IO classifier with "
            "MODEL.SOURCE: bmz)"
        ]
    if arch not in IMPLEMENTED_ARCHITECTURES:
        return [f"{value} (implemented: {', '.join(IMPLEMENTED_ARCHITECTURES)})"]
    if classifies != (arch in CLASSIFIER_ARCHITECTURES):
        need = "a classifier: simple_cnn" if classifies else "an image-to-image network"
        return [f"{value} (PROBLEM.TYPE {problem} takes {need})"]
    return []


def check_model_implemented(cfg: Config) -> None:
    """Raise ConfigError (one paragraph) when the configured BiaPy network cannot be built."""
    _refuse(
        cfg, model_problems(cfg), "asks for a BiaPy network (MODEL.SOURCE: biapy) that this "
        "runner does not build", "Choose an implemented architecture and options, or run a "
        "BioImage.IO model (MODEL.SOURCE: bmz, --model).",
    )


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


def training_problems(cfg: Config) -> list[str]:
    """With ``TRAIN.ENABLE``: the AUGMENTOR keys (:func:`augmentor_problems`), the training
    targets and losses (:func:`target_problems`) and the data, optimizer, scheduler and
    checkpoint settings (:func:`loop_problems`) that training does not implement."""
    if not cfg.get("TRAIN.ENABLE"):
        return []
    return augmentor_problems(cfg) + target_problems(cfg) + loop_problems(cfg)


def loop_problems(cfg: Config) -> list[str]:
    """One line per data, optimizer, scheduler or checkpoint setting that the training loop does
    not implement (``schema.TRAINING_NOT_IMPLEMENTED``, one optimizer among
    ``TRAINING_OPTIMIZERS``, a scheduler among ``TRAINING_SCHEDULERS``).

    Parameters
    ----------
    cfg : Config
        A loaded configuration.

    Returns
    -------
    list of str
        ``"KEY = value (what it does)"`` lines.
    """
    problems = _table_problems(cfg, TRAINING_NOT_IMPLEMENTED)
    optimizers = cfg.get("TRAIN.OPTIMIZER")
    optimizers = list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]
    if len(optimizers) != 1:
        problems.append(f"TRAIN.OPTIMIZER = {optimizers} (one optimizer per sub-network)")
    elif str(optimizers[0]).upper() not in TRAINING_OPTIMIZERS:
        problems.append(
            f"TRAIN.OPTIMIZER = {optimizers[0]!r} (implemented: {', '.join(TRAINING_OPTIMIZERS)})"
        )
    name = str(cfg.get("TRAIN.LR_SCHEDULER.NAME"))
    if name not in TRAINING_SCHEDULERS:
        problems.append(
            f"TRAIN.LR_SCHEDULER.NAME = {name!r} (implemented: "
            f"{', '.join(s for s in TRAINING_SCHEDULERS if s)})"
        )
    return problems


def target_problems(cfg: Config) -> list[str]:
    """One line per setting whose training target or loss is not implemented: instance channels
    outside ``schema.TRAINABLE_INSTANCE_CHANNELS`` or losses outside ``TRAINING_CHANNEL_LOSSES``,
    a class head (``DATA.N_CLASSES`` > 2) for instances or points, ``LOSS.TYPE`` outside
    ``schema.TRAINING_LOSSES``.

    Parameters
    ----------
    cfg : Config
        A loaded configuration.

    Returns
    -------
    list of str
        ``"KEY = value (what it does)"`` lines.
    """
    problem = str(cfg.get("PROBLEM.TYPE"))
    problems = []
    if problem == "INSTANCE_SEG":
        channels = cfg.get(_IS + "DATA_CHANNELS")
        names = list(channels) if isinstance(channels, (list, tuple)) else []
        missing = [c for c in names if c not in TRAINABLE_INSTANCE_CHANNELS]
        if missing:
            problems.append(f"{_IS}DATA_CHANNELS = {names} (training targets for {missing})")
        losses = [str(x).lower() for x in cfg.get(_IS + "DATA_CHANNELS_LOSSES")]
        if not set(losses) <= set(TRAINING_CHANNEL_LOSSES):
            problems.append(f"{_IS}DATA_CHANNELS_LOSSES = {losses} (implemented: {list(TRAINING_CHANNEL_LOSSES)})")
    if problem in ("INSTANCE_SEG", "DETECTION") and int(cfg.get("DATA.N_CLASSES")) > 2:
        problems.append(f"DATA.N_CLASSES = {cfg.get('DATA.N_CLASSES')} (training the class head)")
    losses = [str(n).upper() for n in cfg.get("LOSS.TYPE")]
    allowed = TRAINING_LOSSES.get(problem)
    if allowed is not None and not set(losses) <= set(allowed):
        problems.append(f"LOSS.TYPE = {losses} (implemented for {problem}: {list(allowed)})")
    return problems

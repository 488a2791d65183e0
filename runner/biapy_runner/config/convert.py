"""Older BiaPy 3.x configurations in BiaPy 3.7.1's spelling, converted as BiaPy converts them.

BiaPy converts an old configuration file before merging it onto its defaults (its
``convert_old_model_cfg_to_current_version``). This module does the same conversions, read from
BiaPy's sources and written anew, on the nested mapping of a YAML file or of one ``--set``
override: plain renames come from ``schema.ALIASES``, deleted keys from ``schema.DROPPED``, and
the conversions of value or shape are the functions below. Where BiaPy's converter has a slip
that BiaPy itself then rejects or that turns a disabled option on, the intended conversion is
done and README says so (string channels are mapped token by token, so ``BCDv2`` becomes
``["F", "C", "D"]``; ``YZ_FILTERING``, ``Z_FILTERING``, ``CLEAR_BORDER`` and ``FILL_HOLES``
convert only when true).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from biapy_runner.config.schema import (
    ALIASES,
    DROPPED,
    LEGACY_CHANNEL_SETS,
    LEGACY_GROWTH_THRESHOLD,
    LEGACY_SEED_THRESHOLDS,
    legacy_channels_as_list,
)
from biapy_runner.errors import ConfigError

Tree = dict[str, Any]
_IS = ("PROBLEM", "INSTANCE_SEG")
_PP = ("TEST", "POST_PROCESSING")
_NORM = ("DATA", "NORMALIZATION")


def _node(tree: Tree, path: tuple[str, ...], create: bool = False) -> Tree | None:
    """The mapping at ``path`` (created when ``create``), or None when absent."""
    node: Any = tree
    for part in path:
        if not isinstance(node, dict):
            return None
        if part not in node:
            if not create:
                return None
            node[part] = {}
        node = node[part]
    return node if isinstance(node, dict) else None


def _pop(tree: Tree, dotted: str) -> Any:
    """Remove the dotted key from ``tree`` and return its value (KeyError when absent)."""
    *parents, last = dotted.split(".")
    node = _node(tree, tuple(parents))
    if node is None or last not in node:
        raise KeyError(dotted)
    return node.pop(last)


def _put(tree: Tree, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = _node(tree, tuple(parents), create=True)
    if node is None:
        raise ConfigError(f"Configuration key '{'.'.join(parents)}' must be a section.")
    node[last] = value


def _has(tree: Tree, dotted: str) -> bool:
    *parents, last = dotted.split(".")
    node = _node(tree, tuple(parents))
    return node is not None and last in node


def _lookup(trees: tuple[Mapping[str, Any], ...], dotted: str, default: Any) -> Any:
    """The first value of ``dotted`` found in ``trees`` (the file being converted first)."""
    for tree in trees:
        if _has(tree, dotted):  # type: ignore[arg-type]
            *parents, last = dotted.split(".")
            return _node(tree, tuple(parents))[last]  # type: ignore[arg-type,index]
    return default


class _Conversion:
    """One conversion run: the tree, its context (values it may need) and the notes taken."""

    def __init__(self, tree: Tree, context: Mapping[str, Any] | None) -> None:
        self.tree = tree
        self.trees = (tree, context or {})
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` onto ``new`` (a section's keys are merged into an existing section)."""
        value = _pop(self.tree, old)
        if isinstance(value, dict) and isinstance(_lookup((self.tree,), new, None), dict):
            for key, sub in value.items():
                _put(self.tree, f"{new}.{key}", sub)
        else:
            _put(self.tree, new, value)
        self.note(f"{old} -> {new}")

    @property
    def ndim(self) -> int:
        return 3 if _lookup(self.trees, "PROBLEM.NDIM", "2D") == "3D" else 2


# --------------------------------------------------------------------------------------------
# conversions of value or shape, in the order BiaPy's converter applies them
# --------------------------------------------------------------------------------------------


#: BiaPy < 3.4 watershed thresholds (DATA.MW_TH1-5 before 3.0, PROBLEM.INSTANCE_SEG.DATA_MW_TH1-5
#: in 3.0-3.3; always manual) -> the 3.4-3.6 names (TH5, D's growth limit, has no later name)
_NUMBERED_THRESHOLDS = {
    "1": "DATA_MW_TH_BINARY_MASK",
    "2": "DATA_MW_TH_CONTOUR",
    "3": "DATA_MW_TH_FOREGROUND",
    "4": "DATA_MW_TH_DISTANCE",
}


def _numbered_thresholds(c: _Conversion) -> None:
    """``DATA.CHANNELS`` / ``DATA.MW_TH1-5`` (BiaPy < 3.0) and ``DATA_MW_TH1-5`` (3.0-3.3) ->
    ``PROBLEM.INSTANCE_SEG.DATA_CHANNELS`` and the named manual thresholds of 3.4-3.6."""
    data = _node(c.tree, ("DATA",))
    seg = _node(c.tree, _IS, create=data is not None and "CHANNELS" in data)
    if data is not None and "CHANNELS" in data and seg is not None:
        seg["DATA_CHANNELS"] = data.pop("CHANNELS")
        c.note("DATA.CHANNELS -> PROBLEM.INSTANCE_SEG.DATA_CHANNELS")
    found = False
    for section, prefix in ((data, "MW_TH"), (seg, "DATA_MW_TH")):
        for number in "12345":
            if section is None or f"{prefix}{number}" not in section:
                continue
            value = section.pop(f"{prefix}{number}")
            found = True
            if number in _NUMBERED_THRESHOLDS:
                _put(c.tree, f"PROBLEM.INSTANCE_SEG.{_NUMBERED_THRESHOLDS[number]}", value)
    if found:
        _put(c.tree, "PROBLEM.INSTANCE_SEG.DATA_MW_TH_TYPE", "manual")
        c.note("MW_TH1-4 -> DATA_MW_TH_BINARY_MASK/CONTOUR/FOREGROUND/DISTANCE (manual; TH5 dropped)")


def _test_stats(c: _Conversion) -> None:
    """``TEST.STATS.FULL_IMG`` -> ``TEST.FULL_IMG``; the other ``TEST.STATS`` keys are gone."""
    if not _has(c.tree, "TEST.STATS"):
        return
    stats = _pop(c.tree, "TEST.STATS")
    if isinstance(stats, dict) and "FULL_IMG" in stats:
        _put(c.tree, "TEST.FULL_IMG", stats["FULL_IMG"])
    c.note("TEST.STATS.FULL_IMG -> TEST.FULL_IMG (TEST.STATS dropped)")


def _axis_filters(c: _Conversion) -> None:
    """``YZ_FILTERING`` / ``Z_FILTERING`` (+ ``_SIZE``) -> ``MEDIAN_FILTER`` along yz / z."""
    pp = _node(c.tree, _PP)
    if pp is None:
        return
    for old, axis in (("YZ_FILTERING", "yz"), ("Z_FILTERING", "z")):
        if old not in pp:
            continue
        enabled = pp.pop(old)
        size = pp.pop(f"{old}_SIZE", 5)
        if enabled:
            pp["MEDIAN_FILTER"] = True
            pp["MEDIAN_FILTER_AXIS"] = [axis]
            pp["MEDIAN_FILTER_SIZE"] = [size]
        c.note(f"TEST.POST_PROCESSING.{old} -> MEDIAN_FILTER (axis {axis})")


def _remove_by_properties(c: _Conversion) -> None:
    """Flat ``REMOVE_BY_PROPERTIES*`` (BiaPy < 3.5) -> ``MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES``."""
    pp = _node(c.tree, _PP)
    if pp is None or "REMOVE_BY_PROPERTIES" not in pp:
        return
    props = pp.pop("REMOVE_BY_PROPERTIES")
    if isinstance(props, dict):  # already a section: BiaPy 3.5-3.6 misplaced it; keep its keys
        target = props
    else:
        target = {"ENABLE": True, "PROPS": props}
    for old, new in (("REMOVE_BY_PROPERTIES_VALUES", "VALUES"), ("REMOVE_BY_PROPERTIES_SIGN", "SIGNS")):
        if old in pp:
            target[new] = pp.pop(old)
    measure = pp.setdefault("MEASURE_PROPERTIES", {})
    measure["ENABLE"] = True
    measure.setdefault("REMOVE_BY_PROPERTIES", {}).update(target)
    c.note("TEST.POST_PROCESSING.REMOVE_BY_PROPERTIES* -> MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES")


def _first_of_list(c: _Conversion) -> None:
    """Lists that became single values: the first item is kept (an empty list is dropped)."""
    for dotted in (
        "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS",
        "TEST.DET_MIN_TH_TO_BE_PEAK",
        "TEST.DET_TOLERANCE",
    ):
        if _has(c.tree, dotted) and isinstance(_lookup((c.tree,), dotted, None), list):
            items = _pop(c.tree, dotted)
            if items:
                _put(c.tree, dotted, items[0])
            c.note(f"{dotted}: list -> its first value")
    dotted = "TEST.POST_PROCESSING.DET_WATERSHED_FIRST_DILATION"
    value = _lookup((c.tree,), dotted, None)
    if isinstance(value, list) and value and isinstance(value[0], list):
        _put(c.tree, dotted, value[0])
        c.note(f"{dotted}: list of lists -> its first list")


def _instance_refinement(c: _Conversion) -> None:
    """``CLEAR_BORDER`` / ``FILL_HOLES`` -> ``INSTANCE_REFINEMENT`` operations (when true)."""
    pp = _node(c.tree, _PP)
    if pp is None:
        return
    for old, operation in (("CLEAR_BORDER", "clear_border"), ("FILL_HOLES", "fill_holes")):
        if old not in pp:
            continue
        if pp.pop(old):
            refine = pp.setdefault("INSTANCE_REFINEMENT", {})
            refine["ENABLE"] = True
            refine.setdefault("OPERATIONS", []).append(operation)
            refine.setdefault("VALUES", []).append("none")
        c.note(f"TEST.POST_PROCESSING.{old} -> INSTANCE_REFINEMENT.OPERATIONS {operation!r}")


def _roi_mask(c: _Conversion) -> None:
    """``APPLY_MASK`` + ``DATA.TEST.BINARY_MASKS`` -> ``DATA.TEST.ROI_MASK``."""
    apply = _lookup(c.trees, "TEST.POST_PROCESSING.APPLY_MASK", False)
    if _has(c.tree, "DATA.TEST.BINARY_MASKS"):
        path = _pop(c.tree, "DATA.TEST.BINARY_MASKS")
        if apply:
            _put(c.tree, "DATA.TEST.ROI_MASK.PATH", path)
        c.note("DATA.TEST.BINARY_MASKS -> DATA.TEST.ROI_MASK.PATH")
    if _has(c.tree, "TEST.POST_PROCESSING.APPLY_MASK"):
        if _pop(c.tree, "TEST.POST_PROCESSING.APPLY_MASK"):
            _put(c.tree, "DATA.TEST.ROI_MASK.ENABLE", True)
        c.note("TEST.POST_PROCESSING.APPLY_MASK -> DATA.TEST.ROI_MASK.ENABLE")


def _single_to_list(c: _Conversion) -> None:
    """Values that became per-axis / per-channel lists."""
    dotted = "PROBLEM.DETECTION.CENTRAL_POINT_DILATION"
    value = _lookup((c.tree,), dotted, None)
    if isinstance(value, int) and not isinstance(value, bool):
        _put(c.tree, dotted, [value])
        c.note(f"{dotted}: {value} -> [{value}]")
    dotted = "PROBLEM.SUPER_RESOLUTION.UPSCALING"
    value = _lookup((c.tree,), dotted, None)
    if isinstance(value, int) and not isinstance(value, bool):
        _put(c.tree, dotted, (value,) * c.ndim)
        c.note(f"{dotted}: {value} -> {(value,) * c.ndim}")


def _optimizer_lists(c: _Conversion) -> None:
    """One optimizer's settings that became lists (one item per optimizer, BiaPy 3.7):
    TRAIN.OPTIMIZER, TRAIN.LR, TRAIN.OPT_BETAS and TRAIN.LR_SCHEDULER.MIN_LR."""
    optimizer = _lookup((c.tree,), "TRAIN.OPTIMIZER", None)
    if isinstance(optimizer, str):
        _put(c.tree, "TRAIN.OPTIMIZER", [optimizer])
        c.note(f"TRAIN.OPTIMIZER: {optimizer!r} -> [{optimizer!r}]")
    lr = _lookup((c.tree,), "TRAIN.LR", None)
    if isinstance(lr, float):
        _put(c.tree, "TRAIN.LR", [lr])
        c.note(f"TRAIN.LR: {lr} -> [{lr}]")
    betas = _lookup((c.tree,), "TRAIN.OPT_BETAS", None)
    if isinstance(betas, str):
        pair = [float(x.strip()) for x in betas.strip().strip("()").split(",")]
        _put(c.tree, "TRAIN.OPT_BETAS", [pair])
        c.note(f"TRAIN.OPT_BETAS: {betas!r} -> [{pair}]")
    min_lr = _lookup((c.tree,), "TRAIN.LR_SCHEDULER.MIN_LR", None)
    if isinstance(min_lr, float):
        count = len(_lookup(c.trees, "TRAIN.OPTIMIZER", ["SGD"]))
        _put(c.tree, "TRAIN.LR_SCHEDULER.MIN_LR", [min_lr] * count)
        c.note(f"TRAIN.LR_SCHEDULER.MIN_LR: {min_lr} -> {[min_lr] * count}")


def _instance_channels(c: _Conversion) -> None:
    """String ``DATA_CHANNELS`` -> the 3.7 list; ``DATA_MW_TH_*`` -> ``WATERSHED`` thresholds."""
    seg = _node(c.tree, _IS)
    if seg is None:
        return
    channels = seg.get("DATA_CHANNELS")
    is_synapse = _lookup(c.trees, "PROBLEM.INSTANCE_SEG.TYPE", "regular") == "synapses"
    if isinstance(channels, str) and channels in LEGACY_CHANNEL_SETS and not is_synapse:
        seg["DATA_CHANNELS"] = legacy_channels_as_list(channels)
        c.note(f"PROBLEM.INSTANCE_SEG.DATA_CHANNELS {channels!r} -> {seg['DATA_CHANNELS']}")
    _legacy_thresholds(c, seg)


def _legacy_thresholds(c: _Conversion, seg: Tree) -> None:
    """BiaPy < 3.6.6 thresholds. ``auto``: Otsu (the 3.7 default), the values are dropped;
    ``manual``: each given threshold becomes the seed (or growth) threshold of its channel."""
    old_keys = ("DATA_MW_TH_TYPE", *LEGACY_SEED_THRESHOLDS, LEGACY_GROWTH_THRESHOLD)
    if not any(key in seg for key in old_keys):
        return
    channels = _lookup(c.trees, "PROBLEM.INSTANCE_SEG.DATA_CHANNELS", [])
    if isinstance(channels, str):
        channels = legacy_channels_as_list(channels) if channels in LEGACY_CHANNEL_SETS else []
    manual = seg.pop("DATA_MW_TH_TYPE", "auto") == "manual"
    watershed = seg.setdefault("WATERSHED", {})
    if manual:
        watershed["SEED_CHANNELS_THRESH"] = []
        watershed["GROWTH_MASK_CHANNELS_THRESH"] = []
    for key, candidates in LEGACY_SEED_THRESHOLDS.items():
        if key not in seg:
            continue
        value = seg.pop(key)
        channel = next((ch for ch in candidates if ch in channels), None)
        if manual and channel is not None:
            watershed.setdefault("SEED_CHANNELS", []).append(channel)
            watershed["SEED_CHANNELS_THRESH"].append(value)
    if LEGACY_GROWTH_THRESHOLD in seg:
        value = seg.pop(LEGACY_GROWTH_THRESHOLD)
        if manual and "F" in channels:
            watershed.setdefault("GROWTH_MASK_CHANNELS", []).append("F")
            watershed["GROWTH_MASK_CHANNELS_THRESH"].append(value)
    kind = "manual: seed/growth thresholds" if manual else "auto: Otsu thresholds"
    c.note(f"PROBLEM.INSTANCE_SEG.DATA_MW_TH_* -> WATERSHED ({kind})")


def _normalization(c: _Conversion) -> None:
    """``PERC_CLIP: bool`` -> a section; single values -> per-channel lists; ``custom`` ->
    ``zero_mean_unit_variance`` with ``CUSTOM_MEAN`` / ``CUSTOM_STD``."""
    norm = _node(c.tree, _NORM)
    if norm is None:
        return
    if isinstance(norm.get("PERC_CLIP"), bool):
        section: Tree = {"ENABLE": norm.pop("PERC_CLIP")}
        for old, new in (("PERC_LOWER", "LOWER_PERC"), ("PERC_UPPER", "UPPER_PERC")):
            if old in norm:
                section[new] = norm.pop(old)
        norm["PERC_CLIP"] = section
        c.note("DATA.NORMALIZATION.PERC_CLIP: boolean -> section")
    if norm.get("TYPE") == "custom":
        norm["TYPE"] = "zero_mean_unit_variance"
        for old, new in (("CUSTOM_MEAN", "MEAN_VAL"), ("CUSTOM_STD", "STD_VAL")):
            if old in norm:
                norm.setdefault("ZERO_MEAN_UNIT_VAR", {})[new] = [norm.pop(old)]
        c.note("DATA.NORMALIZATION.TYPE 'custom' -> 'zero_mean_unit_variance'")
    for old, new in (("CUSTOM_MEAN", "MEAN_VAL"), ("CUSTOM_STD", "STD_VAL")):
        if old in norm:  # without TYPE custom BiaPy ignored them; keep them where they belong
            norm.setdefault("ZERO_MEAN_UNIT_VAR", {})[new] = norm.pop(old)
            c.note(f"DATA.NORMALIZATION.{old} -> ZERO_MEAN_UNIT_VAR.{new}")
    for section_name, keys in (
        ("PERC_CLIP", ("LOWER_VALUE", "UPPER_VALUE")),
        ("ZERO_MEAN_UNIT_VAR", ("MEAN_VAL", "STD_VAL")),
    ):
        section = norm.get(section_name)
        if not isinstance(section, dict):
            continue
        for key in keys:
            if key in section and not isinstance(section[key], (list, tuple)):
                section[key] = [section[key]]


def _renames_and_drops(c: _Conversion) -> None:
    """The plain renames of ``schema.ALIASES`` and the deletions of ``schema.DROPPED``."""
    for old, new in ALIASES.items():
        if _has(c.tree, old):
            c.rename(old, new)
    for dotted in DROPPED:
        if _has(c.tree, dotted):
            _pop(c.tree, dotted)
            c.note(f"{dotted} dropped (BiaPy 3.7.1 has no such key)")


_STEPS: tuple[Callable[[_Conversion], None], ...] = (
    _numbered_thresholds,
    _test_stats,
    _axis_filters,
    _remove_by_properties,
    _first_of_list,
    _instance_refinement,
    _single_to_list,
    _optimizer_lists,
    _instance_channels,
    _roi_mask,
    _normalization,
    _renames_and_drops,
)


def convert(tree: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> tuple[Tree, list[str]]:
    """``tree`` (a nested configuration mapping) in BiaPy 3.7.1's spelling.

    Parameters
    ----------
    tree : mapping
        The nested keys of a YAML file, or of one ``--set`` override.
    context : mapping, optional
        The (converted) file an override applies to: where a conversion needs another key
        (PROBLEM.NDIM, the instance channels) that ``tree`` does not hold.

    Returns
    -------
    tuple of (dict, list of str)
        A converted deep copy of ``tree`` (the input is not modified) and one note per
        conversion done.
    """
    c = _Conversion(copy.deepcopy(dict(tree)), context)
    for step in _STEPS:
        step(c)
    return c.tree, c.notes


def nested(dotted: str, value: Any) -> Tree:
    """``{"A": {"B": value}}`` for the dotted key ``"A.B"``."""
    out: Tree = {}
    _put(out, dotted.strip(), value)
    return out

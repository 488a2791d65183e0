"""Galaxy glue: name staged inputs after their element identifiers and gather the outputs.

The tool's Cheetah writes one manifest line per dataset (``identifier<TAB>path<TAB>extension``,
optionally a fourth column naming a group, e.g. the prediction set of ``biapy_evaluate.xml``) and
calls ``biapy-runner galaxy-stage`` before the run and ``galaxy-collect`` after it, so that
naming (what the outputs are called in the collections) lives here, tested, not in the XML.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biapy_runner.errors import InputError

#: Extensions dropped from element identifiers (``img1.tif`` -> ``img1``).
_EXTENSION = re.compile(
    r"\.(?:ome\.)?(?:tiff?|png|jpe?g|h5|hdf5|zarr|npy|csv|tsv|tabular|txt)$", re.IGNORECASE
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
#: File extensions for Galaxy datatypes whose name is not a file extension the runner reads.
_FILE_EXTENSIONS = {"tabular": "tsv"}
#: Output folders gathered per image: (folder under out/, file suffix, collection folder, suffix).
COLLECTED = (
    ("raw", ".tif", "raw", ".tif"),
    ("post_proc", ".tif", "post_proc", ".tif"),
    ("instances", ".tif", "instances", ".tif"),
    ("post_proc", "_points.tsv", "points", ".tsv"),
    ("report/previews", ".png", "previews", ".png"),
)


@dataclass(frozen=True)
class Entry:
    """One dataset of the manifest: element identifier, file and Galaxy extension."""

    identifier: str
    path: Path
    ext: str


def stem_for(identifier: str) -> str:
    """The file stem of a dataset: its element identifier without an image extension, with
    every character other than letters, digits, ``_``, ``.`` and ``-`` replaced by ``_``."""
    return _UNSAFE.sub("_", _EXTENSION.sub("", identifier.strip())) or "dataset"


def read_manifest(path: Path, group: str | None = None) -> list[Entry]:
    """The manifest's entries in order (lines ``identifier<TAB>path<TAB>ext[<TAB>group]``);
    with ``group``, only the lines of that group."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) not in (3, 4):
            raise InputError(f"{path} line {number}: expected identifier, path and extension.")
        if group is None or (len(parts) == 4 and parts[3] == group):
            entries.append(Entry(parts[0], Path(parts[1]), parts[2]))
    return entries


def stage(entries: Sequence[Entry], folder: Path) -> list[Path]:
    """Link each dataset into ``folder`` as ``<stem>.<ext>``; the links in manifest order.

    The stem (:func:`stem_for`) names the dataset's outputs and their element identifiers in
    the output collections, so two datasets whose identifiers give one stem (``a b.tif`` and
    ``a_b.tif``; ``img.tif`` and ``img.png``) would overwrite each other's outputs: they are an
    ``InputError`` naming both identifiers, raised before any link is made."""
    check_distinct_stems(entries)
    folder.mkdir(parents=True, exist_ok=True)
    links: list[Path] = []
    for entry in entries:
        ext = _FILE_EXTENSIONS.get(entry.ext, entry.ext)
        link = folder / f"{stem_for(entry.identifier)}.{ext}"
        link.symlink_to(entry.path.resolve())
        links.append(link)
    return links


def check_distinct_stems(entries: Sequence[Entry]) -> None:
    """Refuse two datasets whose element identifiers give one stem (:func:`stem_for`).

    Parameters
    ----------
    entries : the datasets of one collection (one group of the manifest)

    Raises
    ------
    InputError
        Naming both element identifiers (in manifest order) and the name they share.
    """
    seen: dict[str, str] = {}
    for entry in entries:
        stem = stem_for(entry.identifier)
        if stem in seen:
            raise InputError(
                f"Two datasets, {seen[stem]!r} and {entry.identifier!r}, both give the name "
                f"{stem!r} once their element identifiers are made safe for file names (letters, "
                "digits, '_', '.' and '-' kept, other characters turned into '_', the image "
                "extension dropped); their outputs would have one name. Rename one of them (its "
                "element identifier) and run the tool again."
            )
        seen[stem] = entry.identifier


def collect(
    entries: Sequence[Entry], out: Path, into: Path, wanted: Collection[str] | None = None
) -> list[Path]:
    """Move (previews: copy, the report links them) each image's outputs from ``out`` into
    ``into/<collection>/<NNNN>_<stem><suffix>`` where NNNN is the input's position, so that
    Galaxy's collections keep the input order and the element identifiers.

    Only the collections in ``wanted`` (default: all) are gathered. A wanted image result that
    exists only as a Zarr store (predicted by chunks, too large for its TIFF) is an error: Galaxy
    would otherwise show an empty collection as a success.
    """
    gathered = []
    for index, entry in enumerate(entries):
        stem = stem_for(entry.identifier)
        for folder, suffix, collection, new_suffix in COLLECTED:
            if wanted is not None and collection not in wanted:
                continue
            source = out / folder / f"{stem}{suffix}"
            if not source.is_file():
                _refuse_zarr_only(out / folder / f"{stem}.zarr", entry, suffix)
                continue
            target = into / collection / f"{index:04d}_{stem}{new_suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if collection == "previews":
                shutil.copyfile(source, target)
            else:
                source.replace(target)
            gathered.append(target)
    return gathered


def _refuse_zarr_only(store: Path, entry: Entry, suffix: str) -> None:
    """Raise when an image's result was written only as the Zarr store ``store``."""
    if suffix == ".tif" and store.is_dir():
        raise InputError(
            f"The result {store.parent.name}/{store.name} of {entry.identifier!r} was predicted "
            "by chunks and written only as a Zarr store: its TIFF did not fit a quarter of the "
            "job's memory budget (TEST.BY_CHUNKS.SAVE_OUT_TIF), and Galaxy collects TIFFs. Give "
            "the job more memory (or set $BIAPY_RUNNER_MEMORY_BUDGET for this tool), leave that "
            "output out of the tool's Outputs, or run the biapy-runner command line, which keeps "
            "the Zarr stores."
        )


#: the guided training form's answers -> configuration keys (the rest are BiaPy's defaults)
_GUIDED_KEYS = {
    "architecture": "MODEL.ARCHITECTURE",
    "epochs": "TRAIN.EPOCHS",
    "batch_size": "TRAIN.BATCH_SIZE",
    "patience": "TRAIN.PATIENCE",
    "val_split": "DATA.VAL.SPLIT_TRAIN",
}


def _given(value: Any) -> bool:
    """Whether a form answer is set (Cheetah writes an unset optional number as ``None``)."""
    return value not in (None, "", "None")


def _listed_text(text: Any) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty items dropped)."""
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


def train_settings(form: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The configuration keys the Galaxy train mode's form sets, in order.

    ``form`` (the tool's JSON configfile): ``workflow`` (the form's workflow name),
    ``instance_channels`` (``"F,C"``), ``n_classes``, ``upscaling``; ``guided`` with ``ndim``,
    ``channels``, ``patch`` (and ``depth`` in 3D), ``feature_maps`` (``"16,32,64"``) and
    :data:`_GUIDED_KEYS` (classification: ``simple_cnn``, whatever the network and feature
    maps); ``fine_tune`` (a package path: MODEL.SOURCE bmz); ``export`` with
    ``name``, ``description``, ``authors`` and ``tags`` (comma separated) and ``license``.
    """
    from biapy_runner.config.wizard import PROBLEM_TYPES

    problem = PROBLEM_TYPES[str(form["workflow"])]
    keys: list[tuple[str, Any]] = [("PROBLEM.TYPE", problem)]
    if problem == "INSTANCE_SEG" and _given(form.get("instance_channels")):
        channels = _listed_text(form["instance_channels"])
        keys.append(("PROBLEM.INSTANCE_SEG.DATA_CHANNELS", channels))
    if problem in ("SEMANTIC_SEG", "CLASSIFICATION") and _given(form.get("n_classes")):
        keys.append(("DATA.N_CLASSES", int(form["n_classes"])))
    guided = form.get("guided")
    if guided:
        ndim = str(guided["ndim"])
        patch = [int(guided["patch"])] * 2
        if ndim == "3D":
            patch = [int(guided["depth"] if _given(guided.get("depth")) else guided["patch"]),
                     *patch]
        keys += [("PROBLEM.NDIM", ndim),
                 ("DATA.PATCH_SIZE", tuple(patch + [int(guided.get("channels") or 1)]))]
        if _given(guided.get("feature_maps")):
            maps = [int(v) for v in _listed_text(guided["feature_maps"])]
            keys.append(("MODEL.FEATURE_MAPS", maps))
        keys += [(key, guided[name]) for name, key in _GUIDED_KEYS.items()
                 if _given(guided.get(name))]
        if _given(guided.get("lr")):  # one learning rate per optimizer (BiaPy 3.7)
            keys.append(("TRAIN.LR", [float(guided["lr"])]))
        if problem == "CLASSIFICATION":  # the one classifier the runner builds
            unused = ("MODEL.ARCHITECTURE", "MODEL.FEATURE_MAPS")
            keys = [(k, v) for k, v in keys if k not in unused]
            keys.append(("MODEL.ARCHITECTURE", "simple_cnn"))
    if problem == "SUPER_RESOLUTION" and _given(form.get("upscaling")):
        ndim = str(guided["ndim"]) if guided else None
        factor = int(form["upscaling"])
        keys.append(("PROBLEM.SUPER_RESOLUTION.UPSCALING", (factor,) * (3 if ndim == "3D" else 2)))
    if _given(form.get("fine_tune")):
        keys += [("MODEL.SOURCE", "bmz"), ("MODEL.BMZ.SOURCE_MODEL_ID", str(form["fine_tune"]))]
    export = form.get("export") or {}
    keys.append(("MODEL.BMZ.EXPORT.ENABLE", True))
    for name, key in (("name", "MODEL_NAME"), ("description", "DESCRIPTION"),
                      ("license", "LICENSE")):
        if str(export.get(name) or "").strip():
            keys.append((f"MODEL.BMZ.EXPORT.{key}", str(export[name]).strip()))
    authors = [{"name": name} for name in _listed_text(export.get("authors"))]
    if authors:
        keys.append(("MODEL.BMZ.EXPORT.AUTHORS", authors))
    if _listed_text(export.get("tags")):
        keys.append(("MODEL.BMZ.EXPORT.TAGS", _listed_text(export.get("tags"))))
    return keys


def write_train_config(form_path: Path, base: Path | None, out: Path) -> Path:
    """Write the training configuration of the Galaxy train mode: the user's file (or BiaPy's
    defaults) with the form's answers (:func:`train_settings`), resolved by the runner's own
    loader, so that a bad value is reported with its key."""
    import json

    from biapy_runner.config.load import load_config

    form = json.loads(form_path.read_text(encoding="utf-8"))
    cfg = load_config(base)
    for key, value in train_settings(form):
        cfg.set(key, value)
    out.write_text(cfg.to_yaml(), encoding="utf-8")
    return out

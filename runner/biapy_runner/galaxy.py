"""Galaxy glue: name staged inputs after their element identifiers and gather the outputs.

The tool's Cheetah writes one manifest line per dataset (``identifier<TAB>path<TAB>extension``,
optionally a fourth column naming a group, e.g. the prediction set of ``biapy_evaluate.xml``) and
calls ``biapy-runner galaxy-stage`` before the run and ``galaxy-collect`` after it, so that
naming (what the outputs are called in the collections) lives here, tested, not in the XML.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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

    Two datasets whose identifiers give one stem are an ``InputError`` (their outputs would
    have one name)."""
    folder.mkdir(parents=True, exist_ok=True)
    links: list[Path] = []
    for entry in entries:
        ext = _FILE_EXTENSIONS.get(entry.ext, entry.ext)
        link = folder / f"{stem_for(entry.identifier)}.{ext}"
        if link.exists() or link.is_symlink():
            raise InputError(
                f"Two datasets are both named {link.stem!r} once made safe for file names "
                f"(element identifier {entry.identifier!r}); rename one of them."
            )
        link.symlink_to(entry.path.resolve())
        links.append(link)
    return links


def collect(entries: Sequence[Entry], out: Path, into: Path) -> list[Path]:
    """Move (previews: copy, the report links them) each image's outputs from ``out`` into
    ``into/<collection>/<NNNN>_<stem><suffix>`` where NNNN is the input's position, so that
    Galaxy's collections keep the input order and the element identifiers."""
    gathered = []
    for index, entry in enumerate(entries):
        stem = stem_for(entry.identifier)
        for folder, suffix, collection, new_suffix in COLLECTED:
            source = out / folder / f"{stem}{suffix}"
            if not source.is_file():
                continue
            target = into / collection / f"{index:04d}_{stem}{new_suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if collection == "previews":
                shutil.copyfile(source, target)
            else:
                source.replace(target)
            gathered.append(target)
    return gathered

"""Writing results: everything goes to a staging folder that is moved into place on success.

A run that fails leaves no half-written output behind: the staging folder ``.partial-*`` inside
the output folder is removed, and nothing already in the output folder is touched.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd

from biapy_runner.errors import InputError
from biapy_runner.io.images import write_tiff

#: Top-level entries a run may create in the output folder.
RESULT_ENTRIES = ("raw", "post_proc", "instances", "metrics", "stack_3d", "config.yaml")


def check_output_dir(out: Path) -> None:
    """Refuse an output folder that already holds results (they would be overwritten)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"The output path {out} exists and is not a folder: choose a folder.")
    taken = [name for name in RESULT_ENTRIES if (out / name).exists()]
    if taken:
        raise InputError(
            f"The output folder {out} already contains {', '.join(taken)} from an earlier run; "
            "choose a new or empty folder so that no earlier result is overwritten."
        )


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as a tab-separated table with a header row (Galaxy ``tabular``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, float_format="%.6g", na_rep="nan")


class OutputStage:
    """Collects a run's outputs under ``<out>/.partial-*`` and publishes them at the end.

    Use as a context manager: on an exception the staging folder is deleted; ``publish()``
    moves every staged entry into the output folder.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
        self._tables: dict[str, list[pd.DataFrame]] = {}

    def __enter__(self) -> OutputStage:  # noqa: PYI034
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def write_image(self, folder: str, stem: str, array: np.ndarray, axes: str) -> Path:
        """Write ``array`` (with ``axes`` like ``"czyx"``) to ``<folder>/<stem>.tif``."""
        path = self.root / folder / f"{stem}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiff(path, array, axes)
        return path

    def add_tables(self, tables: dict[str, pd.DataFrame], stem: str) -> None:
        """Write per-image tables (paths with ``{stem}``) now; keep the rest to concatenate."""
        for name, frame in tables.items():
            if "{stem}" in name:
                write_table(self.root / name.format(stem=stem), frame)
            else:
                self._tables.setdefault(name, []).append(frame)

    def write_text(self, name: str, text: str) -> None:
        """Write a text file at ``name`` relative to the output folder."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def publish(self) -> list[Path]:
        """Write the concatenated tables and move every staged entry into the output folder."""
        for name, frames in self._tables.items():
            write_table(self.root / name, pd.concat(frames, ignore_index=True))
        moved = []
        for entry in sorted(self.root.iterdir()):
            target = self.out / entry.name
            entry.replace(target)
            moved.append(target)
        return moved

"""Writing results: everything goes to a staging folder that is moved into place on success.

A run that fails or is stopped leaves no half-written output behind: the staging folder
``.partial-<pid>@<host>-*`` inside the output folder is removed, and nothing already in the output
folder is touched. A staging folder left by a process that was killed outright (SIGKILL, power
loss) is removed by the next run into that folder once its process is gone.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from biapy_runner import log
from biapy_runner.errors import InputError
from biapy_runner.io.atomic import host_name, process_tag
from biapy_runner.io.images import write_tiff

if TYPE_CHECKING:  # pandas loads when tables are written, not for option or config errors
    import pandas as pd

#: What training writes in the output folder: checkpoints, the per-epoch log and its curves.
CHECKPOINT_DIR = "checkpoints"
TRAIN_LOG = "train_log.tsv"
TRAIN_CURVES = "train_curves.png"
#: Top-level entries a run may create in the output folder.
RESULT_ENTRIES = (
    "raw", "post_proc", "instances", "metrics", "stack_3d", "predictions", "report", "config.yaml",
    CHECKPOINT_DIR, TRAIN_LOG, TRAIN_CURVES,
)


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


#: ``.partial-<pid>@<host>-<random>``: the staging folder of process ``pid`` on ``host``.
_STAGE_NAME = re.compile(r"^\.partial-(\d+)@(.+)-[^-]+$")


def _process_is_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine (one of another user still runs)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_stages(out: Path) -> list[Path]:
    """Remove the staging folders in ``out`` left by processes of this machine that no longer
    run (killed with SIGKILL, out of memory, power loss); returns what was removed.

    Staging folders of running processes, of other machines and of unknown origin are left
    alone (they are never taken for results either).
    """
    removed = []
    for entry in sorted(out.glob(".partial-*")):
        match = _STAGE_NAME.match(entry.name)
        if not (match and entry.is_dir() and match.group(2) == host_name()):
            continue
        if _process_is_gone(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            log.info(f"removed {entry.name}, left in {out} by process {match.group(1)} (gone)")
            removed.append(entry)
    return removed


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold back stop signals (delivered right after) so that publishing is all or nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as a tab-separated table with a header row (Galaxy ``tabular``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, float_format="%.6g", na_rep="nan")


class OutputStage:
    """Collects a run's outputs under ``<out>/.partial-<pid>@<host>-*`` and publishes them at
    the end.

    Created before any heavy work, so that an output folder that cannot be created or written
    is reported at once (``InputError``); missing parent folders are created. Use as a context
    manager: on an exception (or a stop signal) the staging folder is deleted, and so is the
    output folder when this stage created it and it is still empty; ``publish()`` moves every
    staged entry into the output folder.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._created = not out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_stages(out)
            prefix = f".partial-{process_tag()}-"
            self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=out))
        except OSError as err:
            self._remove_if_created()
            raise InputError(
                f"The output folder {out} cannot be created or written ({type(err).__name__}: "
                f"{err.strerror or err}); choose a folder you can write to, whose parent "
                "folders are folders (not files)."
            ) from err
        self.prefix = ""
        self._tables: dict[str, list[pd.DataFrame]] = {}
        #: threads compressing a TIFF's pages (None: tifffile's default, half the CPU cores)
        self.write_threads: int | None = None

    def __enter__(self) -> OutputStage:  # noqa: PYI034
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if exc_type is not None:
            self._remove_if_created()

    def _remove_if_created(self) -> None:
        """Remove the output folder if this stage created it and it is still empty."""
        if self._created:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # fails unless empty: never removes anything but our folder

    def under(self, prefix: str) -> OutputStage:
        """The same stage writing every path under ``prefix`` (e.g. ``"predictions/a/"``);
        tables are still published by this stage."""
        view = copy.copy(self)
        view.prefix = self.prefix + prefix
        return view

    @property
    def folder(self) -> Path:
        """Where this (possibly prefixed) stage writes."""
        return self.root / self.prefix

    def write_image(self, folder: str, stem: str, array: np.ndarray, axes: str) -> Path:
        """Write ``array`` (with ``axes`` like ``"czyx"``) to ``<folder>/<stem>.tif``."""
        path = self.folder / folder / f"{stem}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiff(path, array, axes, threads=self.write_threads)
        return path

    def add_tables(self, tables: dict[str, pd.DataFrame], stem: str) -> None:
        """Write per-image tables (paths with ``{stem}``) now; keep the rest to concatenate."""
        for name, frame in tables.items():
            if "{stem}" in name:
                write_table(self.folder / name.format(stem=stem), frame)
            else:
                self._tables.setdefault(self.prefix + name, []).append(frame)

    def write_text(self, name: str, text: str) -> None:
        """Write a text file at ``name`` relative to the output folder."""
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def write_tables(self) -> None:
        """Write the tables collected so far (the rows of all images concatenated)."""
        import pandas as pd

        for name, frames in self._tables.items():
            write_table(self.root / name, pd.concat(frames, ignore_index=True))
        self._tables.clear()

    def publish(self) -> list[Path]:
        """Write the concatenated tables and move every staged entry into the output folder."""
        self.write_tables()
        moved = []
        with _signals_held():
            for entry in sorted(self.root.iterdir()):
                target = self.out / entry.name
                entry.replace(target)
                moved.append(target)
        return moved

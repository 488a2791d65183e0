"""``report/``: the HTML report of a run or an evaluation, written from its result files.

``write_report`` reads what the run wrote (images under ``post_proc/``, ``instances/``, the
tables under ``metrics/``), the inputs and the ground truth, and writes ``report/index.html``
with ``report/previews/<stem>.png`` (one per image) and ``report/charts/*.png``. Images are read
one at a time and previews are subsampled, so the report needs no more memory than the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from biapy_runner import log
from biapy_runner.io.outputs import TRAIN_LOG
from biapy_runner.report import charts
from biapy_runner.report.html import Page, Preview, render
from biapy_runner.report.panels import LEGENDS, PANELS, Item, Reader, ResultSet
from biapy_runner.report.previews import compose, save_png, views_of

REPORT_DIR = "report"
_TITLES = {
    "SEMANTIC_SEG": "semantic segmentation",
    "INSTANCE_SEG": "instance segmentation",
    "DETECTION": "detection",
    "DENOISING": "denoising",
    "SUPER_RESOLUTION": "super-resolution",
    "SELF_SUPERVISED": "self-supervised reconstruction",
    "IMAGE_TO_IMAGE": "image to image",
    "CLASSIFICATION": "classification",
}


@dataclass
class RunInfo:
    """What the summary at the top of the report says about the run."""

    command: str
    problem_type: str
    ndim: int
    seconds: float
    model: dict[str, str] = field(default_factory=dict)
    device: str = ""
    config: str = ""
    warnings: list[str] = field(default_factory=list)

    def summary(self, n_images: int, sets: Sequence[ResultSet]) -> dict[str, str]:
        """The rows of the summary table."""
        rows = {
            "workflow": f"{_TITLES.get(self.problem_type, self.problem_type)} "
            f"({self.problem_type}, {self.ndim}D)",
            "command": self.command,
        }
        rows.update({f"model {k}": v for k, v in self.model.items() if v})
        if self.device:
            rows["device"] = self.device
        if self.config:
            rows["configuration"] = self.config
        if any(s.name for s in sets):
            rows["predictions compared"] = ", ".join(s.name for s in sets)
        rows["images"] = str(n_images)
        rows["time"] = f"{self.seconds:.1f} s"
        return rows


def _metrics(sets: Sequence[ResultSet]) -> dict[str, pd.DataFrame]:
    frames = {s.name: s.table("metrics/metrics.tsv") for s in sets}
    return {n: f for n, f in frames.items() if f is not None and "image" in f}


def _totals(frames: dict[str, pd.DataFrame], problem_type: str) -> pd.DataFrame | None:
    """Metrics of ``ALL`` as rows (one column per set); for instances the final ones only."""
    columns = {}
    for name, frame in frames.items():
        rows = frame[frame["image"].astype(str) == "ALL"]
        if len(rows):
            columns[name or "value"] = rows.iloc[0].drop("image")
    if not columns:
        return None
    table = pd.DataFrame(columns)
    if problem_type == "INSTANCE_SEG" and any(str(i).startswith("post_") for i in table.index):
        table = table[[str(i).startswith(("post_", "iou_")) for i in table.index]]
    table.index.name = "metric"
    return table.dropna(how="all")


def _per_image(frames: dict[str, pd.DataFrame], problem_type: str) -> pd.DataFrame | None:
    """One row per image with the workflow's main metric (one column per set)."""
    merged = None
    for name, frame in frames.items():
        column = next((c for c in charts.MAIN_METRICS.get(problem_type, ()) if c in frame), None)
        if column is None:
            continue
        part = frame[frame["image"].astype(str) != "ALL"][["image", column]]
        part = part.rename(columns={column: f"{name}: {column}" if name else column})
        merged = part if merged is None else merged.merge(part, on="image", how="outer")
    return merged


def _charts(folder: Path, frames: dict[str, pd.DataFrame], sets: Sequence[ResultSet],
            problem_type: str) -> list[tuple[str, str]]:
    made: list[tuple[str, Path | None]] = []
    totals = {
        n: f[f["image"].astype(str) == "ALL"].iloc[0]
        for n, f in frames.items()
        if (f["image"].astype(str) == "ALL").any()
    }
    if problem_type == "INSTANCE_SEG" and totals:
        made.append(("Matching scores against the IoU threshold (final instances)",
                     charts.threshold_curves(totals, folder / "charts" / "iou_thresholds.png")))
    candidates = charts.MAIN_METRICS.get(problem_type, ())
    column = next((c for c in candidates if any(c in f for f in frames.values())), None)
    if column is not None:
        made.append((f"{column} per image",
                     charts.per_image_bars(frames, column, folder / "charts" / "per_image.png")))
    for k, s in enumerate(sets):
        confusion = s.table("metrics/confusion_matrix.tsv")
        if confusion is not None:
            title = s.title("confusion matrix")
            made.append((title, charts.confusion_heatmap(
                confusion, title, folder / "charts" / f"confusion_{k}.png")))
    objects = {s.name: t for s in sets if (t := s.table("metrics/objects.tsv")) is not None}
    if objects:
        sizes = charts.size_histogram(objects, folder / "charts" / "sizes.png")
        made.append(("Object sizes", sizes))
    train_log = folder.parent / TRAIN_LOG
    if train_log.is_file():
        made.append(("Training curves (train_log.tsv)", charts.training_curves(
            pd.read_csv(train_log, sep="\t"), folder / "charts" / "training.png")))
    return [(title, str(path.relative_to(folder))) for title, path in made if path is not None]


def _class_note(item: Item, sets: Sequence[ResultSet]) -> tuple[str, bool]:
    """``predicted k (true j)`` per set for classification; whether one of them is wrong."""
    notes, wrong = [], False
    for s in sets:
        rows = s.table("post_proc/predictions.tsv")
        row = None if rows is None else rows[rows["image"].astype(str) == item.stem]
        if row is None or not len(row):
            continue
        predicted = int(row["class"].iloc[0])
        metrics = s.table("metrics/metrics.tsv")
        truth = None if metrics is None or "gt_class" not in metrics else metrics.loc[
            metrics["image"].astype(str) == item.stem, "gt_class"]
        text = f"predicted {predicted}"
        if truth is not None and len(truth):
            text += f" (true {int(truth.iloc[0])})"
            wrong |= int(truth.iloc[0]) != predicted
        notes.append(s.title(text))
    return "; ".join(notes), wrong


def _preview(folder: Path, item: Item, sets: Sequence[ResultSet], reader: Reader,
             problem_type: str) -> Preview | None:
    panels = PANELS[problem_type](item, sets, reader)
    note, wrong = _class_note(item, sets) if problem_type == "CLASSIFICATION" else ("", False)
    if not panels:
        return None
    path = folder / "previews" / f"{item.stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = compose(panels)
    save_png(path, grid)
    rows = [v.name for v in views_of((1,) * reader.ndim)]
    return Preview(item.stem, str(path.relative_to(folder)), [p.title for p in panels], rows,
                   note, wrong, grid.shape[1])


def write_report(
    root: Path,
    info: RunInfo,
    items: Sequence[Item],
    sets: Sequence[ResultSet],
    reader: Reader,
) -> Path:
    """Write ``root/report/`` (page, previews, charts) and return the page's path.

    Parameters
    ----------
    root
        The folder being published (the run's staging folder): the report goes to
        ``root/report``.
    info
        The summary of the run.
    items
        The images (stem, input image, GT file), in order.
    sets
        The result folders to show (one for ``run``; one per prediction set for ``evaluate``).
    reader
        How to read the inputs.

    Returns
    -------
    Path
        ``root/report/index.html``.
    """
    folder = root / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    mark = log.warning_count()
    previews = []
    for item in items:
        try:
            preview = _preview(folder, item, sets, reader, info.problem_type)
        except Exception as error:  # noqa: BLE001  (a picture must not sink a finished run)
            log.warn(f"report: no preview of {item.stem} ({type(error).__name__}: {error})")
            continue
        if preview is not None:
            previews.append(preview)
    frames = _metrics(sets)
    page = Page(
        title=f"BiaPy runner report: {_TITLES.get(info.problem_type, info.problem_type)}",
        summary=info.summary(len(items), sets),
        totals=_totals(frames, info.problem_type),
        per_image=_per_image(frames, info.problem_type),
        warnings=[*info.warnings, *log.warnings_since(mark)],
        charts=_charts(folder, frames, sets, info.problem_type),
        previews=previews,
        legend=LEGENDS.get(info.problem_type, ""),
        grid=info.problem_type == "CLASSIFICATION",
    )
    page_path = folder / "index.html"
    page_path.write_text(render(page), encoding="utf-8")
    log.info(f"report: {len(previews)} preview(s), {len(page.charts)} chart(s)")
    return page_path

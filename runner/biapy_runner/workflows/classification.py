"""Image classification: one class per image, as BiaPy's CLASSIFICATION workflow.

Each image is fitted to the model's input size the way BiaPy does for test images: the centre of
every spatial axis longer than the input is cropped, then any axis still different (shorter) is
resized (``skimage.transform.resize``, linear, anti-aliased); the log says which was done. One
forward pass gives one score per class; scores that are not already probabilities (in [0, 1],
summing to 1) go through a softmax. ``post_proc/predictions.tsv`` gets one row per image
(``image``, ``class``, ``prob_class_<k>``).

Ground truth follows BiaPy's layout, a folder with one sub-folder per class holding the images
(``GT/<class name>/<image>``), or a table (TSV/CSV with columns ``image`` and ``class``); the
images given to the run may themselves be the files in class folders. Class names that are all
integers are the class numbers; otherwise class ``k`` is the k-th name in BiaPy's natural order
(digit runs compared as numbers: ``class2`` before ``class10``). Metrics: accuracy, per-class
precision, recall and F1 (from the confusion matrix) and ``metrics/confusion_matrix.tsv`` (rows:
true class, columns: predicted class).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skimage.transform import resize

from biapy_runner import log
from biapy_runner.errors import ConfigError, InputError
from biapy_runner.io.images import Image, list_images, stem_of
from biapy_runner.workflows.base import Decoded, Predictor, Scored, Workflow, register

_TABLE_EXTENSIONS = (".tsv", ".csv", ".txt", ".tabular")
_IMAGE_COLUMNS = ("image", "filename", "file", "name")
_CLASS_COLUMNS = ("class", "label", "category")


@register
class Classification(Workflow):
    """``CLASSIFICATION``: a class and per-class probabilities for every image."""

    problem_type = "CLASSIFICATION"
    classifies_images = True
    writes_raw = False

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.n_classes: int | None = None
        self.class_names: list[str] = []

    def check_model(self, out_channels: int, channel_names: Sequence[str]) -> None:
        """The model's number of outputs must equal ``DATA.N_CLASSES`` (``MODEL.N_CLASSES``)
        when the configuration sets it; otherwise the model's count is taken (and logged)."""
        if "DATA.N_CLASSES" not in self.cfg.user_keys:
            log.info(f"DATA.N_CLASSES not set: taking the model's {out_channels} classes")
            self.cfg.set("DATA.N_CLASSES", out_channels)
        configured = int(self.cfg.get("DATA.N_CLASSES"))
        if configured != out_channels:
            raise ConfigError(
                f"DATA.N_CLASSES (MODEL.N_CLASSES in older configs) is {configured} but the model "
                f"gives {out_channels} class scores; set DATA.N_CLASSES: {out_channels} or choose "
                "the model trained for your classes."
            )
        self.n_classes = out_channels

    def predict(self, image: Image, predictor: Predictor) -> np.ndarray:
        """Fit the image to the model's input as BiaPy does, then one forward pass."""
        patch = tuple(int(v) for v in self.cfg.get("DATA.PATCH_SIZE"))[: image.data.ndim - 1]
        target = tuple(int(v) for v in predictor.model.valid_size(patch))
        return predictor.whole(fit_to_input(image.data, target))

    def decode(self, raw: np.ndarray, image: Image) -> Decoded:
        """The predicted class and the probabilities of all classes."""
        probs = to_probabilities(raw)
        predicted = int(np.argmax(probs))
        row = {"image": image.stem, "class": predicted}
        row.update({f"prob_class_{k}": float(p) for k, p in enumerate(probs)})
        return Decoded(
            tables={"post_proc/predictions.tsv": pd.DataFrame([row])},
            state={"class": predicted},
        )

    def summarize(self, decoded: Decoded, image: Image) -> dict[str, Any]:
        """The predicted class of the image."""
        return {"class": decoded.state["class"]}

    def list_inputs(self, folder: Path) -> list[Path]:
        """The images of ``folder``, else those of its class sub-folders (BiaPy's
        ``<folder>/<class name>/<image>``), class by class."""
        return list_images(folder) or [f for _, _, f in _folder_entries(folder)]

    def gt_files(self, folder: Path) -> list[Path]:
        """A folder given as GT is the class tree itself (``GT/<class>/<image>``)."""
        return [folder]

    def pair_gt(
        self, images: Sequence[Path], gts: Sequence[Path], extra_gt: str = "error"
    ) -> list[tuple[Path, Any]]:
        """Each image with its true class number, looked up by stem in the class folders or
        table(s) ``gts``; an image without a class is an ``InputError`` (classes of other images
        are allowed whatever ``extra_gt`` says)."""
        classes, names = load_class_gt(gts)
        self.class_names = names
        missing = [p.name for p in images if stem_of(p) not in classes]
        if missing:
            raise InputError(
                f"No ground-truth class for {', '.join(missing)} in {', '.join(map(str, gts))}; "
                "put each image in its class sub-folder (GT/<class>/<image>) or list it in the "
                "table (columns image, class)."
            )
        return [(path, classes[stem_of(path)]) for path in images]

    def load_gt(self, path: Any, image: Image) -> int:
        """The class number found by ``pair_gt``."""
        return int(path)

    def score(self, decoded: Decoded, gt: Any, image: Image) -> Scored:
        """Whether the predicted class is the true one."""
        predicted = decoded.state["class"]
        return Scored(
            row={"gt_class": int(gt), "class": predicted, "correct": int(predicted == int(gt))}
        )

    def aggregate(self, rows: Sequence[Mapping[str, Any]]) -> Scored:
        """Accuracy, per-class and macro precision/recall/F1, and the confusion matrix table."""
        truth = [int(r["gt_class"]) for r in rows]
        predicted = [int(r["class"]) for r in rows]
        n = max(self.n_classes or 0, len(self.class_names), max(truth) + 1, max(predicted) + 1)
        matrix = confusion_matrix(truth, predicted, n)
        table = pd.DataFrame(
            matrix, columns=[f"pred_{k}" for k in range(n)], index=pd.Index(range(n))
        )
        table.insert(0, "gt_class", range(n))
        if self.class_names:
            table.insert(1, "class_name", [self._name(k) for k in range(n)])
        return Scored(
            row=classification_scores(matrix),
            tables={"metrics/confusion_matrix.tsv": table},
        )

    def _name(self, k: int) -> str:
        return self.class_names[k] if k < len(self.class_names) else ""


def fit_to_input(data: np.ndarray, target: Sequence[int]) -> np.ndarray:
    """Centre-crop axes longer than ``target``, then resize the rest to it (BiaPy's test rule).

    ``data`` is ``(C, *spatial)``; returns ``(C, *target)`` float32.
    """
    spatial = data.shape[1:]
    if tuple(spatial) == tuple(target):
        return data.astype(np.float32, copy=False)
    starts = [max(s // 2 - t // 2, 0) for s, t in zip(spatial, target)]
    region = tuple(slice(a, a + t) for a, t in zip(starts, target))
    cropped = data[(slice(None), *region)]
    if cropped.shape[1:] != tuple(spatial):
        log.info(f"  centre-cropped {_shape(spatial)} to {_shape(cropped.shape[1:])}")
    if cropped.shape[1:] == tuple(target):
        return cropped.astype(np.float32, copy=False)
    log.info(
        f"  resized {_shape(cropped.shape[1:])} to the model input {_shape(target)} "
        "(linear, anti-aliased)"
    )
    out = resize(
        cropped.astype(np.float32),
        (cropped.shape[0], *target),
        order=1,
        anti_aliasing=True,
        preserve_range=True,
    )
    return out.astype(np.float32)


def to_probabilities(raw: np.ndarray) -> np.ndarray:
    """The class scores of one image as probabilities (softmax unless they already are)."""
    scores = np.asarray(raw, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise InputError("The model gave no class scores for an image.")
    if scores.min() >= 0 and scores.max() <= 1 and abs(scores.sum() - 1) < 1e-3:
        return scores
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], n: int) -> np.ndarray:
    """``n`` x ``n`` counts: row = true class, column = predicted class."""
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return matrix


def classification_scores(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy, macro and per-class precision/recall/F1 from a confusion matrix.

    A class never predicted has precision 0, a class absent from the GT recall 0 (and F1 0),
    like scikit-learn's ``zero_division=0``; the macro means average over all classes.
    """
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    row = {
        "accuracy": float(tp.sum() / max(matrix.sum(), 1)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
    }
    for k in range(len(tp)):
        row.update(
            {
                f"precision_class_{k}": float(precision[k]),
                f"recall_class_{k}": float(recall[k]),
                f"f1_class_{k}": float(f1[k]),
            }
        )
    return row


def load_class_gt(paths: Sequence[Path] | Path) -> tuple[dict[str, int], list[str]]:
    """Read classification GT: ``({image stem: class number}, class names by number)``.

    Each path is a folder of class sub-folders (``<folder>/<class>/<image>``), a table with an
    image column (``image``/``filename``) and a class column (``class``/``label``), or an image
    file inside its class folder (e.g. the images themselves, or a Galaxy collection by class).
    """
    entries: list[tuple[str, str, Path]] = []
    for path in [paths] if isinstance(paths, Path) else [Path(p) for p in paths]:
        entries += _class_entries(path)
    names = sorted({name for _, name, _ in entries}, key=_class_sort_key)
    numbers = _class_numbers(names)
    classes: dict[str, int] = {}
    origin: dict[str, Path] = {}
    for stem, name, source in entries:
        if stem in classes and classes[stem] != numbers[name]:
            raise InputError(
                f"The image {stem!r} has two ground-truth classes ({origin[stem]} and {source}); "
                "keep each image in one class only."
            )
        classes[stem], origin[stem] = numbers[name], source
    named = {numbers[n]: n for n in names}
    size = max(named, default=-1) + 1
    return classes, [named.get(k, "") for k in range(size)]


def _class_entries(path: Path) -> list[tuple[str, str, Path]]:
    """(stem, class name, source) for one GT path."""
    if not path.exists():
        raise InputError(f"The classification ground truth {path} does not exist.")
    if path.is_dir() and not path.name.lower().endswith(".zarr"):
        return _folder_entries(path)
    if path.suffix.lower() in _TABLE_EXTENSIONS:
        return _table_entries(path)
    return [(stem_of(path), path.parent.name, path)]


def _folder_entries(folder: Path) -> list[tuple[str, str, Path]]:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    entries = [(stem_of(f), sub.name, f) for sub in subfolders for f in list_images(sub)]
    if not entries:
        raise InputError(
            f"The classification folder {folder} has no class sub-folders with images; BiaPy's "
            "layout is <folder>/<class name>/<image> (for the ground truth, a table with "
            "columns image, class also works)."
        )
    return entries


def _table_entries(path: Path) -> list[tuple[str, str, Path]]:
    try:
        table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(f"The class table {path} cannot be read: {err}") from err
    columns = {str(c).strip().lower(): c for c in table.columns}
    image_col = next((columns[c] for c in _IMAGE_COLUMNS if c in columns), None)
    class_col = next((columns[c] for c in _CLASS_COLUMNS if c in columns), None)
    if image_col is None or class_col is None or table.empty:
        raise InputError(
            f"The class table {path} needs a header with an image column (image or filename) and "
            f"a class column (class or label) and at least one row; found {list(table.columns)}."
        )
    return [
        (stem_of(str(img).strip()), str(cls).strip(), path)
        for img, cls in zip(table[image_col], table[class_col])
    ]


def _class_sort_key(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, _natural_key(name))


def _natural_key(name: str) -> list[str]:
    """BiaPy 3.7.1's folder order (``os_walk_clean``): runs of digits compared as numbers
    (``class2`` before ``class10``), the rest case-insensitively."""
    return [p.zfill(10) if p.isdigit() else p.lower() for p in re.findall(r"\d+|\D+", name)]


def _class_numbers(names: Sequence[str]) -> dict[str, int]:
    """Integer names are their own number; otherwise the position in BiaPy's natural order."""
    if names and all(n.isdigit() for n in names):
        return {n: int(n) for n in names}
    return {n: k for k, n in enumerate(sorted(names, key=_natural_key))}


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)

"""The small interface every workflow implements.

Data flows one way: the core reads an image, runs the model (tiled) and hands the merged raw
prediction to the workflow, which decodes it (``decode``), scores it against ground truth
(``score``) and aggregates the per-image rows into the dataset row (``aggregate``). The core writes
whatever the workflow returns; it never branches on the problem type.

Array layout everywhere: channel first, ``(C, Y, X)`` in 2D and ``(C, Z, Y, X)`` in 3D.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.io.images import Image

if TYPE_CHECKING:  # pandas loads when a table is made, not for option or config errors
    import pandas as pd


@dataclass
class Decoded:
    """What a workflow makes of one prediction.

    ``images``: output folder name -> array, written by the core as ``<folder>/<stem>.tif``
    (e.g. ``{"post_proc": labels}``); arrays are channel first unless 1-channel label images,
    which may drop the channel axis.
    ``tables``: table path -> rows for this image; rows of all images are concatenated into one
    TSV at that path (e.g. ``"metrics/objects.tsv"``). A ``{stem}`` in the path makes one table
    per image instead (e.g. ``"post_proc/{stem}_points.tsv"``).
    ``state``: anything ``score`` needs besides the images (kept in memory for one image only).
    """

    images: dict[str, np.ndarray] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scored:
    """Scores of one image: a row of ``metrics/metrics.tsv`` plus extra tables (same rules as
    ``Decoded.tables``, e.g. association tables)."""

    row: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


class Predictor(Protocol):
    """What the core lends a workflow to run the model (built in ``pipeline.py``)."""

    #: the loaded model (``models.BmzModel``): channels, axes, sizes, scale.
    model: Any

    def tiled(self, data: np.ndarray) -> np.ndarray:
        """Preprocess (whole-image statistics), predict tile by tile (with test-time augmentation
        when configured) and postprocess ``data`` ``(C, *spatial)``; returns ``(C_out, *spatial')``
        where spatial' is spatial times the model's scale."""

    def whole(self, data: np.ndarray) -> np.ndarray:
        """Preprocess, run one forward pass on ``data`` as it is (its shape must be one the model
        accepts) and postprocess; returns the model output without the batch axis."""


class Workflow(ABC):
    """Base class of the workflows; subclasses register themselves by ``problem_type``."""

    problem_type: ClassVar[str]
    #: Whether the core writes the merged model output to ``raw/<stem>.tif``.
    writes_raw: ClassVar[bool] = True
    #: Whether the model gives one score per class for a whole image (no spatial output); the
    #: folder holding an image then names its class (BiaPy's ``<folder>/<class>/<image>``).
    classifies_images: ClassVar[bool] = False

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def check_model(self, out_channels: int, channel_names: Sequence[str]) -> None:
        """Raise ``ConfigError`` when the model's output does not fit this workflow's config."""

    def chunk_halo(self) -> int | None:
        """Pixels of context (per side, output pixels) that ``decode`` needs around a region of
        the prediction to give that region's result exactly as on the whole prediction: 0 for a
        per-pixel decode; ``None`` (the default) when this workflow cannot decode region by
        region (a prediction by chunks is then decoded whole when it fits the memory budget)."""
        return None

    def predict(self, image: Image, predictor: Predictor) -> np.ndarray:
        """Run the model on ``image``; by default tiled inference over the whole image."""
        return predictor.tiled(image.data)

    @abstractmethod
    def decode(self, raw: np.ndarray, image: Image) -> Decoded:
        """Turn the merged raw prediction ``raw`` of ``image`` into the workflow's results."""

    def decode_by_chunks(self, raw: Any, image: Image, store: Any = None) -> Decoded:
        """Decode a raw prediction ``raw`` (numpy, or an array that slices like one, e.g. Zarr)
        chunk by chunk with halos (TEST.BY_CHUNKS' chunk_by_chunk process), the label images
        written into ``store``'s arrays (``decode.chunked.LabelStore``: numpy by default,
        chunked Zarr out of core); a ``"planes"`` entry in the result's ``state`` asks for
        ``score`` with the GT read by planes. By default the workflow's decoding needs no
        context beyond a pixel and runs on the whole array, in memory."""
        return self.decode(np.asarray(raw), image)

    def read_prediction(self, path: Path, ndim: int | None, axes: str | None) -> Image:
        """Read a stored prediction for ``evaluate``; by default as an image (``ndim`` None:
        2D or 3D as the file says, see ``images.read_image``)."""
        from biapy_runner.io.images import read_image

        return read_image(path, ndim=ndim, axes=axes)

    def decode_file(self, path: Path, image: Image) -> Decoded:
        """Wrap an existing prediction read from ``path`` for ``evaluate`` (no model run).

        By default the file is taken to hold the final (post-processed) result.
        """
        return Decoded(images={"post_proc": image.data})

    def list_inputs(self, folder: Path) -> list[Path]:
        """The input images a folder stands for (DATA.*.PATH, a folder given to ``--images``);
        by default its images."""
        from biapy_runner.io.images import list_images

        return list_images(folder)

    def list_gt(self, folder: Path) -> list[Path]:
        """The GT files in ``folder`` (DATA.TEST.GT_PATH); by default its images."""
        from biapy_runner.io.images import list_images

        return list_images(folder)

    def gt_files(self, folder: Path) -> list[Path]:
        """The GT files a folder given to ``--gt`` stands for: by default ``list_gt``."""
        return self.list_gt(folder)

    def pair_gt(
        self, images: Sequence[Path], gts: Sequence[Path], extra_gt: str = "error"
    ) -> list[tuple[Path, Any]]:
        """Pair every image with a reference to its ground truth (passed to ``load_gt``).

        By default GT files pair with images by file stem (``images.pair_by_stem``; ``extra_gt``
        says what GT without image is: ``"error"`` or ``"ignore"``); workflows whose GT is not
        one file per image (classification) override this.
        """
        from biapy_runner.io.images import pair_by_stem

        return pair_by_stem(images, gts, extra_gt)

    def load_gt(self, path: Path, image: Image) -> Any:
        """Read the ground truth paired with ``image``; by default an image of the same size."""
        from biapy_runner.io.images import read_gt_image

        return read_gt_image(path, image)

    @abstractmethod
    def score(self, decoded: Decoded, gt: Any, image: Image) -> Scored:
        """Compare one decoded prediction with its ground truth."""

    def score_stored(self, labels: Any, raw: Any, gt: Any) -> Scored | None:
        """``score`` streamed over results stored by chunks: ``labels`` (``post_proc``) and
        ``gt`` slice like numpy label volumes (read by blocks), ``raw`` is the stored raw
        prediction; None (the default) when the workflow can only score in memory."""
        return None

    def summarize(self, decoded: Decoded, image: Image) -> dict[str, Any]:
        """A row of ``metrics/summary.tsv`` describing a prediction when there is no GT."""
        return {}

    def aggregate(self, rows: Sequence[Mapping[str, Any]]) -> Scored:
        """The dataset (``image = ALL``) row; by default the mean of each numeric column."""
        import pandas as pd

        frame = pd.DataFrame(list(rows))
        numeric = frame.select_dtypes(include="number")
        return Scored(row={k: float(v) for k, v in numeric.mean().items()})


_REGISTRY: dict[str, type[Workflow]] = {}


def register(cls: type[Workflow]) -> type[Workflow]:
    """Class decorator: make ``cls`` available under its ``problem_type``."""
    _REGISTRY[cls.problem_type] = cls
    return cls


def workflow_for(cfg: Config) -> Workflow:
    """Instantiate the workflow named by ``PROBLEM.TYPE`` (importing only its module)."""
    import importlib

    from biapy_runner.workflows import MODULES

    problem = cfg.get("PROBLEM.TYPE")
    if problem in MODULES:
        importlib.import_module(f"biapy_runner.workflows.{MODULES[problem]}")
    if problem not in _REGISTRY:
        from biapy_runner.errors import ConfigError

        known = ", ".join(sorted(MODULES))
        raise ConfigError(
            f"PROBLEM.TYPE {problem!r} has no workflow in this runner yet; available: {known}."
        )
    return _REGISTRY[problem](cfg)

"""Images predicted by chunks in ``run``: TEST.BY_CHUNKS and the memory budget decide which
images are read by regions; their prediction goes to ``raw/<stem>.zarr``, their results to
``<folder>/<stem>.zarr`` (decoded region by region, or by chunks with halos for instances and
points), their metrics are streamed, and ``ChunkedResult`` is what ``pipeline._process`` gets
for such an image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biapy_runner import log
from biapy_runner.config.load import Config
from biapy_runner.decode.chunked import LabelStore
from biapy_runner.errors import ConfigError
from biapy_runner.io.images import Image, check_axes_letters
from biapy_runner.io.outputs import OutputStage
from biapy_runner.pipeline import RunOptions, TiledPredictor, _ndim
from biapy_runner.workflows.base import Workflow

if TYPE_CHECKING:
    from biapy_runner.io.chunked import LazyImage

@dataclass
class ChunkedResult:
    """An image predicted by chunks: its outputs are Zarr stores (and TIFFs) already written in
    the staging folder; ``summary``: its row of ``metrics/summary.tsv``; ``image``: the image's
    shape without its pixels (a zero-strided view); ``decoded``: the decoded results when they
    were made in memory (instance labels, points), else read back from ``post_proc`` to score."""

    summary: dict[str, Any]
    image: Image
    decoded: Any = None
    chunks: Any = None
    gt: Any = None

    def score(self, gt_ref: Any) -> Any:
        """The image's ``Scored`` against ``gt_ref``: in memory when its results were decoded
        in memory (instance labels, points: the GT, no larger, is read whole), else streamed
        over ``post_proc/<stem>.zarr`` and the GT read by blocks (``Workflow.score_stored``);
        None, with a warning, when the workflow cannot."""
        import zarr

        from biapy_runner.io.chunked import open_prediction

        workflow, folder, stem = self.chunks.workflow, self.chunks.stage.folder, self.image.stem
        if self.decoded is not None and "planes" in self.decoded.state:  # labels in Zarr
            return workflow.score(self.decoded, self._gt_planes(gt_ref), self.image)
        if self.decoded is not None:
            return workflow.score(self.decoded, workflow.load_gt(gt_ref, self.image), self.image)
        stored = folder / "post_proc" / f"{stem}.zarr"
        scored = None
        if stored.exists():
            scored = workflow.score_stored(zarr.open_array(str(stored), mode="r"),
                                           open_prediction(folder / "raw" / f"{stem}.zarr"),
                                           self._gt_planes(gt_ref))  # fmt: skip
        if scored is None:
            log.warn(f"{stem}: predicted by chunks and not decoded in memory; its metrics are "
                     "not computed")  # fmt: skip
        return scored

    def _gt_planes(self, gt_ref: Path) -> Any:
        """The GT as a label volume that slices along its first axis: read by regions from a
        Zarr/HDF5/TIFF of the image's shape, else read whole."""
        from biapy_runner.io.chunked import is_lazy_format, open_lazy

        shape = self.image.spatial_shape
        if is_lazy_format(gt_ref):
            lazy = open_lazy(gt_ref, ndim=len(shape), announce=False)
            if lazy.shape == (1, *shape):
                return Planes(lazy)
            lazy.close()
        return self.chunks.workflow.load_gt(gt_ref, self.image)


@dataclass
class Planes:
    """A one-channel ``LazyImage`` as a label volume sliced along its first axis."""

    lazy: LazyImage

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lazy.spatial_shape

    def __getitem__(self, first: slice) -> np.ndarray:
        rest = tuple(slice(0, n) for n in self.lazy.spatial_shape[1:])
        return self.lazy.read((first, *rest))[0]


#: DATA.TEST.INPUT_IMG_AXES_ORDER's default: the axes are then the file's (metadata, shape).
BIAPY_AXES_ORDER = "TZCYX"


def pass_planes(shape: tuple[int, ...], budget: int) -> int:
    """Planes (first spatial axis) of a ``(C, *spatial)`` prediction's volume that one pass
    over its labels may hold (object tables, streamed scores), within half of the budget's
    room: per voxel, the prediction's planes (float32 channels) beside the GT's and the labels'
    windows with their copies (measured peaks: ~16 bytes per voxel for the object table, ~24
    for the label overlap of a GT and labels window; 48 leaves room for the GT's targets)."""
    from biapy_runner.inference.chunked import room

    per_plane = int(np.prod(shape[2:])) * (4 * int(shape[0]) + 48)
    return max(1, room(budget) // 2 // max(per_plane, 1))


class Chunks:
    """TEST.BY_CHUNKS and the memory budget: which images are predicted by chunks, and the
    prediction, decoding and writing of those (``raw/<stem>.zarr``, ``<folder>/<stem>.zarr``).
    Without a ``predictor`` (``merge``), only ``results``: the decoding and writing of a raw
    prediction already stored in ``raw/<stem>.zarr``."""

    def __init__(
        self, cfg: Config, workflow: Workflow, predictor: TiledPredictor | None,
        stage: OutputStage, opts: RunOptions,
    ) -> None:
        from biapy_runner.inference.chunked import memory_budget

        self.cfg, self.workflow, self.predictor, self.stage = cfg, workflow, predictor, stage
        self.opts = opts
        #: output pixels per input pixel along each spatial axis (1: the results of a stored
        #: prediction, ``merge``'s, decoded against the prediction itself)
        self.scale = [1] * _ndim(cfg) if predictor is None else [
            round(s) for s in predictor.model.scale]  # fmt: skip
        self.enabled = bool(cfg.get("TEST.BY_CHUNKS.ENABLE"))
        self.budget, self.origin = memory_budget(opts.memory_budget)

    def axes_and_dataset(self, path: Path) -> tuple[str | None, str | None]:
        """The stored axes and dataset of an HDF5/Zarr input: ``--axes``/``--dataset``, else
        DATA.TEST.INPUT_IMG_AXES_ORDER (other than BiaPy's default ``TZCYX``, which leaves the
        axes to the file's metadata and shape) and INPUT_ZARR_MULTIPLE_DATA_RAW_PATH."""
        from biapy_runner.io.chunked import is_lazy_format, zarr_dataset_path

        axes, dataset = self.opts.axes, self.opts.dataset
        if not is_lazy_format(path) or path.suffix.lower() in (".tif", ".tiff"):
            return axes, dataset
        key = "DATA.TEST.INPUT_IMG_AXES_ORDER"
        order = str(self.cfg.get(key))
        if axes is None and order != BIAPY_AXES_ORDER:  # BiaPy's default: the file says
            axes = check_axes_letters(order, key)
        if dataset is None and self.cfg.get("DATA.TEST.INPUT_ZARR_MULTIPLE_DATA"):
            raw = str(self.cfg.get("DATA.TEST.INPUT_ZARR_MULTIPLE_DATA_RAW_PATH") or "")
            if not raw.strip():
                raise ConfigError(
                    "DATA.TEST.INPUT_ZARR_MULTIPLE_DATA is set but "
                    "DATA.TEST.INPUT_ZARR_MULTIPLE_DATA_RAW_PATH is empty: give the path of the "
                    "raw image inside the Zarr/HDF5 file (e.g. volumes.raw)."
                )
            dataset = zarr_dataset_path(raw) if path.name.lower().endswith(".zarr") or \
                path.suffix.lower() in (".h5", ".hdf5", ".hdf") else None
        return axes, dataset

    def open(self, path: Path) -> LazyImage | None:
        """The image opened for reading by regions when it is predicted by chunks, else None
        (read in memory as usual); the decision is logged with its numbers."""
        from biapy_runner.inference.chunked import decide
        from biapy_runner.io.chunked import is_lazy_format, open_lazy

        if not is_lazy_format(path):
            if self.enabled:
                log.info(f"  {path.name}: not a Zarr/HDF5/TIFF image, read whole")
            return None
        axes, dataset = self.axes_and_dataset(path)
        lazy = open_lazy(path, ndim=_ndim(self.cfg), axes=axes, dataset=dataset, announce=False)
        model = self.predictor.model
        scale = [round(s) for s in model.scale]
        if decide(self.enabled, lazy, model.out_channels, scale, self.budget, self.origin):
            lazy.announce()
            return lazy
        lazy.close()
        return None

    def predict(self, lazy: LazyImage) -> tuple[Image, None, ChunkedResult]:
        """Predict ``lazy`` into ``raw/<stem>.zarr`` and decode it region by region when the
        workflow can (per-pixel decodes: each slab as it is finished; with a halo: in a pass
        over the prediction), else whole when it fits the budget; TIFFs when asked and small."""
        try:
            raw_path = self.raw_path(lazy.stem)
            halo, whole = self._decoding()
            fused = _RegionDecoder(self, lazy) if halo == 0 and not whole else None
            self.predictor.chunked(lazy, raw_path, self.budget,
                                   fused.add if fused is not None else None)  # fmt: skip
            return self.results(lazy, fused)
        finally:
            lazy.close()

    def raw_path(self, stem: str) -> Path:
        """``raw/<stem>.zarr`` in the staging folder (its folder made)."""
        path = self.stage.folder / "raw" / f"{stem}.zarr"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _decoding(self) -> tuple[int | None, bool]:
        """The workflow's halo when its results are made here by regions (else None), and
        whether WORKFLOW_PROCESS.TYPE entire_pred decodes the prediction whole."""
        halo = self.workflow.chunk_halo() if self._decodes() else None
        return halo, self.cfg.get("TEST.BY_CHUNKS.WORKFLOW_PROCESS.TYPE") == "entire_pred"

    def results(
        self, lazy: LazyImage, fused: _RegionDecoder | None = None, source: Path | None = None
    ) -> tuple[Image, None, ChunkedResult]:
        """The results of the complete prediction ``raw/<stem>.zarr`` of ``lazy`` (the input
        image; ``merge``: the prediction itself), decoded and written by regions or by chunks
        unless ``fused`` already decoded it slab by slab; ``source``: the path the results'
        Zarr attributes name (default: ``lazy``'s)."""
        from biapy_runner.io.chunked import open_prediction

        raw = open_prediction(self.raw_path(lazy.stem))
        summary: dict[str, Any] = {
            "shape": "x".join(str(n) for n in raw.spatial_shape), "by_chunks": True,
        }
        self.tiff("raw", raw)
        view = Image(lazy.path, lazy.stem, np.broadcast_to(np.zeros((), lazy.dtype),
                     lazy.shape), lazy.axes, lazy.source_axes, lazy.dtype)  # fmt: skip
        decoded = None
        if fused is not None:
            summary.update(fused.close())
        elif self._decodes():
            halo, whole = self._decoding()
            writer = _RegionDecoder(self, lazy, source)
            decoded = self._decode(writer, raw, halo, whole, view, summary)
        return view, None, ChunkedResult(summary, view, decoded, self)

    def _decodes(self) -> bool:
        """Whether the workflow's results are made in this job (WORKFLOW_PROCESS.ENABLE and a
        phase beyond ``prediction``, as BiaPy's PHASES say)."""
        phases = list(self.cfg.get("TEST.BY_CHUNKS.PHASES"))
        return bool(self.cfg.get("TEST.BY_CHUNKS.WORKFLOW_PROCESS.ENABLE")) and phases != [
            "prediction"
        ]

    def fits(self, nbytes: int) -> bool:
        """Whether an array of ``nbytes`` may be held whole (a quarter of the budget's room)."""
        from biapy_runner.inference.chunked import room

        return nbytes <= room(self.budget) // 4

    def preview_voxels(self) -> int:
        """Voxels of a volume the report reads whole for a preview; larger volumes are read
        thinned, plane by plane (``report.panels.Reader``): a 64th of the budget (a few
        volumes of float32 and RGB views fit in it), at most 2**26."""
        return max(1 << 12, min(1 << 26, self.budget // 64))

    def planes(self, raw: LazyImage) -> int:
        """Planes of the volume one pass over its labels may hold (``pass_planes``)."""
        return pass_planes(raw.shape, self.budget)

    def tiff(self, folder: str, array: LazyImage) -> None:
        """``<folder>/<stem>.tif`` too, with TEST.BY_CHUNKS.SAVE_OUT_TIF, when it fits."""
        if not self.cfg.get("TEST.BY_CHUNKS.SAVE_OUT_TIF"):
            return
        if not self.fits(array.nbytes):
            log.warn(
                f"{array.stem}: {folder}/{array.stem}.tif not written (TEST.BY_CHUNKS."
                f"SAVE_OUT_TIF): {array.nbytes / 2**20:.1f} MiB does not fit a quarter of the "
                "memory budget"
            )
            return
        data = array.read()
        axes = array.axes if data.ndim == len(array.axes) else array.axes[1:]
        self.stage.write_image(folder, array.stem, data, axes)

    def _decode(
        self, writer: _RegionDecoder, raw: LazyImage, halo: int | None, whole: bool,
        view: Image, summary: dict[str, Any],
    ) -> Any:
        """The workflow's results from the stored raw prediction, written to
        ``<folder>/<stem>.zarr`` (and TIFF when asked and small), their fields added to
        ``summary``: WORKFLOW_PROCESS.TYPE chunk_by_chunk decodes in slabs along the first axis
        grown by the workflow's ``halo`` (per-pixel decodes) or with
        ``Workflow.decode_by_chunks`` (instances merged across chunk borders, points
        deduplicated); entire_pred decodes it whole, as BiaPy does. The decoded results when
        they were held in memory (to score), else None."""
        from biapy_runner.inference.chunked import room

        lazy = writer.lazy
        if halo is not None and not whole:
            for region in raw.blocks(room(self.budget) // 8):
                grown = tuple(slice(max(0, r.start - halo), min(n, r.stop + halo))
                              for r, n in zip(region, raw.spatial_shape))  # fmt: skip
                writer.add(region, raw.read(grown), grown)
            summary.update(writer.close())
            return None
        if whole and not self.fits(raw.nbytes):
            log.warn(f"{lazy.stem}: TEST.BY_CHUNKS.WORKFLOW_PROCESS.TYPE is entire_pred: the raw "
                     f"prediction ({raw.nbytes / 2**30:.2f} GiB) is decoded whole although it "
                     "exceeds the memory budget (chunk_by_chunk decodes it by chunks)")  # fmt: skip
        if whole:
            image = Image(lazy.path, lazy.stem, lazy.read(), lazy.axes, lazy.source_axes,
                          lazy.dtype)  # fmt: skip
            decoded = self.workflow.decode(raw.read(), image)
        else:
            store = _ZarrLabels(writer, self.planes(raw))
            try:
                decoded = self.workflow.decode_by_chunks(raw, view, store)
            finally:
                store.close()
        held = {k: v for k, v in decoded.images.items() if isinstance(v, np.ndarray)}
        writer.write(tuple(slice(0, n) for n in raw.spatial_shape), held)
        summary.update(writer.close())
        summary.update(self.workflow.summarize(decoded, view))
        self.stage.add_tables(decoded.tables, lazy.stem)
        return decoded


class _RegionDecoder:
    """The workflow's decode region by region, each output image written into
    ``<folder>/<stem>.zarr`` (chunked like the raw prediction)."""

    def __init__(self, chunks: Chunks, lazy: LazyImage, source: Path | None = None) -> None:
        self.chunks, self.lazy = chunks, lazy
        self.source = lazy.path if source is None else source
        self.stores: dict[str, Any] = {}
        self.scale = chunks.scale

    def add(self, region: tuple[slice, ...], raw: np.ndarray,
            grown: tuple[slice, ...] | None = None) -> None:  # fmt: skip
        """Decode ``raw``, the prediction of ``grown`` (default: ``region``) in output pixels,
        and write the part of each result that lies in ``region``."""
        grown = region if grown is None else grown
        lazy = self.lazy
        source = tuple(slice(g.start // k, -(-g.stop // k)) for g, k in zip(grown, self.scale))
        image = Image(lazy.path, lazy.stem, lazy.read(source), lazy.axes, lazy.source_axes,
                      lazy.dtype)  # fmt: skip
        decoded = self.chunks.workflow.decode(raw, image)
        inner = tuple(slice(r.start - g.start, r.stop - g.start) for r, g in zip(region, grown))
        self.write(region, decoded.images, inner)

    def write(self, region: tuple[slice, ...], images: dict[str, np.ndarray],
              inner: tuple[slice, ...] | None = None) -> None:  # fmt: skip
        """Write the part ``inner`` (default: all) of each result into ``region`` of its Zarr."""
        ndim = len(region)
        inner = tuple(slice(None) for _ in region) if inner is None else inner
        for folder, array in images.items():
            lead = (slice(None),) * (array.ndim - ndim)
            if folder not in self.stores:
                self.create(folder, tuple(array.shape[: array.ndim - ndim]), array.dtype)
            self.stores[folder][lead + region] = array[lead + inner]

    def create(self, folder: str, lead: tuple[int, ...], dtype: Any,
               chunks: tuple[int, ...] | None = None) -> Any:  # fmt: skip
        """The Zarr of one result (``lead``: its axes before the spatial ones), of the raw
        prediction's spatial shape and chunks (or spatial ``chunks``: the grid it is written
        by, whole Zarr chunks at a time), kept among the stores to close."""
        from biapy_runner.io.chunked import create_zarr

        raw = self.raw_array()
        path = self.chunks.stage.folder / folder / f"{self.lazy.stem}.zarr"
        path.parent.mkdir(parents=True, exist_ok=True)
        axes = self.lazy.axes.upper() if lead else self.lazy.axes[1:].upper()
        self.stores[folder] = create_zarr(
            path, (*lead, *raw.shape[1:]), dtype, (*lead, *(chunks or raw.chunks[1:])),
            {"axes": axes, "source": str(Path(self.source).resolve())},
        )  # fmt: skip
        return self.stores[folder]

    def raw_array(self) -> Any:
        """The raw prediction's Zarr array (its shape and chunks)."""
        import zarr

        return zarr.open_array(str(self.chunks.stage.folder / "raw" / f"{self.lazy.stem}.zarr"),
                               mode="r")  # fmt: skip

    def close(self) -> dict[str, Any]:
        """Mark the results complete, write their TIFFs when asked; the summary's fields."""
        from biapy_runner.io.chunked import open_prediction

        stem = self.lazy.stem
        for folder, store in self.stores.items():
            store.attrs["complete"] = True
            self.chunks.tiff(folder, open_prediction(self.chunks.stage.folder / folder /
                                                      f"{stem}.zarr"))  # fmt: skip
        return {"outputs": ", ".join(f"{f}/{stem}.zarr" for f in self.stores)}


class _ZarrLabels(LabelStore):
    """Decoding by chunks out of core: the final labels go to ``<folder>/<stem>.zarr`` (the
    region decoder's stores, closed with it), the chunk ids before the final relabelling to a
    scratch Zarr in the staging folder, removed at ``close``."""

    def __init__(self, writer: _RegionDecoder, planes: int) -> None:
        super().__init__(planes)
        self.writer = writer
        self.chunks: tuple[int, ...] | None = None
        self.folder = writer.chunks.stage.folder / ".scratch" / writer.lazy.stem

    def scratch(self, name: str, shape: tuple[int, ...], chunk: tuple[int, ...]) -> Any:
        from biapy_runner.io.chunked import create_zarr

        self.chunks = tuple(min(c, n) for c, n in zip(chunk, shape))
        return create_zarr(self.folder / f"{name.replace('/', '_')}.zarr", shape, np.uint32,
                           self.chunks)  # fmt: skip

    def final(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """``<folder>/<stem>.zarr``, chunked as the scratch arrays (the decoding's grid)."""
        return self.writer.create(name, (), dtype, self.chunks)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.folder.parent, ignore_errors=True)

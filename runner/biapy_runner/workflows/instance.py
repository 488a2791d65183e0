"""Instance segmentation (PROBLEM.TYPE INSTANCE_SEG): channels -> watershed -> post-processing.

Outputs per image: ``instances/`` (labels from the watershed), ``post_proc/`` (after the
configured post-processing; uint16 or uint32), ``metrics/objects.tsv`` (one row per final
object). With GT: StarDist matching metrics at ``TEST.MATCHING_STATS_THS`` for the raw instances
(``<metric>@<th>``) and the post-processed ones (``post_<metric>@<th>``), the IoU of each binary
channel against its GT-derived target (``iou_<channel>``) and ``metrics/associations.tsv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from biapy_runner import log
from biapy_runner.config.schema import (
    BINARY_CHANNELS,
    INSTANCE_CHANNELS,
    LEGACY_CHANNEL_SETS,
    legacy_channels_as_list,
)
from biapy_runner.decode.channels import (
    Channels,
    centroid_target,
    centroid_voxels,
    channel_targets,
    parse_channels,
)
from biapy_runner.decode.chunked import (
    LabelStore,
    chunk_geometry,
    decode_instances_by_chunks,
    measure_by_slabs,
    plane_blocks,
    read_region,
)
from biapy_runner.decode.filters import configured_median_filter
from biapy_runner.decode.layout import extra_opts
from biapy_runner.decode.postprocess import (
    measure_objects,
    refine_instances,
    removal_mask,
    remove_labels,
    repair_large_blobs,
    voronoi_on_mask,
)
from biapy_runner.decode.processes import check_process, create_instances
from biapy_runner.errors import ConfigError, InputError
from biapy_runner.io.images import Image, label_dtype, stored_labels
from biapy_runner.metrics.masks import binary_iou
from biapy_runner.metrics.matching import METRICS, aggregate_stats, label_overlap, match_overlap
from biapy_runner.metrics.streaming import streaming_overlap
from biapy_runner.workflows.base import Decoded, Scored, Workflow, register

IS = "PROBLEM.INSTANCE_SEG."
PP = "TEST.POST_PROCESSING."
RP = PP + "MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES."
MERGE_IOU = "TEST.BY_CHUNKS.WORKFLOW_PROCESS.INSTANCE_SEG_MERGE_IOU_TH"
DEFAULT_THS = (0.3, 0.5, 0.75)


def _th_name(th: float) -> str:
    return f"{float(th):g}"


@register
class InstanceSegmentation(Workflow):
    """BiaPy's instance segmentation from B/C/M/D/P-style channels."""

    problem_type = "INSTANCE_SEG"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.channels: Channels = parse_channels(cfg.get(IS + "DATA_CHANNELS", "BC"))
        self._process: str | None = None
        self.resolution = tuple(self.cfg.get("DATA.TEST.RESOLUTION"))
        self.thresholds = [float(t) for t in cfg.get("TEST.MATCHING_STATS_THS", DEFAULT_THS)]

    # ---- configuration -------------------------------------------------------------------
    @property
    def process(self) -> str:
        """The instance creation process, checked against the channels when first needed (a run
        checks it with the model, before any image; scoring label images never needs it)."""
        if self._process is None:
            self._process = check_process(self.channels, self.cfg)
        return self._process

    def _get(self, key: str, default: Any) -> Any:
        value = self.cfg.get(key, default)
        return default if value is None else value

    def _expected_channels(self) -> int:
        """Model output channels DATA_CHANNELS implies (a discretized Db has 11 softmax bins)."""
        db = extra_opts(self.cfg, "Db")
        if self.channels.names == ("Db",) and db.get("val_type") == "discretize":
            return 11
        return len(self.channels.names)

    def check_model(self, out_channels: int, channel_names: Sequence[str]) -> None:
        """The model must output one channel per configured channel (names checked if BiaPy's)."""
        names = self.channels.names
        process = self.process
        if (
            out_channels != self._expected_channels()
            and process == "watershed"
            and names != ("A",)  # affinities: one channel per axis and offset
        ):
            raise ConfigError(
                f"The model outputs {out_channels} channel(s) but "
                f"{IS}DATA_CHANNELS = {self.cfg.get(IS + 'DATA_CHANNELS', 'BC')!r} expects "
                f"{len(names)} ({', '.join(names)}). Set DATA_CHANNELS to the channels the model "
                "was trained with (see its BioImage.IO description)."
            )
        known = set(INSTANCE_CHANNELS)
        # a name covering several outputs (A per offset, R per ray, ...) may repeat
        given = [str(n) for i, n in enumerate(channel_names) if i == 0 or n != channel_names[i - 1]]
        if set(given) != set(names) and "".join(given) in LEGACY_CHANNEL_SETS:
            # named in older BiaPy's letters (B, C, M): compare with their 3.7 names
            given = legacy_channels_as_list("".join(given))
        if given and all(n in known for n in given) and set(given) != set(names):
            raise ConfigError(
                f"The model's output channels are named {given} but {IS}DATA_CHANNELS "
                f"configures {list(names)}."
            )
        if given and all(n in known for n in given) and tuple(given) != names:
            log.warn(f"model channel order {given} differs from DATA_CHANNELS {list(names)}")

    # ---- decoding -----------------------------------------------------------------------
    def _voronoi_mask(self, raw: np.ndarray) -> np.ndarray:
        """The foreground probability Voronoi grows into: M, else F (+ C), else 1 - B."""
        names = self.channels.names
        if "M" in names:
            return raw[names.index("M")]
        if "F" in names:
            mask = raw[names.index("F")].astype(np.float32)
            return mask + raw[names.index("C")] if "C" in names else mask
        if "B" in names:
            return 1 - raw[names.index("B")]
        raise ConfigError(
            f"{PP}VORONOI_ON_MASK needs a foreground channel (M, F or B) in {IS}DATA_CHANNELS "
            f"({list(names)})."
        )

    def _refinement(self, operation: str) -> bool:
        """True when TEST.POST_PROCESSING.INSTANCE_REFINEMENT applies ``operation``."""
        return bool(self._get(PP + "INSTANCE_REFINEMENT.ENABLE", False)) and operation in self._get(
            PP + "INSTANCE_REFINEMENT.OPERATIONS", []
        )

    def _post_processing(self) -> bool:
        """Whether TEST.POST_PROCESSING changes instance labels (else ``post_process`` only
        narrows their dtype)."""
        g = self._get
        return bool(g(PP + "INSTANCE_REFINEMENT.ENABLE", False)) or bool(
            g(PP + "VORONOI_ON_MASK", False)) or bool(g(RP + "ENABLE", False)) or int(
            g(PP + "REPARE_LARGE_BLOBS_SIZE", -1)) != -1  # fmt: skip

    def post_process(self, labels: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
        """Apply the configured post-processing to instance ``labels`` (``raw``: probabilities)."""
        g = self._get
        out = labels
        if g(PP + "INSTANCE_REFINEMENT.ENABLE", False):
            out = refine_instances(
                out,
                list(g(PP + "INSTANCE_REFINEMENT.OPERATIONS", [])),
                list(g(PP + "INSTANCE_REFINEMENT.VALUES", [])),
            )
        size = int(g(PP + "REPARE_LARGE_BLOBS_SIZE", -1))
        if size != -1:
            out = repair_large_blobs(out, size)
        if g(PP + "VORONOI_ON_MASK", False):
            if raw is None:
                raise ConfigError(f"{PP}VORONOI_ON_MASK needs the model's probabilities.")
            th = float(g(PP + "VORONOI_TH", 0.0))
            out = voronoi_on_mask(out, self._voronoi_mask(raw), th, self.resolution)
        if g(RP + "ENABLE", False):
            table = measure_objects(out, self.resolution)
            if len(table):
                drop = removal_mask(
                    table, g(RP + "PROPS", []), g(RP + "VALUES", []), g(RP + "SIGNS", [])
                )
                log.info(f"removed {int(drop.sum())} of {len(table)} objects by properties")
                out = remove_labels(out, table["label"].to_numpy()[drop].tolist())
        return out.astype(label_dtype(int(out.max()) if out.size else 0))

    def _objects(self, labels: np.ndarray, raw: np.ndarray | None, stem: str) -> pd.DataFrame:
        fg = self.channels.foreground_channel
        prob = None if raw is None or fg is None else raw[self.channels.index(fg)]
        table = measure_objects(labels, self.resolution, prob)
        table.insert(0, "image", stem)
        return table

    def decode(self, raw: np.ndarray, image: Image) -> Decoded:
        """Watershed the channels into instances, post-process, and measure the objects."""
        raw = configured_median_filter(np.asarray(raw, dtype=np.float32), self.cfg)
        result = create_instances(raw, self.channels, self.cfg)
        post = self.post_process(result.labels, raw)
        images = {"instances": result.labels, "post_proc": post}
        if self._get(IS + "WATERSHED.DATA_CHECK_MW", False):
            images.update({f"watershed/{name}": m for name, m in result.maps.items()})
        return self._decoded(images, raw, image)

    def _decoded(self, images: dict[str, np.ndarray], raw: np.ndarray, image: Image) -> Decoded:
        log.info(
            f"instances: {_count(images['instances'])} from {self.process}, "
            f"{_count(images['post_proc'])} after post-processing"
        )
        return Decoded(
            images=images,
            tables={"metrics/objects.tsv": self._objects(images["post_proc"], raw, image.stem)},
            state={"raw": raw},
        )

    def decode_block(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """The instances and post-processed labels of one block of the prediction."""
        raw = configured_median_filter(np.asarray(raw, dtype=np.float32), self.cfg)
        labels = create_instances(raw, self.channels, self.cfg).labels
        post = self.post_process(labels, raw) if self._post_processing() else labels
        return {"instances": labels, "post_proc": post}

    def decode_by_chunks(
        self, raw: Any, image: Image, store: LabelStore | None = None
    ) -> Decoded:
        """Decode chunk by chunk (``decode.chunked``: the chunk and halo of BiaPy's
        chunk_by_chunk process, labels merged across borders when their IoU in the halo
        exceeds TEST.BY_CHUNKS.WORKFLOW_PROCESS.INSTANCE_SEG_MERGE_IOU_TH); the
        post-processing runs per chunk, with the chunk's halo as context.

        ``raw`` is read chunk (with halo) by chunk; the labels go to ``store``'s arrays (numpy
        by default, chunked Zarr out of core) and the object table is measured by windows of
        ``store.planes`` planes: nothing of the volume's size is held. The result's ``state``
        keeps ``raw`` and the planes per pass, which ``score`` streams with."""
        ndim = len(raw.shape) - 1
        chunk, halo = chunk_geometry(self.cfg, ndim)
        threshold = float(self._get(MERGE_IOU, 0.3))
        if not 0 < threshold <= 1:
            raise ConfigError(f"{MERGE_IOU} is {threshold}: it must be in (0, 1].")
        store = LabelStore() if store is None else store
        log.info(f"instances by chunks of {chunk} with a halo of {halo} (merge IoU > {threshold})")
        decode, same = self.decode_block, None
        if not self._post_processing():  # post_proc = instances: merged once

            def decode(block: np.ndarray) -> dict[str, np.ndarray]:
                return {"instances": self.decode_block(block)["instances"]}

            same = {"post_proc": "instances"}
        fg = self.channels.foreground_channel
        weights, totals = None, {}
        if fg is not None:  # the objects' mean probability: summed over each chunk's core

            def weights(block: np.ndarray) -> np.ndarray:
                return block[self.channels.index(fg)]

        images, counts = decode_instances_by_chunks(raw, decode, chunk, halo, threshold,
                                                    store=store, dtype=label_dtype, same=same,
                                                    weights=weights, totals=totals)  # fmt: skip
        log.info(f"instances: {counts['instances']} from {self.process}, "
                 f"{counts['post_proc']} after post-processing")  # fmt: skip
        table = measure_by_slabs(images["post_proc"], store.planes, self.resolution,
                                 totals.get("post_proc"))  # fmt: skip
        table.insert(0, "image", image.stem)
        return Decoded(images=images, tables={"metrics/objects.tsv": table},
                       state={"raw": raw, "planes": store.planes})  # fmt: skip

    def decode_file(self, path: Path, image: Image) -> Decoded:
        """An existing label image is taken as the final instances (no post-processing); float
        images with fractions are the DATA_CHANNELS probabilities and are decoded."""
        data = np.asarray(image.data)
        if data.dtype.kind == "f" and not np.all(np.mod(data, 1) == 0):
            if data.shape[0] == self._expected_channels():
                return self.decode(data, image)
            raise InputError(
                f"The prediction {path} holds non-integer values in {data.shape[0]} channel(s); "
                "evaluate needs an instance label image (one channel, integer labels) or the "
                f"{self._expected_channels()} probability channels "
                f"({', '.join(self.channels.names)}) of "
                f"{IS}DATA_CHANNELS = {self.cfg.get(IS + 'DATA_CHANNELS', 'BC')!r}."
            )
        labels = stored_labels(image)
        warn_if_binary(labels, path, "prediction")
        labels = labels.astype(label_dtype(int(labels.max()) if labels.size else 0))
        return Decoded(
            images={"post_proc": labels},
            tables={"metrics/objects.tsv": self._objects(labels, None, image.stem)},
            state={"raw": None},
        )

    def load_gt(self, path: Path, image: Image) -> np.ndarray:
        """The instance labels paired with ``image`` (a 0/1 mask of several objects warned)."""
        gt = super().load_gt(path, image)
        warn_if_binary(gt, path, "ground truth")
        return gt

    # ---- scoring --------------------------------------------------------------------------
    def _match(
        self, gt: Any, labels: Any, stage: str, stem: str, planes: int | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Matching rows and associations; ``planes``: stream the overlap that many planes at
        a time (label volumes that slice, e.g. Zarr)."""
        prefix = "" if stage == "raw" else "post_"
        ov = label_overlap(gt, labels) if planes is None else streaming_overlap(gt, labels, planes)
        row: dict[str, Any] = {}
        assoc: list[dict[str, Any]] = []
        for th in self.thresholds:
            res = match_overlap(ov, th)
            for name in METRICS:
                row[f"{prefix}{name}@{_th_name(th)}"] = res.stats[name]
            assoc.extend(
                {
                    "image": stem,
                    "stage": stage,
                    "threshold": th,
                    "gt_id": g,
                    "pred_id": p,
                    "iou": s,
                    "status": st,
                }
                for g, p, s, st in res.associations
            )
        return row, assoc

    def _contour_mode(self) -> str:
        return str(
            extra_opts(self.cfg, "C").get("mode") or self._get(IS + "DATA_CONTOUR_MODE", "thick")
        )

    def _channel_ious(self, raw: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        names = [n for n in self.channels.names if n in BINARY_CHANNELS]
        if not names:
            return {}
        targets = channel_targets(gt, self.channels, self._contour_mode())
        return {
            f"iou_{n}": binary_iou(raw[self.channels.index(n)] > 0.5, targets[n])
            for n in names
            if n in targets
        }

    def _streamed_channel_ious(self, raw: Any, gt: Any, planes: int) -> dict[str, float]:
        """``_channel_ious`` with ``raw`` and ``gt`` read ``planes`` planes at a time (the GT's
        targets with one plane of context: contours look one voxel across; ``P``, each
        object's centroid, from a first pass that sums the objects' coordinates): equal to
        the in-memory values."""
        names = [n for n in self.channels.names if n in BINARY_CHANNELS]
        if not names:
            return {}
        depth, rest = int(gt.shape[0]), tuple(slice(0, int(n)) for n in gt.shape[1:])
        centres = centroid_voxels(gt, planes) if "P" in names else None
        local = Channels(tuple(n for n in self.channels.names if n != "P"))
        inter, union = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
        for part in plane_blocks(depth, planes):
            a, b = max(0, part.start - 1), min(depth, part.stop + 1)
            targets = channel_targets(np.asarray(gt[a:b]), local, self._contour_mode())
            if centres is not None:
                targets["P"] = centroid_target(centres, slice(a, b), tuple(gt.shape))
            block = read_region(raw, (part, *rest))
            inner = slice(part.start - a, part.stop - a)
            for n in names:
                pred, target = block[self.channels.index(n)] > 0.5, targets[n][inner]
                inter[n] += int(np.count_nonzero(pred & target))
                union[n] += int(np.count_nonzero(pred | target))
        return {f"iou_{n}": float(inter[n] / union[n]) if union[n] else 0.0 for n in names}

    def score(self, decoded: Decoded, gt: Any, image: Image) -> Scored:
        """Matching metrics (raw and post-processed) and per-channel IoU against ``gt``.

        Labels, GT or raw prediction that are not numpy arrays (Zarr, a GT read by planes: an
        image decoded by chunks) are streamed ``decoded.state["planes"]`` planes at a time,
        with the same numbers (``metrics.streaming``)."""
        raw = decoded.state.get("raw")
        streamed = not all(isinstance(a, np.ndarray) for a in (gt, *decoded.images.values())) \
            or not (raw is None or isinstance(raw, np.ndarray))  # fmt: skip
        planes = int(decoded.state.get("planes", 64)) if streamed else None
        gt = gt if streamed and not isinstance(gt, np.ndarray) else np.asarray(gt)
        if len(gt.shape) == len(decoded.images["post_proc"].shape) + 1 and gt.shape[0] == 1:
            gt = gt[0]  # a one-channel GT
        row: dict[str, Any] = {}
        assoc: list[dict[str, Any]] = []
        if "instances" in decoded.images:
            part, rows = self._match(gt, decoded.images["instances"], "raw", image.stem, planes)
            row.update(part)
            assoc += rows
        part, rows = self._match(gt, decoded.images["post_proc"], "post", image.stem, planes)
        if "instances" not in decoded.images:
            row.update({k[len("post_") :]: v for k, v in part.items()})
            rows = [dict(r, stage="raw") for r in rows] + rows
        row.update(part)
        assoc += rows
        if raw is not None:
            row.update(self._streamed_channel_ious(raw, gt, planes) if planes
                       else self._channel_ious(raw, gt))  # fmt: skip
        columns = ["image", "stage", "threshold", "gt_id", "pred_id", "iou", "status"]
        return Scored(
            row=row, tables={"metrics/associations.tsv": pd.DataFrame(assoc, columns=columns)}
        )

    def aggregate(self, rows: Sequence[Mapping[str, Any]]) -> Scored:
        """StarDist's ``matching_dataset``: sum the counts over images, then the ratios."""
        out: dict[str, Any] = {}
        if not rows:
            return Scored(row=out)
        for prefix in ("", "post_"):
            for th in self.thresholds:
                suffix = f"@{_th_name(th)}"
                keys = {n: f"{prefix}{n}{suffix}" for n in METRICS}
                if keys["tp"] not in rows[0]:
                    continue
                stats = aggregate_stats([{n: r[keys[n]] for n in METRICS} for r in rows])
                out.update({keys[n]: v for n, v in stats.items()})
        for key in rows[0]:
            if key.startswith("iou_"):
                out[key] = float(np.mean([float(r[key]) for r in rows if key in r]))
        return Scored(row=out)

    def summarize(self, decoded: Decoded, image: Image) -> dict[str, Any]:
        """Number of final objects and their mean size (pixels or voxels)."""
        labels = decoded.images["post_proc"]
        if not isinstance(labels, np.ndarray):  # by chunks: the object table has the sizes
            sizes = decoded.tables["metrics/objects.tsv"].get("npixels", pd.Series([]))
            sizes = sizes.to_numpy(dtype=np.int64)
        else:
            sizes = np.unique(labels[labels > 0], return_counts=True)[1]
        return {
            "n_objects": int(sizes.size),
            "mean_size": float(sizes.mean()) if sizes.size else 0.0,
        }


def _count(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels."""
    ids = np.unique(labels)
    return int(ids.size - (1 if ids.size and ids[0] == 0 else 0))


def warn_if_binary(labels: np.ndarray, path: Path, what: str) -> None:
    """Warn when a label image holds only 0 and 1 but several separate regions: each label value
    is one object, so all of them are scored as one object."""
    if labels.size == 0 or labels.max() != 1 or labels.min() < 0:
        return
    regions = int(ndimage.label(labels > 0)[1])
    if regions > 1:
        log.warn(
            f"the {what} {path} holds only the values 0 and 1 with {regions} separate regions: "
            "it is scored as ONE object. If the regions are separate objects, give a label "
            "image (1, 2, 3, ... per object; e.g. skimage.measure.label of the mask)."
        )


"""Decoding by chunks with halos (decode/chunked.py) and streaming matching metrics
(metrics/streaming.py) against the in-memory results on synthetic 3D volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.decode.chunked import (
    ChunkGrid,
    chunk_geometry,
    decode_instances_by_chunks,
    overlap_pairs,
)
from biapy_runner.io.images import Image
from biapy_runner.metrics.matching import label_overlap, match_overlap
from biapy_runner.metrics.streaming import OverlapAccumulator, streaming_overlap
from biapy_runner.workflows.base import workflow_for
from scipy import ndimage
from skimage.segmentation import find_boundaries

SHAPE = (40, 64, 64)
#: balls placed across the chunk borders (16, 32, 48) and at the volume's borders
CENTRES = [(8, 16, 16), (16, 30, 33), (20, 47, 10), (31, 15, 50), (33, 48, 48), (5, 60, 60),
           (24, 32, 16), (37, 5, 30), (12, 40, 56)]  # fmt: skip


def balls(shape: tuple[int, ...] = SHAPE, radius: float = 5.5) -> np.ndarray:
    """A label volume of balls 1..n (the nearer centre wins where two balls touch)."""
    grid = np.indices(shape)
    dist = np.stack([sum((g - c) ** 2 for g, c in zip(grid, centre)) for centre in CENTRES])
    labels = (np.argmin(dist, axis=0) + 1).astype(np.uint16)
    labels[np.min(dist, axis=0) > radius**2] = 0
    return labels


def fc_maps(labels: np.ndarray) -> np.ndarray:
    """Smooth F (foreground) and C (contour) probability maps of a label volume."""
    fg = labels > 0
    contour = find_boundaries(labels, mode="thick") & fg
    return np.stack([ndimage.gaussian_filter(m.astype(np.float32), 0.8) for m in (fg, contour)])


def same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    """Identical object masks: equal foreground and a bijection between the label sets."""
    if not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg], b[fg]]), axis=1)
    return pairs.shape[1] == np.unique(a[fg]).size == np.unique(b[fg]).size


def instance_workflow(padding: int = 16, *extra: str):
    cfg = load_config(None, [
        "PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.NDIM=3D",
        "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[F, C]",
        "PROBLEM.INSTANCE_SEG.WATERSHED.SEED_CHANNELS_THRESH=[0.5, 0.3]",
        "PROBLEM.INSTANCE_SEG.WATERSHED.GROWTH_MASK_CHANNELS_THRESH=[0.4]",
        f"DATA.PATCH_SIZE=({padding * 2 + 16}, {padding * 2 + 16}, {padding * 2 + 16}, 1)",
        f"DATA.TEST.PADDING=({padding}, {padding}, {padding})", *extra,
    ])  # fmt: skip
    return workflow_for(cfg)


def volume_image(raw: np.ndarray) -> Image:
    return Image(Path("vol.tif"), "vol", raw, "czyx", "czyx", raw.dtype)


@pytest.fixture(scope="module")
def prediction() -> tuple[np.ndarray, np.ndarray]:
    gt = balls()
    return gt, fc_maps(gt)


def test_chunk_grid_covers_the_volume_once() -> None:
    grid = ChunkGrid((40, 64, 64), (16, 16, 16), (4, 4, 4))
    assert grid.counts == (3, 4, 4)
    seen = np.zeros((40, 64, 64), dtype=int)
    for index in grid.indices():
        seen[grid.core(index)] += 1
    assert (seen == 1).all()
    assert grid.extended((0, 1, 3)) == (slice(0, 20), slice(12, 36), slice(44, 64))
    ext = grid.extended((1, 1, 1))  # box z 12..36, y/x 12..36
    earlier = np.zeros((24, 24, 24), dtype=int)
    for box in grid.earlier((1, 1, 1)):  # disjoint boxes
        earlier[tuple(slice(b.start - e.start, b.stop - e.start) for b, e in zip(box, ext))] += 1
    assert earlier.max() == 1
    # voxels of chunks (0, ., .), (1, 0, 1), (1, 1, 0) come earlier
    assert earlier[0, 10, 10] and earlier[5, 3, 20] and earlier[5, 10, 2]
    assert not earlier[5, 10, 10] and not earlier[5, 22, 2] and not earlier[22, 0, 0]


def test_overlap_pairs_use_iou_within_the_region() -> None:
    mine = np.array([1, 1, 1, 1, 2, 2, 0, 0])
    theirs = np.array([5, 5, 5, 0, 6, 0, 6, 6])
    # 1~5: 3 / (4 + 3 - 3) = 0.75; 2~6: 1 / (2 + 3 - 1) = 0.25
    assert overlap_pairs(mine, theirs, 0.3) == [(1, 5)]
    assert overlap_pairs(mine, theirs, 0.2) == [(1, 5), (2, 6)]


def test_instances_by_chunks_equal_in_memory(prediction) -> None:
    gt, raw = prediction
    workflow = instance_workflow()
    assert chunk_geometry(workflow.cfg, 3) == ((16, 16, 16), (16, 16, 16))
    whole = workflow.decode(raw, volume_image(raw))
    chunked = workflow.decode_by_chunks(raw, volume_image(raw))
    for name in ("instances", "post_proc"):
        assert whole.images[name].max() == len(CENTRES)
        assert chunked.images[name].max() == len(CENTRES)
        assert same_up_to_relabelling(whole.images[name], chunked.images[name])
    a = workflow.score(whole, gt, volume_image(raw)).row
    b = workflow.score(chunked, gt, volume_image(raw)).row
    assert a == b and a["tp@0.5"] == len(CENTRES)


def test_small_halo_still_joins_objects_across_borders(prediction) -> None:
    """With a halo smaller than the balls each chunk sees parts of them: the IoU in the halo
    still joins the parts into one label per ball."""
    gt, raw = prediction
    workflow = instance_workflow(4)
    chunked = workflow.decode_by_chunks(raw, volume_image(raw))
    labels = chunked.images["instances"]
    assert labels.max() == len(CENTRES)
    assert workflow.score(chunked, gt, volume_image(raw)).row["tp@0.5"] == len(CENTRES)


def test_labels_go_to_a_zarr_from_a_lazy_prediction(prediction, tmp_path: Path) -> None:
    """The raw prediction read by regions from a Zarr (io.chunked), the labels written into a
    Zarr array chunk by chunk."""
    from biapy_runner.io.chunked import create_zarr, open_prediction

    _, raw = prediction
    stored = create_zarr(tmp_path / "raw.zarr", raw.shape, np.float32, (2, 16, 32, 32))
    stored[...] = raw
    stored.attrs.update({"axes": "CZYX", "complete": True})
    lazy = open_prediction(tmp_path / "raw.zarr")
    workflow = instance_workflow()
    out = {"instances": create_zarr(tmp_path / "labels.zarr", SHAPE, np.uint32, (16, 32, 32))}
    labels, counts = decode_instances_by_chunks(lazy, workflow.decode_block, (16, 32, 32),
                                                (16, 16, 16), 0.3, out)  # fmt: skip
    assert labels["instances"] is out["instances"]
    assert counts == {"instances": len(CENTRES), "post_proc": len(CENTRES)}
    whole = workflow.decode_block(raw)["instances"]
    assert same_up_to_relabelling(np.asarray(labels["instances"][...]), whole)
    assert same_up_to_relabelling(labels["post_proc"], workflow.decode_block(raw)["post_proc"])


def test_streaming_overlap_equals_label_overlap(prediction) -> None:
    gt, raw = prediction
    pred = instance_workflow().decode(raw, volume_image(raw)).images["instances"]
    pred = np.where(pred == 3, 0, pred).astype(np.uint32) * 1000  # a missed object, sparse ids
    whole = label_overlap(gt, pred)
    for block in (1, 7, 40):
        streamed = streaming_overlap(gt, pred, block)
        for field in ("true_ids", "pred_ids", "rows", "cols", "iou"):
            assert np.array_equal(getattr(whole, field), getattr(streamed, field)), field
        for th in (0.3, 0.5, 0.75):
            assert match_overlap(streamed, th).stats == match_overlap(whole, th).stats
    empty = OverlapAccumulator()
    empty.add(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    assert empty.overlap().true_ids.size == 0


def test_streamed_channel_ious_equal_in_memory_with_p() -> None:
    """``iou_P`` (and the other channels' IoUs) streamed by windows of planes equal the
    in-memory values exactly: irregular objects crossing the windows' borders, centroids
    with fractions (rounded half to even as on the whole volume), a GT read as a Zarr."""
    import zarr
    from biapy_runner.decode.channels import centroid_voxels, channel_targets, parse_channels

    rng = np.random.default_rng(3)
    gt = ndimage.label(ndimage.gaussian_filter(rng.random((30, 24, 20)), 2) > 0.52)[0]
    gt[gt == 2] = 70  # sparse ids
    gt[14:16, :6, :6] = 71  # a centroid on a half plane (14.5 -> 14) and half pixels (2.5 -> 2)
    points = channel_targets(gt, parse_channels(["F", "P"]))["P"]
    assert np.count_nonzero(points) > 5 and points[14, 2, 2]
    centres = np.argwhere(points)
    for planes in (1, 4, 7, 30):
        assert np.array_equal(np.unique(centroid_voxels(gt, planes), axis=0), centres)
    workflow = instance_workflow(4, "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[F, P, C]")
    raw = np.stack([ndimage.gaussian_filter((gt > 0).astype(np.float32), 1),
                    ndimage.binary_dilation(points) * 0.9 * (rng.random(gt.shape) > 0.3),
                    rng.random(gt.shape)]).astype(np.float32)  # fmt: skip
    whole = workflow._channel_ious(raw, gt)
    assert set(whole) == {"iou_F", "iou_P", "iou_C"} and 0 < whole["iou_P"] < 1
    stored = zarr.array(gt, chunks=(5, 24, 20))
    for planes in (1, 4, 7, 30):
        assert workflow._streamed_channel_ious(raw, stored, planes) == whole


def detection_workflow(*extra: str):
    cfg = load_config(None, [
        "PROBLEM.TYPE=DETECTION", "PROBLEM.NDIM=3D", "TEST.DET_MIN_TH_TO_BE_PEAK=0.3",
        "TEST.DET_PEAK_LOCAL_MAX_MIN_DISTANCE=3", "DATA.PATCH_SIZE=(24, 24, 24, 1)",
        "DATA.TEST.PADDING=(6, 6, 6)", *extra,
    ])  # fmt: skip
    return workflow_for(cfg)


@pytest.mark.parametrize("extra", [(), ("TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS=True",
                                        "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS=4"),
                                   ("TEST.POST_PROCESSING.DET_WATERSHED=True",
                                    "TEST.POST_PROCESSING.DET_WATERSHED_FIRST_DILATION=[[1, 3, 3]]")])
def test_points_by_chunks_equal_in_memory(extra) -> None:
    rng = np.random.default_rng(3)
    centres = rng.integers(2, np.array(SHAPE) - 2, size=(40, 3))
    centres[:4] = [(12, 11, 30), (11, 12, 30), (23, 35, 35), (24, 36, 36)]  # pairs across borders
    spikes = np.zeros(SHAPE, np.float32)
    spikes[tuple(centres.T)] = rng.uniform(0.6, 1.0, len(centres))
    prob = ndimage.gaussian_filter(spikes, 1.0)[None] / 0.0635  # peaks ~ their spike value
    workflow = detection_workflow(*extra)
    image = volume_image(prob)
    whole = workflow.decode(prob, image).state["points"]
    chunked = workflow.decode_by_chunks(prob, image)
    points = chunked.state["points"]
    assert len(whole) > 20
    assert np.array_equal(whole.coords, points.coords)
    assert np.array_equal(whole.probs, points.probs)
    in_memory = workflow.decode(prob, image).images
    assert np.array_equal(chunked.images["post_proc"], in_memory["post_proc"])
    if "instances" in in_memory:  # DET_WATERSHED, grown chunk by chunk: the same ids
        assert in_memory["instances"].max() == len(points)
        assert np.array_equal(chunked.images["instances"], in_memory["instances"])


class Recording:
    """An array proxy that records the size (elements) of every region read or written."""

    def __init__(self, array, sizes: list[int]) -> None:
        self.array, self.sizes = array, sizes
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        out = np.asarray(self.array[key])
        self.sizes.append(out.size)
        return out

    def __setitem__(self, key, value) -> None:
        self.sizes.append(np.asarray(value).size)
        self.array[key] = value

    def __getattr__(self, name: str):
        return getattr(self.array, name)  # attrs, chunks, ... of the array recorded


def test_chunk_by_chunk_decoding_logs_chunk_counts_not_each_decoder_line(capsys) -> None:
    """Thousands of chunks would give thousands of a decoder's lines in a Galaxy job log: its
    progress lines are silenced, each distinct warning shown once, and the chunks counted."""
    from biapy_runner import log
    from biapy_runner.decode.chunked import decode_instances_by_chunks

    def decode(block: np.ndarray) -> dict[str, np.ndarray]:
        log.info("watershed: 1 seeds")
        log.warn("a warning every chunk gives")
        return {"instances": ndimage.label(block[0] > 0.5)[0]}

    raw = np.zeros((1, 12, 32, 32), dtype=np.float32)
    raw[0, 2:10, 4:28, 10:20] = 1.0  # one object through 2 x 4 x 2 = 16 chunks
    mark = log.warning_count()
    labels, counts = decode_instances_by_chunks(raw, decode, (6, 8, 16), (1, 2, 2))
    err = capsys.readouterr().err
    assert counts == {"instances": 1} and int(np.asarray(labels["instances"]).max()) == 1
    assert "watershed" not in err
    assert err.count("WARNING: a warning every chunk gives") == 1
    assert log.warnings_since(mark) == ["a warning every chunk gives"]
    assert err.strip().splitlines()[-1].split("] ", 1)[1].startswith("  chunks 16/16 (")
    log.info("after")  # outside: shown again
    assert "after" in capsys.readouterr().err


def test_decoding_by_chunks_holds_chunks_not_the_volume(tmp_path: Path) -> None:
    """A volume 6 times the test's depth (240 x 64 x 64, two channels, 7.5 MiB) with a rod
    through all its planes, decoded from a Zarr into Zarr arrays: the raw prediction is read
    chunk with halo by chunk, labels are written and read back by chunk or by windows of
    planes (the pass's planes and one of context: never the height of an object, here the
    volume's), the GT by planes, and the tracked Python memory of the decode, the object table
    and the scores stays under a bound set by the chunk and the window, a fraction of the
    volume. Labels and metrics equal the in-memory ones. (The watershed is swapped for a
    connected-component decoder to keep the test fast; the chunk machinery is the same.)"""
    import tracemalloc

    import zarr
    from biapy_runner.decode.chunked import LabelStore

    copies, planes = 6, 2
    gt = np.concatenate([balls()] * copies)
    gt = np.where(gt > 0, gt + np.repeat(np.arange(copies), 40)[:, None, None] * 100, 0)
    gt[:, 54:62, 1:9] = 999  # as tall as the volume
    raw = fc_maps(gt)
    workflow = instance_workflow(4)  # chunks of 16, halo 4

    def decode_block(block: np.ndarray) -> dict[str, np.ndarray]:
        labels = ndimage.label((block[0] > 0.5) & (block[1] < 0.5))[0].astype(np.uint32)
        return {"instances": labels, "post_proc": labels}

    workflow.decode_block = decode_block
    sizes: list[int] = []

    class Store(LabelStore):
        def scratch(self, name, shape, chunk):
            return self.final(f"s-{name}", shape, np.uint32)

        def final(self, name, shape, dtype):
            return Recording(zarr.open_array(str(tmp_path / f"{name}.zarr"), mode="w",
                                             shape=shape, dtype=dtype, chunks=(16, 16, 16)),
                             sizes)  # fmt: skip

    stored = zarr.open_array(str(tmp_path / "raw.zarr"), mode="w", shape=raw.shape,
                             dtype=np.float32, chunks=(2, 16, 32, 32))  # fmt: skip
    stored[...] = raw
    lazy_raw, lazy_gt = Recording(stored, sizes), Recording(zarr.array(gt, chunks=(16, 64, 64)),
                                                            sizes)  # fmt: skip
    image = Image(Path("vol.tif"), "vol", np.broadcast_to(np.float32(0), raw.shape), "czyx",
                  "czyx", np.float32)  # fmt: skip
    labels = decode_block(raw)["instances"]  # in memory first (imports done)
    whole = workflow._decoded({"instances": labels, "post_proc": labels}, raw, image)
    expected = workflow.score(whole, gt, image).row
    tracemalloc.start()
    chunked = workflow.decode_by_chunks(lazy_raw, image, Store(planes))
    scored = workflow.score(chunked, lazy_gt, image).row
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    chunk_block = 2 * (16 + 2 * 4) ** 3  # two channels of a chunk with its halo
    window = 2 * (planes + 1) * 64 * 64  # two channels of a window of planes with context
    assert max(sizes) <= max(chunk_block, window) < raw.size / 12
    # bytes: the decoders' copies of one block, and what grows with the number of chunks and
    # objects (the union-find, ids present, the object table; ~0.5 MiB here)
    bound = 96 * max(chunk_block, window)
    assert peak < bound < raw.nbytes / 2, f"peak {peak} bytes, bound {bound}"
    assert same_up_to_relabelling(np.asarray(chunked.images["post_proc"][...]), labels)
    assert scored == expected
    assert scored["tp@0.5"] == copies * len(CENTRES) + 1
    objects = [table.drop(columns="label").sort_values(["centroid_z", "centroid_y",
               "centroid_x"], ignore_index=True)
               for table in (chunked.tables["metrics/objects.tsv"],
                             whole.tables["metrics/objects.tsv"])]  # fmt: skip
    assert len(objects[0]) > copies * len(CENTRES)
    pd.testing.assert_frame_equal(*objects)

"""One volume split across jobs: ``split`` -> ``run --z-range`` per job -> ``merge``, equal to
the in-memory run (prediction within 1e-5, labels up to relabelling, metrics), slab files and
their checks (io/slabs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from biapy_runner.cli import main
from biapy_runner.errors import InputError
from biapy_runner.io.slabs import SlabInfo, order_slabs, read_slab_info, split_ranges, write_slab
from test_chunked_decode import same_up_to_relabelling
from test_instance import ARCHITECTURE, _cartocell_weights, spheres

SHAPE = (48, 64, 64)
CONFIG = """PROBLEM:
  TYPE: INSTANCE_SEG
  NDIM: 3D
  INSTANCE_SEG:
    DATA_CHANNELS: [F, C, M]
    WATERSHED:
      SEED_CHANNELS_THRESH: [0.5, 0.3]
      GROWTH_MASK_CHANNELS_THRESH: [0.5]
DATA:
  PATCH_SIZE: (40, 56, 56, 1)
  TEST:
    PADDING: (12, 12, 12)
TEST:
  MATCHING_STATS_THS: [0.3, 0.5, 0.75]
"""


def info(start: int, end: int, stem: str = "vol") -> SlabInfo:
    return SlabInfo(stem, (30, 8, 8), (start, end), (start, end), (2, 30, 8, 8), (0, 30),
                    "INSTANCE_SEG", "m.zip")  # fmt: skip


def test_split_ranges_follow_the_tile_step() -> None:
    assert split_ranges(48, 3) == [(0, 16), (16, 32), (32, 48)]
    assert split_ranges(100, 3, 16) == [(0, 32), (32, 64), (64, 100)]
    assert split_ranges(10, 4, 8) == [(0, 8), (8, 10)]
    assert split_ranges(5, 1) == [(0, 5)]


def test_slabs_must_cover_the_volume_once(tmp_path: Path) -> None:
    paths = {}
    for a, b in ((0, 10), (10, 20), (20, 30), (5, 15)):
        paths[a, b] = tmp_path / f"s{a}.tif"
        write_slab(paths[a, b], np.zeros((2, b - a, 8, 8), np.float32), info(a, b))
    assert read_slab_info(paths[0, 10]) == info(0, 10)
    ordered = order_slabs([paths[20, 30], paths[0, 10], paths[10, 20]])
    assert [i.z_range for _, i in ordered] == [(0, 10), (10, 20), (20, 30)]
    with pytest.raises(InputError, match="slices 20..29 of vol are missing"):
        order_slabs([paths[0, 10], paths[10, 20]])
    with pytest.raises(InputError, match="predicted twice"):
        order_slabs([paths[0, 10], paths[5, 15], paths[20, 30]])
    other = tmp_path / "other.tif"
    write_slab(other, np.zeros((2, 10, 8, 8), np.float32), info(10, 20, "cell"))
    with pytest.raises(InputError, match="different runs"):
        order_slabs([paths[0, 10], other, paths[20, 30]])
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="not a slab"):
        order_slabs([plain])


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from bmz_factory import make_model_package

    root = tmp_path_factory.mktemp("split")
    centres = [(8, 12, 12), (16, 40, 20), (24, 20, 48), (31, 50, 50), (40, 14, 30), (33, 30, 12),
               (15, 20, 30)]  # fmt: skip
    gt = spheres(SHAPE, centres, 5.5)
    vol = np.where(gt > 0, 200, 20).astype(np.uint8)
    fg = (gt > 0).mean()
    std = np.sqrt(fg * (1 - fg)) * 180
    s_in, s_out = (200 - vol.mean()) / std, (20 - vol.mean()) / std
    model = make_model_package(
        root / "model", architecture_source=ARCHITECTURE, callable_name="Conv3x3x3", kwargs={},
        state_dict=_cartocell_weights(float(s_in), float(s_out)), ndim=3, out_channels=3,
        size=(8, 8), preprocessing=[{"id": "zero_mean_unit_variance"}],
        postprocessing=[{"id": "sigmoid"}], channel_names=["F", "C", "M"],
        test_input=vol[None, :16, :16, :16].astype(np.float32), name="balls",
    )  # fmt: skip
    paths = {"model": model, "vol": root / "vol.tif", "gt": root / "vol_gt.tif",
             "config": root / "balls.yaml", "root": root}  # fmt: skip
    tifffile.imwrite(paths["vol"], vol)
    tifffile.imwrite(paths["gt"], gt)
    paths["config"].write_text(CONFIG)
    return paths


def _run(volume: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["run", "--config", str(volume["config"]), "--images", str(volume["vol"]),
                 "--model", str(volume["model"]), "--out", str(out), "--threads", "1",
                 "--no-report", *extra])  # fmt: skip


@pytest.mark.slow
def test_split_in_three_and_merge_equal_the_whole_run(volume: dict[str, Path]) -> None:
    root = volume["root"]
    assert _run(volume, root / "whole", "--gt", str(volume["gt"])) == 0
    assert main(["split", "--image", str(volume["vol"]), "--jobs", "3", "--config",
                 str(volume["config"]), "--out", str(root / "split")]) == 0  # fmt: skip
    ranges = pd.read_csv(root / "split" / "ranges.tsv", sep="\t")
    assert ranges[["z_start", "z_end"]].values.tolist() == [[0, 16], [16, 32], [32, 48]]
    jobs = sorted((root / "split" / "ranges").iterdir())
    assert [p.read_text().strip() for p in jobs] == ["0:16", "16:32", "32:48"]
    for number, job in enumerate(jobs):
        assert _run(volume, root / f"job{number}", "--z-range", str(job)) == 0
    slabs = [root / f"job{n}" for n in range(3)]
    merged, chunked = root / "merged", root / "merged_by_chunks"
    for out, extra in ((merged, []), (chunked, ["--set", "TEST.BY_CHUNKS.ENABLE=True"])):
        code = main(["merge", "--slabs", *map(str, slabs), "--config", str(volume["config"]),
                     "--gt", str(volume["gt"]), "--out", str(out),
                     "--image", str(volume["vol"]), *extra])  # fmt: skip
        assert code == 0
    whole = root / "whole"
    raw_whole = tifffile.imread(whole / "raw" / "vol.tif")
    raw_merged = tifffile.imread(merged / "raw" / "vol.tif")
    assert raw_merged.shape == raw_whole.shape == (SHAPE[0], 3, *SHAPE[1:])  # ImageJ: ZCYX
    assert np.abs(raw_merged - raw_whole).max() <= 1e-5
    raw_chunked = zarr.open_array(str(chunked / "raw" / "vol.zarr"), mode="r")[...]
    assert np.abs(raw_chunked - raw_whole.transpose(1, 0, 2, 3)).max() <= 1e-5
    for folder in ("instances", "post_proc"):
        a, b = (tifffile.imread(d / folder / "vol.tif") for d in (whole, merged))
        c = zarr.open_array(str(chunked / folder / "vol.zarr"), mode="r")[...]
        assert a.max() == 7 and same_up_to_relabelling(a, b) and same_up_to_relabelling(a, c)
    m_whole, m_merged, m_chunked = (
        pd.read_csv(d / "metrics" / "metrics.tsv", sep="\t").set_index("image")
        for d in (whole, merged, chunked))  # fmt: skip
    pd.testing.assert_frame_equal(m_whole, m_merged)
    pd.testing.assert_frame_equal(m_whole, m_chunked)
    assert m_merged.loc["vol", "post_tp@0.5"] == 7
    objects = [pd.read_csv(d / "metrics" / "objects.tsv", sep="\t").drop(columns="label")
               .sort_values(["centroid_z", "centroid_y", "centroid_x"], ignore_index=True)
               for d in (whole, merged, chunked)]  # fmt: skip
    assert len(objects[0]) == 7
    pd.testing.assert_frame_equal(objects[1], objects[0])
    pd.testing.assert_frame_equal(objects[2], objects[0])  # measured by windows of planes
    for out in (merged, chunked):  # the chunked one previews the Zarr results
        assert "previews/vol.png" in (out / "report" / "index.html").read_text()


@pytest.mark.slow
def test_unaligned_slabs_equal_the_whole_prediction(volume: dict[str, Path]) -> None:
    root = volume["root"]
    if not (root / "whole").exists():
        assert _run(volume, root / "whole") == 0
    raw_whole = tifffile.imread(root / "whole" / "raw" / "vol.tif").transpose(1, 0, 2, 3)
    parts = []
    for start, end in ((0, 5), (5, 29), (29, 48)):
        out = root / f"slab{start}"
        assert _run(volume, out, "--z-range", f"{start}:{end}") == 0
        parts.append(tifffile.imread(out / "slabs" / f"vol.z{start:06d}-{end:06d}.tif"))
        assert read_slab_info(out / "slabs" / f"vol.z{start:06d}-{end:06d}.tif").z_range == (
            start, end)  # fmt: skip
    assert np.abs(np.concatenate(parts, axis=1) - raw_whole).max() <= 1e-5
    assert _run(volume, root / "bad", "--z-range", "40:60") == 2


def _fc_slabs(folder: Path, copies: int) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Three slabs of the F and C maps of ``copies`` stacked copies of the balls (40 planes
    each), the GT written beside them; the slab paths, the GT and the raw prediction."""
    from test_chunked_decode import balls, fc_maps

    gt = np.concatenate([balls()] * copies)
    gt = np.where(gt > 0, gt + np.repeat(np.arange(copies), 40)[:, None, None] * 100, 0)
    raw = fc_maps(gt)
    folder.mkdir()
    tifffile.imwrite(folder / "vol_gt.tif", gt.astype(np.uint16))
    (folder / "cfg.yaml").write_text(
        "PROBLEM:\n  TYPE: INSTANCE_SEG\n  NDIM: 3D\n  INSTANCE_SEG:\n    DATA_CHANNELS: [F, C]\n"
        "DATA:\n  PATCH_SIZE: (24, 24, 24, 1)\n  TEST:\n    PADDING: (4, 4, 4)\n")  # fmt: skip
    depth, slabs = gt.shape[0], []
    for start, end in ((0, depth // 3), (depth // 3, 2 * depth // 3), (2 * depth // 3, depth)):
        slabs.append(folder / f"vol.z{start:06d}-{end:06d}.tif")
        write_slab(slabs[-1], raw[:, start:end], SlabInfo(
            "vol", gt.shape, (start, end), (start, end), raw.shape, (0, depth), "INSTANCE_SEG",
            "m"))  # fmt: skip
    return slabs, gt, raw


def _merge_slabs(folder: Path, slabs: list[Path], out: str, *extra: str) -> Path:
    assert main(["merge", "--slabs", *map(str, slabs), "--config", str(folder / "cfg.yaml"),
                 "--gt", str(folder / "vol_gt.tif"), "--out", str(folder / out), "--no-report",
                 *extra]) == 0  # fmt: skip
    return folder / out


def test_merge_by_chunks_holds_windows_not_the_volume(tmp_path: Path, monkeypatch) -> None:
    """``merge`` by chunks of a volume 6 times the test's depth (240 x 64 x 64, two channels,
    7.5 MiB, in three slabs) with 3 MiB of room in the budget: the slabs are read by windows
    of planes, the stitched Zarr and the labels are read and written chunk (with halo) by
    chunk or by windows of planes, and the tracked Python memory of the whole command
    (stitching, decoding, object table, scores, outputs) stays under a bound set by the chunk
    and the window, a fraction of the volume. Labels and metrics equal the in-memory merge's.
    (The watershed is swapped for a connected-component decoder to keep the test fast.)"""
    import tracemalloc

    from biapy_runner import split
    from biapy_runner.inference import chunked as inference_chunked
    from biapy_runner.workflows.instance import InstanceSegmentation
    from scipy import ndimage
    from test_chunked_decode import CENTRES, Recording

    def decode_block(self, block: np.ndarray) -> dict[str, np.ndarray]:
        labels = ndimage.label((block[0] > 0.5) & (block[1] < 0.5))[0].astype(np.uint32)
        return {"instances": labels, "post_proc": labels}

    monkeypatch.setattr(InstanceSegmentation, "decode_block", decode_block)
    monkeypatch.setattr(InstanceSegmentation, "decode",
                        lambda self, r, image: self._decoded(decode_block(self, r), r, image))
    monkeypatch.setattr(inference_chunked, "MIN_ROOM", 3 * 2**20)  # the 1 MiB budget's room
    by_chunks = ("--memory-budget", "1M", "--set", "TEST.BY_CHUNKS.ENABLE=True")
    small, _, _ = _fc_slabs(tmp_path / "small", 1)
    _merge_slabs(tmp_path / "small", small, "chunked", *by_chunks)  # imports done before
    copies, folder = 6, tmp_path / "large"
    slabs, _, raw = _fc_slabs(folder, copies)
    memory = _merge_slabs(folder, slabs, "memory", "--memory-budget", "4G")
    sizes: list[int] = []
    opened = split.open_slab

    def recorded_slab(path: Path):
        lazy = opened(path)
        lazy.array = Recording(lazy.array, sizes)
        return lazy

    for name in ("create_array", "open_array"):
        make = getattr(zarr, name)
        monkeypatch.setattr(zarr, name, lambda *a, make=make, **k: Recording(make(*a, **k), sizes))
    monkeypatch.setattr(split, "open_slab", recorded_slab)
    tracemalloc.start()
    chunked = _merge_slabs(folder, slabs, "chunked", *by_chunks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    monkeypatch.undo()

    planes = 6  # the window of planes of 3 MiB of room (pass_planes)
    chunk_block = 2 * (16 + 2 * 4) ** 3  # two channels of a chunk with its halo
    window = 2 * (planes + 1) * 64 * 64  # two channels of a window of planes with context
    stitched = 2 * 12 * 64 * 64  # the stitching's windows of planes (an eighth of the room)
    assert max(sizes) <= max(chunk_block, window, stitched) < raw.size / 12
    bound = 32 * max(chunk_block, window, stitched)  # bytes: the decoders' copies of one block
    assert peak < bound < raw.nbytes / 2, f"peak {peak} bytes, bound {bound}"
    expected = tifffile.imread(memory / "post_proc" / "vol.tif")
    labels = zarr.open_array(str(chunked / "post_proc" / "vol.zarr"), mode="r")[...]
    assert same_up_to_relabelling(labels, expected)
    rows = [pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t") for out in (memory, chunked)]
    pd.testing.assert_frame_equal(rows[1], rows[0])
    assert rows[1].loc[0, "tp@0.5"] == copies * len(CENTRES)

"""BiaPy 3.7's watershed on the list-form channels: known answers for every channel path (2D and
3D), the WATERSHED options, the decoder registry and the instance refinement operations."""

from __future__ import annotations

import numpy as np
import pytest
from biapy_runner.config.load import load_config
from biapy_runner.config.schema import (
    INSTANCE_CHANNELS,
    INSTANCE_CREATION_PROCESSES,
    WATERSHED_DEFAULTS,
)
from biapy_runner.decode.channels import parse_channels
from biapy_runner.decode.postprocess import refine_instances
from biapy_runner.decode.processes import check_process, create_instances, resolve_process
from biapy_runner.decode.watershed import watershed_by_channels, watershed_settings
from biapy_runner.errors import ConfigError
from biapy_runner.metrics.matching import matching
from instance_channels import affinities, balls, make_channels

WS = "PROBLEM.INSTANCE_SEG.WATERSHED."
TOUCHING_3D = [(12, 14, 14), (12, 14, 27), (12, 30, 18), (11, 31, 33), (13, 42, 40)]
APART_3D = [(12, 12, 12), (12, 12, 34), (12, 34, 20), (11, 36, 40)]
TOUCHING_2D = [(20, 18), (20, 38), (42, 26), (44, 46)]


def cfg_for(channels: list[str], *sets: str):
    return load_config(
        None,
        [
            "PROBLEM.TYPE=INSTANCE_SEG",
            f"PROBLEM.INSTANCE_SEG.DATA_CHANNELS=[{', '.join(channels)}]",
            *sets,
        ],
    )


def decode(raw: np.ndarray, channels: list[str], *sets: str):
    ch = parse_channels(channels)
    return watershed_by_channels(raw, ch, watershed_settings(cfg_for(channels, *sets), ch))


@pytest.fixture(scope="module")
def touching() -> np.ndarray:
    return balls((24, 52, 52), TOUCHING_3D, 7)


@pytest.fixture(scope="module")
def apart() -> np.ndarray:
    return balls((24, 48, 52), APART_3D, 7)


def assert_recovered(gt: np.ndarray, labels: np.ndarray, extra: int = 0, iou: float = 0.75):
    """Every GT object found once at IoU 0.5 (``extra`` unmatched objects allowed: e.g. the
    background region channel sets without a foreground make) and a high mean IoU."""
    (r,) = matching(gt, labels, (0.5,))
    n = int(gt.max())
    assert r.stats["tp"] == n and r.stats["fn"] == 0 and r.stats["fp"] == extra, r.stats
    assert r.stats["mean_matched_score"] >= iou, r.stats


@pytest.mark.parametrize(
    ("channels", "iou"),
    [
        (["F", "C"], 0.9),
        (["F", "C", "M"], 0.9),
        (["F", "P"], 0.85),
        (["F", "Db"], 0.9),
        (["F", "Dc"], 0.9),
        (["F", "Dn"], 0.85),
        (["F", "C", "Db"], 0.9),
        (["F", "C", "Dc"], 0.9),
        (["F", "C", "D"], 0.9),
        (["F", "Z", "V", "H"], 0.85),
        (["Db"], 0.5),
    ],
)
def test_channels_made_from_3d_labels_decode_back(touching, channels, iou) -> None:
    result = decode(make_channels(touching, channels), channels)
    assert_recovered(touching, result.labels, iou=iou)


def test_signed_distance(touching) -> None:
    """D is -1 in the background: its Otsu threshold falls between background and objects, so
    with ``auto`` the seeds are whole objects and touching ones merge (BiaPy's result); a
    manual threshold inside the objects separates them."""
    raw = make_channels(touching, ["F", "D"])
    merged = decode(raw, ["F", "D"])
    assert merged.thresholds["seed D"] < 0 and len(np.unique(merged.labels)) - 1 < 5
    manual = decode(raw, ["F", "D"], f"{WS}SEED_CHANNELS_THRESH=[auto, 0.5]")
    assert_recovered(touching, manual.labels, iou=0.9)


def test_foreground_alone_separates_objects_apart(apart) -> None:
    assert_recovered(apart, decode(make_channels(apart, ["F"]), ["F"]).labels, iou=0.99)


def test_contours_alone_also_flood_the_background(apart) -> None:
    """BiaPy inverts a lone contour channel (1 - C): the background is one more region and the
    contours themselves stay outside the growth mask."""
    result = decode(make_channels(apart, ["C"]), ["C"])
    assert_recovered(apart, result.labels, extra=1, iou=0.6)


@pytest.mark.parametrize("channels", [["F", "V", "H"], ["Db", "V", "H"], ["F", "C"], ["F", "P"]])
def test_channels_made_from_2d_labels_decode_back(channels) -> None:
    discs = balls((64, 64), TOUCHING_2D, 11)
    result = decode(make_channels(discs, channels), channels)
    assert_recovered(discs, result.labels, iou=0.7)


def test_affinities_by_watershed(touching) -> None:
    raw = affinities(touching)
    ch = parse_channels(["A"])
    cfg = cfg_for(["A"], "PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS=watershed")
    assert resolve_process(ch, "watershed") == "watershed"
    result = create_instances(raw, ch, cfg)
    # the growth mask (min affinity > half the seed threshold) leaves out each object's first
    # voxels along every axis (their predecessor is background)
    assert_recovered(touching, result.labels, iou=0.75)


def test_custom_channel_set_needs_the_watershed_keys(touching) -> None:
    raw = make_channels(touching, ["F", "T"])
    with pytest.raises(ConfigError, match="TOPOGRAPHIC_SURFACE_CHANNEL"):
        decode(raw, ["F", "T"])
    result = decode(
        raw,
        ["F", "T"],
        f"{WS}SEED_CHANNELS=[T, F]",
        f"{WS}TOPOGRAPHIC_SURFACE_CHANNEL=F",
        f"{WS}GROWTH_MASK_CHANNELS=[F]",
    )
    assert_recovered(touching, result.labels, iou=0.85)
    with pytest.raises(ConfigError, match="not in PROBLEM.INSTANCE_SEG.DATA_CHANNELS"):
        decode(
            raw,
            ["F", "T"],
            f"{WS}SEED_CHANNELS=[C]",
            f"{WS}TOPOGRAPHIC_SURFACE_CHANNEL=F",
            f"{WS}GROWTH_MASK_CHANNELS=[F]",
        )


def test_seed_channels_are_sorted_with_their_thresholds(touching) -> None:
    raw = make_channels(touching, ["F", "C"])
    result = decode(
        raw,
        ["F", "C"],
        f"{WS}SEED_CHANNELS=[C, F]",
        f"{WS}SEED_CHANNELS_THRESH=[0.25, 0.75]",
        f"{WS}GROWTH_MASK_CHANNELS_THRESH=[0.4]",
    )
    # F (first in BiaPy's order) takes 0.75, C 0.25; the growth mask its manual 0.4
    assert result.thresholds == {"seed C": 0.75, "seed F": 0.25, "growth F": 0.4} or (
        result.thresholds["growth F"] == 0.4
    )
    assert_recovered(touching, result.labels)
    auto = decode(raw, ["F", "C"])
    assert auto.thresholds["growth F"] == pytest.approx(auto.thresholds["seed F"] / 2, abs=0.01)


def test_growth_mask_is_the_and_of_its_channels(touching) -> None:
    raw = make_channels(touching, ["F", "C"])
    both = decode(raw, ["F", "C"], f"{WS}GROWTH_MASK_CHANNELS=[F, C]")
    only_f = decode(raw, ["F", "C"])
    # the contour channel removes the contours from the growth mask: objects lose their rims
    assert np.count_nonzero(both.labels) < np.count_nonzero(only_f.labels)
    assert not np.any(both.labels[raw[1] > 0.5])


def test_watershed_options(touching) -> None:
    raw = make_channels(touching, ["F", "C"])
    base = decode(raw, ["F", "C"])
    # a spurious one-voxel seed far from the objects
    noisy = raw.copy()
    noisy[0, 2, 2, 2] = 1.0
    assert decode(noisy, ["F", "C"]).n_seeds == base.n_seeds + 1
    cleaned = decode(
        noisy, ["F", "C"], f"{WS}DATA_REMOVE_BEFORE_MW=True", f"{WS}DATA_REMOVE_SMALL_OBJ_BEFORE=3"
    )
    assert cleaned.n_seeds == base.n_seeds
    # eroded seeds still grow back into the same objects
    eroded = decode(
        raw, ["F", "C"], f"{WS}SEED_MORPH_SEQUENCE=[erode]", f"{WS}SEED_MORPH_RADIUS=[2]"
    )
    assert eroded.maps["seed_map"].astype(bool).sum() < base.maps["seed_map"].astype(bool).sum()
    assert_recovered(touching, eroded.labels)
    # a hole in the foreground is closed by the growth-mask closing
    holed = raw.copy()
    holed[0, 12, 30, 18] = 0.0
    opened = decode(holed, ["F", "C"])
    assert opened.labels[12, 30, 18] == 0
    closed = decode(
        holed,
        ["F", "C"],
        f"{WS}ERODE_AND_DILATE_GROWTH_MASK=True",
        f"{WS}FORE_EROSION_RADIUS=2",
        f"{WS}FORE_DILATION_RADIUS=2",
    )
    assert closed.labels[12, 30, 18] == closed.labels[12, 30, 17] != 0
    # slice by slice: same objects, grown within each plane
    by_slices = decode(raw, ["F", "C"], f"{WS}BY_2D_SLICES=True")
    assert_recovered(touching, by_slices.labels)
    assert set(base.maps) == {"seed_map", "topographic_surface", "growth_mask"}


def test_discretized_boundary_distance(touching) -> None:
    db = make_channels(touching, ["Db"])[0]
    bins = np.where(touching > 0, np.minimum(np.floor(db / 0.1), 9) + 1, 0).astype(int)
    raw = np.stack([(bins == k).astype(np.float32) for k in range(11)])
    ch = parse_channels(["Db"])
    cfg = cfg_for(
        ["Db"], "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS=[{Db: {val_type: discretize}}]"
    )
    st = watershed_settings(cfg, ch)
    assert st.db_discretize
    assert_recovered(touching, watershed_by_channels(raw, ch, st).labels, iou=0.5)


def test_defaults_and_processes_use_the_vocabulary() -> None:
    for key, (seeds, surface, growth) in WATERSHED_DEFAULTS.items():
        assert key <= set(INSTANCE_CHANNELS)
        assert set(seeds) | {surface} | set(growth) <= key
    assert resolve_process(parse_channels(["Db", "R"]), "") == "stardist"
    assert resolve_process(parse_channels(["F", "Gv", "Gh"]), "watershed") == "gradient-flow"
    assert (
        resolve_process(parse_channels(["E_offset", "E_sigma", "E_seediness"]), "") == "embeddings"
    )
    assert resolve_process(parse_channels(["A"]), "") == "agglomeration"
    assert resolve_process(parse_channels(["F", "C"]), "") == "watershed"
    assert resolve_process(parse_channels("BC"), "") == "watershed"
    for process in INSTANCE_CREATION_PROCESSES:
        assert process == "watershed" or resolve_process(parse_channels(["A"]), process)
    with pytest.raises(ConfigError, match="INSTANCE_CREATION_PROCESS"):
        resolve_process(parse_channels(["F"]), "magic")


def test_a_decoder_the_runner_lacks_is_a_clear_error(monkeypatch) -> None:
    from biapy_runner.decode import processes

    monkeypatch.setitem(processes.MODULES, "stardist", "no_such_decoder")
    cfg = cfg_for(["Db", "R"])
    with pytest.raises(ConfigError, match="not implemented in this runner"):
        check_process(parse_channels(["Db", "R"]), cfg)


def test_instance_refinement_operations() -> None:
    labels = np.zeros((20, 20), dtype=np.uint16)
    labels[2:8, 2:8] = 1  # 36 pixels
    labels[4, 4] = 0  # a hole
    labels[10:12, 10:12] = 2  # 4 pixels
    labels[14:20, 0:6] = 3  # touches the border
    filled = refine_instances(labels, ["fill_holes"], ["none"])
    assert filled[4, 4] == 1
    assert set(np.unique(refine_instances(labels, ["clear_border"], ["none"]))) == {0, 1, 2}
    assert set(np.unique(refine_instances(labels, ["remove_small_objects"], [4]))) == {0, 1, 3}
    assert set(np.unique(refine_instances(labels, ["remove_big_objects"], [4]))) == {0, 2}
    eroded = refine_instances(filled, ["erosion"], [3])
    assert np.count_nonzero(eroded == 1) == 16 and np.count_nonzero(eroded == 2) == 0
    dilated = refine_instances(labels, ["dilation"], [[3, 3]])
    assert np.count_nonzero(dilated == 2) == 16
    both = refine_instances(labels, ["fill_holes", "remove_small_objects"], ["none", 4])
    assert both[4, 4] == 1 and not np.any(both == 2)
    with pytest.raises(ConfigError, match="same length"):
        refine_instances(labels, ["fill_holes"], [])

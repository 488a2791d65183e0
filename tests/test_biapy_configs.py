"""Real BiaPy configuration files of every 3.x dialect load, with their older keys converted as
BiaPy's own converter converts them (tests/data/biapy_configs/PROVENANCE.md says where each file
comes from)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from biapy_runner.config.convert import convert
from biapy_runner.config.load import LEAVES, load_config
from biapy_runner.config.schema import PROBLEM_TYPES
from biapy_runner.config.support import check_implemented, unimplemented
from biapy_runner.errors import ConfigError

DATA = Path(__file__).parent / "data"
COLLECTION = DATA / "biapy_configs"
#: every file BiaPy itself accepts (sanity_cellpose.yaml has a key no BiaPy release has)
ACCEPTED = sorted(
    [p for p in COLLECTION.glob("*.yaml") if p.name != "sanity_cellpose.yaml"]
    + list((DATA / "configs").glob("*.yaml"))
)
IS = "PROBLEM.INSTANCE_SEG."
WS = IS + "WATERSHED."


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out += _leaves(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.name)
def test_every_real_configuration_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.get("PROBLEM.TYPE") in PROBLEM_TYPES
    assert len(cfg.get("DATA.PATCH_SIZE")) == (4 if cfg.get("PROBLEM.NDIM") == "3D" else 3)


def test_the_collection_covers_every_workflow_and_dialect() -> None:
    types = {load_config(p).get("PROBLEM.TYPE") for p in ACCEPTED}
    assert types >= {
        "SEMANTIC_SEG", "INSTANCE_SEG", "DETECTION", "DENOISING", "SUPER_RESOLUTION",
        "SELF_SUPERVISED", "CLASSIFICATION", "IMAGE_TO_IMAGE",
    }
    assert len(ACCEPTED) == 22


def test_biapy_371_complete_configuration_loads_every_key_as_written() -> None:
    path = COLLECTION / "biapy_3.7.1_defaults.yaml"
    written = yaml.safe_load(path.read_text())
    keys = _leaves(written)
    assert len(keys) == 585
    cfg = load_config(path)
    assert not cfg.conversions  # nothing in 3.7.1's own tree needs converting
    assert set(keys) <= set(LEAVES)
    for key in keys:
        value = cfg.get(key)
        expected = _lookup(written, key)
        assert (list(value) if isinstance(value, tuple) else value) == expected, key
    assert unimplemented(cfg) == []


def _lookup(tree: dict, dotted: str) -> object:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def test_schema_defaults_are_biapy_371s() -> None:
    written = yaml.safe_load((COLLECTION / "biapy_3.7.1_defaults.yaml").read_text())
    cfg = load_config(None)
    differ = [
        k for k in _leaves(written)
        if (list(v) if isinstance(v := cfg.get(k), tuple) else v) != _lookup(written, k)
    ]
    # the runner keeps 3.6's zero padding of small images (README, "Differences from BiaPy")
    assert differ == ["DATA.REFLECT_TO_COMPLETE_SHAPE"]


# ------------------------------------------------------------------ old key -> new key values


def test_cartocell_35_string_channels_and_watershed_keys() -> None:
    cfg = load_config(COLLECTION / "cartocell_inference_latest.yaml")
    assert cfg.get(IS + "DATA_CHANNELS") == ["F", "C", "M"]
    assert cfg.get(WS + "DATA_REMOVE_BEFORE_MW") is True
    assert cfg.get(WS + "DATA_REMOVE_SMALL_OBJ_BEFORE") == 5
    assert cfg.get(WS + "SEED_CHANNELS_THRESH") == []  # auto: Otsu, as BiaPy 3.7
    # CLEAR_BORDER: False converts to nothing (BiaPy would append clear_border even then)
    assert cfg.get("TEST.POST_PROCESSING.INSTANCE_REFINEMENT.ENABLE") is False
    check_implemented(cfg)


def test_mitoem_30_names() -> None:
    cfg = load_config(COLLECTION / "mitoem.yaml")
    assert cfg.get("DATA.TEST.GT_PATH") == "/path/to/data"  # MASK_PATH
    assert cfg.get("TEST.FULL_IMG") is False  # TEST.STATS.FULL_IMG
    assert cfg.get(IS + "DATA_CHANNELS") == ["F", "C"]
    # thresholds without DATA_MW_TH_TYPE: manual is not set, so BiaPy drops them (Otsu)
    assert cfg.get(WS + "SEED_CHANNELS") == []
    assert "TEST.STATS.FULL_IMG -> TEST.FULL_IMG (TEST.STATS dropped)" in cfg.conversions


def test_pre_30_channels_numbered_thresholds_and_filters() -> None:
    cfg = load_config(COLLECTION / "unet_2d_instances_pre3.yaml")
    assert cfg.get(IS + "DATA_CHANNELS") == ["F", "C"]
    assert cfg.get(WS + "SEED_CHANNELS") == ["F", "C"]
    assert cfg.get(WS + "SEED_CHANNELS_THRESH") == [0.2, 0.1]
    assert cfg.get(WS + "GROWTH_MASK_CHANNELS") == ["F"]
    assert cfg.get(WS + "GROWTH_MASK_CHANNELS_THRESH") == [0.3]
    assert cfg.get("TEST.FULL_IMG") is True
    assert cfg.get("TEST.POST_PROCESSING.MEDIAN_FILTER") is True
    assert cfg.get("TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS") == ["yz"]
    assert cfg.get("TEST.POST_PROCESSING.MEDIAN_FILTER_SIZE") == [5]
    bcd = load_config(COLLECTION / "resunet_3d_instances_bcd_pre3.yaml")
    assert bcd.get(IS + "DATA_CHANNELS") == ["F", "C", "Db"]
    assert bcd.get(WS + "SEED_CHANNELS") == ["F", "C", "Db"]
    assert bcd.get(WS + "SEED_CHANNELS_THRESH") == [0.8, 0.1, 4.5]
    assert bcd.get("MODEL.Z_DOWN") == 1  # integer Z_DOWN: a model-building key, kept as written


def test_detection_35_lists_and_percentile_clip() -> None:
    cfg = load_config(COLLECTION / "2d_detection.yaml")
    assert cfg.get("TEST.DET_TOLERANCE") == 3
    assert cfg.get("TEST.DET_MIN_TH_TO_BE_PEAK") == pytest.approx(0.2)
    assert cfg.get("TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS") == 3
    assert cfg.get("DATA.TEST.RESOLUTION") == (1, 1)
    zarr = load_config(COLLECTION / "3D_cell_detection_zarr_tutorial.yaml")
    assert zarr.get("DATA.NORMALIZATION.PERC_CLIP.ENABLE") is True
    assert zarr.get("DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC") == pytest.approx(0.1)
    assert zarr.get("DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC") == pytest.approx(99.5)
    assert zarr.get("DATA.TEST.INPUT_IMG_AXES_ORDER") == "ZYXC"  # TEST.BY_CHUNKS.INPUT_*
    assert unimplemented(zarr) == []  # TEST.BY_CHUNKS.ENABLE: predicted by chunks


def test_custom_normalisation_and_model_n_classes() -> None:
    cfg = load_config(COLLECTION / "2d_denoising.yaml")
    assert cfg.get("DATA.NORMALIZATION.TYPE") == "zero_mean_unit_variance"
    assert load_config(COLLECTION / "2d_classification.yaml").get("DATA.N_CLASSES") == 7


def test_37_decoders_load_and_run() -> None:
    stardist = load_config(COLLECTION / "sanity_stardist.yaml")
    assert stardist.get(IS + "STARDIST.PROB_THRESH") == pytest.approx(0.5)
    assert stardist.get(IS + "DATA_CHANNELS") == ["Db", "R"]
    check_implemented(stardist)  # the StarDist decoder is there: nothing refused


def test_a_key_no_biapy_release_has_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"CELLPOSE.TYPE' in .*sanity_cellpose.yaml line 13"):
        load_config(COLLECTION / "sanity_cellpose.yaml")


# ------------------------------------------------------------------ the same nested or --set


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("TEST.STATS.FULL_IMG=True", "TEST.FULL_IMG", True),
        ("PROBLEM.INSTANCE_SEG.DATA_CHANNELS=BCDv2", IS + "DATA_CHANNELS", ["F", "C", "D"]),
        ("PROBLEM.INSTANCE_SEG.DATA_CHANNELS=BCP", IS + "DATA_CHANNELS", ["F", "C", "P"]),
        ("PROBLEM.INSTANCE_SEG.WATERSHED_BY_2D_SLICES=True", WS + "BY_2D_SLICES", True),
        ("DATA.CHANNELS=BC", IS + "DATA_CHANNELS", ["F", "C"]),
        ("TEST.POST_PROCESSING.CLEAR_BORDER=True",
         "TEST.POST_PROCESSING.INSTANCE_REFINEMENT.OPERATIONS", ["clear_border"]),
        ("TEST.DET_IGNORE_POINTS_OUTSIDE_BOX=[5, 5]", "TEST.EVAL_BORDER_CROP", [5, 5]),
    ],
)
def test_old_spellings_given_with_set(override: str, key: str, expected: object) -> None:
    assert load_config(None, [override]).get(key) == expected


def test_integer_upscaling_follows_ndim_in_file_and_set(tmp_path: Path) -> None:
    path = tmp_path / "sr.yaml"
    path.write_text("PROBLEM:\n  NDIM: 3D\n  TYPE: SUPER_RESOLUTION\n  SUPER_RESOLUTION:\n"
                    "    UPSCALING: 2\nDATA:\n  PATCH_SIZE: (8, 64, 64, 1)\n")
    assert load_config(path).get("PROBLEM.SUPER_RESOLUTION.UPSCALING") == (2, 2, 2)
    assert load_config(None, ["PROBLEM.SUPER_RESOLUTION.UPSCALING=4"]).get(
        "PROBLEM.SUPER_RESOLUTION.UPSCALING") == (4, 4)


def test_manual_thresholds_nested_and_set_agree(tmp_path: Path) -> None:
    text = ("PROBLEM:\n  TYPE: INSTANCE_SEG\n  INSTANCE_SEG:\n    DATA_CHANNELS: BP\n"
            "    DATA_MW_TH_TYPE: manual\n    DATA_MW_TH_BINARY_MASK: 0.7\n"
            "    DATA_MW_TH_POINTS: 0.4\n    DATA_MW_TH_FOREGROUND: 0.2\n")
    path = tmp_path / "bp.yaml"
    path.write_text(text)
    nested = load_config(path)
    via_set = load_config(None, [
        "PROBLEM.TYPE=INSTANCE_SEG", "PROBLEM.INSTANCE_SEG.DATA_CHANNELS=BP",
    ])
    tree, _ = convert(yaml.safe_load(text))
    assert tree["PROBLEM"]["INSTANCE_SEG"]["WATERSHED"] == {
        "SEED_CHANNELS": ["F", "P"], "SEED_CHANNELS_THRESH": [0.7, 0.4],
        "GROWTH_MASK_CHANNELS": ["F"], "GROWTH_MASK_CHANNELS_THRESH": [0.2],
    }
    assert nested.get(WS + "SEED_CHANNELS") == ["F", "P"]
    assert via_set.get(IS + "DATA_CHANNELS") == nested.get(IS + "DATA_CHANNELS")


def test_conversion_does_not_modify_its_input() -> None:
    tree = {"TEST": {"STATS": {"FULL_IMG": True}}}
    converted, notes = convert(tree)
    assert tree == {"TEST": {"STATS": {"FULL_IMG": True}}}
    assert converted == {"TEST": {"FULL_IMG": True}} and len(notes) == 1


def test_run_refuses_not_implemented_keys_before_any_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from biapy_runner.cli import main

    out = tmp_path / "out"
    code = main(["run", "--config", str(COLLECTION / "ovarian_reserve_inference.yaml"),
                 "--images", str(tmp_path / "missing.tif"), "--model", str(tmp_path / "m.zip"),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "DATA.TEST.FILTER_SAMPLES.ENABLE" in err and "TEST.BY_CHUNKS.ENABLE = True" not in err
    assert "Traceback" not in err and not out.exists()


def test_a_key_repeated_with_the_same_value_only_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ovarian_reserve_inference.yaml (a BiaPy paper template) writes TEST.REDUCE_MEMORY: true
    twice; BiaPy loads it, and so does the runner (another value would be refused)."""
    cfg = load_config(COLLECTION / "ovarian_reserve_inference.yaml")
    assert cfg.get("TEST.REDUCE_MEMORY") is True
    assert "'REDUCE_MEMORY' is written twice with the same value (lines 62 and 72)" in (
        capsys.readouterr().err
    )
    path = tmp_path / "c.yaml"
    path.write_text("TEST:\n  REDUCE_MEMORY: true\n  REDUCE_MEMORY: false\n")
    with pytest.raises(ConfigError, match="'TEST.REDUCE_MEMORY' twice, on line 2 and on line 3"):
        load_config(path)

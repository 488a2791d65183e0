"""Configuration loading: BiaPy YAML quirks, validation messages, overrides, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from biapy_runner.config.load import LEAVES, Config, load_config
from biapy_runner.errors import ConfigError

CONFIGS = Path(__file__).parent / "data" / "configs"
CARTOCELL = CONFIGS / "training-material__biapy__conf_cartocell_swam.yaml"
GALAXY_EXAMPLE = CONFIGS / "tools-iuc__tools_biapy__test-data__example.yaml"


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- real configs


def test_cartocell_config_loads_with_its_values() -> None:
    cfg = load_config(CARTOCELL)
    assert cfg.source == CARTOCELL
    assert cfg.get("PROBLEM.TYPE") == "INSTANCE_SEG"
    assert cfg.get("PROBLEM.NDIM") == "3D"
    assert cfg.get("DATA.PATCH_SIZE") == (80, 80, 80, 1)
    assert cfg.get("DATA.TEST.PADDING") == (16, 16, 16)
    assert cfg.get("DATA.TEST.OVERLAP") == (0, 0, 0)  # default adapted to 3D
    assert cfg.get("PROBLEM.INSTANCE_SEG.DATA_CHANNELS") == ["F", "C", "M"]
    assert cfg.get("PROBLEM.INSTANCE_SEG.DATA_REMOVE_BEFORE_MW") is True
    assert cfg.get("PROBLEM.INSTANCE_SEG.DATA_REMOVE_SMALL_OBJ_BEFORE") == 5
    assert cfg.get("DATA.REFLECT_TO_COMPLETE_SHAPE") is True
    assert cfg.get("TEST.POST_PROCESSING.VORONOI_ON_MASK") is True
    assert cfg.get("MODEL.SOURCE") == "bmz"
    assert cfg.get("MODEL.BMZ.SOURCE_MODEL_ID") == "venomous-swan"
    assert cfg.get("SYSTEM.NUM_CPUS") == -1
    assert cfg.get("SYSTEM.NUM_WORKERS") == 2
    assert cfg.get("TEST.MATCHING_STATS_THS") == [0.3, 0.5, 0.75]
    assert cfg.ignored == ["TRAIN.ENABLE"]
    assert "DATA.TEST.PADDING" in cfg.user_keys
    assert "DATA.TEST.OVERLAP" not in cfg.user_keys


def test_galaxy_example_config_loads_with_its_values() -> None:
    cfg = load_config(GALAXY_EXAMPLE)
    assert cfg.get("PROBLEM.TYPE") == "SEMANTIC_SEG"
    assert cfg.get("PROBLEM.NDIM") == "2D"
    assert cfg.get("DATA.PATCH_SIZE") == (256, 256, 1)
    assert cfg.get("DATA.TEST.PADDING") == (32, 32)
    assert cfg.get("DATA.TEST.LOAD_GT") is True
    assert cfg.get("MODEL.BMZ.SOURCE_MODEL_ID") == "sensible-cat"
    assert cfg.get("MODEL.FEATURE_MAPS") == [16, 32, 64, 128, 256]
    assert cfg.get("TEST.FULL_IMG") is False
    # written 1.E-3, which YAML reads as a string; one optimizer's LR becomes BiaPy 3.7's list
    (lr,) = cfg.get("TRAIN.LR")
    assert isinstance(lr, float) and lr == pytest.approx(1e-3)
    assert cfg.get("TRAIN.LR_SCHEDULER.NAME") == "onecycle"
    assert set(cfg.ignored) == {
        "DATA.TRAIN.PATH",
        "DATA.TRAIN.GT_PATH",
        "DATA.TRAIN.IN_MEMORY",
        "DATA.VAL.SPLIT_TRAIN",
        "AUGMENTOR.ENABLE",
        "AUGMENTOR.AUG_SAMPLES",
        "AUGMENTOR.RANDOM_ROT",
        "AUGMENTOR.VFLIP",
        "AUGMENTOR.HFLIP",
        "TRAIN.ENABLE",
        "TRAIN.OPTIMIZER",
        "TRAIN.LR",
        "TRAIN.BATCH_SIZE",
        "TRAIN.EPOCHS",
        "TRAIN.PATIENCE",
        "TRAIN.LR_SCHEDULER.NAME",
        "MODEL.ARCHITECTURE",
        "MODEL.FEATURE_MAPS",
        "MODEL.LOAD_CHECKPOINT",
    }


def test_training_keys_are_listed_once(capsys: pytest.CaptureFixture[str]) -> None:
    load_config(GALAXY_EXAMPLE)
    err = capsys.readouterr().err
    assert err.count("ignored for inference") == 1
    line = next(ln for ln in err.splitlines() if "ignored for inference" in ln)
    # DATA.VAL.SPLIT_TRAIN: 0.1 is BiaPy's default: it changes nothing, so it is not listed
    assert line.endswith("ignored for inference: DATA.TRAIN.*, AUGMENTOR.*, TRAIN.*")


def test_no_file_gives_biapy_defaults() -> None:
    cfg = load_config(None)
    assert cfg.source is None
    assert cfg.user_keys == set() and cfg.ignored == []
    assert cfg.get("PROBLEM.TYPE") == "SEMANTIC_SEG"
    assert cfg.get("DATA.PATCH_SIZE") == (256, 256, 1)
    assert cfg.get("DATA.TEST.PADDING") == (0, 0)
    assert cfg.get("TEST.AUGMENTATION_MODE") == "mean"
    assert cfg.get("TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS") == []
    assert len(LEAVES) > 400


# ---------------------------------------------------------------------------- BiaPy quirks


@pytest.mark.parametrize(
    ("text", "expected"),
    [("(256, 256, 1)", (256, 256, 1)), ("(16,16,1)", (16, 16, 1)), ("[64, 64, 3]", (64, 64, 3))],
)
def test_tuple_strings_and_lists(tmp_path: Path, text: str, expected: tuple[int, ...]) -> None:
    cfg = load_config(write(tmp_path, f"DATA:\n  PATCH_SIZE: {text}\n"))
    assert cfg.get("DATA.PATCH_SIZE") == expected


def test_scientific_floats_written_by_biapy(tmp_path: Path) -> None:
    path = write(
        tmp_path, "TRAIN:\n  LR: 1.E-4\nTEST:\n  POST_PROCESSING:\n    VORONOI_TH: 5.E-1\n"
    )
    cfg = load_config(path)
    assert cfg.get("TRAIN.LR") == [pytest.approx(1e-4)]  # one optimizer: BiaPy 3.7's list
    assert cfg.get("TEST.POST_PROCESSING.VORONOI_TH") == pytest.approx(0.5)
    assert isinstance(cfg.get("TEST.POST_PROCESSING.VORONOI_TH"), float)


def test_int_accepted_where_float_expected(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "PROBLEM:\n  INSTANCE_SEG:\n    STARDIST:\n      PROB_THRESH: 1\n"))
    value = cfg.get("PROBLEM.INSTANCE_SEG.STARDIST.PROB_THRESH")
    assert value == 1.0 and isinstance(value, float)


def test_older_biapy_names_are_accepted(tmp_path: Path) -> None:
    text = """
PROBLEM:
  TYPE: INSTANCE_SEG
  INSTANCE_SEG:
    ERODE_AND_DILATE_FOREGROUND: True
MODEL:
  N_CLASSES: 3
  BMZ:
    SOURCE_MODEL_DOI: 10.5281/zenodo.5764892
DATA:
  TEST:
    MASK_PATH: /data/masks
  NORMALIZATION:
    PERC_CLIP: True
    PERC_LOWER: 0.1
    CUSTOM_MEAN: 5
TEST:
  POST_PROCESSING:
    REMOVE_BY_PROPERTIES: [['area']]
    REMOVE_BY_PROPERTIES_VALUES: [[10]]
    REMOVE_BY_PROPERTIES_SIGN: [['lt']]
"""
    cfg = load_config(write(tmp_path, text))
    assert cfg.get("DATA.N_CLASSES") == 3 and cfg.get("MODEL.N_CLASSES") == 3
    assert cfg.get("MODEL.BMZ.SOURCE_MODEL_ID") == "10.5281/zenodo.5764892"
    assert cfg.get("DATA.TEST.GT_PATH") == "/data/masks"
    assert cfg.get("PROBLEM.INSTANCE_SEG.ERODE_AND_DILATE_GROWTH_MASK") is True
    assert cfg.get("DATA.NORMALIZATION.PERC_CLIP.ENABLE") is True
    assert cfg.get("DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC") == pytest.approx(0.1)
    assert cfg.get("DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL") == [5.0]
    props = "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES"
    assert cfg.get(f"{props}.PROPS") == [["area"]]
    assert cfg.get(f"{props}.VALUES") == [[10]]
    assert cfg.get(f"{props}.SIGNS") == [["lt"]]
    assert "DATA.N_CLASSES" in cfg.user_keys


def test_instance_channels_as_string_or_list(tmp_path: Path) -> None:
    listed = load_config(write(tmp_path, "PROBLEM:\n  INSTANCE_SEG:\n    DATA_CHANNELS: [F, Dc]\n"))
    assert listed.get("PROBLEM.INSTANCE_SEG.DATA_CHANNELS") == ["F", "Dc"]
    with pytest.raises(ConfigError, match=r"contains \['Q'\]"):
        load_config(write(tmp_path, "PROBLEM:\n  INSTANCE_SEG:\n    DATA_CHANNELS: [F, Q]\n"))


# ---------------------------------------------------------------------------- errors


def test_unknown_key_names_key_file_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "PROBLEM:\n  TYPE: SEMANTIC_SEG\nDATA:\n  TEST:\n    PADING: (16, 16)\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "'DATA.TEST.PADING'" in message
    assert f"{path} line 5" in message
    assert "Did you mean 'DATA.TEST.PADDING'?" in message
    assert info.value.exit_code == 2


def test_unknown_section_suggests_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'DATA.TESTT' in .* line 2\. Did you mean 'DATA.TEST'"):
        load_config(write(tmp_path, "DATA:\n  TESTT:\n    PADDING: (16, 16)\n"))


def test_wrong_type_names_key_value_and_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "TEST:\n  AUGMENTATION: 3\n"))
    message = str(info.value)
    assert "'TEST.AUGMENTATION'" in message and "line 2" in message
    assert "value 3" in message and "a boolean" in message


def test_bad_tuple_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'DATA.TEST.PADDING'.*'\(16, sixteen\)'.*a tuple"):
        load_config(write(tmp_path, "DATA:\n  TEST:\n    PADDING: (16, sixteen)\n"))


def test_value_outside_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "PROBLEM:\n  TYPE: SEMANTIC\n"))
    message = str(info.value)
    assert "'PROBLEM.TYPE'" in message and "'SEMANTIC'" in message
    assert "'SEMANTIC_SEG'" in message and "'IMAGE_TO_IMAGE'" in message


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("DATA:\n  PATCH_SIZE: (256, 256)\n", r"'DATA.PATCH_SIZE'.*needs 3 values"),
        ("PROBLEM:\n  NDIM: 3D\nDATA:\n  PATCH_SIZE: (64, 64, 1)\n", r"needs 4 values"),
        ("DATA:\n  TEST:\n    PADDING: (8, 8, 8)\n", r"'DATA.TEST.PADDING'.*needs 2 values"),
        ("DATA:\n  TEST:\n    OVERLAP: (1.5, 0)\n", r"fractions in \[0, 1\)"),
        ("DATA:\n  TEST:\n    PADDING: (-1, 0)\n", r"integers >= 0"),
    ],
)
def test_shapes_checked_against_ndim(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path, text))


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"not valid YAML line 3"):
        load_config(write(tmp_path, "DATA:\n  TEST:\n PADDING: [1\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_unknown_keys_inside_training_sections_are_tolerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(write(tmp_path, "AUGMENTOR:\n  SOME_FUTURE_OPTION: 3\n"))
    assert cfg.get("AUGMENTOR.SOME_FUTURE_OPTION") == 3
    assert cfg.ignored == ["AUGMENTOR.SOME_FUTURE_OPTION"]
    assert "ignored for inference: AUGMENTOR.*" in capsys.readouterr().err


# ---------------------------------------------------------------------------- overrides and set


def test_overrides_apply_after_the_file() -> None:
    cfg = load_config(
        CARTOCELL,
        [
            "DATA.TEST.PADDING=(8,8,8)",
            "TEST.AUGMENTATION=True",
            "MODEL.BMZ.SOURCE_MODEL_ID=/models/my model.zip",
            "DATA.TEST.OVERLAP=[0.5, 0.5, 0.25]",
            "TEST.POST_PROCESSING.VORONOI_TH=1.E-1",
        ],
    )
    assert cfg.get("DATA.TEST.PADDING") == (8, 8, 8)
    assert cfg.get("TEST.AUGMENTATION") is True
    assert cfg.get("MODEL.BMZ.SOURCE_MODEL_ID") == "/models/my model.zip"
    assert cfg.get("DATA.TEST.OVERLAP") == (0.5, 0.5, 0.25)
    assert cfg.get("TEST.POST_PROCESSING.VORONOI_TH") == pytest.approx(0.1)
    assert {"TEST.AUGMENTATION", "DATA.TEST.OVERLAP"} <= cfg.user_keys


def test_override_ndim_is_applied_before_shapes() -> None:
    cfg = load_config(None, ["DATA.PATCH_SIZE=(32, 64, 64, 1)", "PROBLEM.NDIM=3D"])
    assert cfg.get("DATA.PATCH_SIZE") == (32, 64, 64, 1)
    assert cfg.get("DATA.TEST.PADDING") == (0, 0, 0)


def test_unknown_or_malformed_override() -> None:
    with pytest.raises(ConfigError, match=r"'TEST.AUGMENTATON' in --set TEST.AUGMENTATON=True\. .*'TEST.AUGMENTATION'"):
        load_config(None, ["TEST.AUGMENTATON=True"])
    with pytest.raises(ConfigError, match="not of the form KEY=VALUE"):
        load_config(None, ["TEST.AUGMENTATION"])
    with pytest.raises(ConfigError, match="'SYSTEM.NUM_CPUS'.*an integer"):
        load_config(None, ["SYSTEM.NUM_CPUS=many"])


def test_set_validates_and_get_rejects_unknown() -> None:
    cfg = Config()
    cfg.set("TEST.FULL_IMG", True)
    cfg.set("DATA.TEST.PADDING", "(4, 4)")
    assert cfg.get("TEST.FULL_IMG") is True
    assert cfg["DATA.TEST.PADDING"] == (4, 4)
    assert cfg.user_keys == {"TEST.FULL_IMG", "DATA.TEST.PADDING"}
    with pytest.raises(ConfigError, match="allowed values"):
        cfg.set("MODEL.SOURCE", "hub")
    with pytest.raises(ConfigError, match="Did you mean 'TEST.FULL_IMG'"):
        cfg.get("TEST.FULL_IMAGE")
    assert cfg.get("TEST.FULL_IMAGE", None) is None


def test_sections_read_as_dicts_that_do_not_leak() -> None:
    cfg = load_config(CARTOCELL)
    section = cfg.get("DATA.TEST")
    assert section["PADDING"] == (16, 16, 16)
    section["PADDING"] = (0, 0, 0)
    assert cfg.get("DATA.TEST.PADDING") == (16, 16, 16)


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("source", [CARTOCELL, GALAXY_EXAMPLE])
def test_to_yaml_round_trip(tmp_path: Path, source: Path) -> None:
    cfg = load_config(source, ["TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS=['xy', 'z']"])
    text = cfg.to_yaml()
    nested = yaml.safe_load(text)
    assert nested["DATA"]["TEST"]["PADDING"] == list(cfg.get("DATA.TEST.PADDING"))
    again = load_config(write(tmp_path, text, "resolved.yaml"))
    assert again.as_dict() == cfg.as_dict()
    assert again.get("TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS") == ["xy", "z"]

"""Bad configuration files: repeated keys, unreadable values, and what make-config writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from biapy_runner.cli import main
from biapy_runner.config.load import load_config, parse_override
from biapy_runner.errors import ConfigError

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
IMAGE = TEST_DATA / "dsb_nuclei.tif"


def _run_config(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``text`` as --config; assert exit 2 and an empty output folder; return stderr."""
    config = tmp_path / "cfg.yaml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    out = tmp_path / "out"
    code = main(["run", "--config", str(config), "--images", str(IMAGE), "--out", str(out),
                 "--model", str(TEST_DATA / "unet2d_nuclei_broad.zip"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []
    assert str(config) in err
    return err


TWO_TEST_BLOCKS = """\
PROBLEM:
  TYPE: SEMANTIC_SEG
TEST:
  ENABLE: true
  AUGMENTATION: false
DATA:
  PATCH_SIZE: (512, 512, 1)
TEST:
  AUGMENTATION: true
"""


def test_two_blocks_of_one_section_are_refused_with_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _run_config(tmp_path, TWO_TEST_BLOCKS, capsys)
    assert "'TEST' twice, on line 3 and on line 8" in err


def test_a_repeated_leaf_deep_inside_is_refused_with_its_dotted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """\
PROBLEM:
  TYPE: INSTANCE_SEG
  INSTANCE_SEG:
    DATA_CHANNELS: BC
    DATA_MW_TH_TYPE: auto
    DATA_CHANNELS: BCM
"""
    err = _run_config(tmp_path, text, capsys)
    assert "'PROBLEM.INSTANCE_SEG.DATA_CHANNELS' twice, on line 4 and on line 6" in err


def test_a_repeated_key_in_a_flow_mapping_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _run_config(tmp_path, "DATA: {TEST: {PADDING: (8, 8), PADDING: (16, 16)}}\n", capsys)
    assert "'DATA.TEST.PADDING' twice, on line 1 and on line 1" in err


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    config = tmp_path / "merge.yaml"
    config.write_text(
        "DATA:\n  TEST: &pad\n    PADDING: (8, 8)\n    OVERLAP: (0, 0)\n"
        "  VAL:\n    <<: *pad\n    PADDING: (4, 4)\n"
    )
    cfg = load_config(config)
    assert cfg.get("DATA.TEST.PADDING") == (8, 8)


def test_unknown_keys_keep_their_line_numbers(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text("PROBLEM:\n  TYPE: SEMANTIC_SEG\nTEST:\n  AUGMENTATON: true\n")
    with pytest.raises(ConfigError, match=r"TEST.AUGMENTATON' in .*cfg.yaml line 4"):
        load_config(config)


def test_a_repeated_key_in_an_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="'PADDING' twice"):
        parse_override("DATA.TEST={PADDING: (8, 8), PADDING: (4, 4)}")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("PROBLEM:\n  NDIM: " + "1" * 5000 + "\n", "thousands of digits"),
        ("DATA: " + "[" * 3000 + "]" * 3000 + "\n", "deeply nested"),
        ("DATA: &a {TEST: *a}\n", "contains itself"),
        (b"PROBLEM:\n  TYPE: \xff\xfeSEMANTIC\n", "not UTF-8"),
        ("PROBLEM:\n\tTYPE: SEMANTIC_SEG\n", "not valid YAML line 2"),
        ("- PROBLEM\n- DATA\n", "must hold a mapping"),
    ],
)
def test_unreadable_values_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, words: str
) -> None:
    assert words in _run_config(tmp_path, text, capsys)


def test_huge_integer_inside_a_tuple_string_is_a_type_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _run_config(tmp_path, 'DATA:\n  TEST:\n    PADDING: "' + "9" * 5000 + '"\n', capsys)
    assert "DATA.TEST.PADDING" in err and "line 3" in err


# ------------------------------------------------------------------------------ make-config


def test_make_config_writes_no_training_keys_and_nothing_is_listed_as_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cfg.yaml"
    assert main(["make-config", "--workflow", "semantic", "--out", str(out)]) == 0
    text = out.read_text()
    assert "TRAIN" not in text
    assert "biapy-runner run --config" in text and "Galaxy" in text
    capsys.readouterr()
    cfg = load_config(out)
    assert cfg.get("TRAIN.ENABLE") is False  # BiaPy's default: no training
    assert "ignored for inference" not in capsys.readouterr().err


def test_training_keys_at_their_default_are_not_listed_as_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text("TRAIN:\n  ENABLE: false\nAUGMENTOR:\n  ENABLE: true\n")
    cfg = load_config(config)
    line = next(ln for ln in capsys.readouterr().err.splitlines() if "ignored" in ln)
    assert line.endswith("ignored for inference: AUGMENTOR.*")
    assert cfg.ignored == ["TRAIN.ENABLE", "AUGMENTOR.ENABLE"]


def test_a_thread_count_torch_cannot_take_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _run_config(tmp_path, "SYSTEM:\n  NUM_CPUS: " + "9" * 25 + "\n", capsys)
    assert "SYSTEM.NUM_CPUS" in err and "line 2" in err and "-1 (all cores)" in err

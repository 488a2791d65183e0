"""Every bad input gets a clear message, exit code 2 (input/config) or 3 (model), and no output."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile
from biapy_runner.cli import main
from biapy_runner.config.load import load_config
from biapy_runner.pipeline import resolve_threads

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
MODEL = TEST_DATA / "unet2d_nuclei_broad.zip"
CONFIG = TEST_DATA / "semantic_nuclei.yaml"


def _run(out: Path, *args: str, config: Path = CONFIG) -> int:
    return main(["run", "--config", str(config), "--out", str(out), "--threads", "1", *args])


def _assert_no_results(out: Path) -> None:
    """A failed run leaves nothing in the output folder that looks like a result."""
    if out.exists():
        assert sorted(p.name for p in out.iterdir()) == []


def test_unknown_key_names_file_line_and_suggestion(tmp_path: Path, capsys) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(CONFIG.read_text().replace("PADDING:", "PADING:"))
    out = tmp_path / "out"
    assert _run(out, "--images", str(TEST_DATA / "dsb_nuclei.tif"), config=config) == 2
    err = capsys.readouterr().err
    assert "DATA.TEST.PADING" in err and "DATA.TEST.PADDING" in err and str(config) in err
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "PADING" in text)
    assert f"line {line}" in err
    _assert_no_results(out)


def test_wrong_value_type_is_a_config_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = _run(out, "--images", str(TEST_DATA / "dsb_nuclei.tif"), "--set", "TEST.FULL_IMG=maybe")
    assert code == 2
    assert "TEST.FULL_IMG" in capsys.readouterr().err
    _assert_no_results(out)


def test_missing_image_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run(out, "--images", str(tmp_path / "nope.tif")) == 2
    assert "nope.tif" in capsys.readouterr().err
    _assert_no_results(out)


def test_unpaired_image_and_gt_list_both_sides(tmp_path: Path, capsys) -> None:
    other = tmp_path / "other_mask.tif"
    shutil.copy(TEST_DATA / "dsb_nuclei_mask.tif", other)
    out = tmp_path / "out"
    code = _run(out, "--images", str(TEST_DATA / "dsb_nuclei.tif"), "--gt", str(other))
    assert code == 2
    err = capsys.readouterr().err
    assert "dsb_nuclei" in err and "other_mask" in err
    _assert_no_results(out)


def test_gt_of_another_shape(tmp_path: Path, capsys) -> None:
    gt = tmp_path / "dsb_nuclei_mask.tif"
    tifffile.imwrite(gt, np.zeros((100, 100), np.uint16))
    out = tmp_path / "out"
    assert _run(out, "--images", str(TEST_DATA / "dsb_nuclei.tif"), "--gt", str(gt)) == 2
    err = capsys.readouterr().err
    assert "100" in err and "256" in err
    _assert_no_results(out)


def test_empty_and_corrupt_images(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00 this is not a tiff")
    for bad in (empty, corrupt):
        out = tmp_path / f"out_{bad.stem}"
        assert _run(out, "--images", str(bad)) == 2
        assert bad.name in capsys.readouterr().err
        _assert_no_results(out)


def test_wrong_number_of_dimensions(tmp_path: Path, capsys) -> None:
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((20, 64, 64), np.uint8), metadata={"axes": "ZYX"})
    out = tmp_path / "out"
    assert _run(out, "--images", str(stack)) == 2
    assert "stack.tif" in capsys.readouterr().err
    _assert_no_results(out)


def test_failure_on_a_later_image_leaves_no_partial_results(tmp_path: Path, capsys) -> None:
    """The first image succeeds, the second is corrupt: nothing is published."""
    corrupt = tmp_path / "zzz.tif"
    corrupt.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    code = _run(out, "--images", str(TEST_DATA / "dsb_nuclei.tif"), str(corrupt), "--model", str(MODEL))
    assert code == 2
    assert "zzz.tif" in capsys.readouterr().err
    _assert_no_results(out)


def test_model_not_found_is_exit_3(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = _run(out, "--images", str(TEST_DATA / "dsb_nuclei.tif"),
                "--model", str(tmp_path / "missing_model.zip"))
    assert code in (2, 3)
    assert "missing_model.zip" in capsys.readouterr().err
    _assert_no_results(out)


def test_existing_results_are_not_overwritten(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    (out / "metrics").mkdir(parents=True)
    (out / "metrics" / "metrics.tsv").write_text("precious\n")
    assert _run(out, "--images", str(TEST_DATA / "dsb_nuclei.tif")) == 2
    assert "metrics" in capsys.readouterr().err
    assert (out / "metrics" / "metrics.tsv").read_text() == "precious\n"


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    image = tmp_path / "dsb_nuclei.tif"
    shutil.copy(TEST_DATA / "dsb_nuclei.tif", image)
    before = image.read_bytes()
    assert _run(tmp_path / "out", "--images", str(image), "--model", str(MODEL)) == 0
    assert image.read_bytes() == before


def test_threads_follow_option_then_config_then_galaxy_slots(monkeypatch) -> None:
    cfg = load_config(CONFIG)
    monkeypatch.setenv("GALAXY_SLOTS", "3")
    assert resolve_threads(5, cfg) == (5, "--threads")
    assert resolve_threads(None, cfg) == (3, "$GALAXY_SLOTS")  # NUM_CPUS -1: not set
    cfg.set("SYSTEM.NUM_CPUS", 4)
    assert resolve_threads(None, cfg) == (4, "SYSTEM.NUM_CPUS")
    monkeypatch.delenv("GALAXY_SLOTS")
    cfg.set("SYSTEM.NUM_CPUS", -1)
    threads, origin = resolve_threads(None, cfg)
    assert threads >= 1 and origin == "all cores"

"""End to end: the real nuclei model on the real DSB crop through the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from biapy_runner.cli import main

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
MODEL = "unet2d_nuclei_broad.zip"

#: Foreground IoU of the nuclei model on test-data/dsb_nuclei.tif against mask > 0.
EXPECTED_IOU = 0.640


def _run(test_data: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--config", str(test_data / "semantic_nuclei.yaml"),
            "--model", str(test_data / MODEL),
            "--out", str(out),
            "--threads", "2",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def nuclei_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the example from README: image + GT, results in a temporary folder."""
    out = tmp_path_factory.mktemp("run") / "results"
    code = _run(
        TEST_DATA, out,
        "--images", str(TEST_DATA / "dsb_nuclei.tif"),
        "--gt", str(TEST_DATA / "dsb_nuclei_mask.tif"),
    )
    assert code == 0
    return out


def test_metrics_table_has_the_foreground_iou(nuclei_run: Path) -> None:
    table = pd.read_csv(nuclei_run / "metrics" / "metrics.tsv", sep="\t")
    assert list(table.columns) == ["image", "iou"]
    assert list(table["image"]) == ["dsb_nuclei", "ALL"]
    assert table["iou"].iloc[0] == pytest.approx(EXPECTED_IOU, abs=5e-4)
    assert table["iou"].iloc[1] == pytest.approx(table["iou"].iloc[0])


def test_outputs_have_the_input_shape_and_documented_types(nuclei_run: Path) -> None:
    raw = tifffile.imread(nuclei_run / "raw" / "dsb_nuclei.tif")
    labels = tifffile.imread(nuclei_run / "post_proc" / "dsb_nuclei.tif")
    assert raw.dtype == np.float32 and raw.squeeze().shape == (256, 256)
    assert 0.0 <= raw.min() and raw.max() <= 1.0
    assert labels.dtype == np.uint8 and labels.shape == (256, 256)
    np.testing.assert_array_equal(labels, (raw.squeeze() > 0.5).astype(np.uint8))
    summary = pd.read_csv(nuclei_run / "metrics" / "summary.tsv", sep="\t")
    assert summary["shape"].tolist() == ["256x256"]
    assert summary["foreground_fraction"].iloc[0] == pytest.approx(labels.mean(), abs=1e-6)
    assert not list(nuclei_run.glob(".partial-*"))


def test_resolved_config_is_written_and_reloadable(nuclei_run: Path) -> None:
    resolved = yaml.safe_load((nuclei_run / "config.yaml").read_text())
    assert resolved["PROBLEM"]["TYPE"] == "SEMANTIC_SEG"
    assert resolved["MODEL"]["BMZ"]["SOURCE_MODEL_ID"].endswith(MODEL)
    assert "TEST" in resolved and "DATA" in resolved


def test_model_reproduces_its_own_test_output(test_data: Path, tmp_path: Path) -> None:
    """The rdf's test input through the runner (whole image) gives the rdf's test output."""
    test_input = _zip_array(test_data / MODEL, "test_input.npy")
    expected = _zip_array(test_data / MODEL, "test_output.npy")
    image = tmp_path / "test_input.npy"
    np.save(image, test_input[0, 0])
    out = tmp_path / "out"
    assert _run(test_data, out, "--images", str(image), "--set", "TEST.FULL_IMG=True") == 0
    raw = tifffile.imread(out / "raw" / "test_input.tif").squeeze()
    np.testing.assert_allclose(raw, expected[0, 0], atol=1e-4)


def _zip_array(package: Path, name: str) -> np.ndarray:
    import io
    import zipfile

    with zipfile.ZipFile(package) as archive:
        return np.load(io.BytesIO(archive.read(name)))


def test_python_dash_m_prints_the_version() -> None:
    from biapy_runner import __version__

    result = subprocess.run(
        [sys.executable, "-m", "biapy_runner", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"biapy-runner {__version__}"


def test_images_and_gt_from_the_config_folders(test_data: Path, tmp_path: Path) -> None:
    """Without --images/--gt the YAML's DATA.TEST.PATH / GT_PATH folders are used."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    shutil.copy(test_data / "dsb_nuclei.tif", tmp_path / "images" / "a.tif")
    shutil.copy(test_data / "dsb_nuclei_mask.tif", tmp_path / "masks" / "a_mask.tif")
    out = tmp_path / "out"
    code = _run(
        test_data, out,
        "--set", f"DATA.TEST.PATH={tmp_path / 'images'}",
        "--set", f"DATA.TEST.GT_PATH={tmp_path / 'masks'}",
    )
    assert code == 0
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    assert list(table["image"]) == ["a", "ALL"]
    assert table["iou"].iloc[0] == pytest.approx(EXPECTED_IOU, abs=5e-4)


def test_readme_example_without_images_uses_the_shipped_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: omit --images/--gt when DATA.TEST.PATH / GT_PATH name folders. The shipped
    example's folders (relative to the repository root, where README's commands run) hold the
    example image and its mask; a second run into the same folder is refused."""
    monkeypatch.chdir(TEST_DATA.parent)
    assert sorted(p.name for p in (TEST_DATA / "images").iterdir()) == ["dsb_nuclei.tif"]
    assert sorted(p.name for p in (TEST_DATA / "masks").iterdir()) == ["dsb_nuclei_mask.tif"]
    out = tmp_path / "results"
    argv = ["run", "--config", "test-data/semantic_nuclei.yaml", "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t")
    assert list(table["image"]) == ["dsb_nuclei", "ALL"]
    assert table["iou"].iloc[0] == pytest.approx(EXPECTED_IOU, abs=5e-4)
    capsys.readouterr()
    assert main(argv) == 2
    assert str(out) in capsys.readouterr().err
    assert table.equals(pd.read_csv(out / "metrics" / "metrics.tsv", sep="\t"))


def test_2d_images_analysed_as_a_3d_stack(tmp_path: Path) -> None:
    """TEST.ANALIZE_2D_IMGS_AS_3D_STACK: the 2D predictions are also decoded as one volume."""
    second = tmp_path / "second.tif"
    second_mask = tmp_path / "second_mask.tif"
    image = tifffile.imread(TEST_DATA / "dsb_nuclei.tif")
    mask = tifffile.imread(TEST_DATA / "dsb_nuclei_mask.tif")
    tifffile.imwrite(second, image[:, ::-1])  # another slice: the same nuclei, mirrored
    tifffile.imwrite(second_mask, mask[:, ::-1])
    out = tmp_path / "out"
    code = _run(
        TEST_DATA, out,
        "--images", str(TEST_DATA / "dsb_nuclei.tif"), str(second),
        "--gt", str(TEST_DATA / "dsb_nuclei_mask.tif"), str(second_mask),
        "--set", "TEST.ANALIZE_2D_IMGS_AS_3D_STACK=True",
    )
    assert code == 0
    volume = tifffile.imread(out / "stack_3d" / "post_proc" / "stack.tif")
    assert volume.shape == (2, 256, 256) and volume.dtype == np.uint8
    for z, stem in enumerate(["dsb_nuclei", "second"]):
        plane = tifffile.imread(out / "post_proc" / f"{stem}.tif")
        np.testing.assert_array_equal(volume[z], plane)
    gt = np.stack([mask, mask[:, ::-1]]) > 0
    expected = np.count_nonzero((volume > 0) & gt) / np.count_nonzero((volume > 0) | gt)
    stacked = pd.read_csv(out / "stack_3d" / "metrics.tsv", sep="\t")
    assert list(stacked["image"]) == ["stack", "ALL"]
    assert stacked["iou"].iloc[0] == pytest.approx(expected, abs=1e-6)
    assert stacked["iou"].iloc[0] == pytest.approx(EXPECTED_IOU, abs=2e-3)

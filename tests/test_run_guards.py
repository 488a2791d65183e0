"""`run` keeps its contract on bad input, bad options and stop signals (issue 10, run side).

Each case asserts the exit code, that the message names the file or option, and what is (not)
left in the output folder. Checks that must come before the model loads use a model path that
does not exist: reaching the model would give exit 3 naming it instead. The signal tests keep a
run mid-way deterministically: its second input is a FIFO nobody writes, so the process blocks
reading it after the first image's outputs are staged.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from biapy_runner.cli import main
from biapy_runner.config.load import load_config

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
CONFIG = TEST_DATA / "semantic_nuclei.yaml"
IMAGE = TEST_DATA / "dsb_nuclei.tif"
#: A 1x1 convolution with a sigmoid: a real 2D model that runs in milliseconds.
FAST_MODEL = TEST_DATA / "intensity2d.zip"
#: A fixed 80x80x80 3D instance model (BCM channels), with its BiaPy configuration.
MODEL_3D = TEST_DATA / "cartocell_like.zip"
CONFIGS = Path(__file__).parent / "data" / "configs"
CONFIG_3D = CONFIGS / "training-material__biapy__conf_cartocell_swam.yaml"
NO_MODEL = "/nonexistent/model.zip"


def _run(out: Path, *args: str, config: Path = CONFIG, model: str = str(FAST_MODEL)) -> int:
    argv = ["run", "--config", str(config), "--out", str(out), "--model", model, *args]
    if "--threads" not in args:
        argv += ["--threads", "1"]
    return main(argv)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr of the run; a user error is one paragraph, never a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target


# --------------------------------------------------------------------------- stop signals


def _blocking_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """Two images, the second a FIFO that nobody writes: a run is mid-way, blocked reading it,
    once the first image's outputs are staged (a deterministic "mid-run")."""
    first = _copy(IMAGE, tmp_path / "in" / "a_first.tif")
    fifo = tmp_path / "in" / "b_second.npy"
    os.mkfifo(fifo)
    return first, fifo


def _start_run(tmp_path: Path, out: Path) -> subprocess.Popen[str]:
    """A real ``python -m biapy_runner run`` over the blocking inputs."""
    first, fifo = _blocking_inputs(tmp_path)
    argv = [
        sys.executable, "-m", "biapy_runner", "run", "--config", str(CONFIG),
        "--model", str(FAST_MODEL), "--images", str(first), str(fifo), "--out", str(out),
        "--threads", "1",
    ]  # fmt: skip
    scratch = tmp_path / "tmp"  # the process's temporary files (TMPDIR)
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)


def _folders_left(tmp_path: Path) -> list[str]:
    """Folders a run left in its TMPDIR (a library's one-line session file does not count)."""
    return sorted(p.name for p in (tmp_path / "tmp").iterdir() if p.is_dir())


def _wait_for_staged_output(process: subprocess.Popen[str], out: Path) -> Path:
    """The staging folder once it holds the first image's raw prediction."""
    for _ in range(6000):  # polls; the process blocks on the FIFO, it cannot finish meanwhile
        staged = sorted(out.glob(".partial-*/raw/a_first.tif"))
        if staged:
            return staged[0].parent.parent
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.05)
    raise AssertionError("the run never staged its first output")


@pytest.mark.parametrize(
    ("signum", "out_exists"),
    [(signal.SIGTERM, False), (signal.SIGHUP, True), (signal.SIGINT, False)],
)
def test_stop_signal_mid_run_removes_staging_and_exits_128_plus_signal(
    tmp_path: Path, signum: int, out_exists: bool
) -> None:
    out = tmp_path / "out"
    if out_exists:  # as Galaxy's job script creates it
        out.mkdir()
    process = _start_run(tmp_path, out)
    try:
        stage = _wait_for_staged_output(process, out)
        assert stage.name.startswith(f".partial-{process.pid}@")
        # the run's scratch folder holds the imported architecture file's folder and the one of
        # the cover bioimageio.spec drew for the package (it has none)
        (scratch,) = _folders_left(tmp_path)
        made = sorted(p.name[:-8] for p in (tmp_path / "tmp" / scratch).iterdir())  # 8 random
        assert made == ["biapy-runner-arch-", "tmp"], made
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert _folders_left(tmp_path) == []  # the architecture file it imported: removed
    if out_exists:
        assert list(out.iterdir()) == []  # no staging folder, nothing published
    else:
        assert not out.exists()  # the run created it and removes it, empty, again


def test_a_finished_run_leaves_no_temporary_folders(tmp_path: Path) -> None:
    """The console script exits without the interpreter's teardown: its temporary folders (see
    the stop-signal test for which) go with its scratch folder."""
    (tmp_path / "tmp").mkdir()
    argv = [sys.executable, "-m", "biapy_runner", "run", "--config", str(CONFIG), "--model",
            str(FAST_MODEL), "--images", str(IMAGE), "--out", str(tmp_path / "out"),
            "--threads", "1", "--no-report"]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(tmp_path / "out" / "post_proc" / "dsb_nuclei.tif").shape == (256, 256)
    assert _folders_left(tmp_path) == []


def test_stale_staging_of_a_killed_run_is_removed_by_the_next_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    process = _start_run(tmp_path, out)
    try:
        stale = _wait_for_staged_output(process, out)
        process.send_signal(signal.SIGKILL)  # cannot be caught: the staging folder stays
        process.communicate(timeout=120)
    finally:
        process.kill()
    assert stale.is_dir() and (stale / "raw" / "a_first.tif").is_file()
    host = stale.name.split("@", 1)[1].rsplit("-", 1)[0]
    alive = out / f".partial-{os.getpid()}@{host}-alive"  # a running process: left alone
    elsewhere = out / ".partial-1@another_host-x"  # another machine's: left alone
    for folder in (alive, elsewhere):
        (folder / "raw").mkdir(parents=True)
    assert _run(out, "--images", str(IMAGE)) == 0
    err = capsys.readouterr().err
    assert f"removed {stale.name}" in err and f"process {process.pid} (gone)" in err
    assert not stale.exists() and alive.is_dir() and elsewhere.is_dir()
    assert sorted(p.name for p in (out / "raw").iterdir()) == ["dsb_nuclei.tif"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".partial-")) == sorted(
        [alive.name, elsewhere.name]
    )


# --------------------------------------------------------------------------- inputs


def test_same_stem_in_two_folders_is_refused_before_the_model(tmp_path: Path, capsys) -> None:
    a = _copy(IMAGE, tmp_path / "a" / "img.tif")
    b = _copy(IMAGE, tmp_path / "b" / "img.tif")
    out = tmp_path / "out"
    assert _run(out, "--images", str(a), str(b), model=NO_MODEL) == 2
    err = _error(capsys)
    assert str(a) in err and str(b) in err and "'img'" in err and "model.zip" not in err
    assert not out.exists()


def test_same_stem_with_two_extensions_is_refused(tmp_path: Path, capsys) -> None:
    tif = _copy(IMAGE, tmp_path / "img.tif")
    png = tmp_path / "IMG.png"
    import imageio.v3 as iio

    iio.imwrite(png, tifffile.imread(IMAGE))
    out = tmp_path / "out"
    assert _run(out, "--images", str(tif), str(png), model=NO_MODEL) == 2
    err = _error(capsys)
    assert str(tif) in err and str(png) in err
    assert not out.exists()


def test_same_file_twice_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run(out, "--images", str(IMAGE), str(IMAGE), model=NO_MODEL) == 2
    err = _error(capsys)
    assert f"The file {IMAGE} is given twice" in err
    assert not out.exists()


def test_same_stem_in_the_configured_folder_is_refused(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    _copy(IMAGE, folder / "img.tif")
    _copy(IMAGE, folder / "img.tiff")
    out = tmp_path / "out"
    code = _run(out, "--set", f"DATA.TEST.PATH={folder}", "--set", "DATA.TEST.LOAD_GT=False",
                model=NO_MODEL)  # fmt: skip
    assert code == 2
    err = _error(capsys)
    assert "img.tif" in err and "img.tiff" in err
    assert not out.exists()


def test_non_finite_values_are_counted_and_refused(tmp_path: Path, capsys) -> None:
    data = tifffile.imread(IMAGE).astype(np.float32)
    data[0, :5] = np.nan
    data[1, :2] = np.inf
    data[2, 0] = -np.inf
    good = _copy(IMAGE, tmp_path / "a_good.tif")
    bad = tmp_path / "b_bad.tif"
    tifffile.imwrite(bad, data)
    out = tmp_path / "out"
    assert _run(out, "--images", str(good), str(bad)) == 2
    err = _error(capsys)
    assert f"The image {bad} holds 8 non-finite value(s)" in err and "(5 NaN, 3 infinite)" in err
    assert not out.exists()  # the good image's outputs were staged, never published


def test_folder_given_to_images_is_read_like_data_test_path(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    _copy(IMAGE, folder / "b.tif")
    _copy(TEST_DATA / "nuclei_b.tif", folder / "a.tif")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert _run(out, "--images", str(folder)) == 0
    err = capsys.readouterr().err
    assert f"--images {folder}: 2 file(s) in the folder" in err
    assert "2 image(s), without ground truth, 1 CPU thread(s) (--threads)" in err
    summary = pd.read_csv(out / "metrics" / "summary.tsv", sep="\t")
    assert summary["image"].tolist() == ["a", "b"]
    assert sorted(p.name for p in (out / "raw").iterdir()) == ["a.tif", "b.tif"]


def test_empty_folder_given_to_images(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    out = tmp_path / "out"
    assert _run(out, "--images", str(folder), model=NO_MODEL) == 2
    err = _error(capsys)
    assert f"The folder {folder} given to --images holds no file" in err
    assert "unsupported extension" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- options and output


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--threads", "-3", "--threads -3"),
        ("--threads", "0", "--threads 0"),
        ("--batch-size", "0", "--batch-size 0"),
        ("--batch-size", "-1", "--batch-size -1"),
        ("--axes", "YXQ", "'YXQ' given for --axes"),
        ("--axes", "YXX", "'YXX' given for --axes"),
        ("--dataset", "/", "--dataset is empty"),
    ],
)
def test_bad_options_are_refused_before_the_model(
    tmp_path: Path, capsys, option: str, value: str, named: str
) -> None:
    out = tmp_path / "out"
    assert _run(out, "--images", str(IMAGE), option, value, model=NO_MODEL) == 2
    err = _error(capsys)
    assert named in err and err.count("ERROR:") == 1
    assert not out.exists()


def test_output_under_a_file_is_refused_before_the_model(tmp_path: Path, capsys) -> None:
    parent = tmp_path / "a_file"
    parent.write_text("not a folder")
    out = parent / "out"
    assert _run(out, "--images", str(IMAGE), model=NO_MODEL) == 2
    err = _error(capsys)
    assert f"The output folder {out} cannot be created or written" in err
    assert "model.zip" not in err
    assert parent.read_text() == "not a folder"


def test_unwritable_output_is_refused_before_the_model(tmp_path: Path, capsys, monkeypatch) -> None:
    """Tests run as root, which may write anywhere: the refusal is simulated at the one call
    that creates the staging folder, exactly where a read-only folder fails."""

    def refuse(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    out = tmp_path / "out"
    assert _run(out, "--images", str(IMAGE), model=NO_MODEL) == 2
    err = _error(capsys)
    assert f"The output folder {out} cannot be created or written (PermissionError" in err
    assert not out.exists()


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "out"
    assert _run(out, "--images", str(IMAGE)) == 0
    raw = tifffile.TiffFile(out / "raw" / "dsb_nuclei.tif")
    # a one-channel prediction is stored without its channel axis, as README says
    assert raw.series[0].axes == "YX" and raw.series[0].shape == (256, 256)
    assert raw.series[0].dtype == np.float32
    raw.close()


# --------------------------------------------------------------------------- model dimensions


def test_3d_model_in_a_2d_run_says_to_set_ndim(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = _run(
        out, "--images", str(IMAGE), "--set", "PROBLEM.NDIM=2D", "--set",
        "DATA.PATCH_SIZE=(80, 80, 1)", "--set", "DATA.TEST.PADDING=(16, 16)",
        config=CONFIG_3D, model=str(MODEL_3D),
    )  # fmt: skip
    assert code == 2
    err = _error(capsys)
    assert "is a 3D model (spatial axes z, y, x) but PROBLEM.NDIM is 2D" in err
    assert "set PROBLEM.NDIM to 3D (e.g. --set PROBLEM.NDIM=3D)" in err
    assert not out.exists()


def test_2d_model_in_a_3d_run_says_to_set_ndim(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = _run(out, "--images", str(TEST_DATA / "cells3d.tif"), config=CONFIG_3D)
    assert code == 2
    err = _error(capsys)
    assert "is a 2D model (spatial axes y, x) but PROBLEM.NDIM is 3D" in err
    assert "set PROBLEM.NDIM to 2D" in err
    assert not out.exists()


def test_tile_size_change_is_explained_once_with_test_time_augmentation(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    code = _run(out, "--images", str(TEST_DATA / "cells3d.tif"), "--set", "TEST.AUGMENTATION=True",
                config=CONFIG_3D, model=str(MODEL_3D))  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "tiles of" in line]
    assert len(lines) == 1, err  # not once per each of the 16 transforms
    assert lines[0].endswith(
        "tiles of (80, 80, 80) pixels, not (56, 80, 80) (the image (24, 48, 48) plus "
        "DATA.TEST.PADDING (16, 16, 16) per side, within DATA.PATCH_SIZE (80, 80, 80)): the "
        "model takes a fixed input size (80, 80, 80)"
    )


# --------------------------------------------------------------------------- config.yaml


def test_config_records_the_files_that_ran_and_reruns_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _copy(IMAGE, tmp_path / "imgs" / "a.tif")
    _copy(TEST_DATA / "nuclei_b.tif", tmp_path / "imgs" / "b.tif")
    _copy(TEST_DATA / "dsb_nuclei_mask.tif", tmp_path / "masks" / "a_mask.tif")
    _copy(TEST_DATA / "nuclei_b_mask.tif", tmp_path / "masks" / "b_mask.tif")
    code = _run(Path("out"), "--images", "imgs/a.tif", "imgs/b.tif", "--gt", "masks")
    assert code == 0
    text = (tmp_path / "out" / "config.yaml").read_text()
    assert "# Images (2): imgs/a.tif, imgs/b.tif" in text
    assert "# Ground truth (2): masks/a_mask.tif, masks/b_mask.tif" in text
    rerun = "biapy-runner run --config config.yaml --out NEW_FOLDER\n"
    assert f"# Re-run (from {tmp_path}): {rerun}" in text
    test = yaml.safe_load(text)["DATA"]["TEST"]
    assert (test["PATH"], test["GT_PATH"], test["LOAD_GT"]) == ("imgs", "masks", True)
    # the recorded configuration re-runs the same images without --images / --gt
    shutil.copy(tmp_path / "out" / "config.yaml", tmp_path / "ran.yaml")
    assert main(["run", "--config", "ran.yaml", "--out", "again", "--threads", "1"]) == 0
    first = pd.read_csv(tmp_path / "out" / "metrics" / "metrics.tsv", sep="\t")
    again = pd.read_csv(tmp_path / "again" / "metrics" / "metrics.tsv", sep="\t")
    assert first["image"].tolist() == again["image"].tolist() == ["a", "b", "ALL"]
    assert np.allclose(first["iou"], again["iou"])


def test_config_of_files_from_several_folders_lists_them(tmp_path: Path) -> None:
    a = _copy(IMAGE, tmp_path / "x" / "a.tif")
    b = _copy(IMAGE, tmp_path / "y" / "b.tif")
    out = tmp_path / "out"
    assert _run(out, "--images", str(a), str(b)) == 0
    text = (out / "config.yaml").read_text()
    assert f"--images {a} {b}\n" in text
    cfg = load_config(out / "config.yaml")
    assert cfg.get("DATA.TEST.PATH") == "" and cfg.get("DATA.TEST.LOAD_GT") is False

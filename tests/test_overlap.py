"""Predicting image i+1 beside the decode of image i (inference/overlap.py): same results,
same log order and the same error as a sequential run."""

from __future__ import annotations

import threading
import time

import pytest
from biapy_runner import log
from biapy_runner.inference.overlap import Overlapped

KEYS = ["a", "b", "c", "d"]


def _stages(fail_first: str | None = None, fail_second: str | None = None):
    threads: dict[str, set[str]] = {"first": set(), "second": set()}

    def first(key: str) -> str:
        threads["first"].add(threading.current_thread().name)
        log.info(f"predict {key}")
        time.sleep(0.01)
        if key == fail_first:
            raise ValueError(f"cannot read {key}")
        return key.upper()

    def second(value: str) -> str:
        threads["second"].add(threading.current_thread().name)
        log.info(f"decode {value}")
        if value.lower() == fail_second:
            log.warn(f"bad {value}")
            raise RuntimeError(f"decoding {value} failed")
        return value * 2

    return first, second, threads


def _sequential(first, second, keys, capsys):
    out = []
    for key in keys:
        log.info(f"image {key}")
        out.append(second(first(key)))
    return out, _lines(capsys)


def _lines(capsys) -> list[str]:
    return [line.split("] ", 1)[1] for line in capsys.readouterr().err.splitlines()]


def test_results_and_logs_as_sequential(capsys) -> None:
    first, second, threads = _stages()
    expected, expected_log = _sequential(first, second, KEYS, capsys)
    got = []
    with Overlapped(first, second, KEYS) as produce:
        for key in KEYS:
            log.info(f"image {key}")
            got.append(produce(key))
    assert got == expected == ["AA", "BB", "CC", "DD"]
    assert _lines(capsys) == expected_log
    assert threads["first"] - threads["second"] == {"predict-ahead"}  # predicted ahead


@pytest.mark.parametrize("where", ["first", "second"])
def test_error_raised_where_sequential_raises_it(capsys, where: str) -> None:
    kwargs = {"fail_first": "c"} if where == "first" else {"fail_second": "c"}
    first, second, _ = _stages(**kwargs)
    mark = log.warning_count()
    with pytest.raises((ValueError, RuntimeError)) as expected:
        _sequential(first, second, KEYS, capsys)
    expected_log = _lines(capsys)
    expected_warnings = log.warnings_since(mark)
    mark = log.warning_count()
    done = []
    with pytest.raises(type(expected.value)) as got, Overlapped(first, second, KEYS) as produce:
        for key in KEYS:
            log.info(f"image {key}")
            done.append(produce(key))
    assert str(got.value) == str(expected.value)
    assert done == ["AA", "BB"]  # a and b were used before c failed, d never
    assert _lines(capsys) == expected_log
    assert log.warnings_since(mark) == expected_warnings


def test_one_key_runs_without_thread() -> None:
    first, second, threads = _stages()
    with Overlapped(first, second, ["a"]) as produce:
        assert produce("a") == "AA"
    assert threads["first"] == threads["second"] == {threading.current_thread().name}
    with pytest.raises(ValueError, match="out of order"):
        Overlapped(first, second, ["a", "b"])("b")


def _three_images(tmp_path):
    import shutil
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "test-data"
    images, gts = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    gts.mkdir()
    for stem in ("a", "b", "c"):
        shutil.copy(data / "dsb_nuclei.tif", images / f"{stem}.tif")
        shutil.copy(data / "dsb_nuclei_mask.tif", gts / f"{stem}.tif")
    return data, images, gts


def _run(data, images, gts, out, capsys) -> tuple[int, list[str]]:
    from biapy_runner.cli import main

    code = main(["run", "--config", str(data / "semantic_nuclei.yaml"), "--model",
                 str(data / "unet2d_nuclei_broad.zip"), "--images", str(images), "--gt", str(gts),
                 "--out", str(out), "--threads", "1", "--backend", "torch", "--no-report"])
    import re

    lines = capsys.readouterr().err.splitlines()  # times aside, the same lines
    return code, [re.sub(r"\d+(\.\d+)? [KMGT]?i?B\b|\d+\.\d+", "N", line.split("] ", 1)[-1]).replace(str(out), "OUT")
                  for line in lines]


class _Sequential(Overlapped):
    """The run without overlap: each image predicted, then decoded."""

    def __call__(self, key):
        return self.second(self.first(key))


def test_run_overlapped_equals_sequential(tmp_path, capsys, monkeypatch) -> None:
    import numpy as np
    import pandas as pd
    import tifffile
    from biapy_runner.inference import overlap

    data, images, gts = _three_images(tmp_path)
    code, overlapped_log = _run(data, images, gts, tmp_path / "overlapped", capsys)
    monkeypatch.setattr(overlap, "Overlapped", _Sequential)
    code_seq, sequential_log = _run(data, images, gts, tmp_path / "sequential", capsys)
    assert code == code_seq == 0
    assert overlapped_log == sequential_log
    for stem in ("a", "b", "c"):
        for folder in ("raw", "post_proc"):
            np.testing.assert_array_equal(
                tifffile.imread(tmp_path / "overlapped" / folder / f"{stem}.tif"),
                tifffile.imread(tmp_path / "sequential" / folder / f"{stem}.tif"),
            )
    for table in ("metrics/metrics.tsv", "metrics/summary.tsv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "overlapped" / table, sep="\t"),
            pd.read_csv(tmp_path / "sequential" / table, sep="\t"),
        )


def test_run_error_in_a_later_image_publishes_nothing(tmp_path, capsys, monkeypatch) -> None:
    from biapy_runner.inference import overlap

    data, images, gts = _three_images(tmp_path)
    (images / "b.tif").write_bytes(b"not a tiff")
    code, overlapped_log = _run(data, images, gts, tmp_path / "overlapped", capsys)
    monkeypatch.setattr(overlap, "Overlapped", _Sequential)
    code_seq, sequential_log = _run(data, images, gts, tmp_path / "sequential", capsys)
    assert code == code_seq == 2
    assert overlapped_log == sequential_log
    assert "b.tif" in overlapped_log[-1]
    assert not (tmp_path / "overlapped").exists() or not any((tmp_path / "overlapped").iterdir())

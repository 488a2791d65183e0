"""Resolve, cache and load BioImage.IO models; their pre/postprocessing and forward pass.

bioimageio.spec / bioimageio.core do the reading, validation, downloading and processing ops; this
module adds what the runner needs around them: a cache of self-contained zips that works offline,
error messages that give the real cause of a failure, the choice of a runnable weight format, and
a :class:`BmzModel` that speaks the runner's layout (channel first, spatial axes in z, y, x order).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
import torch

from biapy_runner.errors import InputError, ModelError
from biapy_runner.log import info, warn

SourceKind = Literal["path", "url", "doi", "id"]

#: Weight formats in order of preference, and what each needs to run.
WEIGHT_FORMATS: dict[str, str] = {
    "pytorch_state_dict": "torch and the packages its architecture code imports",
    "torchscript": "torch",
    "onnx": "onnxruntime (pip install onnxruntime)",
}
_UNSUPPORTED_FORMATS = {
    "tensorflow_saved_model_bundle": "TensorFlow, which this runner does not support",
    "tensorflow_js": "TensorFlow.js, which this runner does not support",
    "keras_hdf5": "Keras/TensorFlow, which this runner does not support",
    "keras_v3": "Keras, which this runner does not support",
}
_SPATIAL_ORDER = ("z", "y", "x")
_DOI = re.compile(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)?(10\.\d{4,9}/\S+)$", re.IGNORECASE)
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*(?:/[a-z0-9][a-z0-9_.-]*){0,2}$", re.IGNORECASE)
_PATH_SUFFIXES = (".zip", ".yaml", ".yml")


# ----------------------------------------------------------------------------- sources and cache


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


@contextlib.contextmanager
def _bioimageio_settings(**values: Any) -> Iterator[None]:
    """Temporarily change bioimageio.spec settings (they are read once at import)."""
    from bioimageio.spec._internal._settings import settings

    saved = {name: getattr(settings, name) for name in values}
    for name, value in values.items():
        setattr(settings, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


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
    partial = cache_dir / f".{key}.{os.getpid()}.partial.zip"
    with _bioimageio_settings(cache_path=cache_dir / ".downloads"):
        descr = _load_description(url, source)
        try:
            save_bioimageio_package(descr, output_path=partial)
        except Exception as err:
            partial.unlink(missing_ok=True)
            raise ModelError(
                f"Cannot download the files of the model {source!r} from {url}: {_real_cause(err)}."
            ) from err
    final = cache_dir / f"{key}__{_rdf_sha256(partial)[:16]}.zip"
    os.replace(partial, final)
    info(f"model {source}: saved to the cache as {final}")
    return final


def _rdf_sha256(package: Path) -> str:
    """sha256 of the rdf inside a package zip."""
    with zipfile.ZipFile(package) as archive:
        names = [n for n in archive.namelist() if n.endswith(("rdf.yaml", "bioimageio.yaml"))]
        return hashlib.sha256(archive.read(min(names, key=len))).hexdigest()


def _real_cause(err: BaseException) -> str:
    """The innermost useful message of an exception chain (skipping bioimageio's id-map text)."""
    chain = []
    current: BaseException | None = err
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    useful = [e for e in chain if "BIOIMAGEIO_ID_MAP" not in str(e) and str(e).strip()]
    for candidate in useful:
        if type(candidate).__module__.startswith(("httpx", "httpcore")) or isinstance(
            candidate, (OSError, zipfile.BadZipFile)
        ):
            return f"{type(candidate).__name__}: {candidate}"
    return str(useful[0] if useful else err).strip()


def _load_description(src: str | Path, shown: str) -> Any:
    """Load and validate a model description (format 0.4 or 0.5); ModelError otherwise."""
    from bioimageio.spec import InvalidDescr, load_description
    from bioimageio.spec.model import v0_4, v0_5

    with _bioimageio_settings(collection_http_pattern="", id_map=""):
        try:
            descr = load_description(src, format_version="discover")
        except Exception as err:
            raise ModelError(f"Cannot read the model {shown!r}: {_real_cause(err)}.") from err
    if isinstance(descr, InvalidDescr):
        raise ModelError(_invalid_message(descr, shown))
    if not isinstance(descr, (v0_4.ModelDescr, v0_5.ModelDescr)):
        kind = getattr(descr, "type", "unknown")
        raise ModelError(
            f"{shown!r} is not a BioImage.IO model (its rdf describes a {kind!r}); give a model."
        )
    return descr


def _invalid_message(descr: Any, shown: str) -> str:
    """One paragraph from the validation summary of an invalid description."""
    errors = [e for d in descr.validation_summary.details for e in d.errors]
    if not errors:
        return f"{shown!r} is not a BioImage.IO model (it does not validate as one)."
    sha = [e for e in errors if "sha256 mismatch" in e.msg.lower()]
    if sha:
        name = re.search(r"mismatch for (\S+?)\.? Expected", sha[0].msg)
        file = name.group(1).split("/")[-1] if name else ".".join(map(str, sha[0].loc))
        return (
            f"The model {shown!r} is damaged: the file {file} does not match the sha256 its rdf "
            f"gives ({sha[0].msg.strip()}). Download the package again or clear it from the "
            "model cache."
        )
    if any(e.loc[:1] == ("type",) for e in errors):
        return f"{shown!r} is not a BioImage.IO model: {errors[0].msg}"
    listed = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:5])
    return f"{shown!r} is not a valid BioImage.IO model: {listed}."


# ----------------------------------------------------------------------------- loading


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                "--device cuda was asked for, but torch sees no CUDA GPU on this machine; "
                "use --device cpu or auto."
            )
        return torch.device("cuda")
    raise InputError(f"Unknown device {device!r}: use auto, cpu or cuda.")


def load_model(
    source: str | Path,
    *,
    device: str = "auto",
    cache_dir: Path | None = None,
    weight_format: str | None = None,
    threads: int | None = None,
) -> BmzModel:
    """Resolve ``source`` (see :func:`resolve_model`), validate it and load its best runnable
    weights once on ``device`` (``auto``: CUDA when available, else CPU)."""
    if weight_format is not None and weight_format not in WEIGHT_FORMATS:
        raise InputError(
            f"Unknown weight format {weight_format!r}: use one of {', '.join(WEIGHT_FORMATS)}."
        )
    torch_device = _resolve_device(device)
    if threads:
        torch.set_num_threads(int(threads))
    path = resolve_model(str(source), cache_dir)
    descr = _load_description(path, str(source))
    return BmzModel(descr, str(source), torch_device, weight_format, threads)


def _missing_module(err: BaseException) -> str | None:
    """The name of the package whose import failed somewhere in ``err``'s chain."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name.split(".")[0]
        current = current.__cause__ or current.__context__
    return None


def _load_torch_state_dict(descr: Any, device: torch.device, threads: int | None) -> Any:
    from bioimageio.core.backends.pytorch_backend import load_torch_model

    return load_torch_model(descr.weights.pytorch_state_dict, devices=[device]).eval()


def _load_torchscript(descr: Any, device: torch.device, threads: int | None) -> Any:
    module = torch.jit.load(io.BytesIO(descr.weights.torchscript.get_reader().read()), device)
    return module.eval()


def _load_onnx(descr: Any, device: torch.device, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    data = descr.weights.onnx.get_reader().read()
    return ort.InferenceSession(data, sess_options=options, providers=providers)


_LOADERS: dict[str, Callable[[Any, torch.device, int | None], Any]] = {
    "pytorch_state_dict": _load_torch_state_dict,
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
}


def _onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _load_weights(
    descr: Any, name: str, device: torch.device, wanted: str | None, threads: int | None
) -> tuple[str, Any]:
    """Load the first runnable weight format (or ``wanted``); log why others were skipped."""
    present = [
        f for f in (*WEIGHT_FORMATS, *_UNSUPPORTED_FORMATS) if getattr(descr.weights, f, None)
    ]
    order = [wanted] if wanted else [f for f in WEIGHT_FORMATS if f in present]
    if wanted and wanted not in present:
        raise ModelError(
            f"The model {name!r} has no {wanted} weights; it has: {', '.join(present)}."
        )
    reasons: dict[str, str] = {f: f"needs {why}" for f, why in _UNSUPPORTED_FORMATS.items()}
    missing: str | None = None
    for fmt in order:
        if fmt == "onnx" and not _onnx_available():
            reasons[fmt] = "needs onnxruntime, which is not installed (pip install onnxruntime)"
            continue
        try:
            loaded = _LOADERS[fmt](descr, device, threads)
        except Exception as err:  # noqa: BLE001 - reported below with its cause
            module = _missing_module(err)
            missing = module or missing
            reasons[fmt] = (
                f"its architecture code imports the package {module!r}, which is not installed"
                if module
                else f"failed to load ({_real_cause(err)})"
            )
            continue
        skipped = [f"{f}: {reasons[f]}" for f in present if f in reasons]
        note = f" (skipped {'; '.join(skipped)})" if skipped else ""
        info(f"model {name}: running {fmt} weights on {device}{note}")
        return fmt, loaded
    raise ModelError(_no_runnable_message(name, present, reasons, missing))


def _no_runnable_message(
    name: str, present: Sequence[str], reasons: dict[str, str], missing: str | None
) -> str:
    details = "; ".join(f"{f}: {reasons.get(f, 'not tried')}" for f in present)
    hint = (
        f" Install {missing!r} next to the runner (pip install {missing}), or run the runner's "
        "container, which ships torchvision and the runner's own dependencies."
        if missing
        else f" Runnable formats and what they need: "
        f"{'; '.join(f'{f} ({w})' for f, w in WEIGHT_FORMATS.items())}."
    )
    return f"No weight format of the model {name!r} can run here ({details}).{hint}"


def _roles(tensor: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Axis ids (as bioimageio.core names them) and roles in the runner's layout (``b``, ``c``
    or the spatial id z, y, x) of a tensor description of format 0.4 or 0.5."""
    from bioimageio.core.digest_spec import get_axes_infos

    dims, roles = [], []
    for axis in get_axes_infos(tensor):
        kind, ident = str(axis.type), str(axis.id)
        if kind in ("batch", "channel"):
            roles.append(kind[0])
        elif kind == "space" and ident in _SPATIAL_ORDER:
            roles.append(ident)
        else:
            raise ModelError(
                f"The model has a {kind} axis {ident!r}; this runner supports batch, channel "
                "and space axes named z, y and x only."
            )
        dims.append(ident)
    return tuple(dims), tuple(roles)


def _rearrange(array: Any, src: Sequence[str], dst: Sequence[str]) -> Any:
    """Move an array (numpy or torch) from the axis roles ``src`` to ``dst``: axes missing from
    ``dst`` must have size 1 and are dropped, axes missing from ``src`` are added with size 1."""
    is_torch = isinstance(array, torch.Tensor)
    src = list(src)
    for i in reversed(range(len(src))):
        if src[i] not in dst:
            if array.shape[i] != 1:
                raise InputError(
                    f"Cannot drop the {src[i]!r} axis of size {array.shape[i]}: the model has no "
                    "such axis, so it must have size 1."
                )
            array = array.squeeze(i) if is_torch else np.squeeze(array, axis=i)
            del src[i]
    for role in dst:
        if role not in src:
            array = array.unsqueeze(-1) if is_torch else array[..., None]
            src.append(role)
    order = [src.index(role) for role in dst]
    if order == list(range(len(order))):
        return array
    return array.permute(*order) if is_torch else np.transpose(array, order)


def _is_v04(tensor: Any) -> bool:
    from bioimageio.spec.model import v0_4

    return isinstance(tensor, (v0_4.InputTensorDescr, v0_4.OutputTensorDescr))


def _channel_names(tensor: Any, roles: Sequence[str], count: int) -> tuple[str, ...]:
    """The tensor's channel names (format 0.4 has none: ``channel0``, ...)."""
    if "c" in roles and not _is_v04(tensor):
        channel = next(a for a in tensor.axes if a.type == "channel")
        return tuple(str(n) for n in channel.channel_names)
    return tuple(f"channel{i}" for i in range(count))


def _input_sizes(tensor: Any, roles: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``role -> (min, step)`` for every non-batch axis of an input (step 0: fixed size)."""
    from bioimageio.spec.model import v0_4, v0_5

    sizes: dict[str, tuple[int, int]] = {}
    for i, role in enumerate(roles):
        if role == "b":
            continue
        if _is_v04(tensor):
            shape = tensor.shape
            if isinstance(shape, v0_4.ParameterizedInputShape):
                sizes[role] = (int(shape.min[i]), int(shape.step[i]))
            else:
                sizes[role] = (int(shape[i]), 0)
            continue
        size = tensor.axes[i].size
        if role == "c":
            sizes[role] = (len(tensor.axes[i].channel_names), 0)
        elif isinstance(size, int):
            sizes[role] = (size, 0)
        elif isinstance(size, v0_5.ParameterizedSize):
            sizes[role] = (size.min, size.step)
        else:
            raise ModelError(
                f"The input axis {role!r} is sized by reference to another axis; this runner "
                "supports fixed and min/step input sizes only."
            )
    return sizes


def _output_geometry(
    tensor: Any, roles: Sequence[str], inputs: Any, in_sizes: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, float, float]]:
    """``role -> (halo, scale, offset)`` for the non-batch output axes, where
    ``output size = input size * scale + offset`` (channels: scale 0, offset = the count)."""
    from bioimageio.spec.model import v0_4, v0_5

    geometry: dict[str, tuple[int, float, float]] = {}
    for i, role in enumerate(roles):
        if role == "b":
            continue
        if _is_v04(tensor):
            halo = int(tensor.halo[i]) if tensor.halo else 0
            shape = tensor.shape
            if isinstance(shape, v0_4.ImplicitOutputShape):
                factor = shape.scale[i]
                geometry[role] = (
                    halo,
                    float(factor or 0.0),
                    2.0 * float(shape.offset[i]),
                )
                continue
            fixed = int(shape[i])
        else:
            axis = tensor.axes[i]
            halo = int(getattr(axis, "halo", 0) or 0)
            if role == "c":
                geometry[role] = (0, 0.0, float(len(axis.channel_names)))
                continue
            if isinstance(axis.size, v0_5.SizeReference):
                ref = next(
                    a
                    for t in inputs
                    if t.id == axis.size.tensor_id
                    for a in t.axes
                    if a.id == axis.size.axis_id
                )
                geometry[role] = (halo, float(ref.scale) / float(axis.scale), axis.size.offset)
                continue
            if not isinstance(axis.size, int):
                raise ModelError(
                    f"The output axis {role!r} has a data-dependent size; this runner needs "
                    "outputs whose size follows from the input size."
                )
            fixed = axis.size
        low, step = in_sizes.get(role, (1, 0))
        if role == "c":
            geometry[role] = (0, 0.0, float(fixed))
        elif step == 0:
            geometry[role] = (halo, fixed / low, 0.0)
        else:
            raise ModelError(
                f"The output axis {role!r} has a fixed size {fixed} but the input size varies; "
                "this runner needs outputs whose size follows from the input size."
            )
    return geometry


class BmzModel:
    """A loaded BioImage.IO model in the runner's layout (channel first, spatial z, y, x).

    Attributes: ``name``, ``source``, ``descr`` (the bioimageio description, format 0.4 or 0.5),
    ``weight_format``, ``device``, ``spatial_axes`` (e.g. ``("y", "x")``), ``in_channels``,
    ``out_channels``, ``out_channel_names``, ``min_shape`` and ``step`` per spatial axis (step 0:
    fixed size), ``halo`` (output pixels to discard at each border), ``scale`` (output size /
    input size) and ``offset`` (output pixels added to ``input * scale``, usually 0).
    ``out_spatial_axes`` is ``spatial_axes``, or ``()`` for a model that gives one value per
    output channel for the whole image (a classifier: one score per class); its ``halo``,
    ``scale`` and ``offset`` are then empty and its outputs are ``(C,)`` per image.
    """

    def __init__(
        self,
        descr: Any,
        source: str,
        device: torch.device,
        weight_format: str | None = None,
        threads: int | None = None,
    ) -> None:
        """Read the axes of ``descr`` and load its weights."""
        from bioimageio.core.digest_spec import get_member_id

        if len(descr.inputs) != 1:
            raise ModelError(
                f"The model {descr.name!r} has {len(descr.inputs)} inputs; this runner supports "
                "models with one input tensor."
            )
        if len(descr.outputs) > 1:
            warn(f"model {descr.name}: using its first output of {len(descr.outputs)}")
        self.descr = descr
        self.name: str = str(descr.name)
        self.source = source
        self.device = device
        self._input, self._output = descr.inputs[0], descr.outputs[0]
        self._in_id, self._out_id = get_member_id(self._input), get_member_id(self._output)
        self._in_dims, self._in_roles = _roles(self._input)
        self._out_dims, self._out_roles = _roles(self._output)
        self.spatial_axes: tuple[str, ...] = tuple(a for a in _SPATIAL_ORDER if a in self._in_roles)
        self.out_spatial_axes = tuple(a for a in _SPATIAL_ORDER if a in self._out_roles)
        self._check_axes()
        sizes = _input_sizes(self._input, self._in_roles)
        geometry = _output_geometry(self._output, self._out_roles, descr.inputs, sizes)
        self.in_channels = sizes.get("c", (1, 0))[0]
        self.out_channels = int(geometry.get("c", (0, 0.0, 1.0))[2])
        self.out_channel_names = _channel_names(self._output, self._out_roles, self.out_channels)
        self.min_shape = tuple(sizes[a][0] for a in self.spatial_axes)
        self.step = tuple(sizes[a][1] for a in self.spatial_axes)
        self.halo = tuple(geometry[a][0] for a in self.out_spatial_axes)
        self.scale = tuple(geometry[a][1] for a in self.out_spatial_axes)
        self.offset = tuple(int(geometry[a][2]) for a in self.out_spatial_axes)
        self._pre, self._post = self._processing()
        self._stat: dict[Any, Any] = {}
        self.weight_format, self._runner = _load_weights(
            descr, self.name, device, weight_format, threads
        )

    def _check_axes(self) -> None:
        if not self.spatial_axes or self.out_spatial_axes not in (self.spatial_axes, ()):
            raise ModelError(
                f"The model {self.name!r} maps spatial axes {self.spatial_axes} to "
                f"{self.out_spatial_axes}; this runner needs models with the same spatial axes "
                "in input and output (image to image), or none in the output (classifiers)."
            )

    def _processing(self) -> tuple[list[Any], list[Any]]:
        from bioimageio.core.proc_setup import setup_pre_and_postprocessing

        try:
            setup = setup_pre_and_postprocessing(self.descr, dataset_for_initial_statistics=[])
        except Exception as err:
            raise ModelError(
                f"Cannot set up the pre/postprocessing of the model {self.name!r}: "
                f"{_real_cause(err)}."
            ) from err
        return list(setup.pre), list(setup.post)

    @property
    def normalizes_input(self) -> bool:
        """Whether the rdf's preprocessing does more than cast the input's dtype."""
        steps = self.descr.inputs[0].preprocessing or []
        names = {str(getattr(step, "id", None) or getattr(step, "name", "")) for step in steps}
        return bool(names - {"ensure_dtype"})

    def valid_size(self, requested: Sequence[int]) -> tuple[int, ...]:
        """The smallest input size the model accepts that is >= ``requested`` on each spatial axis
        (the fixed size for fixed axes)."""
        if len(requested) != len(self.spatial_axes):
            raise InputError(
                f"A size for the {len(self.spatial_axes)} spatial axes {self.spatial_axes} of the "
                f"model was expected, got {tuple(requested)}."
            )
        sizes = []
        for want, low, step in zip(requested, self.min_shape, self.step):
            n = 0 if step == 0 else max(0, math.ceil((int(want) - low) / step))
            sizes.append(low + n * step)
        return tuple(sizes)

    # -- processing ---------------------------------------------------------------------------

    def _canonical(self, member: str) -> list[str]:
        """The runner's axis roles of the input or output member (batch, channel, spatial)."""
        spatial = self.spatial_axes if member == self._in_id else self.out_spatial_axes
        return ["b", "c", *spatial]

    def _sample(self, member: str, array: np.ndarray, dims: Sequence[str], roles: Any) -> Any:
        from bioimageio.core import Sample, Tensor

        data = _rearrange(array[None], self._canonical(member), roles)
        return Sample(members={member: Tensor(data, dims=dims)}, stat={}, id=None)

    def _unsample(
        self, sample: Any, member: str, dims: Sequence[str], roles: Sequence[str]
    ) -> np.ndarray:
        data = np.asarray(sample.members[member].data.transpose(*dims))
        out = _rearrange(data, roles, self._canonical(member))
        return np.ascontiguousarray(out[0], dtype=np.float32)

    def preprocess(self, arr: np.ndarray) -> np.ndarray:
        """Apply the rdf's preprocessing to ``arr`` ``(C, *spatial)`` with statistics over the
        whole array; returns float32, channel first."""
        arr = np.asarray(arr)
        if arr.ndim != len(self.spatial_axes) + 1:
            raise InputError(
                f"The model {self.name!r} takes {len(self.spatial_axes)}D images with axes "
                f"{self.spatial_axes}, but the image has shape {arr.shape} (channel first)."
            )
        if arr.shape[0] != self.in_channels:
            raise InputError(
                f"The model {self.name!r} expects {self.in_channels} input channel(s), but the "
                f"image has {arr.shape[0]}. Select or combine channels to match (check the "
                "image axes)."
            )
        sample = self._sample(self._in_id, arr, self._in_dims, self._in_roles)
        for op in self._pre:
            op(sample)
        self._stat = dict(sample.stat)
        return self._unsample(sample, self._in_id, self._in_dims, self._in_roles)

    def postprocess(self, arr: np.ndarray) -> np.ndarray:
        """Apply the rdf's postprocessing (e.g. sigmoid) to the merged output ``(C, *spatial)``
        (``(C,)`` without output spatial axes), with the statistics of the last preprocessed
        image where an op refers to them."""
        if not self._post:
            return np.asarray(arr, dtype=np.float32)
        sample = self._sample(self._out_id, np.asarray(arr), self._out_dims, self._out_roles)
        sample.stat = dict(self._stat)
        for op in self._post:
            op(sample)
        return self._unsample(sample, self._out_id, self._out_dims, self._out_roles)

    # -- forward ------------------------------------------------------------------------------

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the model on ``batch`` ``(B, C, *spatial)`` (already on ``self.device``);
        returns ``(B, C_out, *spatial')`` (``(B, C_out)`` without output spatial axes) on the
        same device."""
        if "b" not in self._in_roles and batch.shape[0] != 1:
            return torch.cat([self.forward(batch[i : i + 1]) for i in range(batch.shape[0])])
        x = _rearrange(batch, self._canonical(self._in_id), self._in_roles)
        with torch.inference_mode():
            y = self._run_onnx(x) if self.weight_format == "onnx" else self._runner(x)
        if isinstance(y, (list, tuple)):
            y = y[0]
        return _rearrange(y, self._out_roles, self._canonical(self._out_id))

    def _run_onnx(self, x: torch.Tensor) -> torch.Tensor:
        name = self._runner.get_inputs()[0].name
        feed = {name: x.detach().cpu().numpy().astype(np.float32, copy=False)}
        return torch.from_numpy(self._runner.run(None, feed)[0]).to(x.device)

    def test_tensors(self) -> tuple[np.ndarray, np.ndarray]:
        """The rdf's test input and output, channel first without the batch axis."""
        from bioimageio.core.digest_spec import get_test_input_sample, get_test_output_sample

        x = get_test_input_sample(self.descr)
        y = get_test_output_sample(self.descr)
        return (
            self._unsample(x, self._in_id, self._in_dims, self._in_roles),
            self._unsample(y, self._out_id, self._out_dims, self._out_roles),
        )

    def __repr__(self) -> str:
        return (
            f"BmzModel({self.name!r}, {self.weight_format}, {self.device}, axes="
            f"{self.spatial_axes}, channels {self.in_channels}->{self.out_channels})"
        )

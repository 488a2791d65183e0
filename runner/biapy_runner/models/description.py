"""The BioImage.IO description of a model: loading and validating it, and reading its axes.

Tensor descriptions of format 0.4 and 0.5 are read into the runner's terms: axis roles
(``b``, ``c`` or the spatial ids z, y, x), input sizes (min and step), output geometry (halo,
scale and offset against the input) and channel names.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from biapy_runner.errors import ModelError, real_cause
from biapy_runner.log import info

#: Spatial axes in the runner's order.
SPATIAL_ORDER = ("z", "y", "x")


@contextlib.contextmanager
def bioimageio_settings(**values: Any) -> Iterator[None]:
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



def load_description(src: str | Path, shown: str, *, io_checks: bool = True) -> Any:
    """Load and validate a model description (format 0.4 or 0.5); ModelError otherwise.

    A local package (``Path``: zip, folder or rdf file) is opened here first, so that a file that
    is no package, a damaged zip, or a package without rdf or weight files gets a message of its
    own. Weights the rdf lists at a URL (or whose file is missing) are not fetched to validate the
    package: only the format that is loaded must be readable (see :mod:`.backends`), so that a
    package whose other formats are inside it works offline. ``io_checks=False`` skips the
    checks of the package's files (existence, sha256): only for a cached package whose files were
    checked when it entered the cache.
    """
    from bioimageio.spec import InvalidDescr
    from bioimageio.spec import load_description as bioimageio_load
    from bioimageio.spec.model import v0_4, v0_5

    unavailable = _check_local_package(Path(src), shown) if isinstance(src, Path) else {}
    for fmt, why in unavailable.items():
        info(f"model {shown}: its {fmt} weights {why}; they are used only if no other format runs")
    with bioimageio_settings(collection_http_pattern="", id_map=""):
        try:
            descr = bioimageio_load(
                src, format_version="discover", perform_io_checks=io_checks and not unavailable
            )
        except Exception as err:
            raise ModelError(f"Cannot read the model {shown!r}: {real_cause(err)}.") from err
    if isinstance(descr, InvalidDescr):
        raise ModelError(_invalid_message(descr, shown))
    if not isinstance(descr, (v0_4.ModelDescr, v0_5.ModelDescr)):
        kind = getattr(descr, "type", "unknown")
        raise ModelError(
            f"{shown!r} is not a BioImage.IO model (its rdf describes a {kind!r}); give a model."
        )
    return descr


_AGAIN = (
    "Download the package again (or export it again), or give its unpacked folder or its rdf "
    "(.yaml) file."
)


def _check_local_package(path: Path, shown: str) -> dict[str, str]:
    """Open the rdf of a local package and check that its weight files are there.

    Returns ``{weight format: why it is not in the package}`` for formats whose weights are a
    URL or a missing file; raises ModelError when the package cannot be read or holds no weight
    file at all.
    """
    content, has_file = _read_local_rdf(path, shown)
    weights = content.get("weights")
    if content.get("type") != "model" or not isinstance(weights, dict) or not weights:
        return {}  # bioimageio's validation names what is wrong
    sources = {
        str(fmt): entry["source"].strip()
        for fmt, entry in weights.items()
        if isinstance(entry, dict) and isinstance(entry.get("source"), str)
    }
    unavailable = {
        fmt: f"are at {source}"
        for fmt, source in sources.items()
        if source.lower().startswith(("http://", "https://"))
    }
    missing = {f: s for f, s in sources.items() if f not in unavailable and not has_file(s)}
    if missing and len(missing) == len(sources):
        listed = ", ".join(f"{fmt} ({source})" for fmt, source in missing.items())
        raise ModelError(
            f"The model package {shown!r} holds no weight file: its rdf lists {listed}, and "
            f"none of these files is in the package. {_AGAIN}"
        )
    unavailable.update({f: f"file {s} is not in the package" for f, s in missing.items()})
    return unavailable


def _read_local_rdf(path: Path, shown: str) -> tuple[dict[str, Any], Callable[[str], bool]]:
    """The rdf content of a local zip, folder or rdf file, and a test whether a file the rdf
    names (relative to it) is in the package."""
    from bioimageio.spec.utils import identify_bioimageio_yaml_file_name

    def rdf_of(names: list[str]) -> str:
        try:
            return identify_bioimageio_yaml_file_name(names)
        except ValueError:
            shown_names = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
            raise ModelError(
                f"The model package {shown!r} holds no rdf (rdf.yaml or bioimageio.yaml), so it "
                f"is not a BioImage.IO model package (it holds: {shown_names or 'nothing'}). "
                f"{_AGAIN}"
            ) from None

    try:
        if path.is_dir():
            name = rdf_of([p.name for p in path.iterdir()])
            text, root = (path / name).read_bytes(), path
        elif path.suffix.lower() in (".yaml", ".yml"):
            name, text, root = path.name, path.read_bytes(), path.parent
        else:
            return _read_zip_rdf(path, shown, rdf_of)
    except OSError as err:
        raise ModelError(f"The model {shown!r} cannot be read ({err}).") from None
    return _parse_rdf(text, name, shown), lambda relative: (root / relative).is_file()


def _read_zip_rdf(
    path: Path, shown: str, rdf_of: Callable[[list[str]], str]
) -> tuple[dict[str, Any], Callable[[str], bool]]:
    """:func:`_read_local_rdf` for a package zip: it must be a readable zip holding an rdf."""
    if not zipfile.is_zipfile(path):
        raise ModelError(_not_a_zip(path, shown))
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            rdf = rdf_of(names)
            text = archive.read(rdf)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, ValueError, zlib.error) as err:
        raise ModelError(
            f"The model package {shown!r} is a damaged zip ({err}). {_AGAIN}"
        ) from None
    members = set(names)
    return _parse_rdf(text, rdf, shown), lambda name: _member(name) in members


def _member(name: str) -> str:
    """A relative file name as a zip member name (``./a/b`` -> ``a/b``)."""
    return name.replace("\\", "/").removeprefix("./")


def _not_a_zip(path: Path, shown: str) -> str:
    """Why the file ``path`` is not a zip package, in words."""
    with path.open("rb") as handle:
        head = handle.read(64)
    if not head:
        what = "is empty (0 bytes): the download or copy did not finish"
    elif head.startswith(b"PK"):
        what = ("is an incomplete or damaged zip (the end of the archive is missing or broken, "
                "as after an interrupted download or copy)")
    elif head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml")):
        what = "is a web page, not a zip (the download saved an error or login page)"
    else:
        what = "is not a zip archive, the form BioImage.IO model packages come in"
    return f"The model file {shown!r} {what}. {_AGAIN}"


def _parse_rdf(text: bytes, name: str, shown: str) -> dict[str, Any]:
    """The rdf's YAML mapping (read as bioimageio reads it); ModelError when it is not one."""
    from bioimageio.spec.utils import read_yaml

    try:
        content = read_yaml(text.decode("utf-8"))
    except UnicodeDecodeError as err:
        problem = f"is not UTF-8 text (byte {err.start})"
    except Exception as err:  # noqa: BLE001 - any YAML parser error: the rdf is not YAML
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = f"is not valid YAML{where} ({getattr(err, 'problem', None) or err})"
    else:
        if isinstance(content, dict) and all(isinstance(key, str) for key in content):
            return content
        problem = "does not hold a mapping of named fields (name: value)"
    raise ModelError(
        f"The rdf {name} of the model {shown!r} {problem}, so this is not a usable BioImage.IO "
        f"model. {_AGAIN}"
    )


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
    listed = "; ".join(
        f"{'.'.join(map(str, e.loc))}: {e.msg.removeprefix('Value error, ')}" for e in errors[:5]
    )
    return f"{shown!r} is not a valid BioImage.IO model: {listed}."


def axis_roles(tensor: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Axis ids (as bioimageio.core names them) and roles in the runner's layout (``b``, ``c``
    or the spatial id z, y, x) of a tensor description of format 0.4 or 0.5."""
    from bioimageio.core.digest_spec import get_axes_infos

    dims, roles = [], []
    for axis in get_axes_infos(tensor):
        kind, ident = str(axis.type), str(axis.id)
        if kind in ("batch", "channel"):
            roles.append(kind[0])
        elif kind == "space" and ident in SPATIAL_ORDER:
            roles.append(ident)
        else:
            raise ModelError(
                f"The model has a {kind} axis {ident!r}; this runner supports batch, channel "
                "and space axes named z, y and x only."
            )
        dims.append(ident)
    return tuple(dims), tuple(roles)


def _is_v04(tensor: Any) -> bool:
    from bioimageio.spec.model import v0_4

    return isinstance(tensor, (v0_4.InputTensorDescr, v0_4.OutputTensorDescr))


def channel_names(tensor: Any, roles: Sequence[str], count: int) -> tuple[str, ...]:
    """The tensor's channel names (format 0.4 has none: ``channel0``, ...)."""
    if "c" in roles and not _is_v04(tensor):
        channel = next(a for a in tensor.axes if a.type == "channel")
        return tuple(str(n) for n in channel.channel_names)
    return tuple(f"channel{i}" for i in range(count))


def representation_channels(description: str) -> list[str] | None:
    """The instance channels of BiaPy's ``Instance segmentation representation: F + C`` line in
    an rdf description, read as BiaPy reads it (after ``representation:`` to the end of the
    line, split on ``+``); None when there is none."""
    if "representation:" not in description:
        return None
    line = description.split("representation:", 1)[1].split("\n", 1)[0]
    names = [part.strip() for part in line.split("+")]
    return names if all(names) else None


def output_channel_names(
    descr: Any, tensor: Any, roles: Sequence[str], count: int
) -> tuple[str, ...]:
    """The output's channel names; generic ones (``channel0``, ...) are replaced by the
    channels of BiaPy's representation line in the description when it names as many (BiaPy
    3.7.1 exports instance models so)."""
    names = channel_names(tensor, roles, count)
    if names != tuple(f"channel{i}" for i in range(count)):
        return names
    described = representation_channels(str(getattr(descr, "description", "") or ""))
    return tuple(described) if described and len(described) == count else names


def input_sizes(tensor: Any, roles: Sequence[str]) -> dict[str, tuple[int, int]]:
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


def output_geometry(
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


"""The BioImage.IO description of a model: loading and validating it, and reading its axes.

Tensor descriptions of format 0.4 and 0.5 are read into the runner's terms: axis roles
(``b``, ``c`` or the spatial ids z, y, x), input sizes (min and step), output geometry (halo,
scale and offset against the input) and channel names.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from biapy_runner.errors import ModelError, real_cause

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



def load_description(src: str | Path, shown: str) -> Any:
    """Load and validate a model description (format 0.4 or 0.5); ModelError otherwise."""
    from bioimageio.spec import InvalidDescr
    from bioimageio.spec import load_description as bioimageio_load
    from bioimageio.spec.model import v0_4, v0_5

    with bioimageio_settings(collection_http_pattern="", id_map=""):
        try:
            descr = bioimageio_load(src, format_version="discover")
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


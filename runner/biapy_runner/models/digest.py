"""What a run needs from a validated model description, as plain data.

:func:`digest` reads a bioimageio description once (axes, sizes, halo, scale, channel names,
processing steps, where each weight format's files are); the model cache keeps it as JSON beside
a cached package (:mod:`.store`), so that later runs read the package without importing
bioimageio. :func:`read_file` reads a file the description names from a local package (zip,
folder or rdf file).
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biapy_runner.errors import ModelError
from biapy_runner.models.processing import describe_ops

#: Changes when the digest's content changes: older digests are then made again.
VERSION = 1


@dataclass
class ModelDigest:
    """A model description in the runner's terms (see :class:`~.model.BmzModel`).

    ``sizes``: input ``role -> (min, step)``; ``geometry``: output ``role -> (halo, scale,
    offset)``; ``preprocessing``/``postprocessing``: steps for :class:`~.processing.Processing`,
    None when bioimageio.core must apply them; ``weights``: ``format -> entry`` with ``source``
    (a file of the package or a URL) and, for ``pytorch_state_dict``, the architecture."""

    name: str
    version: str | None
    inputs: int
    outputs: int
    in_id: str
    out_id: str
    in_dims: tuple[str, ...]
    in_roles: tuple[str, ...]
    out_dims: tuple[str, ...]
    out_roles: tuple[str, ...]
    sizes: dict[str, tuple[int, int]]
    geometry: dict[str, tuple[int, float, float]]
    out_channel_names: tuple[str, ...]
    normalizes_input: bool
    preprocessing: list[dict[str, Any]] | None
    postprocessing: list[dict[str, Any]] | None
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The digest as JSON-able data (with :data:`VERSION`)."""
        return {"digest_version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelDigest | None:
        """The digest written by :meth:`to_json`, or None when it is from another version."""
        if data.get("digest_version") != VERSION:
            return None
        data = {k: v for k, v in data.items() if k != "digest_version"}
        for key in ("in_dims", "in_roles", "out_dims", "out_roles", "out_channel_names"):
            data[key] = tuple(data[key])
        data["sizes"] = {k: tuple(v) for k, v in data["sizes"].items()}
        data["geometry"] = {k: tuple(v) for k, v in data["geometry"].items()}
        return cls(**data)


def digest(descr: Any) -> ModelDigest:
    """The digest of a bioimageio model description (format 0.4 or 0.5); ModelError for axes
    the runner does not support."""
    from bioimageio.core.digest_spec import get_member_id
    from bioimageio.core.proc_setup import setup_pre_and_postprocessing

    from biapy_runner.errors import real_cause
    from biapy_runner.models.description import (
        axis_roles,
        input_sizes,
        output_channel_names,
        output_geometry,
    )

    tensor_in, tensor_out = descr.inputs[0], descr.outputs[0]
    in_dims, in_roles = axis_roles(tensor_in)
    out_dims, out_roles = axis_roles(tensor_out)
    sizes = input_sizes(tensor_in, in_roles)
    geometry = output_geometry(tensor_out, out_roles, descr.inputs, sizes)
    out_channels = int(geometry.get("c", (0, 0.0, 1.0))[2])
    in_id, out_id = str(get_member_id(tensor_in)), str(get_member_id(tensor_out))
    try:
        setup = setup_pre_and_postprocessing(descr, dataset_for_initial_statistics=[])
    except Exception as err:
        raise ModelError(
            f"Cannot set up the pre/postprocessing of the model {str(descr.name)!r}: "
            f"{real_cause(err)}."
        ) from err
    steps = tensor_in.preprocessing or []
    names = {str(getattr(step, "id", None) or getattr(step, "name", "")) for step in steps}
    version = getattr(descr, "version", None)
    return ModelDigest(
        name=str(descr.name),
        version=None if version is None else str(version),
        inputs=len(descr.inputs),
        outputs=len(descr.outputs),
        in_id=in_id,
        out_id=out_id,
        in_dims=tuple(in_dims),
        in_roles=tuple(in_roles),
        out_dims=tuple(out_dims),
        out_roles=tuple(out_roles),
        sizes={k: (int(a), int(b)) for k, (a, b) in sizes.items()},
        geometry={k: (int(h), float(s), float(o)) for k, (h, s, o) in geometry.items()},
        out_channel_names=output_channel_names(descr, tensor_out, out_roles, out_channels),
        normalizes_input=bool(names - {"ensure_dtype"}),
        preprocessing=describe_ops(setup.pre, in_id),
        postprocessing=describe_ops(setup.post, out_id),
        weights=_weights(descr),
    )


def _weights(descr: Any) -> dict[str, dict[str, Any]]:
    """``format -> {"source": file or URL, ...}`` for the formats the runner can run."""
    from biapy_runner.models.backends import WEIGHT_FORMATS

    entries: dict[str, dict[str, Any]] = {}
    for fmt in WEIGHT_FORMATS:
        weights = getattr(descr.weights, fmt, None)
        if weights is None:
            continue
        entry: dict[str, Any] = {"source": str(weights.source)}
        if fmt == "pytorch_state_dict":
            entry.update(_architecture(weights))
        entries[fmt] = entry
    for fmt in ("tensorflow_saved_model_bundle", "tensorflow_js", "keras_hdf5", "keras_v3"):
        if getattr(descr.weights, fmt, None) is not None:
            entries[fmt] = {"source": str(getattr(descr.weights, fmt).source)}
    return entries


def _architecture(weights: Any) -> dict[str, Any]:
    """The architecture of ``pytorch_state_dict`` weights (format 0.4 or 0.5) as plain data."""
    arch = weights.architecture
    kwargs = getattr(weights, "kwargs", None)
    if kwargs is None:
        kwargs = getattr(arch, "kwargs", None) or {}
    entry: dict[str, Any] = {
        "kwargs": dict(kwargs),
        "strict": bool(getattr(weights, "strict", True)),
        "callable": str(getattr(arch, "callable", None) or arch.callable_name),
    }
    if getattr(arch, "import_from", None) or getattr(arch, "module_name", None):
        entry["import_from"] = str(getattr(arch, "import_from", None) or arch.module_name)
    else:
        entry["architecture"] = str(getattr(arch, "source", None) or arch.source_file)
        sha = getattr(arch, "sha256", None) or getattr(weights, "architecture_sha256", None)
        entry["architecture_sha256"] = None if sha is None else str(sha)
    return entry


def is_remote(source: str) -> bool:
    """Whether a file the description names is a URL (not in the package)."""
    return source.lower().startswith(("http://", "https://"))


def read_file(package: Path, source: str) -> bytes:
    """The bytes of the file ``source`` (relative to the rdf) of the local ``package`` (a zip,
    a folder or an rdf file); OSError / KeyError when it is not there."""
    relative = source.replace("\\", "/").removeprefix("./")
    if package.is_dir():
        return (package / relative).read_bytes()
    if package.suffix.lower() in (".yaml", ".yml"):
        return (package.parent / relative).read_bytes()
    with zipfile.ZipFile(package) as archive:
        rdf = min((n for n in archive.namelist() if n.endswith(("bioimageio.yaml", "rdf.yaml"))),
                  key=len, default="")
        prefix = rdf.rpartition("/")[0]
        return archive.read(f"{prefix}/{relative}" if prefix else relative)

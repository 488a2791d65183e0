"""Build real BioImage.IO 0.5 model packages offline for tests, and serve folders on loopback.

``make_model_package`` writes a zip that bioimageio.core loads and ``test_model`` passes offline:
pytorch_state_dict weights of a module built from ``architecture_source`` (exec'd here to compute
the test output), the source as architecture file, test tensors, pre/postprocessing and the axis
sizes asked for. ``serve_directory`` serves a folder over HTTP on 127.0.0.1 (a model mirror).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPATIAL = ("z", "y", "x")


def _build_module(
    architecture_source: str,
    callable_name: str,
    kwargs: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None,
) -> torch.nn.Module | None:
    """Exec the architecture source and build the module; None if it cannot be imported here."""
    namespace: dict[str, Any] = {"__name__": "bmz_factory_architecture"}
    try:
        exec(compile(architecture_source, "<architecture>", "exec"), namespace)  # noqa: S102
    except ImportError:
        return None
    module = namespace[callable_name](**kwargs)
    if state_dict is not None:
        module.load_state_dict(state_dict)
    return module.eval()


def _proc_descrs(entries: Sequence[Any] | None, axes: Sequence[str], *, pre: bool) -> list[Any]:
    """Turn simple dicts (``{"id": "sigmoid"}``) into spec processing descriptions."""
    from bioimageio.spec.model import v0_5
    from pydantic import TypeAdapter

    if entries is None:
        entries = [{"id": "zero_mean_unit_variance"}] if pre else []
    adapter = TypeAdapter(v0_5.PreprocessingDescr if pre else v0_5.PostprocessingDescr)
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            out.append(entry)
            continue
        entry = {"kwargs": {}, **entry}
        if entry["id"] == "zero_mean_unit_variance" and "axes" not in entry["kwargs"]:
            entry["kwargs"] = {**entry["kwargs"], "axes": list(axes)}
        if entry["id"] == "sigmoid":
            entry.pop("kwargs")
        out.append(adapter.validate_python(entry))
    return out


def _input_size(size: int | tuple[int, int]) -> Any:
    from bioimageio.spec.model import v0_5

    if isinstance(size, int):
        return size
    return v0_5.ParameterizedSize(min=size[0], step=size[1])


def _test_input(
    test_input: np.ndarray | None, in_channels: int, size: int | tuple[int, int], ndim: int
) -> np.ndarray:
    """The test input with batch axis: given (C, *spatial) or random in the minimal size."""
    if test_input is not None:
        arr = np.asarray(test_input, dtype=np.float32)
        return arr[None] if arr.ndim == ndim + 1 else arr
    side = size if isinstance(size, int) else size[0]
    rng = np.random.default_rng(0)
    return rng.normal(size=(1, in_channels) + (side,) * ndim).astype(np.float32)


def make_model_package(
    out_dir: Path,
    *,
    architecture_source: str,
    callable_name: str,
    kwargs: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None = None,
    ndim: int = 2,
    in_channels: int = 1,
    out_channels: int = 1,
    size: int | tuple[int, int] = 64,
    halo: int = 0,
    scale: int = 1,
    preprocessing: list[Any] | None = None,
    postprocessing: list[Any] | None = None,
    channel_names: list[str] | None = None,
    test_input: np.ndarray | None = None,
    name: str = "test model",
    tags: list[str] | None = None,
    classifier: bool = False,
) -> Path:
    """Write a BioImage.IO 0.5 model package zip into ``out_dir`` and return its path.

    ``size``: an int is a fixed input size per spatial axis, ``(min, step)`` a ParameterizedSize.
    ``halo`` (output pixels) and ``scale`` (output size / input size) apply to every spatial axis.
    ``classifier``: the output has batch and channel axes only (one score per class, the
    ``channel_names`` being the class names); ``halo`` and ``scale`` are then unused.
    Processing entries may be spec descriptions or dicts like ``{"id": "sigmoid"}``;
    ``zero_mean_unit_variance`` defaults to the spatial axes. ``test_input`` is ``(C, *spatial)``
    (random of the minimal size by default); the test output is computed by running the module
    (built without the package's preprocessing when the source cannot be imported here, e.g. a
    missing dependency: the output is then random and the package only serves loading tests).
    """
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5

    out_dir = Path(out_dir)
    work = out_dir / f"{_slug(name)}_files"
    work.mkdir(parents=True, exist_ok=True)
    spatial = SPATIAL[-ndim:]

    module = _build_module(architecture_source, callable_name, kwargs, state_dict)
    arch_path = work / "architecture.py"
    arch_path.write_text(architecture_source)
    weights_path = work / "weights.pt"
    torch.save(module.state_dict() if module is not None else (state_dict or {}), weights_path)

    x = _test_input(test_input, in_channels, size, ndim)
    np.save(work / "test_input.npy", x)
    (work / "README.md").write_text(f"# {name}\n\nA model package built for tests.\n")

    in_axes = [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(channel_names=[f"in{c}" for c in range(in_channels)]),
    ] + [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=_input_size(size)) for a in spatial]
    names = channel_names or [f"out{c}" for c in range(out_channels)]
    out_axes = [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(channel_names=list(names)),
    ] + ([] if classifier else [_output_axis(a, halo, scale) for a in spatial])

    pre = _proc_descrs(preprocessing, spatial, pre=True)
    post = _proc_descrs(postprocessing, spatial, pre=False)
    rng = np.random.default_rng(1)
    out_spatial = () if classifier else tuple(s * scale for s in x.shape[2:])
    placeholder = rng.uniform(0.1, 1.0, size=(1, out_channels) + out_spatial).astype(np.float32)
    np.save(work / "test_output.npy", placeholder)

    def describe() -> v0_5.ModelDescr:
        return v0_5.ModelDescr(
            name=name if len(name) >= 5 else f"{name} model",  # spec: at least 5 characters
            description=f"{name}: a package built by tests/bmz_factory.py",
            authors=[v0_5.Author(name="Test Author")],
            cite=[v0_5.CiteEntry(text="test citation", doi=v0_5.Doi("10.1234/test"))],
            license=v0_5.LicenseId("MIT"),
            documentation=v0_5.FileDescr(source=work / "README.md"),
            tags=tags or ["test"],
            inputs=[
                v0_5.InputTensorDescr(
                    id=v0_5.TensorId("input"),
                    axes=in_axes,
                    test_tensor=v0_5.FileDescr(source=work / "test_input.npy"),
                    preprocessing=pre,
                )
            ],
            outputs=[
                v0_5.OutputTensorDescr(
                    id=v0_5.TensorId("output"),
                    axes=out_axes,
                    test_tensor=v0_5.FileDescr(source=work / "test_output.npy"),
                    postprocessing=post,
                )
            ],
            weights=v0_5.WeightsDescr(
                pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
                    source=weights_path,
                    architecture=v0_5.ArchitectureFromFileDescr(
                        source=arch_path, callable=v0_5.Identifier(callable_name), kwargs=kwargs
                    ),
                    pytorch_version=v0_5.Version(torch.__version__.split("+")[0]),
                )
            ),
        )

    if module is not None:
        y = _run_with_processing(describe(), module, x)
        np.save(work / "test_output.npy", y)
    zip_path = out_dir / f"{_slug(name)}.zip"
    save_bioimageio_package(describe(), output_path=zip_path)
    return zip_path


def _run_with_processing(descr: Any, module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Preprocess ``x`` as ``descr`` says, run ``module``, postprocess; returns the output."""
    from bioimageio.core import Sample, Tensor
    from bioimageio.core.proc_setup import setup_pre_and_postprocessing

    in_id, out_id = descr.inputs[0].id, descr.outputs[0].id
    in_dims = tuple(str(a.id) for a in descr.inputs[0].axes)
    out_dims = tuple(str(a.id) for a in descr.outputs[0].axes)
    sample = Sample(members={in_id: Tensor(x, dims=in_dims)}, stat={}, id="test")
    pre, post = setup_pre_and_postprocessing(descr, dataset_for_initial_statistics=[sample])
    sample = Sample(members={in_id: Tensor(x, dims=in_dims)}, stat={}, id="test")
    for op in pre:
        op(sample)
    with torch.no_grad():
        y = module(torch.from_numpy(np.asarray(sample.members[in_id].data, dtype=np.float32)))
    sample.members = {out_id: Tensor(y.numpy(), dims=out_dims)}
    for op in post:
        op(sample)
    return np.asarray(sample.members[out_id].data, dtype=np.float32)


def _output_axis(axis: str, halo: int, scale: int) -> Any:
    from bioimageio.spec.model import v0_5

    ref = v0_5.SizeReference(tensor_id=v0_5.TensorId("input"), axis_id=v0_5.AxisId(axis))
    if halo:
        return v0_5.SpaceOutputAxisWithHalo(
            id=v0_5.AxisId(axis), size=ref, halo=halo, scale=1.0 / scale
        )
    return v0_5.SpaceOutputAxis(id=v0_5.AxisId(axis), size=ref, scale=1.0 / scale)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_") or "model"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 in a thread; yields the base URL (no trailing /)."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

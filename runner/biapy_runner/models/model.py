"""A loaded BioImage.IO model in the runner's layout: pre/postprocessing and the forward pass.

:func:`load_model` resolves a source (:mod:`.sources`), reads its description
(:mod:`.description`) and loads its best runnable weights (:mod:`.backends`); :class:`BmzModel`
speaks the runner's layout (channel first, spatial axes in z, y, x order).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biapy_runner.errors import InputError, ModelError, real_cause
from biapy_runner.log import info, warn
from biapy_runner.models import store
from biapy_runner.models.backends import WEIGHT_FORMATS, Weights, first_format, load_weights
from biapy_runner.models.backends.choice import (
    CHOICES,
    STORE_NAME,
    Choice,
    ChoiceStore,
    Source,
    builders_for,
    choose,
    reference_name,
)
from biapy_runner.models.description import SPATIAL_ORDER, load_description
from biapy_runner.models.digest import ModelDigest, digest, is_remote, read_file
from biapy_runner.models.processing import Processing
from biapy_runner.models.sources import default_cache_dir, resolve_model


def resolve_device(device: str) -> torch.device:
    """The torch device of ``--device``: ``auto`` (CUDA when torch sees a GPU, else the CPU),
    ``cpu`` or ``cuda`` (an InputError when no GPU is visible).

    Parameters
    ----------
    device
        ``auto``, ``cpu`` or ``cuda``.

    Returns
    -------
    torch.device
    """
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
    backend: str = "auto",
) -> BmzModel:
    """Resolve ``source`` (see :func:`resolve_model`), validate it and load its best runnable
    weights once on ``device`` (``auto``: CUDA when available, else CPU).

    A package from the cache that was validated before is loaded without checking its files'
    sha256 again, and without bioimageio at all once its digest (:mod:`.digest`) is kept beside
    it. ``backend`` (:data:`~biapy_runner.models.backends.choice.CHOICES`) is chosen on the
    first tile the model runs (see :meth:`BmzModel.select_backend`); ``threads`` sets torch's,
    ONNX Runtime's and OpenVINO's CPU threads."""
    if weight_format is not None and weight_format not in WEIGHT_FORMATS:
        raise InputError(
            f"Unknown weight format {weight_format!r}: use one of {', '.join(WEIGHT_FORMATS)}."
        )
    if backend not in CHOICES:
        raise InputError(f"Unknown backend {backend!r}: use one of {', '.join(CHOICES)}.")
    torch_device = resolve_device(device)
    if threads:
        torch.set_num_threads(int(threads))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = resolve_model(str(source), cache_dir)
    cached = store.in_cache(path, cache)
    known = store.read_digest(path, store.derived_folder(path, cache)) if cached else None
    descr = None
    if known is None:
        trusted = cached and store.is_verified(path)
        descr = load_description(path, str(source), io_checks=not trusted)
        if cached and not trusted:
            store.mark_verified(path)
        known = digest(descr)
        if cached:
            store.write_digest(path, store.derived_folder(path, cache), known)
    folder = store.derived_folder(path, cache)  # after validation: it reads a local rdf
    return BmzModel(
        known, str(source), torch_device, weight_format, threads,
        backend=backend, folder=folder, package=path, descr=descr,
    )


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



class BmzModel:
    """A loaded BioImage.IO model in the runner's layout (channel first, spatial z, y, x).

    Attributes: ``name``, ``source``, ``digest`` (:class:`~.digest.ModelDigest`), ``descr``
    (the bioimageio description, format 0.4 or 0.5, read when first asked for),
    ``weight_format``, ``device``, ``spatial_axes`` (e.g. ``("y", "x")``), ``in_channels``,
    ``out_channels``, ``out_channel_names``, ``min_shape`` and ``step`` per spatial axis (step 0:
    fixed size), ``halo`` (output pixels to discard at each border), ``scale`` (output size /
    input size) and ``offset`` (output pixels added to ``input * scale``, usually 0).
    ``out_spatial_axes`` is ``spatial_axes``, or ``()`` for a model that gives one value per
    output channel for the whole image (a classifier: one score per class); its ``halo``,
    ``scale`` and ``offset`` are then empty and its outputs are ``(C,)`` per image.
    """

    #: the rdf says how to normalise (see :class:`~biapy_runner.models.runnable.RunnableModel`)
    expects_config_normalization = False

    def __init__(
        self,
        known: ModelDigest,
        source: str,
        device: torch.device,
        weight_format: str | None = None,
        threads: int | None = None,
        *,
        backend: str = "auto",
        folder: Path | None = None,
        package: Path | None = None,
        descr: Any = None,
    ) -> None:
        """Read the axes of the digest ``known`` and load its reference weights (the files of
        the local ``package``; ``descr``, when already read, for files at a URL); the backend
        (``backend``) is chosen on the first tile, remembered in ``folder`` (None: not kept)."""
        if known.inputs != 1:
            raise ModelError(
                f"The model {known.name!r} has {known.inputs} inputs; this runner supports "
                "models with one input tensor."
            )
        if known.outputs > 1:
            warn(f"model {known.name}: using its first output of {known.outputs}")
        self.digest = known
        self._descr, self._package = descr, package
        self.name: str = known.name
        self.source = source
        self.device = device
        self._in_id, self._out_id = known.in_id, known.out_id
        self._in_dims, self._in_roles = known.in_dims, known.in_roles
        self._out_dims, self._out_roles = known.out_dims, known.out_roles
        self.spatial_axes: tuple[str, ...] = tuple(a for a in SPATIAL_ORDER if a in self._in_roles)
        self.out_spatial_axes = tuple(a for a in SPATIAL_ORDER if a in self._out_roles)
        self._check_axes()
        sizes, geometry = known.sizes, known.geometry
        self.in_channels = sizes.get("c", (1, 0))[0]
        self.out_channels = int(geometry.get("c", (0, 0.0, 1.0))[2])
        self.out_channel_names = known.out_channel_names
        self.min_shape = tuple(sizes[a][0] for a in self.spatial_axes)
        self.step = tuple(sizes[a][1] for a in self.spatial_axes)
        self.halo = tuple(geometry[a][0] for a in self.out_spatial_axes)
        self.scale = tuple(geometry[a][1] for a in self.out_spatial_axes)
        self.offset = tuple(int(geometry[a][2]) for a in self.out_spatial_axes)
        self._core: tuple[list[Any], list[Any]] | None = None
        self._pre, self._post = self._processing()
        self._stat: dict[Any, Any] = {}
        shown = self.name if source == self.name else f"{self.name} from {source}"
        weights = {f: Weights(f, entry, self._read) for f, entry in known.weights.items()}

        def load() -> tuple[str, Any]:
            return load_weights(weights, shown, device, weight_format, threads)

        self._wanted_backend = backend
        remembered = folder is not None and (folder / STORE_NAME).is_file()
        if backend == "auto" and remembered and first_format(weights, weight_format):
            fmt = first_format(weights, weight_format)
            info(f"model {shown}: {fmt} weights on {device}, loaded only if the remembered "
                 "backend needs them")
            self._source = Source(fmt, None, weights.get("onnx"), device, threads, folder, load)
        else:
            fmt, reference = load()
            self._source = Source(fmt, reference, weights.get("onnx"), device, threads, folder)
        self.choice: Choice | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None  # conversions when no cache folder

    @property
    def weight_format(self) -> str:
        """The package's weight format the model runs (or is checked against)."""
        return self._source.format

    @property
    def descr(self) -> Any:
        """The bioimageio description (read, without checking the files again, when needed)."""
        if self._descr is None:
            if self._package is None:
                raise ModelError(f"The description of the model {self.name!r} is not known.")
            self._descr = load_description(self._package, self.source, io_checks=False)
        return self._descr

    def _read(self, source: str) -> bytes:
        """A file the description names: from the local package, else downloaded."""
        if not is_remote(source) and self._package is not None:
            try:
                return read_file(self._package, source)
            except (OSError, KeyError):
                if self._descr is None:
                    raise
        from bioimageio.spec.utils import download

        return download(source).read()

    def _check_axes(self) -> None:
        if not self.spatial_axes or self.out_spatial_axes not in (self.spatial_axes, ()):
            raise ModelError(
                f"The model {self.name!r} maps spatial axes {self.spatial_axes} to "
                f"{self.out_spatial_axes}; this runner needs models with the same spatial axes "
                "in input and output (image to image), or none in the output (classifiers)."
            )

    def _processing(self) -> tuple[Any, Any]:
        """The pre- and postprocessing: numpy steps from the digest, or bioimageio.core's
        operators where the digest cannot say them (see :mod:`.processing`)."""
        known = self.digest
        if known.preprocessing is not None and known.postprocessing is not None:
            return (Processing(known.preprocessing, self._in_dims),
                    Processing(known.postprocessing, self._out_dims))
        return self._core_ops()

    def _core_ops(self) -> tuple[list[Any], list[Any]]:
        """bioimageio.core's pre- and postprocessing operators, set up once when a run needs
        them: steps the digest cannot say, or statistics given for the regions of an image
        predicted by chunks."""
        if self._core is None:
            from bioimageio.core.proc_setup import setup_pre_and_postprocessing

            try:
                setup = setup_pre_and_postprocessing(
                    self.descr, dataset_for_initial_statistics=[]
                )
            except Exception as err:
                raise ModelError(
                    f"Cannot set up the pre/postprocessing of the model {self.name!r}: "
                    f"{real_cause(err)}."
                ) from err
            self._core = (list(setup.pre), list(setup.post))
        return self._core

    @property
    def version(self) -> str:
        """The package's version ("" when its rdf gives none)."""
        return self.digest.version or ""

    @property
    def normalizes_input(self) -> bool:
        """Whether the rdf's preprocessing does more than cast the input's dtype."""
        return self.digest.normalizes_input

    @property
    def size_rule(self) -> str:
        """The input sizes the model accepts, in words (its rdf's fixed shape or min and step)."""
        if not any(self.step):
            return f"the model takes a fixed input size {self.min_shape}"
        return f"the model takes input sizes {self.min_shape} + n * {self.step} (step 0: fixed)"

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

    def input_measures(self) -> list[tuple[Any, str, frozenset[str]]]:
        """The statistics the rdf's input preprocessing takes from the image: ``(measure, kind,
        reduced roles)`` with kind ``"mean"``, ``"std"`` or ``"quantile"`` (``measure.q``) and
        the runner's axis roles (``"c"``, ``"z"``, ...) the measure is taken over (an out-of-core
        run computes them in a pass over the image, ``inference/chunked.py``).

        Raises
        ------
        ModelError
            A statistic of another kind, or one per spatial position, which cannot be streamed.
        """
        roles = dict(zip(self._in_dims, self._in_roles))
        wanted: dict[Any, tuple[str, frozenset[str]]] = {}
        for op in self._core_ops()[0]:
            for measure in getattr(op, "required_measures", ()):
                kind = str(getattr(measure, "name", ""))
                axes = getattr(measure, "axes", None)
                reduced = frozenset(roles.values() if axes is None else (roles[a] for a in axes))
                if kind not in ("mean", "std", "quantile") or set(roles.values()) - reduced - {
                    "b", "c"
                }:
                    raise ModelError(
                        f"The model {self.name!r} normalises its input with a statistic "
                        f"({measure}) that cannot be computed by chunks; run it without "
                        "TEST.BY_CHUNKS on an image that fits in memory."
                    )
                wanted[measure] = (kind, reduced | {"b"})
        return [(m, kind, reduced) for m, (kind, reduced) in wanted.items()]

    def measure_value(self, measure: Any, values: np.ndarray) -> Any:
        """``values`` (one per channel when the measure keeps the channel axis, else one) as
        the value bioimageio's operators expect for ``measure``."""
        from bioimageio.core import Tensor

        roles = dict(zip(self._in_dims, self._in_roles))
        reduced = set(measure.axes) if measure.axes is not None else set(self._in_dims)
        kept = [d for d in self._in_dims if d not in reduced]
        shape = [values.size if roles[d] == "c" else 1 for d in kept]
        return Tensor(np.asarray(values, dtype=np.float64).reshape(shape), dims=kept)

    def preprocess(self, arr: np.ndarray, stat: dict[Any, Any] | None = None) -> np.ndarray:
        """Apply the rdf's preprocessing to ``arr`` ``(C, *spatial)`` with statistics over the
        whole array, or with ``stat`` (measure -> value, ``measure_value``) given for a region
        of a larger image; returns float32, channel first."""
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
        if stat is None and isinstance(self._pre, Processing):
            return self._processed(self._pre, self._in_id, arr, self._in_roles)
        sample = self._sample(self._in_id, arr, self._in_dims, self._in_roles)
        if stat is not None:
            sample.stat = dict(stat)
        for op in self._core_ops()[0]:
            if stat is None or type(op).__name__ != "UpdateStats":
                op(sample)
        self._stat = dict(sample.stat)
        return self._unsample(sample, self._in_id, self._in_dims, self._in_roles)

    @property
    def postprocess_is_pointwise(self) -> bool:
        """Whether the rdf's postprocessing needs no statistic of the output (so that it can
        be applied region by region to an output larger than memory)."""
        return not any(
            getattr(m, "member_id", None) == self._out_id
            for op in self._core_ops()[1]
            for m in getattr(op, "required_measures", ())
        )

    def _processed(
        self, steps: Processing, member: str, arr: np.ndarray, roles: Sequence[str]
    ) -> np.ndarray:
        """``arr`` (channel first) through the numpy ``steps`` in the model's layout."""
        data = steps(_rearrange(arr[None], self._canonical(member), roles))
        out = _rearrange(np.asarray(data), roles, self._canonical(member))
        return np.ascontiguousarray(out[0], dtype=np.float32)

    def postprocess(self, arr: np.ndarray) -> np.ndarray:
        """Apply the rdf's postprocessing (e.g. sigmoid) to the merged output ``(C, *spatial)``
        (``(C,)`` without output spatial axes), with the statistics of the last preprocessed
        image where an op refers to them."""
        if not self._post:
            return np.asarray(arr, dtype=np.float32)
        if isinstance(self._post, Processing):
            return self._processed(self._post, self._out_id, np.asarray(arr), self._out_roles)
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
            if self.choice is None:
                self._choose(x[:1] if "b" in self._in_roles else x)
            y = self.choice.forward(x)  # type: ignore[union-attr]
        return self._from_model_layout(y)

    def _from_model_layout(self, y: Any) -> torch.Tensor:
        if isinstance(y, (list, tuple)):
            y = y[0]
        return _rearrange(y, self._out_roles, self._canonical(self._out_id))

    @property
    def reference(self) -> Any:
        """The package's weights as loaded (a torch module for torch formats): the reference
        every other backend is checked against."""
        return self._source.reference()

    @property
    def backend(self) -> str | None:
        """The backend the model runs with (None until :meth:`select_backend` or the first
        forward)."""
        return None if self.choice is None else self.choice.name

    def select_backend(self, tile: np.ndarray) -> Choice:
        """Choose the backend on ``tile`` (``(C, *spatial)``, preprocessed, a size the model
        accepts) as ``load_model``'s ``backend`` asks, once; see
        :mod:`biapy_runner.models.backends.choice`."""
        if self.choice is None:
            batch = torch.from_numpy(np.ascontiguousarray(tile[None], dtype=np.float32))
            x = _rearrange(batch.to(self.device), self._canonical(self._in_id), self._in_roles)
            with torch.inference_mode():
                self._choose(x)
        return self.choice  # type: ignore[return-value]

    def _choose(self, x: torch.Tensor) -> None:
        """Probe (or recall) the backend on the model-layout tile ``x``, in float32."""
        source = self._source
        reference = reference_name(source.format)
        if self._wanted_backend == reference:
            info(f"model {self.name}: backend {reference} (--backend {reference}: not probed)")
            self.choice = Choice(reference, source.reference())
            return
        if source.folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="biapy-runner-model-")
            source.folder = Path(self._tmp.name)
        channel_axes = (self._in_roles.index("c") if "c" in self._in_roles else -1,
                        self._out_roles.index("c") if "c" in self._out_roles else -1)
        builders = builders_for(
            source, x, len(self._out_roles), channel_axes, batch_axis="b" in self._in_roles
        )
        key = (f"{self.device}|threads={torch.get_num_threads()}|tile={tuple(x.shape)}|"
               f"torch={torch.__version__}")
        with torch.autocast(self.device.type, enabled=False):
            self.choice = choose(
                self._wanted_backend, builders, reference, x, self._postprocessed,
                store=ChoiceStore(source.folder), key=key, name=self.name,
            )

    def _postprocessed(self, y: Any) -> np.ndarray:
        """A raw output of one tile (model layout) after the model's postprocessing."""
        out = self._from_model_layout(y)
        return self.postprocess(out[0].detach().float().cpu().numpy())

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

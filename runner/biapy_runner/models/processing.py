"""A model's pre/postprocessing in numpy, from plain data kept in the model cache.

The rdf's processing steps are read once by bioimageio.core (:func:`describe_ops`, when the
package is validated) into plain dictionaries; :class:`Processing` applies them to an array in the
model's own axis order without importing bioimageio. Statistics follow bioimageio.core: per-sample
measures over the step's axes, and dataset measures (no axes, or axes with the batch axis)
accumulated over the images processed so far (running mean and sum of squares; quantiles
averaged over the images, weighted by their voxel counts). Steps outside :data:`SUPPORTED` (or
referring to another tensor) make :func:`describe_ops` return None: the caller then runs
bioimageio.core's own operators.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: The steps applied here (bioimageio.core's operator names).
SUPPORTED = (
    "EnsureDtype", "Sigmoid", "Softmax", "Binarize", "Clip", "ScaleLinear",
    "ZeroMeanUnitVariance", "FixedZeroMeanUnitVariance", "ScaleRange",
)
#: bioimageio.core's steps that only compute statistics (done here inside each step).
_STATISTICS = ("UpdateStats", "AddKnownDatasetStats")

Op = dict[str, Any]


def _number_or_list(value: Any) -> tuple[Any, str | None]:
    """A float, or the values of a 1D DataArray and its axis."""
    if isinstance(value, (int, float)):
        return float(value), None
    dims = getattr(value, "dims", ())
    values = np.asarray(value, dtype=np.float64)
    if values.ndim == 0:
        return float(values), None
    if len(dims) != 1:
        raise _Unsupported
    return values.tolist(), str(dims[0])


class _Unsupported(Exception):
    pass


def _axes(measure: Any) -> list[str] | None:
    axes = getattr(measure, "axes", None)
    return None if axes is None else [str(a) for a in axes]


def _dataset(measure: Any) -> bool:
    return type(measure).__name__.startswith("Dataset")


def _describe(op: Any, member: str) -> Op | None:
    """One bioimageio.core operator as plain data (None: nothing to do here)."""
    kind = type(op).__name__
    if kind in _STATISTICS:
        return None
    if kind not in SUPPORTED or str(op.input) != member or str(op.output) != member:
        raise _Unsupported
    if kind == "EnsureDtype":
        return {"op": "ensure_dtype", "dtype": str(op.dtype)}
    if kind == "Sigmoid":
        return {"op": "sigmoid"}
    if kind == "Softmax":
        return {"op": "softmax", "axis": str(op.axis)}
    if kind == "Binarize":
        threshold = op.threshold
        values = [float(t) for t in threshold] if isinstance(threshold, Sequence) else float(
            threshold
        )
        return {"op": "binarize", "threshold": values, "axis": op.axis and str(op.axis)}
    if kind == "Clip":
        bounds = (op.min, op.max)
        if not all(b is None or isinstance(b, (int, float)) for b in bounds):
            raise _Unsupported  # quantile bounds
        return {"op": "clip", "min": op.min, "max": op.max}
    if kind == "ScaleLinear":
        gain, gain_axis = _number_or_list(op.gain)
        offset, offset_axis = _number_or_list(op.offset)
        return {"op": "scale_linear", "gain": gain, "offset": offset,
                "axis": gain_axis or offset_axis}
    if kind == "FixedZeroMeanUnitVariance":
        mean, mean_axis = _number_or_list(op.mean)
        std, std_axis = _number_or_list(op.std)
        return {"op": "fixed_zero_mean_unit_variance", "mean": mean, "std": std,
                "axis": mean_axis or std_axis, "eps": float(op.eps)}
    if kind == "ZeroMeanUnitVariance":
        return {"op": "zero_mean_unit_variance", "axes": _axes(op.mean),
                "dataset": _dataset(op.mean), "eps": float(op.eps)}
    # ScaleRange
    if str(op.lower.member_id) != member or _axes(op.lower) != _axes(op.upper):
        raise _Unsupported
    return {"op": "scale_range", "lower": float(op.lower.q), "upper": float(op.upper.q),
            "axes": _axes(op.lower), "dataset": _dataset(op.lower), "eps": float(op.eps)}


def describe_ops(ops: Sequence[Any], member: str) -> list[Op] | None:
    """bioimageio.core's operators for the tensor ``member`` as plain data, or None when one of
    them is not applied here."""
    described = []
    try:
        for op in ops:
            step = _describe(op, member)
            if step is not None:
                described.append(step)
    except _Unsupported:
        return None
    return described


class Processing:
    """The steps ``ops`` applied to arrays whose axes are named ``dims`` (the model's axis ids),
    with dataset statistics accumulated over the calls."""

    def __init__(self, ops: Sequence[Op], dims: Sequence[str]) -> None:
        self.ops = [dict(op) for op in ops]
        self.dims = [str(d) for d in dims]
        self._running: dict[int, tuple[int, Any, Any]] = {}

    def __len__(self) -> int:
        return len(self.ops)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The processed ``x`` (float64 where a step computes, else its dtype)."""
        for index, op in enumerate(self.ops):
            x = getattr(self, "_" + op["op"])(x, op, index)
        return x

    # -- helpers --------------------------------------------------------------------------

    def _reduced(self, axes: list[str] | None) -> tuple[int, ...]:
        if axes is None:
            return tuple(range(len(self.dims)))
        return tuple(i for i, d in enumerate(self.dims) if d in axes)

    def _along(self, values: Any, axis: str | None, ndim: int) -> Any:
        """``values`` (a float or one value per index of ``axis``) shaped to broadcast."""
        if axis is None or not isinstance(values, list):
            return values
        shape = [1] * ndim
        shape[self.dims.index(axis)] = len(values)
        return np.asarray(values, dtype=np.float64).reshape(shape)

    def _accumulate(self, index: int, n: int, *values: Any) -> tuple[Any, ...]:
        """Running means of ``values`` over the calls, weighted by ``n`` (dataset quantiles)."""
        seen = self._running.get(index)
        if seen is not None:
            total = seen[0] + n
            values = tuple((seen[0] * a + n * b) / total for a, b in zip(seen[1], values))
            n = total
        self._running[index] = (n, values, None)
        return values

    # -- steps ----------------------------------------------------------------------------

    def _ensure_dtype(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        return x.astype(op["dtype"])

    def _sigmoid(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    def _softmax(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        from scipy.special import softmax

        return softmax(x, axis=self.dims.index(op["axis"]))

    def _binarize(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        return x > self._along(op["threshold"], op["axis"], x.ndim)

    def _clip(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        return np.clip(x, op["min"], op["max"])

    def _scale_linear(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        gain = self._along(op["gain"], op["axis"], x.ndim)
        return x * gain + self._along(op["offset"], op["axis"], x.ndim)

    def _fixed_zero_mean_unit_variance(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        mean = self._along(op["mean"], op["axis"], x.ndim)
        return (x - mean) / (self._along(op["std"], op["axis"], x.ndim) + op["eps"])

    def _zero_mean_unit_variance(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        axes = self._reduced(op["axes"])
        data = x.astype(np.float64, copy=False)
        mean = data.mean(axis=axes, keepdims=True)
        n = int(np.prod([x.shape[a] for a in axes]))
        if not op["dataset"]:
            std = np.sqrt(np.square(data - mean).sum(axis=axes, keepdims=True) / n)
            return (x - mean) / (std + op["eps"])
        m2 = np.square(data - mean).sum(axis=axes, keepdims=True)
        seen = self._running.get(index)
        if seen is not None:  # Chan et al.'s update, as bioimageio.core's MeanVarStdCalculator
            n_a, mean_a, m2_a = seen
            total = n_a + n
            m2 = m2_a + m2 + (mean - mean_a) ** 2 * n_a * n / total
            mean, n = (n_a * mean_a + n * mean) / total, total
        self._running[index] = (n, mean, m2)
        return (x - mean) / ((m2 / n) ** 0.5 + op["eps"])

    def _scale_range(self, x: np.ndarray, op: Op, index: int) -> np.ndarray:
        axes = self._reduced(op["axes"])
        lower, upper = np.quantile(
            x, [op["lower"], op["upper"]], axis=axes, keepdims=True, method="linear"
        ).astype(np.float64)
        if op["dataset"]:
            lower, upper = self._accumulate(index, x.size // lower.size, lower, upper)
        return (x - lower) / (upper - lower + op["eps"])

"""The fastest correct backend for a model on a device, measured once on one tile and remembered.

Candidates (:data:`BACKENDS`) are the package's reference weights (the first runnable format:
torch eager for ``pytorch_state_dict`` and ``torchscript``, ONNX Runtime for ``onnx`` alone) and
what the runner makes of them: channels-last torch, frozen TorchScript, ONNX (the package's or our
own export) run by ONNX Runtime and by OpenVINO. Each is built, run on the tile (one warm-up, then
the best of a few timed runs) and its output, after the model's postprocessing, compared with the
reference's: a difference above :data:`TOLERANCE` refuses it. Candidates go in the device's
:data:`PROBE_ORDER` and one :data:`CLEAR_WIN` times faster than the reference ends the probe. The
fastest accepted one wins (it must beat the reference by :data:`MARGIN`); the choice is stored in ``backends.json`` in the
model's cache folder, with the ONNX export, so later runs skip the probe.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biapy_runner.errors import real_cause
from biapy_runner.io.atomic import write_text_atomic
from biapy_runner.log import info, warn
from biapy_runner.models.backends import BackendUnavailable, Forward, Weights

#: The backends ``--backend`` accepts besides ``auto``, in order of preference on ties.
BACKENDS = ("torch", "torch-channels-last", "torchscript", "onnxruntime", "openvino")
CHOICES = ("auto", *BACKENDS)
#: Largest accepted max |difference| to the reference after postprocessing, relative to the
#: reference's largest magnitude when that exceeds 1 (probabilities: absolute).
TOLERANCE = 1e-4
#: A candidate must be this fraction faster than the reference to replace it.
MARGIN = 0.03
STORE_NAME = "backends.json"
#: Order in which candidates are probed after the reference, per device kind: the usual winners
#: first, so that the probe can stop early.
PROBE_ORDER = {
    "cpu": ("openvino", "onnxruntime", "torch-channels-last", "torchscript", "torch"),
    "cuda": ("torch-channels-last", "torchscript", "onnxruntime", "torch", "openvino"),
}
#: A candidate this many times faster than the reference ends the probe: the ones left could
#: not repay their probe on a typical image (each costs a few tiles' time; a Galaxy job, whose
#: cache lives in the job folder, pays the probe on every run).
CLEAR_WIN = 2.0

Builder = Callable[[], Forward]
#: ``measure(forward, x) -> (output, seconds, peak bytes)``
Measure = Callable[[Forward, torch.Tensor], tuple[Any, float, int]]


@dataclass
class Trial:
    """One candidate's result on the probe tile: best time, difference to the reference, peak
    memory of one tile, or why it was refused."""

    name: str
    seconds: float | None = None
    delta: float | None = None
    peak_bytes: int = 0
    refused: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the candidate ran and matched the reference."""
        return self.refused is None and self.seconds is not None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process in bytes (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    """Reset this process's peak RSS (Linux: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


#: Timed runs after the warm-up: more for fast tiles, where one run is noisier.
SHORT_TILE_S = 0.5


def measure(
    forward: Forward, x: torch.Tensor, repeats: int | None = None
) -> tuple[Any, float, int]:
    """Run ``forward`` on ``x`` once (warm-up: compilation, allocation; its peak memory is
    measured: GPU memory on CUDA, resident memory on CPU) then ``repeats`` times (default: 3 when
    the warm-up took under :data:`SHORT_TILE_S`, else 1); returns the output, the best time of the
    timed runs (of the warm-up when ``repeats`` is 0) and the peak."""
    on_gpu = x.device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
    else:
        _reset_peak()
        base = _rss("VmRSS")
    start = time.perf_counter()
    out = forward(x)
    _sync(x.device)
    best = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(x.device) if on_gpu else _rss("VmHWM")) - base
    if repeats is None:
        repeats = 3 if best < SHORT_TILE_S else 1
    for i in range(repeats):
        start = time.perf_counter()
        forward(x)
        _sync(x.device)
        elapsed = time.perf_counter() - start
        best = elapsed if i == 0 else min(best, elapsed)
    return out, best, max(0, peak)


def max_delta(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| (inf when shapes differ or values are not finite)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return math.inf
    delta = float(np.max(np.abs(got - ref))) if got.size else 0.0
    return delta if math.isfinite(delta) else math.inf


def tolerance(ref: np.ndarray) -> float:
    """The accepted difference for a reference output (see :data:`TOLERANCE`)."""
    scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    return TOLERANCE * max(1.0, scale if math.isfinite(scale) else 1.0)


def probe(
    builders: Mapping[str, Builder],
    reference: str,
    x: torch.Tensor,
    compare: Callable[[Any], np.ndarray],
    *,
    measure: Measure = measure,
    clear_win: float | None = None,
) -> tuple[list[Trial], dict[str, Forward]]:
    """Build and run the candidates of ``builders`` on ``x`` (reference first, then in the
    :data:`PROBE_ORDER` of ``x``'s device); ``reference`` gives the expected output. ``compare``
    maps a raw output to the postprocessed array the candidates are compared on. With
    ``clear_win``, a candidate that many times faster than the reference ends the probe.
    Returns the trials of the candidates run and the forwards of the accepted ones."""
    preferred = PROBE_ORDER.get(x.device.type, BACKENDS)
    rest = sorted((n for n in builders if n != reference), key=lambda n: (
        preferred.index(n) if n in preferred else len(preferred)
    ))
    trials: list[Trial] = []
    forwards: dict[str, Forward] = {}
    expected: np.ndarray | None = None
    for name in [reference, *rest]:
        if clear_win and _clearly_won(trials, clear_win):
            break
        trial = Trial(name)
        trials.append(trial)
        try:
            forward = builders[name]()
            out, trial.seconds, trial.peak_bytes = measure(forward, x)
            got = compare(out)
        except BackendUnavailable as err:
            trial.refused = str(err)
            continue
        except Exception as err:  # noqa: BLE001 - a candidate that fails is refused, not fatal
            trial.refused = f"failed ({real_cause(err)})"
            continue
        if expected is None:
            expected, trial.delta = got, 0.0
        else:
            trial.delta = max_delta(got, expected)
            limit = tolerance(expected)
            if trial.delta > limit:
                trial.refused = f"differs from {reference} by {trial.delta:.3g} > {limit:.3g}"
                continue
        forwards[name] = forward
    return trials, forwards


def _clearly_won(trials: list[Trial], factor: float) -> bool:
    """Whether a candidate ran ``factor`` times faster than the reference (the first trial)."""
    if not trials or not trials[0].ok:
        return False
    ref = trials[0].seconds
    return any(t.ok and t.seconds * factor <= ref for t in trials[1:])  # type: ignore[operator]


def pick(trials: list[Trial], reference: str) -> Trial:
    """The fastest accepted trial if it beats ``reference`` by more than :data:`MARGIN`, else the
    reference (ties go to the earlier candidate)."""
    ref = next(t for t in trials if t.name == reference)
    accepted = [t for t in trials if t.ok]
    if not ref.ok or not accepted:
        return ref
    best = min(accepted, key=lambda t: t.seconds)  # type: ignore[arg-type,return-value]
    if best is not ref and best.seconds < ref.seconds * (1.0 - MARGIN):  # type: ignore[operator]
        return best
    return ref


class ChoiceStore:
    """The remembered choices of one model (``backends.json`` in its cache folder), by key."""

    def __init__(self, folder: Path | None) -> None:
        self.path = None if folder is None else folder / STORE_NAME

    def _read(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, if any."""
        record = self._read().get(key)
        return record if isinstance(record, dict) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` under ``key`` (atomically; a cache that cannot be written is skipped
        with a warning)."""
        if self.path is None:
            return
        data = self._read()
        data[key] = record
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError as err:
            warn(f"cannot remember the backend choice in {self.path}: {err}")


@dataclass
class Choice:
    """The backend a model runs with: its name, forward, speed-up over the reference (None when
    not measured) and the peak memory of one tile in bytes (0 when not measured)."""

    name: str
    forward: Forward
    speedup: float | None = None
    peak_bytes: int = 0


def _record(trials: list[Trial], winner: Trial, reference: str) -> dict[str, Any]:
    ref = next(t for t in trials if t.name == reference)
    return {
        "backend": winner.name,
        "speedup": (ref.seconds / winner.seconds) if ref.seconds and winner.seconds else None,
        "seconds": {t.name: t.seconds for t in trials if t.ok},
        "refused": {t.name: t.refused for t in trials if t.refused},
        "peak_bytes": winner.peak_bytes,
    }


def _describe(trials: list[Trial], candidates: Mapping[str, Builder]) -> str:
    parts = []
    for t in trials:
        if t.ok:
            parts.append(f"{t.name} {t.seconds:.3f}s")
        else:
            parts.append(f"{t.name} refused: {t.refused}")
    skipped = [n for n in candidates if n not in {t.name for t in trials}]
    if skipped:
        parts.append(f"not probed after a clear win: {', '.join(skipped)}")
    return "; ".join(parts)


def choose(
    wanted: str,
    builders: Mapping[str, Builder],
    reference: str,
    x: torch.Tensor,
    compare: Callable[[Any], np.ndarray],
    *,
    store: ChoiceStore,
    key: str,
    name: str,
    measure: Measure = measure,
) -> Choice:
    """The backend ``wanted`` (``auto``: the fastest correct one, remembered in ``store`` under
    ``key``) for the model ``name``, probed on the tile ``x``; logs the choice and its speed-up.

    A forced backend is still checked against the reference on the tile (one run each, not
    timed again once it passed: the check is remembered under ``key`` and the backend's name); a
    backend that is not installed, does not apply to this model or gives other results falls
    back to the reference with a log line."""
    if wanted != "auto" and wanted not in builders:
        info(f"model {name}: backend {wanted} does not apply to this model; using {reference}")
        return Choice(reference, builders[reference]())
    if wanted == reference:
        return Choice(reference, builders[reference]())
    if wanted != "auto":
        key = f"{key}|forced={wanted}"
        measure = _once(measure)
    cached = _cached(store.get(key), builders, reference, name)
    if cached is not None:
        return cached
    subset = builders if wanted == "auto" else {k: builders[k] for k in (reference, wanted)}
    trials, forwards = probe(
        subset, reference, x, compare, measure=measure,
        clear_win=CLEAR_WIN if wanted == "auto" else None,
    )
    if reference not in forwards:
        raise next(_failure(t) for t in trials if t.name == reference)
    winner = pick(trials, reference) if wanted == "auto" else next(
        (t for t in trials if t.name == wanted and t.ok),
        next(t for t in trials if t.name == reference),
    )
    record = _record(trials, winner, reference)
    for t in trials:
        if t.refused and (wanted == "auto" or t.name == wanted):
            info(f"model {name}: backend {t.name} not used: {t.refused}")
    if wanted == "auto" or winner.name == wanted:
        store.put(key, record)
    speedup = record["speedup"]
    info(
        f"model {name}: backend {winner.name}"
        + (f", {speedup:.2f}x the speed of {reference}" if speedup else "")
        + f" (probe on one tile {tuple(x.shape)}: {_describe(trials, subset)})"
    )
    return Choice(winner.name, forwards[winner.name], speedup, winner.peak_bytes)


def _once(timed: Measure) -> Measure:
    """``timed`` without the timed repeats (the default :func:`measure`: its warm-up run only)."""
    if timed is not measure:
        return timed
    return lambda forward, x: measure(forward, x, repeats=0)


def _failure(trial: Trial) -> Exception:
    from biapy_runner.errors import ModelError

    return ModelError(f"The model's {trial.name} weights fail on a tile: {trial.refused}.")


def _cached(
    record: dict[str, Any] | None, builders: Mapping[str, Builder], reference: str, name: str
) -> Choice | None:
    """The remembered choice, built; None when there is none or it cannot be built any more."""
    if record is None or record.get("backend") not in builders:
        return None
    chosen = str(record["backend"])
    try:
        forward = builders[chosen]()
    except Exception as err:  # noqa: BLE001 - probe again
        info(f"model {name}: the remembered backend {chosen} cannot load ({real_cause(err)})")
        return None
    speedup = record.get("speedup")
    info(
        f"model {name}: backend {chosen} (remembered"
        + (f"; {speedup:.2f}x the speed of {reference} when measured" if speedup else "")
        + ")"
    )
    return Choice(chosen, forward, speedup, int(record.get("peak_bytes") or 0))


@dataclass
class Source:
    """What the candidates are made from: the reference weights (``format`` a weight format,
    ``forward`` its callable; None until ``load`` gives both, when a candidate first needs them),
    the package's ONNX weights (None without), where they run, and the folder that keeps our
    conversions (None: a temporary one)."""

    format: str
    forward: Forward | None
    onnx: Weights | None
    device: torch.device
    threads: int | None
    folder: Path
    load: Callable[[], tuple[str, Forward]] | None = None

    def reference(self) -> Forward:
        """The reference weights, loaded now if they were not."""
        if self.forward is None:
            assert self.load is not None
            self.format, self.forward = self.load()
        return self.forward


def reference_name(weight_format: str) -> str:
    """The backend name of a package weight format run as it is."""
    return "onnxruntime" if weight_format == "onnx" else "torch"


def builders_for(
    source: Source,
    example: torch.Tensor,
    out_rank: int,
    channel_axes: tuple[int, int],
    batch_axis: bool = True,
) -> dict[str, Builder]:
    """Lazy builders of every candidate that applies to ``source``, by backend name.

    ``example`` is a tile in the model's own layout (traced and exported on), ``out_rank`` the
    rank of the model's output and ``channel_axes`` the channel axis of its input and output (the
    axes an ONNX export keeps fixed); ``batch_axis``: the input's first axis is a batch axis."""
    from biapy_runner.models.backends import convert, onnx, openvino

    torch_weights = source.format in ("pytorch_state_dict", "torchscript")
    builders: dict[str, Builder] = {reference_name(source.format): source.reference}
    onnx_file: list[Any] = []

    def module() -> torch.nn.Module:
        return source.reference()  # type: ignore[return-value]

    def onnx_model() -> bytes | Path:
        if not onnx_file:
            packaged = source.onnx
            path = source.folder / "model.onnx"
            if packaged is not None and not packaged.remote:  # offline
                onnx_file.append(packaged.data())
            elif torch_weights:
                if not path.is_file():
                    convert.export_onnx(
                        module(), example, path, out_rank=out_rank,
                        fixed_inputs=(channel_axes[0],), fixed_outputs=(channel_axes[1],),
                    )
                onnx_file.append(path)
            else:
                raise BackendUnavailable("needs ONNX weights or a torch model to export")
        return onnx_file[0]

    if torch_weights:
        builders["torch-channels-last"] = lambda: convert.channels_last(module(), example)
        builders["torchscript"] = lambda: convert.torchscript(module(), example)
        builders["onnxruntime"] = lambda: onnx.session(onnx_model(), source.device, source.threads)
    builders["openvino"] = lambda: openvino.compile_onnx(
        onnx_model(), source.device, source.threads, source.folder / "openvino",
        batch_axis=batch_axis,
    )
    return {name: builders[name] for name in BACKENDS if name in builders}

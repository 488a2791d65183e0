"""Backend choice: the pick with fake timings, the 1e-4 check, the remembered choice, our
conversions (channels-last, TorchScript, ONNX Runtime, OpenVINO) against torch eager, batching."""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from biapy_runner import cli
from biapy_runner.inference.batching import CAPS, auto_batch_size
from biapy_runner.inference.tiling import TilePlan, _HostBuffers, predict_tiled
from biapy_runner.models import store
from biapy_runner.models.backends import BackendUnavailable, choice, convert
from biapy_runner.models.model import load_model
from bmz_factory import make_model_package
from model_sources import PIXEL_FOREGROUND

# ----------------------------------------------------------------------------- pick and probe


def _trials(**seconds: float | None) -> list[choice.Trial]:
    return [
        choice.Trial(n, s, 0.0, refused=None if s is not None else "not installed")
        for n, s in seconds.items()
    ]


def test_pick_fastest_accepted() -> None:
    trials = _trials(torch=1.0, torchscript=0.9, onnxruntime=None, openvino=0.3)
    assert choice.pick(trials, "torch").name == "openvino"


def test_pick_keeps_reference_within_margin() -> None:
    trials = _trials(torch=1.0, torchscript=0.98, openvino=0.99)
    assert choice.pick(trials, "torch").name == "torch"


def test_pick_ignores_refused_even_if_fastest() -> None:
    trials = _trials(torch=1.0, openvino=0.5)
    trials[1].refused = "differs from torch by 0.01 > 0.0001"
    assert choice.pick(trials, "torch").name == "torch"


def _fake_measure(seconds: dict[str, float]):
    """A measure that runs the forward once and reports the given time for its name."""

    def measure(forward, x):
        out = forward(x)
        return out, seconds[forward.name], 1000

    return measure


class _Fake:
    """A named forward adding ``shift`` to its input; counts how often it is built."""

    built: dict[str, int] = {}

    def __init__(self, name: str, shift: float = 0.0) -> None:
        self.name, self.shift = name, shift

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift

    @classmethod
    def builder(cls, name: str, shift: float = 0.0):
        def build():
            cls.built[name] = cls.built.get(name, 0) + 1
            return cls(name, shift)

        return build


def _unavailable():
    raise BackendUnavailable("needs openvino, which is not installed (pip install openvino)")


def test_probe_refuses_a_backend_that_differs(caplog: pytest.LogCaptureFixture, capsys) -> None:
    builders = {
        "torch": _Fake.builder("torch"),
        "torchscript": _Fake.builder("torchscript", 1e-5),
        "onnxruntime": _Fake.builder("onnxruntime", 3e-4),  # wrong: faster but off by 3e-4
        "openvino": _unavailable,
    }
    timings = {"torch": 1.0, "torchscript": 0.8, "onnxruntime": 0.1}
    picked = choice.choose(
        "auto", builders, "torch", torch.zeros(1, 1, 4, 4), lambda y: y.numpy(),
        store=choice.ChoiceStore(None), key="k", name="fake", measure=_fake_measure(timings),
    )
    assert picked.name == "torchscript"
    assert picked.speedup == pytest.approx(1.0 / 0.8)
    err = capsys.readouterr().err
    assert "backend onnxruntime not used: differs from torch by 0.0003 > 0.0001" in err
    assert "backend openvino not used: needs openvino, which is not installed" in err
    assert "backend torchscript, 1.25x the speed of torch" in err


def test_tolerance_scales_with_large_outputs() -> None:
    assert choice.tolerance(np.array([0.2, 1.0])) == pytest.approx(1e-4)
    assert choice.tolerance(np.array([-500.0, 20.0])) == pytest.approx(5e-2)
    assert choice.max_delta(np.zeros(3), np.zeros(4)) == float("inf")


def test_choice_is_remembered_and_reused(tmp_path: Path) -> None:
    _Fake.built = {}
    builders = {"torch": _Fake.builder("torch"), "openvino": _Fake.builder("openvino")}
    memory = choice.ChoiceStore(tmp_path)
    kwargs = dict(store=memory, key="cpu|tile=(1, 1, 4, 4)", name="fake")
    x = torch.zeros(1, 1, 4, 4)
    first = choice.choose(
        "auto", builders, "torch", x, lambda y: y.numpy(),
        measure=_fake_measure({"torch": 1.0, "openvino": 0.25}), **kwargs,
    )
    assert (first.name, first.speedup, first.peak_bytes) == ("openvino", 4.0, 1000)
    saved = json.loads((tmp_path / "backends.json").read_text())
    assert saved["cpu|tile=(1, 1, 4, 4)"]["backend"] == "openvino"
    assert saved["cpu|tile=(1, 1, 4, 4)"]["seconds"] == {"torch": 1.0, "openvino": 0.25}

    def no_probe(forward, x):
        raise AssertionError("the remembered choice must not be probed again")

    again = choice.choose("auto", builders, "torch", x, lambda y: y.numpy(), measure=no_probe,
                          **kwargs)
    assert (again.name, again.speedup, again.peak_bytes) == ("openvino", 4.0, 1000)
    assert _Fake.built == {"torch": 1, "openvino": 2}


def test_forced_backend_missing_falls_back(capsys) -> None:
    builders = {"torch": _Fake.builder("torch"), "openvino": _unavailable}
    picked = choice.choose(
        "openvino", builders, "torch", torch.zeros(1, 1, 2, 2), lambda y: y.numpy(),
        store=choice.ChoiceStore(None), key="k", name="fake",
        measure=_fake_measure({"torch": 1.0}),
    )
    assert picked.name == "torch"
    assert "backend openvino not used: needs openvino" in capsys.readouterr().err


def test_cli_backend_names_match() -> None:
    assert cli.BACKEND_CHOICES == choice.CHOICES


# ----------------------------------------------------------------------------- real conversions


class _SmallNet3D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv3d(1, 6, 3, padding=1)
        self.b = torch.nn.ConvTranspose3d(6, 4, 2, stride=2)
        self.c = torch.nn.Conv3d(4, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.max_pool3d(torch.relu(self.a(x)), 2)
        return self.c(torch.relu(self.b(y)))


@pytest.fixture(scope="module")
def net_and_tile() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return _SmallNet3D().eval(), torch.randn(1, 1, 8, 16, 16)


def _max_delta(forward, net, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((forward(x) - net(x)).abs().max())


def test_channels_last_and_torchscript_match_eager(net_and_tile) -> None:
    net, x = net_and_tile
    assert _max_delta(convert.channels_last(net, x), net, x) <= 1e-5
    assert _max_delta(convert.torchscript(net, x), net, x) <= 1e-5
    with pytest.raises(BackendUnavailable, match="4D or 5D"):
        convert.channels_last(net, torch.zeros(1, 1, 8))


@pytest.fixture(scope="module")
def exported(net_and_tile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    net, x = net_and_tile
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return convert.export_onnx(net, x, path, out_rank=5)


def test_onnx_export_runs_in_onnxruntime(net_and_tile, exported: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from biapy_runner.models.backends import onnx

    net, x = net_and_tile
    forward = onnx.session(exported, torch.device("cpu"), threads=1)
    assert _max_delta(forward, net, x) <= 1e-4
    bigger = torch.randn(3, 1, 16, 8, 24)  # batch and spatial axes are dynamic
    assert _max_delta(forward, net, bigger) <= 1e-4


def test_onnx_export_runs_in_openvino(net_and_tile, exported: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="openvino cannot be imported here")
    from biapy_runner.models.backends import openvino

    net, x = net_and_tile
    forward = openvino.compile_onnx(exported, torch.device("cpu"), 1, tmp_path / "blobs")
    assert _max_delta(forward, net, x) <= 1e-4
    assert _max_delta(forward, net, torch.randn(2, 1, 8, 16, 16)) <= 1e-4
    with pytest.raises(BackendUnavailable, match="CPU only"):
        openvino.compile_onnx(exported, torch.device("cuda"), 1)


# ----------------------------------------------------------------------------- through load_model


@pytest.fixture(scope="module")
def conv_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return make_model_package(
        tmp_path_factory.mktemp("conv"), architecture_source=PIXEL_FOREGROUND,
        callable_name="PixelForeground", kwargs={}, size=(16, 8),
        postprocessing=[{"id": "sigmoid"}], name="backend conv",
    )


def test_load_model_chooses_and_remembers(conv_zip: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    model = load_model(conv_zip, device="cpu", cache_dir=cache, threads=1)
    assert model.backend is None
    tile = model.preprocess(np.random.default_rng(0).random((1, 24, 32), dtype=np.float32))
    chosen = model.select_backend(tile)
    assert chosen.name in choice.BACKENDS and model.backend == chosen.name
    (remembered,) = cache.glob("local/*/backends.json")
    record = next(iter(json.loads(remembered.read_text()).values()))
    assert record["backend"] == chosen.name and record["seconds"]["torch"] > 0
    assert "torch-channels-last" in record["seconds"]
    out = model.forward(torch.from_numpy(tile)[None])
    expected = model.reference(torch.from_numpy(tile)[None]).detach()
    assert float((out - expected).abs().max()) <= 1e-4
    capsys.readouterr()
    again = load_model(conv_zip, device="cpu", cache_dir=cache, threads=1)
    assert again._source.forward is None  # a choice is remembered: weights loaded when needed
    assert again.select_backend(tile).name == chosen.name
    log = capsys.readouterr().err
    assert "(remembered" in log and "loaded only if the remembered backend needs them" in log
    torch_based = chosen.name in ("torch", "torch-channels-last", "torchscript")
    assert (again._source.forward is not None) == torch_based
    np.testing.assert_array_equal(again.forward(torch.from_numpy(tile)[None]), out)


def test_forced_torch_skips_the_probe(conv_zip: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    model = load_model(conv_zip, device="cpu", cache_dir=cache, backend="torch")
    assert model.select_backend(np.zeros((1, 16, 16), np.float32)).name == "torch"
    assert model.choice.forward is model.reference
    assert not list(cache.glob("local/*/backends.json"))


def test_forced_backend_check_is_remembered(conv_zip: Path, tmp_path: Path, capsys) -> None:
    """--backend torch-channels-last: checked against eager once, then trusted on later runs."""
    cache = tmp_path / "cache"
    tile = np.random.default_rng(1).random((1, 16, 16), dtype=np.float32)
    logs = []
    for _ in range(2):
        model = load_model(conv_zip, device="cpu", cache_dir=cache, backend="torch-channels-last")
        assert model.select_backend(tile).name == "torch-channels-last"
        logs.append(capsys.readouterr().err)
    assert "probe on one tile" in logs[0] and "(remembered" not in logs[0]
    assert "(remembered" in logs[1] and "probe on one tile" not in logs[1]
    (remembered,) = cache.glob("local/*/backends.json")
    (key,) = json.loads(remembered.read_text())
    assert key.endswith("|forced=torch-channels-last")


def test_cached_package_is_validated_once(
    conv_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from biapy_runner.models import description
    from biapy_runner.models import model as model_module

    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / "my-model__0123456789abcdef.zip"
    cached.write_bytes(conv_zip.read_bytes())
    checks: list[bool] = []
    real = description.load_description

    def spy(src, shown, *, io_checks=True):
        checks.append(io_checks)
        return real(src, shown, io_checks=io_checks)

    monkeypatch.setattr(model_module, "load_description", spy)
    monkeypatch.setattr(model_module, "resolve_model", lambda source, cache_dir: cached)
    models = [load_model("my-model", device="cpu", cache_dir=cache, backend="torch")
              for _ in range(2)]
    assert checks == [True]  # the second run reads the kept digest: no bioimageio at all
    assert models[1].digest == models[0].digest and models[1].name == "backend conv"
    assert store.is_verified(cached)
    folder = store.derived_folder(cached, cache)
    assert folder == cache / "my-model__0123456789abcdef.derived"
    assert store.read_digest(cached, folder) == models[0].digest
    with zipfile.ZipFile(conv_zip) as source, zipfile.ZipFile(cached, "w") as changed:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith((".yaml", ".yml")):
                data = data.replace(b"name: backend conv", b"name: backend cone")
            changed.writestr(name, data)
    assert not store.is_verified(cached)  # another rdf: validated again
    assert store.read_digest(cached, folder) is None
    model = load_model("my-model", device="cpu", cache_dir=cache, backend="torch")
    assert checks == [True, True] and model.name == "backend cone"


def test_kept_digest_follows_the_package_content(conv_zip: Path, tmp_path: Path) -> None:
    """Same rdf but other bytes (a weight file replaced in place): the digest is made again."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / "my-model__0123456789abcdef.zip"
    cached.write_bytes(conv_zip.read_bytes())
    folder = store.derived_folder(cached, cache)
    model = load_model(cached, device="cpu", cache_dir=cache, backend="torch")
    assert store.read_digest(cached, folder) == model.digest
    with zipfile.ZipFile(conv_zip) as source, zipfile.ZipFile(cached, "w") as changed:
        for name in source.namelist():
            changed.writestr(name, source.read(name) + (b"\n" if name.endswith(".py") else b""))
    assert store.is_verified(cached)  # the rdf is the same ...
    assert store.read_digest(cached, folder) is None  # ... but the package is not
    (folder / store.DIGEST_NAME).write_text("{not json")
    assert store.read_digest(cached, folder) is None


def test_warm_load_imports_no_bioimageio(conv_zip: Path, tmp_path: Path) -> None:
    """A cached package with its digest loads, preprocesses and runs without bioimageio."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / "my-model__0123456789abcdef.zip"
    cached.write_bytes(conv_zip.read_bytes())
    script = (
        "import sys, numpy as np, torch\n"
        "from biapy_runner.models.model import load_model\n"
        f"m = load_model({str(cached)!r}, device='cpu', cache_dir={str(cache)!r})\n"
        "x = m.preprocess(np.arange(16 * 16, dtype=np.float32).reshape(1, 16, 16) % 7)\n"
        "y = m.forward(torch.from_numpy(x[None]))\n"
        "p = m.postprocess(y[0].numpy())\n"
        "print(p.shape, float(p.sum()), any(k.startswith('bioimageio') for k in sys.modules))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=False, timeout=300)
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    cold, warm = (r.stdout.split() for r in runs)
    assert cold[-1] == "True" and warm[-1] == "False"
    assert cold[:-1] == warm[:-1]  # same shape and values


# ----------------------------------------------------------------------------- batching


def test_auto_batch_size_from_free_memory() -> None:
    mib = 2**20
    assert auto_batch_size(100 * mib, 0, 1000 * mib, 27, "cpu") == 4  # capped, even: 7 x 4
    assert auto_batch_size(100 * mib, 0, 500 * mib, 27, "cpu") == 2  # 250 MiB for tiles
    assert auto_batch_size(100 * mib, 0, 100 * mib, 27, "cpu") == 1
    assert auto_batch_size(10 * mib, 0, 10_000 * mib, 40, "cuda") == 20  # 2 even batches of 20
    assert auto_batch_size(0, mib, 64 * mib, 27, "cpu") == 1  # unmeasured: 32 x in+out per tile
    assert auto_batch_size(100 * mib, 0, 10**12, 3, "cpu") == 3
    assert CAPS["cpu"] < CAPS["cuda"]


def _pixel_net(c_in: int, c_out: int) -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv3d(c_in, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, c_out, 1)
    ).eval()


def test_batched_pipelined_prediction_equals_serial() -> None:
    image = np.random.default_rng(3).random((2, 13, 40, 37), dtype=np.float32)
    net = _pixel_net(2, 3)
    plan = TilePlan(patch=(8, 16, 16), padding=(1, 2, 2), overlap=(0.5, 0.25, 0.0), scale=(1,) * 3)
    serial = predict_tiled(image, net, plan, batch_size=1)
    batched = predict_tiled(image, net, plan, batch_size=4)
    on_torch = predict_tiled(image, net, plan, batch_size=3, blend_on=torch.device("cpu"))
    assert serial.shape == (3, 13, 40, 37)
    np.testing.assert_allclose(batched, serial, atol=1e-6, rtol=0)
    np.testing.assert_allclose(on_torch, serial, atol=1e-6, rtol=0)


def test_identity_forward_does_not_alias_the_batch_buffer() -> None:
    image = np.random.default_rng(4).random((1, 20, 30), dtype=np.float32)
    plan = TilePlan(patch=(8, 8), padding=(1, 1), overlap=(0.5, 0.5), scale=(1, 1))
    np.testing.assert_allclose(predict_tiled(image, lambda b: b, plan, batch_size=2), image,
                               atol=1e-6)


def test_host_buffers_alternate_on_cpu() -> None:
    buffers = _HostBuffers((2, 1, 4, 4), torch.device("cpu"))
    first, second, third = buffers.next(), buffers.next(), buffers.next()
    assert first.data_ptr() != second.data_ptr() and first.data_ptr() == third.data_ptr()
    assert buffers.to_device(first) is first and buffers.events == [None, None]


def test_half_precision_outputs_blend_in_float32() -> None:
    """What AMP gives on a GPU (float16 outputs), blended on the device path (here the CPU)."""
    from biapy_runner.inference.tiling import _autocast

    assert isinstance(_autocast(torch.device("cpu"), True), contextlib.nullcontext)
    image = np.random.default_rng(5).random((2, 10, 24, 24), dtype=np.float32)
    net = _pixel_net(2, 3)
    plan = TilePlan(patch=(6, 12, 12), padding=(1, 2, 2), overlap=(0.5, 0.5, 0.5), scale=(1,) * 3)
    full = predict_tiled(image, net, plan, batch_size=2)
    for blend_on in (None, torch.device("cpu")):
        half = predict_tiled(image, lambda b: net(b).half(), plan, batch_size=2, blend_on=blend_on)
        assert half.dtype == np.float32
        np.testing.assert_allclose(half, full, atol=2e-3)


def test_probe_stops_after_a_clear_win(capsys) -> None:
    _Fake.built = {}
    builders = {name: _Fake.builder(name) for name in choice.BACKENDS}
    picked = choice.choose(
        "auto", builders, "torch", torch.zeros(1, 1, 2, 2), lambda y: y.numpy(),
        store=choice.ChoiceStore(None), key="k", name="fake",
        measure=_fake_measure({"torch": 1.0, "openvino": 0.4, "onnxruntime": 0.3}),
    )
    assert picked.name == "openvino"  # probed first on CPU, 2.5x: the others are not built
    assert _Fake.built == {"torch": 1, "openvino": 1}
    assert "not probed after a clear win: torch-channels-last, torchscript, onnxruntime" in (
        capsys.readouterr().err
    )

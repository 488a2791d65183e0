"""Model stage: resolving (paths, mirror on loopback, cache, errors), loading and running."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from biapy_runner.errors import InputError, ModelError
from biapy_runner.models import model as models
from biapy_runner.models.model import load_model
from biapy_runner.models.sources import classify_source, default_cache_dir, resolve_model
from bmz_factory import make_model_package, serve_directory

CONV = """
import torch


class Net(torch.nn.Module):
    def __init__(self, in_channels=1, out_channels=1, ndim=2):
        super().__init__()
        conv = torch.nn.Conv3d if ndim == 3 else torch.nn.Conv2d
        self.conv = conv(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
"""

UPSAMPLE = """
import torch


class Up(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.conv(x), scale_factor=2)
"""

POOL = """
import torch


class Pool(torch.nn.Module):
    def __init__(self, in_channels=1, classes=3):
        super().__init__()
        self.fc = torch.nn.Linear(in_channels, classes)

    def forward(self, x):
        return self.fc(x.flatten(2).mean(-1))
"""

MISSING = """
import some_missing_pkg


class Net(some_missing_pkg.Module):
    pass
"""


@pytest.fixture(scope="module")
def conv_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-in, 3-out channel conv model with min/step sizes, halo and a sigmoid."""
    torch.manual_seed(0)
    return make_model_package(
        tmp_path_factory.mktemp("conv"),
        architecture_source=CONV,
        callable_name="Net",
        kwargs={"in_channels": 2, "out_channels": 3},
        in_channels=2,
        out_channels=3,
        size=(16, 8),
        halo=2,
        postprocessing=[{"id": "sigmoid"}],
        channel_names=["a", "b", "c"],
        name="conv model",
    )


@pytest.fixture(scope="module")
def conv_model(conv_zip: Path) -> models.BmzModel:
    return load_model(conv_zip, device="cpu")


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture()
def mirror(tmp_path: Path, conv_zip: Path, monkeypatch: pytest.MonkeyPatch):
    """A BioImage.IO mirror on 127.0.0.1 holding ``my-model``; yields its base URL."""
    from bioimageio.spec._internal._settings import settings

    root = tmp_path / "mirror"
    files = root / "my-model" / "files"
    files.mkdir(parents=True)
    with zipfile.ZipFile(conv_zip) as archive:
        archive.extractall(files)
    shutil.copy(conv_zip, root / "package.zip")
    with serve_directory(root) as base:
        entry = {"source": base + "/my-model/files/rdf.yaml"}
        (root / "id_map.json").write_text(json.dumps({"10.5281/zenodo.1234": entry}))
        monkeypatch.setattr(
            settings, "collection_http_pattern", base + "/{bioimageio_id}/files/rdf.yaml"
        )
        monkeypatch.setattr(settings, "id_map", base + "/id_map.json")
        yield base


def _roundtrip(model: models.BmzModel) -> np.ndarray:
    x, _ = model.test_tensors()
    out = model.forward(torch.from_numpy(model.preprocess(x))[None])
    return model.postprocess(out[0].numpy())


# ----------------------------------------------------------------------------- classify_source


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("affable-shark", "id"),
        ("venomous-swan", "id"),
        ("affable-shark/1", "id"),
        ("ilastik/covid_if_training_data/1", "id"),
        ("10.5281/zenodo.5764892", "doi"),
        ("doi:10.5281/zenodo.5764892", "doi"),
        ("https://doi.org/10.5281/zenodo.5764892", "doi"),
        ("https://example.org/model.zip", "url"),
        ("http://127.0.0.1:8000/x/rdf.yaml", "url"),
    ],
)
def test_classify_source(source: str, kind: str) -> None:
    assert classify_source(source) == kind


def test_classify_source_existing_path(conv_zip: Path) -> None:
    assert classify_source(str(conv_zip)) == "path"
    assert classify_source(str(conv_zip.parent)) == "path"


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("", "empty"),
        ("file:///tmp/model.zip", "file://"),
        ("ftp://host/model.zip", "http(s)"),
        ("/no/such/model.zip", "does not exist"),
        ("missing_model.zip", "does not exist"),
        ("not an id!", "neither"),
    ],
)
def test_classify_source_rejects(source: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        classify_source(source)
    assert words in str(info.value)
    assert info.value.exit_code == 2


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BIAPY_RUNNER_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BIAPY_RUNNER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "biapy-runner" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "biapy-runner" / "models"


# ----------------------------------------------------------------------------- local sources


def test_local_zip_used_in_place(conv_zip: Path, cache: Path) -> None:
    before = conv_zip.read_bytes()
    assert resolve_model(str(conv_zip), cache) == conv_zip.resolve()
    assert not cache.exists()
    assert conv_zip.read_bytes() == before


def test_conv_model_attributes(conv_model: models.BmzModel) -> None:
    m = conv_model
    assert m.name == "conv model"
    assert m.weight_format == "pytorch_state_dict"
    assert m.device == torch.device("cpu")
    assert m.spatial_axes == ("y", "x")
    assert (m.in_channels, m.out_channels) == (2, 3)
    assert m.out_channel_names == ("a", "b", "c")
    assert (m.min_shape, m.step, m.halo, m.scale) == ((16, 16), (8, 8), (2, 2), (1.0, 1.0))


def test_conv_model_reproduces_test_output(conv_model: models.BmzModel) -> None:
    x, y = conv_model.test_tensors()
    assert x.shape == (2, 16, 16) and y.shape == (3, 16, 16)
    result = _roundtrip(conv_model)
    np.testing.assert_allclose(result, y, atol=1e-5)
    assert result.min() > 0.0 and result.max() < 1.0  # the sigmoid was applied


def test_preprocess_uses_whole_image_statistics(conv_model: models.BmzModel) -> None:
    rng = np.random.default_rng(3)
    arr = rng.normal(5.0, 3.0, size=(2, 40, 24)).astype(np.float32)
    out = conv_model.preprocess(arr)
    assert out.dtype == np.float32 and out.shape == (2, 40, 24)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-3)


def test_forward_batch_and_postprocess(conv_model: models.BmzModel) -> None:
    batch = torch.zeros((3, 2, 24, 32))
    out = conv_model.forward(batch)
    assert out.shape == (3, 3, 24, 32)
    bias = conv_model.reference.conv.bias.detach().numpy()
    np.testing.assert_allclose(out[1, :, 5, 5].numpy(), bias, atol=1e-6)
    post = conv_model.postprocess(out[0].numpy())
    np.testing.assert_allclose(post[:, 5, 5], 1 / (1 + np.exp(-bias)), atol=1e-6)


def test_channel_count_mismatch(conv_model: models.BmzModel) -> None:
    with pytest.raises(InputError) as info:
        conv_model.preprocess(np.zeros((1, 16, 16), np.float32))
    assert "expects 2 input channel(s), but the image has 1" in str(info.value)


def test_valid_size_parameterized(conv_model: models.BmzModel) -> None:
    assert conv_model.valid_size((1, 16)) == (16, 16)
    assert conv_model.valid_size((17, 24)) == (24, 24)
    assert conv_model.valid_size((100, 33)) == (104, 40)


def test_folder_and_rdf_path(conv_zip: Path, tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(conv_zip) as archive:
        archive.extractall(folder)
    for source in (folder, folder / "rdf.yaml"):
        model = load_model(str(source), device="cpu", cache_dir=cache)
        assert model.out_channel_names == ("a", "b", "c")
        np.testing.assert_allclose(_roundtrip(model), model.test_tensors()[1], atol=1e-5)
    # local packages are used in place: the cache keeps only the backend choice, under local/
    assert not list(cache.glob("*.zip"))
    assert {p.name for p in cache.glob("local/*/*")} >= {"backends.json"}


def test_fixed_size_3d_and_upsampling(tmp_path: Path) -> None:
    fixed = make_model_package(
        tmp_path,
        architecture_source=CONV,
        callable_name="Net",
        kwargs={"ndim": 3},
        ndim=3,
        size=12,
        name="fixed 3d",
    )
    model = load_model(fixed, device="cpu")
    assert model.spatial_axes == ("z", "y", "x")
    assert (model.min_shape, model.step) == ((12, 12, 12), (0, 0, 0))
    assert model.valid_size((5, 12, 40)) == (12, 12, 12)
    up = make_model_package(
        tmp_path,
        architecture_source=UPSAMPLE,
        callable_name="Up",
        kwargs={},
        size=(8, 4),
        scale=2,
        name="upsampler",
    )
    model = load_model(up, device="cpu")
    assert model.scale == (2.0, 2.0)
    assert model.forward(torch.zeros((1, 1, 12, 8))).shape == (1, 1, 24, 16)
    np.testing.assert_allclose(_roundtrip(model), model.test_tensors()[1], atol=1e-5)


@pytest.mark.parametrize(("ndim", "batch_shape"), [(2, (3, 2, 24, 16)), (3, (2, 2, 8, 8, 12))])
def test_classifier_output_without_spatial_axes(
    tmp_path: Path, ndim: int, batch_shape: tuple[int, ...]
) -> None:
    """Batch + channel output (one score per class, softmax in the rdf): class scores."""
    torch.manual_seed(0)
    package = make_model_package(
        tmp_path,
        architecture_source=POOL,
        callable_name="Pool",
        kwargs={"in_channels": 2, "classes": 4},
        ndim=ndim,
        in_channels=2,
        out_channels=4,
        size=(8, 4),
        classifier=True,
        postprocessing=[{"id": "softmax"}],
        channel_names=["actin", "mito", "nucleus", "other"],
        name=f"pool classifier {ndim}d",
    )
    model = load_model(package, device="cpu")
    assert model.spatial_axes == ("z", "y", "x")[-ndim:] and model.out_spatial_axes == ()
    assert (model.out_channels, model.out_channel_names) == (
        4,
        ("actin", "mito", "nucleus", "other"),
    )
    assert (model.min_shape, model.step) == ((8,) * ndim, (4,) * ndim)
    assert model.halo == model.scale == model.offset == ()
    x, y = model.test_tensors()
    assert x.shape == (2,) + (8,) * ndim and y.shape == (4,)
    np.testing.assert_allclose(y.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(_roundtrip(model), y, atol=1e-5)
    logits = model.forward(torch.ones(batch_shape))
    assert logits.shape == (batch_shape[0], 4)
    fc = model.reference.fc
    expected = (fc.weight.sum(dim=1) + fc.bias).detach().numpy()
    np.testing.assert_allclose(logits[1].numpy(), expected, atol=1e-6)
    probs = model.postprocess(logits[0].numpy())
    np.testing.assert_allclose(probs, np.exp(expected) / np.exp(expected).sum(), atol=1e-6)


# ----------------------------------------------------------------------------- remote and cache


def test_id_through_mirror_then_cache_offline(
    mirror: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bioimageio.spec._internal._settings import settings

    first = resolve_model("my-model", cache)
    assert first.parent == cache and first.name.startswith("my-model__")
    assert first.suffix == ".zip"
    with zipfile.ZipFile(first) as archive:
        assert {"rdf.yaml", "weights.pt", "test_input.npy"} <= set(archive.namelist())
    # the server is gone: the cache must answer without any connection
    monkeypatch.setattr(settings, "collection_http_pattern", "http://127.0.0.1:9/{bioimageio_id}")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not touch the network")

    monkeypatch.setattr("httpx.stream", no_network)
    monkeypatch.setattr("httpx.get", no_network)
    assert resolve_model("my-model", cache) == first
    model = load_model("my-model", device="cpu", cache_dir=cache)
    assert model.out_channels == 3


def test_url_of_package(mirror: str, cache: Path) -> None:
    path = resolve_model(mirror + "/package.zip", cache)
    assert path.parent == cache and path.name.startswith("url-")
    assert resolve_model(mirror + "/package.zip", cache) == path
    assert load_model(str(path), device="cpu").name == "conv model"


def test_doi_through_id_map(mirror: str, cache: Path) -> None:
    path = resolve_model("doi:10.5281/zenodo.1234", cache)
    assert path.name.startswith("10.5281~zenodo.1234__")
    assert load_model(str(path), device="cpu").out_channel_names == ("a", "b", "c")
    with pytest.raises(ModelError, match="does not list it"):
        resolve_model("10.5281/zenodo.999", cache)


def test_unknown_id_names_http_404(mirror: str, cache: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("no-such-model", cache)
    message = str(info.value)
    assert "HTTP 404" in message and "no-such-model" in message
    assert info.value.exit_code == 3


def test_missing_url_names_http_404(mirror: str, cache: Path) -> None:
    with pytest.raises(ModelError, match="HTTP 404"):
        resolve_model(mirror + "/nothing.zip", cache)


def test_offline_gives_real_cause(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bioimageio.spec._internal._settings import settings

    with serve_directory(cache.parent) as base:
        closed = base  # the port is closed once the server stops
    monkeypatch.setattr(settings, "collection_http_pattern", closed + "/{bioimageio_id}/rdf.yaml")
    with pytest.raises(ModelError) as info:
        resolve_model("venomous-swan", cache)
    message = str(info.value)
    assert "ConnectError" in message and "offline" in message
    assert "BIOIMAGEIO_ID_MAP" not in message and "id map" not in message
    assert info.value.exit_code == 3
    with pytest.raises(ModelError, match="ConnectError"):
        resolve_model(closed + "/model.zip", cache)


# ----------------------------------------------------------------------------- broken packages


def _rewrite(package: Path, out: Path, name: str, extra: bytes) -> Path:
    with zipfile.ZipFile(package) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, data + extra if item.filename == name else data)
    return out


def test_sha256_mismatch_names_file(conv_zip: Path, tmp_path: Path) -> None:
    bad = _rewrite(conv_zip, tmp_path / "bad.zip", "weights.pt", b"corrupt")
    with pytest.raises(ModelError) as info:
        load_model(bad, device="cpu")
    assert "weights.pt" in str(info.value) and "sha256" in str(info.value)
    assert info.value.exit_code == 3


def test_not_a_model(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as archive:
        archive.writestr("hello.txt", "not a model")
    with pytest.raises(ModelError, match="junk.zip"):
        load_model(junk, device="cpu")


def test_missing_architecture_package(tmp_path: Path) -> None:
    package = make_model_package(
        tmp_path, architecture_source=MISSING, callable_name="Net", kwargs={}, name="needs pkg"
    )
    with pytest.raises(ModelError) as info:
        load_model(package, device="cpu")
    message = str(info.value)
    assert "some_missing_pkg" in message and "container" in message
    assert "pytorch_state_dict" in message


def test_weight_format_requests(conv_zip: Path) -> None:
    with pytest.raises(ModelError, match="no torchscript weights"):
        load_model(conv_zip, device="cpu", weight_format="torchscript")
    with pytest.raises(InputError, match="Unknown weight format"):
        load_model(conv_zip, device="cpu", weight_format="tensorflow")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(conv_zip: Path) -> None:
    with pytest.raises(InputError, match="no CUDA"):
        load_model(conv_zip, device="cuda")


# ----------------------------------------------------------------------------- real models


@pytest.mark.slow
@pytest.mark.parametrize("weight_format", [None, "onnx"])
def test_nuclei_model_reproduces_test_output(test_data: Path, weight_format: str | None) -> None:
    pytest.importorskip("onnxruntime") if weight_format else None
    model = load_model(
        test_data / "unet2d_nuclei_broad.zip", device="cpu", weight_format=weight_format
    )
    assert model.weight_format == (weight_format or "torchscript")
    assert (model.min_shape, model.step, model.halo) == ((512, 512), (0, 0), (32, 32))
    x, y = model.test_tensors()
    assert x.shape == y.shape == (1, 512, 512)
    np.testing.assert_allclose(_roundtrip(model), y, atol=1e-4)


SMOOTH_SOURCE = """import torch


class Smooth(torch.nn.Module):
    def __init__(self, channels=1, kernel_size=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x):
        return self.conv(x)
"""

RDF_04 = """format_version: 0.4.9
type: model
name: Fixed-shape smoothing
description: A 3x3 convolution, format 0.4 with its architecture as a source file and kwargs
authors: [{name: galaxy-biapy tests}]
cite: [{text: galaxy-biapy, url: "https://github.com/BiaPy-team/BiaPy"}]
documentation: README.md
license: MIT
tags: [segmentation]
timestamp: "2021-09-12T14:04:52.211533Z"
test_inputs: [test_input.npy]
test_outputs: [test_output.npy]
inputs:
  - {name: input, axes: &axes bcyx, data_type: float32, data_range: &range [-.inf, .inf],
     shape: &shape [1, 1, 64, 64],
     preprocessing: [{name: zero_mean_unit_variance, kwargs: {axes: cyx, mode: per_sample}}]}
outputs:
  - {name: output, axes: *axes, data_type: float32, data_range: *range, halo: [0, 0, 4, 4],
     shape: *shape}
weights:
  pytorch_state_dict:
    architecture: smooth.py:Smooth
    architecture_sha256: SOURCE_SHA256
    kwargs: {channels: 1, kernel_size: 3}
    source: weights.pt
    sha256: WEIGHTS_SHA256
"""


def _format_04_package(folder: Path) -> Path:
    """A format 0.4 package laid out as BiaPy exports them (and as the spec's own 0.4 example
    ``unet2d_fixed_shape``): pytorch_state_dict weights, architecture file, kwargs, halo."""
    folder.mkdir()
    (folder / "smooth.py").write_text(SMOOTH_SOURCE)
    (folder / "README.md").write_text("# Fixed-shape smoothing\n")
    namespace: dict = {}
    exec(compile(SMOOTH_SOURCE, "smooth.py", "exec"), namespace)  # noqa: S102
    torch.manual_seed(0)
    module = namespace["Smooth"](channels=1, kernel_size=3).eval()
    torch.save(module.state_dict(), folder / "weights.pt")
    x = np.random.default_rng(0).normal(5.0, 2.0, (1, 1, 64, 64)).astype(np.float32)
    normalised = (x - x.mean()) / (x.std() + 1e-6)
    with torch.no_grad():
        y = module(torch.from_numpy(normalised)).numpy()
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    rdf = folder / "rdf.yaml"
    text = RDF_04
    for name, marker in (("smooth.py", "SOURCE_SHA256"), ("weights.pt", "WEIGHTS_SHA256")):
        text = text.replace(marker, hashlib.sha256((folder / name).read_bytes()).hexdigest())
    rdf.write_text(text)
    return rdf


@pytest.mark.slow
def test_format_04_model_with_architecture_file(tmp_path: Path) -> None:
    model = load_model(_format_04_package(tmp_path / "smooth"), device="cpu")
    assert model.weight_format == "pytorch_state_dict"
    assert (model.min_shape, model.step, model.halo, model.scale) == (
        (64, 64),
        (0, 0),
        (4, 4),
        (1.0, 1.0),
    )
    np.testing.assert_allclose(_roundtrip(model), model.test_tensors()[1], atol=1e-4)

"""``pytorch_state_dict`` weights: the package's architecture code with its state dict (torch).

As bioimageio.core loads them: the architecture is imported from the package's source file
(as a module named after the file and its sha256, written to a temporary folder) or from an
installed module, called with the rdf's kwargs, and the state dict is loaded with
``weights_only=True`` (``strict`` as the rdf says).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from biapy_runner.log import warn
from biapy_runner.models.backends import Forward, Weights

_FOLDERS: list[tempfile.TemporaryDirectory] = []  # kept until exit: the modules live there


def load(weights: Weights, device: torch.device, threads: int | None) -> Forward:
    """Build the architecture the rdf names, load its state dict on ``device``, in eval mode."""
    entry = weights.entry
    build = getattr(_architecture_module(weights), str(entry["callable"]))
    module = build(**dict(entry.get("kwargs") or {}))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"Calling {entry['callable']} did not return a torch.nn.Module.")
    module = module.to(device)
    state = torch.load(io.BytesIO(weights.data()), map_location=device, weights_only=True)
    incompatible = module.load_state_dict(state, strict=bool(entry.get("strict", True)))
    for kind in ("missing_keys", "unexpected_keys"):
        if getattr(incompatible, kind, None):
            warn(f"state dict of {entry['callable']}: {kind.replace('_', ' ')} "
                 f"{getattr(incompatible, kind)}")
    return module.eval()


def _architecture_module(weights: Weights) -> Any:
    """The module holding the architecture: installed, or the package's source file."""
    entry = weights.entry
    if entry.get("import_from"):
        return importlib.import_module(str(entry["import_from"]))
    source = str(entry["architecture"])
    code = weights.read(source)
    expected = entry.get("architecture_sha256")
    if expected and expected != hashlib.sha256(code).hexdigest():
        raise ValueError(f"the architecture file {source} does not match its sha256 {expected}")
    return import_architecture(code, source)


def import_architecture(code: bytes, source: str) -> ModuleType:
    """The module of an architecture source file, imported as bioimageio.core imports it.

    Parameters
    ----------
    code : the file's bytes (Python source, or a zipped package)
    source : the file's name in the package, which names the module

    Returns
    -------
    The module ``<file stem>_<sha256>`` (``custom_module_<sha256>`` when that is no
    identifier), written to a temporary folder kept until exit and imported once per process;
    an :class:`ImportError` when it cannot be imported.
    """
    sha = hashlib.sha256(code).hexdigest()
    name = f"{Path(source).name.split('.')[0]}_{sha}"
    if not name.isidentifier():
        name = f"custom_module_{sha}"
    return sys.modules.get(name) or _import(name, code)


def _import(name: str, code: bytes) -> ModuleType:
    folder = tempfile.TemporaryDirectory(prefix="biapy-runner-arch-", ignore_cleanup_errors=True)
    _FOLDERS.append(folder)
    path = Path(folder.name) / name
    if code.startswith(b"PK\x03\x04"):  # a zipped package, unpacked as bioimageio.core does
        with zipfile.ZipFile(io.BytesIO(code)) as archive:
            archive.extractall(path)
    else:
        path = path.with_suffix(".py")
        path.write_bytes(code)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the architecture file as {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module

"""BiaPy's ``.pth`` checkpoints: writing them in BiaPy 3.7.1's layout and reading them back.

The layout (BiaPy's ``save_model``) is one ``torch.save``'d dict: ``model`` (the state dict),
``optimizer`` (a list of optimizer state dicts), ``epoch``, ``cfg`` (the configuration as a
plain nested dict), ``biapy_version`` and ``model_build_kwargs`` (the network's constructor
arguments); the runner adds its own items beside them (``extra``: e.g. the LR scheduler or the
AMP scaler), which BiaPy ignores. Reading follows BiaPy's ``load_model_checkpoint``: the state
dict is ``model`` (else ``model_state_dict``, ``state_dict``, else the whole dict), the
checkpoint's MODEL.* and DATA.NORMALIZATION replace the run's as
MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT says (``model_arch``, ``norm``), and the weights load with
``strict=True`` (MODEL.SKIP_UNMATCHED_LAYERS: only the matching ones).
"""

from __future__ import annotations

import _compat_pickle
import functools
import os
import pickle
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from biapy_runner import __version__
from biapy_runner.config.convert import convert
from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError, ModelError, real_cause
from biapy_runner.io.atomic import replacing
from biapy_runner.log import info, warn

#: the BiaPy release whose checkpoint layout is written
BIAPY_LAYOUT_VERSION = "3.7.1"
#: MODEL.* keys BiaPy keeps from the run's configuration when it takes MODEL from a checkpoint
_KEPT_MODEL_KEYS = ("MODEL.BMZ", "MODEL.OUT_CHECKPOINT_FORMAT", "MODEL.SKIP_UNMATCHED_LAYERS",
                    "MODEL.LOAD_CHECKPOINT", "MODEL.SOURCE", "MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT",
                    "MODEL.LOAD_CHECKPOINT_EPOCH")
_STATE_KEYS = ("model", "model_state_dict", "state_dict")


def save_checkpoint(
    path: Path,
    model: Any,
    cfg: Config,
    epoch: int | str,
    optimizer: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` in BiaPy's checkpoint layout (atomically: a temporary file renamed).

    Parameters
    ----------
    path : Path
        The ``.pth`` file to write.
    model : torch.nn.Module
        The network (its ``state_dict`` is stored under ``model``).
    cfg : Config
        The configuration it was built and trained with (stored under ``cfg``).
    epoch : int or str
        The epoch (BiaPy stores the number; ``"best"`` checkpoints keep the epoch too).
    optimizer : torch.optim.Optimizer or list of them, optional
        Stored as a list of state dicts (BiaPy's layout); empty list when None.
    extra : mapping, optional
        More items stored beside BiaPy's (they must not use BiaPy's names).

    Returns
    -------
    Path
        ``path``.
    """
    import torch

    from biapy_runner.models.architectures import architecture_source

    optimizers = [] if optimizer is None else list(
        optimizer if isinstance(optimizer, Sequence) else [optimizer]
    )
    try:
        kwargs: dict[str, Any] | None = architecture_source(cfg)[2]
    except ConfigError:
        kwargs = None
    content: dict[str, Any] = {
        "model_build_kwargs": kwargs,
        "model": model.state_dict(),
        "optimizer": [opt.state_dict() for opt in optimizers],
        "epoch": epoch,
        "cfg": cfg.as_dict(),
        "biapy_version": BIAPY_LAYOUT_VERSION,
        "runner_version": __version__,
    }
    clash = sorted(set(extra or {}) & set(content))
    if clash:
        raise ValueError(f"extra checkpoint items {clash} would replace BiaPy's own items")
    content.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as partial:
        torch.save(content, partial)
    return path


def checkpoint_file(cfg: Config) -> Path:
    """The checkpoint a run with MODEL.SOURCE: biapy loads: PATHS.CHECKPOINT_FILE, looked for
    as BiaPy does (its extension replaced by ``.pth``, then ``.safetensors``; as given when
    neither exists).

    Raises
    ------
    ConfigError
        MODEL.LOAD_CHECKPOINT is off or PATHS.CHECKPOINT_FILE is empty (the runner has no job
        name to find BiaPy's ``<job>-checkpoint-best.pth`` by).
    """
    name = str(cfg.get("PATHS.CHECKPOINT_FILE") or "").strip()
    if not cfg.get("MODEL.LOAD_CHECKPOINT") or not name:
        raise ConfigError(
            "MODEL.SOURCE is 'biapy' without a checkpoint to run: set MODEL.LOAD_CHECKPOINT: "
            "true and PATHS.CHECKPOINT_FILE to the BiaPy .pth file (e.g. --set "
            "MODEL.LOAD_CHECKPOINT=true --set PATHS.CHECKPOINT_FILE=model.pth), or run a "
            "BioImage.IO model with --model."
        )
    base = os.path.splitext(name)[0]
    found = [Path(base + ext) for ext in (".pth", ".safetensors") if Path(base + ext).is_file()]
    return found[0] if found else Path(name)


class _CfgNode(dict):
    """Stands for yacs' ``CfgNode`` (a dict) in the checkpoints of BiaPy before 3.5.1."""


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles only what torch's ``weights_only`` loader allows, plus yacs' ``CfgNode`` (read
    as a dict) and ``functools.partial``, as BiaPy's own loader allows: older BiaPy checkpoints
    hold their configuration as a ``CfgNode``, which ``weights_only`` cannot fill."""

    def find_class(self, module: str, name: str) -> Any:
        from torch._weights_only_unpickler import _get_allowed_globals

        # torch.save writes protocol 2, with Python 2's module names (__builtin__.set)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) == ("yacs.config", "CfgNode"):
            return _CfgNode
        if (module, name) == ("functools", "partial"):
            return functools.partial
        allowed = _get_allowed_globals()
        if f"{module}.{name}" in allowed:
            return allowed[f"{module}.{name}"]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")


_RESTRICTED_PICKLE = types.ModuleType("biapy_runner_checkpoint_pickle")
_RESTRICTED_PICKLE.Unpickler = _CheckpointUnpickler  # type: ignore[attr-defined]
_RESTRICTED_PICKLE.load = pickle.load  # type: ignore[attr-defined]  # legacy (non-zip) files


def _plain(value: Any) -> Any:
    if isinstance(value, _CfgNode):
        return {k: _plain(v) for k, v in value.items()}
    return value


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The content of a ``.pth`` checkpoint (tensors on the CPU).

    Read with ``torch.load(weights_only=True)``; a checkpoint of BiaPy before 3.5.1, whose
    configuration is a pickled yacs ``CfgNode``, is read again by an unpickler that allows the
    same classes plus ``CfgNode`` (as a dict), never arbitrary code.

    Raises
    ------
    ModelError
        Missing file, not a torch file, or content that is not a mapping.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"The checkpoint {path} (PATHS.CHECKPOINT_FILE) does not exist; give the path of a "
            "BiaPy .pth checkpoint."
        )
    if path.suffix == ".safetensors":
        raise ModelError(
            f"The checkpoint {path} is a safetensors file (MODEL.OUT_CHECKPOINT_FORMAT: "
            "safetensors), which holds the weights without BiaPy's configuration; this runner "
            "reads BiaPy's .pth checkpoints: give the .pth one."
        )
    try:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            content = torch.load(path, map_location="cpu", weights_only=False,
                                 pickle_module=_RESTRICTED_PICKLE)
            if isinstance(content, Mapping):
                content = {k: _plain(v) for k, v in content.items()}
    except Exception as err:  # torch raises many kinds on damaged or foreign files
        raise ModelError(
            f"Cannot read the checkpoint {path}: {real_cause(err)}. It must be a BiaPy .pth file "
            "written by torch.save (a file that is damaged, or that needs other code than "
            "torch's tensors and BiaPy's configuration to unpickle, is refused)."
        ) from err
    if not isinstance(content, Mapping):
        raise ModelError(
            f"The checkpoint {path} holds a {type(content).__name__}, not BiaPy's dict of "
            "'model', 'cfg', 'epoch'... Give a BiaPy .pth checkpoint."
        )
    return dict(content)


def state_dict_of(content: Mapping[str, Any]) -> Mapping[str, Any]:
    """The network's state dict inside a checkpoint (BiaPy's order of names)."""
    for key in _STATE_KEYS:
        if isinstance(content.get(key), Mapping):
            return content[key]
    return content


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _leaves(value, name + ".")
        else:
            out.append((name, value))
    return out


def adopt_checkpoint_config(cfg: Config, content: Mapping[str, Any]) -> list[str]:
    """Take the checkpoint's MODEL.* (``model_arch``) and DATA.NORMALIZATION (``norm``) into
    ``cfg`` as MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT asks (BiaPy's rule); older spellings are
    converted first. Returns the keys whose value changed."""
    saved = content.get("cfg")
    if not isinstance(saved, Mapping):
        return []
    tree, _ = convert(dict(saved))
    items = list(cfg.get("MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT"))
    prefixes = (["MODEL."] if "model_arch" in items else []) + (
        ["DATA.NORMALIZATION."] if "norm" in items else []
    )
    changed = []
    for key, value in _leaves(tree):
        if not any(key.startswith(p) for p in prefixes):
            continue
        if any(key == k or key.startswith(k + ".") for k in _KEPT_MODEL_KEYS):
            continue
        current = cfg.get(key, None)
        if current is None or _same(current, value):
            continue
        cfg.set(key, value, source="checkpoint")
        changed.append(key)
    return changed


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _mismatch(path: Path, model: Any, state: Mapping[str, Any]) -> str:
    """One sentence naming the first differences between the network and the state dict."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(ours[k].shape)}"
        for k in ours if k in state and hasattr(state[k], "shape")
        and tuple(state[k].shape) != tuple(ours[k].shape)
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
    return "; ".join(parts)


def load_weights_into(model: Any, state: Mapping[str, Any], path: Path, skip_unmatched: bool) -> None:
    """Load ``state`` into ``model`` (strict unless ``skip_unmatched``, BiaPy's
    MODEL.SKIP_UNMATCHED_LAYERS: then only names present in both with equal shapes).

    Raises
    ------
    ModelError
        Naming the file and the first missing, unexpected or differently shaped parameters.
    """
    if skip_unmatched:
        ours = model.state_dict()
        kept = {k: v for k, v in state.items()
                if k in ours and hasattr(v, "shape") and tuple(v.shape) == tuple(ours[k].shape)}
        if len(kept) < len(state):
            warn(f"checkpoint {path}: {len(state) - len(kept)} layer(s) skipped "
                 "(MODEL.SKIP_UNMATCHED_LAYERS)")
        model.load_state_dict(kept, strict=False)
        return
    problem = _mismatch(path, model, state)
    if problem:
        raise ModelError(
            f"The checkpoint {path} does not fit the network the configuration builds "
            f"(MODEL.ARCHITECTURE, MODEL.* options, PROBLEM.TYPE and its output channels, "
            f"DATA.PATCH_SIZE's channels): {problem}. Use the configuration the checkpoint was "
            "trained with (MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT with 'model_arch' takes MODEL.* "
            "from the checkpoint)."
        )
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as err:
        raise ModelError(f"Cannot load the weights of {path}: {real_cause(err)}.") from err


def load_checkpoint(path: Path, cfg: Config) -> tuple[Any, dict[str, Any]]:
    """Build the network of ``cfg`` (after taking the checkpoint's MODEL.* and normalisation
    as BiaPy does) and load the checkpoint's weights into it.

    Parameters
    ----------
    path : Path
        A BiaPy ``.pth`` checkpoint (or one written by :func:`save_checkpoint`).
    cfg : Config
        The run's configuration; updated in place with the checkpoint's MODEL.* and
        DATA.NORMALIZATION as MODEL.ITEMS_TO_LOAD_FROM_CHECKPOINT says.

    Returns
    -------
    (torch.nn.Module, dict)
        The network (in eval mode) and ``info``: ``path``, ``epoch``, ``biapy_version``,
        ``changed`` (configuration keys taken from the checkpoint), ``optimizer`` (the list of
        optimizer state dicts, possibly empty) and ``content`` (the whole checkpoint).

    Raises
    ------
    ModelError
        Unreadable file or weights that do not fit (exit 3).
    ConfigError
        The configuration (after the checkpoint's MODEL.*) cannot be built (exit 2).
    """
    from biapy_runner.config.support import check_model_implemented
    from biapy_runner.models.architectures import build_model

    path = Path(path)
    content = read_checkpoint(path)
    changed = adopt_checkpoint_config(cfg, content)
    if changed:
        info(f"checkpoint {path.name}: took {', '.join(changed)} from its configuration")
    check_model_implemented(cfg)
    model = build_model(cfg)
    load_weights_into(model, state_dict_of(content), path, bool(cfg.get("MODEL.SKIP_UNMATCHED_LAYERS")))
    model.eval()
    optimizer = content.get("optimizer") or []
    return model, {
        "path": path,
        "epoch": content.get("epoch"),
        "biapy_version": content.get("biapy_version"),
        "changed": changed,
        "optimizer": optimizer if isinstance(optimizer, list) else [optimizer],
        "content": content,
    }

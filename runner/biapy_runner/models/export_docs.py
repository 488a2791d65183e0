"""The cover image and the documentation (README.md) of an exported BioImage.IO package."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biapy_runner.config.load import Config
from biapy_runner.config.schema import INSTANCE_CHANNEL_MEANINGS
from biapy_runner.models.export_settings import WORKFLOW_TAGS, WORKFLOW_WORDS, ExportSettings

PANEL = 256  # pixels per side of each half of the cover (2:1, as BioImage.IO asks)


def _plane(arr: np.ndarray) -> np.ndarray:
    """The middle z slice of a ``(*spatial)`` array (2D as it is)."""
    return arr[arr.shape[0] // 2] if arr.ndim == 3 else arr


def _stretch(plane: np.ndarray) -> np.ndarray:
    """0..1 between the 1st and 99th percentiles."""
    low, high = np.percentile(plane, [1, 99])
    if high <= low:
        high = low + 1.0
    return np.clip((plane - low) / (high - low), 0.0, 1.0)


def _resized(plane: np.ndarray) -> np.ndarray:
    """``plane`` resampled (nearest) to PANEL x PANEL."""
    rows = np.arange(PANEL) * plane.shape[0] // PANEL
    cols = np.arange(PANEL) * plane.shape[1] // PANEL
    return plane[np.ix_(rows, cols)]


def _bars(scores: np.ndarray) -> np.ndarray:
    """One horizontal bar per class, as long as its score (a classifier's output)."""
    panel = np.zeros((PANEL, PANEL), np.float32)
    height = max(1, PANEL // max(1, len(scores)))
    for i, score in enumerate(np.clip(scores, 0, 1)):
        panel[i * height:(i + 1) * height - 1, : round(score * (PANEL - 1)) + 1] = 1.0
    return panel


def write_cover(path: Path, image: np.ndarray, output: np.ndarray) -> Path:
    """Write a 2:1 PNG: the image's first channel (grey) beside the output (first channel, or
    the arg max of several softmax-like channels, in colour; bars for a classifier).

    Parameters
    ----------
    path : the PNG to write
    image : the test input ``(C, *spatial)``
    output : the test output ``(C, *spatial)`` or ``(C,)`` for a classifier
    """
    from matplotlib import colormaps
    from matplotlib.image import imsave

    left = _resized(_stretch(_plane(np.asarray(image[0], np.float32))))
    out = np.asarray(output, np.float32)
    if out.ndim == 1:
        right = _bars(out)
    elif out.shape[0] > 1 and np.allclose(out.sum(axis=0), 1.0, atol=1e-3):
        right = _resized(_plane(out.argmax(axis=0)).astype(np.float32) / (out.shape[0] - 1))
    else:
        right = _resized(_stretch(_plane(out[0])))
    rgb_left = np.repeat(left[..., None], 3, axis=-1)
    rgb_right = colormaps["viridis"](right)[..., :3]
    imsave(path, np.concatenate([rgb_left, rgb_right], axis=1))
    return path


def _channel_lines(cfg: Config, names: Sequence[str]) -> list[str]:
    problem = str(cfg.get("PROBLEM.TYPE"))
    lines = []
    for i, name in enumerate(names):
        meaning = ""
        if problem == "INSTANCE_SEG":
            meaning = INSTANCE_CHANNEL_MEANINGS.get(name.rstrip("0123456789"), "")
        lines.append(f"- channel {i}: `{name}`" + (f": {meaning}" if meaning else ""))
    return lines


def _run_lines(cfg: Config, name: str) -> list[str]:
    ndim = str(cfg.get("PROBLEM.NDIM"))
    problem = str(cfg.get("PROBLEM.TYPE"))
    channels = ""
    if problem == "INSTANCE_SEG":
        channels = " and the same `PROBLEM.INSTANCE_SEG.DATA_CHANNELS`"
    lines = [
        "## How to run it",
        "",
        "With the Galaxy BiaPy tool's runner (`biapy-runner`), from the package file:",
        "",
        "```",
        (f"biapy-runner run --config config.yaml --model {name}.zip --images IMAGE.tif "
         "--out results"),
        "```",
        "",
        "where `config.yaml` (shipped with this package when it was exported after training)",
        f"sets `PROBLEM.TYPE: {problem}` and `PROBLEM.NDIM: {ndim}`{channels}. In BiaPy, set",
        "`MODEL.SOURCE: bmz` and `MODEL.BMZ.SOURCE_MODEL_ID` to this package;",
        "BiaPy can fine-tune it (`TRAIN.ENABLE: True`) from its `pytorch_state_dict` weights.",
        "",
        "The input is normalised by the package's preprocessing (the training's",
        f"`DATA.NORMALIZATION`: {cfg.get('DATA.NORMALIZATION.TYPE')}); the outputs are the",
        "network's activations (probabilities, distances), as BiaPy's own predictions.",
    ]
    return lines


def write_documentation(
    path: Path,
    cfg: Config,
    settings: ExportSettings,
    channel_names: Sequence[str],
    training: Mapping[str, Any] | None,
) -> Path:
    """Write the package's README.md: the user's ``MODEL.BMZ.EXPORT.DOCUMENTATION`` file when
    given, else a page with the workflow, the channels, the training data and facts, and how to
    run the model with this runner and with BiaPy."""
    if settings.documentation is not None:
        path.write_text(settings.documentation.read_text(encoding="utf-8"), encoding="utf-8")
        return path
    workflow = WORKFLOW_TAGS.get(str(cfg.get("PROBLEM.TYPE")), "")
    patch = tuple(cfg.get("DATA.PATCH_SIZE"))
    lines = [
        f"# {settings.name}",
        "",
        settings.description,
        "",
        "## Model",
        "",
        (f"- workflow: {WORKFLOW_WORDS.get(workflow, workflow)} (BiaPy `PROBLEM.TYPE: "
         f"{cfg.get('PROBLEM.TYPE')}`), {cfg.get('PROBLEM.NDIM')}"),
        (f"- architecture: BiaPy's `{cfg.get('MODEL.ARCHITECTURE')}` (source and kwargs in the "
         "`pytorch_state_dict` weights; TorchScript weights traced from it)"),
        f"- training patch size: {patch[:-1]} with {patch[-1]} channel(s)",
        "",
        "### Output channels",
        "",
        *_channel_lines(cfg, channel_names),
        "",
        "## Training",
        "",
    ]
    if settings.dataset:
        lines += [f"- data {k}: {v}" for k, v in settings.dataset.items()]
    if training:
        lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in training.items()]
    if not settings.dataset and not training:
        lines.append("- not described (set MODEL.BMZ.EXPORT.DATASET_INFO)")
    lines += ["", *_run_lines(cfg, _file_name(settings.name)), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "model"

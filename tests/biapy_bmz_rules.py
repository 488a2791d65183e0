"""What BiaPy 3.7.1 requires of a BioImage.IO package before it consumes it, stated from its
sources (``biapy/models/__init__.py``: ``check_bmz_model_compatibility``, the check the model
zoo's CI runs for BiaPy, and ``build_bmz_model``), as our own code: BiaPy cannot be installed
here, so the exported rdf is checked against these facts.

- ``weights.pytorch_state_dict`` with architecture kwargs (BiaPy builds the network from them with
  ``explicit_activations``/``return_one_tensor`` off) and no ``dependencies`` (BiaPy would look
  the model up in the zoo's collection to check them); a single input; no ``postprocessing``
  kwarg.
- A workflow tag per PROBLEM.TYPE: ``semantic-segmentation`` (or ``segmentation`` without
  ``instance-segmentation``), ``instance-segmentation``, ``detection``, ``denoising``,
  ``super-resolution``/``superresolution``, ``self-supervision`` (not BiaPy's own export tag
  ``self-supervised``), ``classification``, and for image to image one of ``pix2pix``,
  ``image-reconstruction``, ``image-to-image``, ``image-restoration``.
- Semantic: the class count from the kwargs ``n_classes``/``out_channels``/``output_channels``/
  ``classes`` (a list: its last value), which must match DATA.N_CLASSES when above 2.
- Instance with the ``biapy`` tag: ``out_channels``/``output_channels`` must be a list (BiaPy
  asserts it); the channels are the description's text after ``representation:`` to the end of
  the line, split on ``+`` (F + C when absent).
- Input axes ``bcyx`` (2D) or ``bczyx`` (3D), integer sizes or ``{min, step}`` (the minimum
  becomes DATA.PATCH_SIZE); the tags must not say ``3d`` only for a 2D problem (and the reverse).
- Preprocessing ``id`` (format > 0.5.0): only ``zero_mean_unit_variance``,
  ``fixed_zero_mean_unit_variance``, ``scale_range``, ``scale_linear``, ``clip``, besides
  ``ensure_dtype`` to a float type.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

WORKFLOW_TAGS = {
    "DETECTION": ("detection",),
    "DENOISING": ("denoising",),
    "SUPER_RESOLUTION": ("super-resolution", "superresolution"),
    "SELF_SUPERVISED": ("self-supervision",),
    "CLASSIFICATION": ("classification",),
    "IMAGE_TO_IMAGE": ("pix2pix", "image-reconstruction", "image-to-image", "image-restoration"),
}
PREPROCESSING = ("zero_mean_unit_variance", "fixed_zero_mean_unit_variance", "scale_range",
                 "scale_linear", "clip")
CLASS_KWARGS = ("n_classes", "out_channels", "output_channels", "classes")


@dataclass
class Consumption:
    """BiaPy's verdict on an rdf: the reasons it refuses it (none: consumable) and the settings
    it takes from it."""

    refusals: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _workflow(rdf: dict, kwargs: dict, problem: str, n_classes: int, out: Consumption) -> None:
    tags = rdf.get("tags") or []
    if problem == "SEMANTIC_SEG":
        if not ("semantic-segmentation" in tags
                or ("segmentation" in tags and "instance-segmentation" not in tags)):
            out.refusals.append(f"no semantic-segmentation tag in {tags}")
            return
        classes = next((kwargs[k] for k in CLASS_KWARGS if k in kwargs), None)
        classes = classes[-1] if isinstance(classes, list) else classes
        if not isinstance(classes, int):
            out.refusals.append(f"no class count in the kwargs ({classes!r})")
        elif classes > 2 and classes != n_classes:
            out.refusals.append(f"{classes} classes but DATA.N_CLASSES is {n_classes}")
        else:
            out.settings["DATA.N_CLASSES"] = max(2, classes)
    elif problem == "INSTANCE_SEG":
        if "instance-segmentation" not in tags:
            out.refusals.append(f"no instance-segmentation tag in {tags}")
            return
        channels = kwargs.get("out_channels", kwargs.get("output_channels"))
        if "biapy" in tags and not isinstance(channels, list):
            out.refusals.append(f"out_channels/output_channels {channels!r} is not a list")
        description = str(rdf.get("description") or "")
        code = ["F", "C"]
        if "biapy" in tags and "representation:" in description:
            line = description.split("representation:")[1].split("\n")[0]
            code = [c.strip() for c in line.strip().split("+")]
        out.settings["PROBLEM.INSTANCE_SEG.DATA_CHANNELS"] = code
    elif not any(t in tags for t in WORKFLOW_TAGS[problem]):
        out.refusals.append(f"none of the tags {WORKFLOW_TAGS[problem]} in {tags}")


def _axes(rdf: dict, ndim: int, out: Consumption) -> None:
    order, shape = "", []
    for axis in rdf["inputs"][0]["axes"]:
        kind = axis.get("type")
        if kind in ("batch", "channel"):
            order += kind[0]
            shape.append(1)
            continue
        size = axis.get("size")
        shape.append(size if isinstance(size, int) else (size or {}).get("min"))
        order += str(axis.get("id"))
    if not all(isinstance(s, int) for s in shape):
        out.refusals.append(f"input sizes {shape} are not integers or minimums")
    want = "bcyx" if ndim == 2 else "bczyx"
    if order != want:
        out.refusals.append(f"input axes {order!r}, BiaPy wants {want!r} for {ndim}D")
    tags = rdf.get("tags") or []
    mine, other = f"{ndim}d", f"{5 - ndim}d"
    if mine not in tags and other in tags:
        out.refusals.append(f"tagged {other} for a {ndim}D problem")
    out.settings["DATA.PATCH_SIZE"] = tuple(shape[2:] + shape[1:2])


def _preprocessing(rdf: dict, out: Consumption) -> None:
    key = "id" if _version(str(rdf.get("format_version", "0.5"))) > (0, 5, 0) else "name"
    for step in rdf["inputs"][0].get("preprocessing") or []:
        name = step.get(key)
        if name == "ensure_dtype" and "float" in str(step.get("kwargs", {}).get("dtype")):
            continue
        if name not in PREPROCESSING:
            out.refusals.append(f"preprocessing {step!r} is not one BiaPy takes")
        elif name in ("zero_mean_unit_variance", "fixed_zero_mean_unit_variance"):
            out.settings["DATA.NORMALIZATION.TYPE"] = "zero_mean_unit_variance"
        elif name in ("scale_linear", "scale_range"):
            out.settings["DATA.NORMALIZATION.TYPE"] = {"scale_linear": "div"}.get(name, name)


def biapy_consumption(rdf: dict, problem: str, ndim: int, n_classes: int = 2) -> Consumption:
    """BiaPy 3.7.1's check of ``rdf`` (a package's rdf.yaml, loaded) for PROBLEM.TYPE ``problem``
    in ``ndim`` D with DATA.N_CLASSES ``n_classes``.

    Returns
    -------
    Consumption
        ``refusals``: BiaPy's reasons not to consume it; ``settings``: the configuration values
        BiaPy sets from it (DATA.PATCH_SIZE, DATA.N_CLASSES, DATA_CHANNELS, normalisation type).
    """
    out = Consumption()
    weights = (rdf.get("weights") or {}).get("pytorch_state_dict")
    if not weights:
        return Consumption(["no pytorch_state_dict weights"])
    if len(rdf.get("inputs") or []) != 1:
        return Consumption(["not a single input"])
    kwargs = weights.get("kwargs", (weights.get("architecture") or {}).get("kwargs"))
    if kwargs is None:
        return Consumption(["no architecture kwargs"])
    if weights.get("dependencies") is not None:
        out.refusals.append("weights list dependencies (checked through the zoo's collection)")
    if kwargs.get("postprocessing") is not None:
        out.refusals.append("a postprocessing kwarg")
    _workflow(rdf, kwargs, problem, n_classes, out)
    _axes(rdf, ndim, out)
    _preprocessing(rdf, out)
    return out


def checked_package(package: Path, problem: str, ndim: int, n_classes: int = 2) -> Consumption:
    """``package`` passes bioimageio.core's ``test_model`` (offline) and BiaPy 3.7.1 consumes
    it; returns BiaPy's settings from it for the caller to compare with the training's."""
    from bioimageio.core import test_model

    summary = test_model(package)
    assert summary.status == "passed", summary.format()
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
    verdict = biapy_consumption(rdf, problem, ndim, n_classes)
    assert verdict.refusals == [], verdict.refusals
    return verdict

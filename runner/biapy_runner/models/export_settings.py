"""``MODEL.BMZ.EXPORT.*``: what a BioImage.IO package says about itself, checked.

BiaPy's keys (3.7.1): MODEL_NAME, DESCRIPTION, AUTHORS (mappings with ``name`` and optionally
``github_user``, ``affiliation``, ``email``, ``orcid``), LICENSE (an SPDX id), DOCUMENTATION
(a ``.md`` file; written for the model when empty), TAGS, CITE (mappings with ``text`` and
``doi`` or ``url``), DATASET_INFO (one mapping: ``name``, ``doi``, ``image_modality``,
optional ``dataset_id``) and MODEL_VERSION. Empty name, description, authors and tags get
defaults (named in a warning) instead of BiaPy's refusal, so that a Galaxy job exports without
them. The tags BiaPy adds itself (``2d``/``3d``, ``pytorch``, ``biapy``, the workflow and the
architecture) are added here too, as is BiaPy's citation; a self-supervised model also gets
``self-supervision``, the tag BiaPy's own check looks for before it consumes a package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from biapy_runner.config.load import Config
from biapy_runner.errors import ConfigError
from biapy_runner.log import warn

KEY = "MODEL.BMZ.EXPORT"
AUTHOR_KEYS = ("name", "affiliation", "email", "github_user", "orcid")
CITE_KEYS = ("text", "doi", "url")
#: BiaPy's own citation, added when no citation mentions BiaPy (as BiaPy does)
BIAPY_CITATION = {"text": "BiaPy: accessible deep learning on bioimages",
                  "doi": "10.1038/s41592-025-02699-y"}
#: the workflow tag of each PROBLEM.TYPE (BiaPy: lower case, "_" -> "-", "seg" -> "segmentation")
WORKFLOW_TAGS = {
    "SEMANTIC_SEG": "semantic-segmentation",
    "INSTANCE_SEG": "instance-segmentation",
    "DETECTION": "detection",
    "DENOISING": "denoising",
    "SUPER_RESOLUTION": "super-resolution",
    "SELF_SUPERVISED": "self-supervised",
    "CLASSIFICATION": "classification",
    "IMAGE_TO_IMAGE": "image-to-image",
}
WORKFLOW_WORDS = {tag: tag.replace("-", " ") for tag in WORKFLOW_TAGS.values()}
#: the workflow tag BiaPy 3.7.1 looks for when it consumes a package, where it differs from the
#: one its export writes (its check_bmz_model_compatibility wants "self-supervision")
CONSUMED_TAGS = {"SELF_SUPERVISED": "self-supervision"}


@dataclass
class ExportSettings:
    """The checked ``MODEL.BMZ.EXPORT`` values (defaults filled in)."""

    name: str
    description: str
    authors: list[dict[str, str]]
    license: str
    documentation: Path | None
    tags: list[str]
    cite: list[dict[str, str]]
    dataset: dict[str, str] = field(default_factory=dict)
    version: str = "0.1.0"


def _mappings(cfg: Config, key: str, allowed: tuple[str, ...], needed: str) -> list[dict]:
    """``KEY.key`` as a list of mappings with keys from ``allowed`` and ``needed`` set."""
    value = cfg.get(f"{KEY}.{key}") or []
    example = {"AUTHORS": "[{name: Ada Lovelace, github_user: ada}]",
               "CITE": "[{text: 'Author et al.', doi: 10.1234/xyz}]"}[key]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{KEY}.{key} must be a list of mappings, e.g. {example}; got {value!r}.")
    out = []
    for entry in value:
        unknown = sorted(set(entry) - set(allowed))
        if unknown or not str(entry.get(needed) or "").strip():
            raise ConfigError(
                f"{KEY}.{key} entry {dict(entry)!r}: each entry needs {needed!r} and may have "
                f"{', '.join(allowed)}" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
                + f"; e.g. {example}."
            )
        out.append({str(k): str(v) for k, v in entry.items() if v not in (None, "")})
    return out


def _documentation(cfg: Config) -> Path | None:
    text = str(cfg.get(f"{KEY}.DOCUMENTATION") or "").strip()
    if not text:
        return None
    path = Path(text).expanduser()
    if path.suffix.lower() != ".md" or not path.is_file():
        raise ConfigError(
            f"{KEY}.DOCUMENTATION is {text!r}: give an existing Markdown (.md) file, or leave it "
            "empty to have the documentation written for the model."
        )
    return path


def _dataset(cfg: Config) -> dict[str, str]:
    value = cfg.get(f"{KEY}.DATASET_INFO") or [{}]
    first = value[0] if isinstance(value, (list, tuple)) and value else value
    if not isinstance(first, Mapping):
        raise ConfigError(
            f"{KEY}.DATASET_INFO must be a list with one mapping (name, doi, image_modality, "
            f"optional dataset_id); got {value!r}."
        )
    return {str(k): str(v) for k, v in first.items() if v not in (None, "")}


def _tags(cfg: Config, architecture: str) -> list[str]:
    tags = [str(t) for t in (cfg.get(f"{KEY}.TAGS") or [])]
    ndim = str(cfg.get("PROBLEM.NDIM")).lower()
    problem = str(cfg.get("PROBLEM.TYPE"))
    added = [ndim if "2d" not in tags and "3d" not in tags else "", "pytorch", "biapy",
             WORKFLOW_TAGS.get(problem, ""), CONSUMED_TAGS.get(problem, ""),
             architecture.lower().replace("_", "-")]
    return tags + [t for t in added if t and t not in tags]


def _cite(cfg: Config) -> list[dict[str, str]]:
    cite = _mappings(cfg, "CITE", CITE_KEYS, "text")
    for entry in cite:
        if "doi" not in entry and "url" not in entry:
            raise ConfigError(f"{KEY}.CITE entry {entry!r} needs a doi or a url.")
    if not any("biapy" in entry["text"].lower() for entry in cite):
        cite.append(dict(BIAPY_CITATION))
    return cite


def export_settings(cfg: Config, *, architecture: str) -> ExportSettings:
    """Check ``MODEL.BMZ.EXPORT.*`` and fill the defaults; ConfigError (exit 2) names the key.

    Parameters
    ----------
    cfg : the run's configuration
    architecture : the architecture's name for the tags and the default name (``unet``, ...)

    Returns
    -------
    ExportSettings
    """
    workflow = WORKFLOW_TAGS.get(str(cfg.get("PROBLEM.TYPE")), "image-to-image")
    ndim = str(cfg.get("PROBLEM.NDIM"))
    defaults = []
    name = str(cfg.get(f"{KEY}.MODEL_NAME") or "").strip()
    if not name:
        name = f"BiaPy {ndim} {architecture} for {WORKFLOW_WORDS[workflow]}"
        defaults.append("MODEL_NAME")
    description = str(cfg.get(f"{KEY}.DESCRIPTION") or "").strip()
    if not description:
        description = (f"{ndim} {WORKFLOW_WORDS[workflow]} with a {architecture} trained by "
                       "BiaPy's runner.")
        defaults.append("DESCRIPTION")
    authors = _mappings(cfg, "AUTHORS", AUTHOR_KEYS, "name")
    if not authors:
        authors = [{"name": "Unknown author"}]
        defaults.append("AUTHORS")
    if not cfg.get(f"{KEY}.TAGS"):
        defaults.append("TAGS")
    license_id = str(cfg.get(f"{KEY}.LICENSE") or "").strip()
    if not license_id:
        raise ConfigError(f"{KEY}.LICENSE is empty: give an SPDX licence id such as CC-BY-4.0.")
    if defaults:
        warn(
            "the BioImage.IO package gets default values for "
            + ", ".join(f"{KEY}.{d}" for d in defaults)
            + "; set them before sharing the model"
        )
    return ExportSettings(
        name=name,
        description=description,
        authors=authors,
        license=license_id,
        documentation=_documentation(cfg),
        tags=_tags(cfg, architecture),
        cite=_cite(cfg),
        dataset=_dataset(cfg),
        version=str(cfg.get(f"{KEY}.MODEL_VERSION") or "0.1.0"),
    )


def with_representation(description: str, channels: list[str]) -> str:
    """``description`` ending with BiaPy's instance-channel line, ``Instance segmentation
    representation: F + C`` (BiaPy reads the channels after ``representation:`` up to the end of
    the line, split on ``+``), unless it already has one."""
    if "representation:" in description:
        return description
    sep = "" if description.endswith((".", "!", "?")) else "."
    return f"{description}{sep} Instance segmentation representation: {' + '.join(channels)}"

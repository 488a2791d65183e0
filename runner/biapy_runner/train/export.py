"""BioImage.IO packages around training: starting from one (fine-tuning, MODEL.SOURCE: bmz) and
exporting the trained network (MODEL.BMZ.EXPORT.ENABLE) into ``<out>/bmz/<name>.zip``.

A network fine-tuned from a package is always exported (its own architecture code, which the
runner's MODEL.SOURCE: biapy cannot rebuild): the test phase then runs that package.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from biapy_runner import log
from biapy_runner.config.load import Config
from biapy_runner.io.images import read_image

#: the exported package's folder under the output folder (BiaPy: PATHS.BMZ_EXPORT_PATH)
PACKAGE_DIR = "bmz"


def fine_tuning(cfg: Config) -> bool:
    """Whether training starts from a BioImage.IO package (MODEL.SOURCE: bmz)."""
    return cfg.get("MODEL.SOURCE") == "bmz"


def wants_package(cfg: Config) -> bool:
    """Whether the trained network is exported: MODEL.BMZ.EXPORT.ENABLE, or fine-tuning."""
    return bool(cfg.get("MODEL.BMZ.EXPORT.ENABLE")) or fine_tuning(cfg)


def start_from_package(cfg: Config, device: Any = "cpu") -> Any:
    """The package's network to fine-tune (DATA.NORMALIZATION set from the package's
    preprocessing first, as BiaPy does, so that training normalises as the package does)."""
    from biapy_runner.models.trainable import (
        adopt_package_normalization,
        package_description,
        trainable_from_package,
    )

    adopt_package_normalization(cfg, package_description(cfg))
    return trainable_from_package(cfg, device=device)


def package_name(cfg: Config) -> str:
    """The zip's file name: MODEL.BMZ.EXPORT.MODEL_NAME made safe (``model.zip`` when unset)."""
    name = str(cfg.get("MODEL.BMZ.EXPORT.MODEL_NAME") or "").strip()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return f"{safe or 'model'}.zip"


def _facts(root: Path, n_train: int, n_val: int) -> dict[str, Any]:
    """What the documentation says about the training (from ``train_log.tsv`` when written)."""
    facts: dict[str, Any] = {"training_images": n_train, "validation_images": n_val}
    log_path = root / "train_log.tsv"
    if log_path.is_file():
        import pandas as pd

        table = pd.read_csv(log_path, sep="\t")
        if len(table):
            facts["epochs"] = int(table["epoch"].iloc[-1])
            for column in ("train_loss", "val_loss"):
                if column in table and table[column].notna().any():
                    facts[f"last_{column}"] = f"{float(table[column].iloc[-1]):.4g}"
    return facts


def export_trained(
    root: Path,
    cfg: Config,
    checkpoint: Path,
    sample: Path,
    *,
    counts: tuple[int, int] = (0, 0),
    axes: str | None = None,
    dataset: str | None = None,
) -> Path:
    """Export the network of ``checkpoint`` as ``root/bmz/<name>.zip``.

    Parameters
    ----------
    root : the (staging) output folder; ``train_log.tsv`` there is shipped and summarised
    cfg : the training configuration (shipped as ``config.yaml``)
    checkpoint : the trained checkpoint (BiaPy's layout)
    sample : a training image, read as the command read it: its centre is the test input
    counts : the numbers of training and validation images, for the documentation
    axes, dataset : how ``sample`` is read (the command's ``--axes`` / ``--dataset``)

    Returns
    -------
    Path
        The package zip.
    """
    from biapy_runner.models.checkpoint import load_checkpoint, read_checkpoint, state_dict_of
    from biapy_runner.models.export import export_model

    ndim = 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2
    image = read_image(sample, ndim=ndim, axes=axes, dataset=dataset).data
    out = root / PACKAGE_DIR / package_name(cfg)
    log.info(f"exporting the trained network to BioImage.IO: {PACKAGE_DIR}/{out.name}")
    with tempfile.TemporaryDirectory(prefix="biapy-runner-package-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(cfg.to_yaml(), encoding="utf-8")
        shipped = [config] + [p for p in (root / "train_log.tsv",) if p.is_file()]
        extra: dict[str, Any] = {}
        if fine_tuning(cfg):
            from biapy_runner.models.trainable import (
                package_architecture,
                package_description,
                trainable_from_package,
            )

            descr = package_description(cfg)
            model = trainable_from_package(cfg)
            model.load_state_dict(state_dict_of(read_checkpoint(checkpoint)))
            names = _source_channels(descr)
            extra = {"architecture": package_architecture(descr, Path(tmp)),
                     "channels": [(n, "") for n in names],
                     "postprocessing": list(descr.outputs[0].postprocessing or [])}
        else:
            model, _ = load_checkpoint(checkpoint, copy.deepcopy(cfg))
        return export_model(cfg, model.cpu().eval(), image, out, attachments=shipped,
                            training=_facts(root, *counts), **extra)


def _source_channels(descr: Any) -> list[str]:
    """The output channel names of the package fine-tuning started from."""
    from biapy_runner.models.description import axis_roles, output_channel_names

    output = descr.outputs[0]
    _, roles = axis_roles(output)
    channel = next((a for a in getattr(output, "axes", []) if getattr(a, "type", "") == "channel"),
                   None)
    count = len(channel.channel_names) if channel is not None else 1
    return list(output_channel_names(descr, output, roles, count))

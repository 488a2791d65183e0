"""The Galaxy train mode's form (the tool's JSON configfile) turned into a configuration."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from biapy_runner.cli import main
from biapy_runner.config.load import load_config
from biapy_runner.errors import ConfigError
from biapy_runner.galaxy import train_settings, write_train_config

GUIDED = {"ndim": "3D", "depth": 8, "channels": 2, "patch": 32, "feature_maps": "4, 8",
          "architecture": "resunet", "epochs": 3, "batch_size": 2, "lr": 0.01,
          "patience": "None", "val_split": 0.2}
EXPORT = {"name": "my model", "description": "", "authors": "Ada Lovelace, Bob",
          "license": "MIT", "tags": "nuclei,  fluorescence ,"}


def test_guided_form_gives_the_training_keys() -> None:
    form = {"workflow": "instance", "instance_channels": "F,P", "guided": GUIDED,
            "fine_tune": "start_model.zip", "export": EXPORT}
    assert dict(train_settings(form)) == {
        "PROBLEM.TYPE": "INSTANCE_SEG",
        "PROBLEM.INSTANCE_SEG.DATA_CHANNELS": ["F", "P"],
        "PROBLEM.NDIM": "3D",
        "DATA.PATCH_SIZE": (8, 32, 32, 2),
        "MODEL.FEATURE_MAPS": [4, 8],
        "MODEL.ARCHITECTURE": "resunet",
        "TRAIN.EPOCHS": 3,
        "TRAIN.BATCH_SIZE": 2,
        "DATA.VAL.SPLIT_TRAIN": 0.2,
        "TRAIN.LR": [0.01],
        "MODEL.SOURCE": "bmz",
        "MODEL.BMZ.SOURCE_MODEL_ID": "start_model.zip",
        "MODEL.BMZ.EXPORT.ENABLE": True,
        "MODEL.BMZ.EXPORT.MODEL_NAME": "my model",
        "MODEL.BMZ.EXPORT.LICENSE": "MIT",
        "MODEL.BMZ.EXPORT.AUTHORS": [{"name": "Ada Lovelace"}, {"name": "Bob"}],
        "MODEL.BMZ.EXPORT.TAGS": ["nuclei", "fluorescence"],
    }


def test_file_settings_keep_the_users_keys(tmp_path: Path) -> None:
    base = tmp_path / "user.yaml"
    base.write_text("PROBLEM:\n  TYPE: SUPER_RESOLUTION\n  NDIM: 2D\nTRAIN:\n  EPOCHS: 7\n"
                    "  LR: 1.E-4\nDATA:\n  PATCH_SIZE: (48, 48, 1)\n")
    form = tmp_path / "form.json"
    form.write_text(json.dumps({"workflow": "super-resolution", "upscaling": 4,
                                "export": {"name": "", "license": "CC-BY-4.0"}}))
    out = tmp_path / "train.yaml"
    assert main(["galaxy-train-config", "--form", str(form), "--config", str(base),
                 "--out", str(out)]) == 0
    cfg = load_config(out)
    assert cfg.get("TRAIN.EPOCHS") == 7 and cfg.get("TRAIN.LR") == pytest.approx([1e-4])
    assert tuple(cfg.get("DATA.PATCH_SIZE")) == (48, 48, 1)
    assert tuple(cfg.get("PROBLEM.SUPER_RESOLUTION.UPSCALING")) == (4, 4)
    assert cfg.get("MODEL.BMZ.EXPORT.ENABLE") is True
    assert cfg.get("MODEL.BMZ.EXPORT.MODEL_NAME") == ""  # the export's default name applies


def test_bad_form_value_names_the_key(tmp_path: Path) -> None:
    form = tmp_path / "form.json"
    form.write_text(json.dumps({"workflow": "semantic", "n_classes": 2,
                                "guided": {**GUIDED, "ndim": "4D"}}))
    with pytest.raises(ConfigError, match="PROBLEM.NDIM.*allowed values"):
        write_train_config(form, None, tmp_path / "train.yaml")


def test_classification_form_trains_simple_cnn() -> None:
    """Classification: the number of classes, and BiaPy's simple_cnn whatever the guided
    network and feature maps say (the one classifier the runner builds)."""
    form = {"workflow": "classification", "n_classes": 3,
            "guided": {**GUIDED, "ndim": "2D", "channels": 1, "patch": 48}}
    keys = dict(train_settings(form))
    assert keys["PROBLEM.TYPE"] == "CLASSIFICATION" and keys["DATA.N_CLASSES"] == 3
    assert keys["MODEL.ARCHITECTURE"] == "simple_cnn" and "MODEL.FEATURE_MAPS" not in keys
    assert keys["DATA.PATCH_SIZE"] == (48, 48, 1)


# -- the GPU when Galaxy grants one ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _galaxy_device(env: dict[str, str]) -> str:
    """``$BIAPY_DEVICE`` as the tool's job environment (macros.xml's JOB_ENV, Cheetah's ``\\$``
    unescaped) sets it under ``env``."""
    macros = (REPO / "macros.xml").read_text()
    line = next(x for x in macros.splitlines() if "BIAPY_DEVICE=" in x).replace("\\$", "$")
    done = subprocess.run(["bash", "-c", f"set -e; {line} printf %s \"$BIAPY_DEVICE\""],
                          env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                          text=True, check=True)
    return done.stdout


@pytest.mark.parametrize(("env", "device"), [
    ({}, "cpu"),
    ({"GALAXY_GPU_ENABLED": "false"}, "cpu"),
    ({"CUDA_VISIBLE_DEVICES": ""}, "cpu"),
    ({"GALAXY_GPU_ENABLED": "true"}, "auto"),
    ({"CUDA_VISIBLE_DEVICES": "0"}, "auto"),
    ({"GALAXY_GPU_ENABLED": "true", "CUDA_VISIBLE_DEVICES": "1"}, "auto"),
])
def test_the_job_asks_for_the_gpu_only_when_galaxy_grants_one(env: dict, device: str) -> None:
    assert _galaxy_device(env) == device


def test_train_mode_runs_on_the_granted_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The train mode's command (after the job environment) passes ``$BIAPY_DEVICE``; ``auto``
    trains on CUDA when torch sees a GPU, on the CPU otherwise, and ``cpu`` stays on the CPU."""
    import torch
    from biapy_runner.models.model import resolve_device

    command = (REPO / "biapy.xml").read_text().split("<command", 1)[1].split("</command>")[0]
    train = command.split("biapy-runner train", 1)[1].split("2> runner.log", 1)[0]
    assert command.index("@JOB_ENV@") < command.index("biapy-runner train")
    assert '--device "\\$BIAPY_DEVICE"' in train
    for available, want in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda a=available: a)
        assert resolve_device("auto").type == want
        assert resolve_device("cpu").type == "cpu"

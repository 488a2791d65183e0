"""One vocabulary: config/schema.py's channel names, allowed values and defaults are what the
config checker, the decoders, make-config and the Galaxy form use; these tests fail when one of
them drifts."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from biapy_runner.config import schema, wizard
from biapy_runner.config.load import load_config, voxel_spacing
from biapy_runner.config.support import unimplemented
from biapy_runner.decode.channels import HVZ, SEED_HIGH, SEED_LOW, parse_channels
from biapy_runner.decode.processes import check_process
from biapy_runner.decode.thresholds import otsu
from biapy_runner.errors import ConfigError
from biapy_runner.io.images import class_dtype, label_dtype
from biapy_runner.metrics.masks import binary_iou

ROOT = Path(__file__).resolve().parents[1]
IS = "PROBLEM.INSTANCE_SEG."


def _instance_when() -> ET.Element:
    tool = ET.parse(ROOT / "biapy.xml").getroot()
    for when in tool.iter("when"):
        if when.get("value") == "instance" and when.find("param[@name='instance_channels']") is not None:
            return when
    raise AssertionError("biapy.xml has no guided instance section")


def _wizard_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    wizard.add_arguments(parser)
    return parser


def _choices(parser: argparse.ArgumentParser, option: str) -> tuple[str, ...]:
    action = next(a for a in parser._actions if option in a.option_strings)
    return tuple(action.choices)


def test_galaxy_form_offers_exactly_the_guided_channel_sets() -> None:
    param = _instance_when().find("param[@name='instance_channels']")
    options = tuple(o.get("value") for o in param.iter("option"))
    assert options == wizard.INSTANCE_CHANNELS
    assert _choices(_wizard_parser(), "--instance-channels") == wizard.INSTANCE_CHANNELS
    guided = tuple(",".join(c) for c, _ in schema.GUIDED_INSTANCE_CHANNELS)
    assert set(options) == set(guided) | set(schema.GUIDED_LEGACY_CHANNELS)


def test_galaxy_form_threshold_defaults_are_the_schemas() -> None:
    when = _instance_when()
    form = {p.get("name"): float(p.get("value")) for p in when.iter("param")
            if p.get("name", "").startswith("th_")}
    th = schema.LEGACY_THRESHOLD_DEFAULTS
    assert form == {
        "th_binary": th["DATA_MW_TH_BINARY_MASK"],
        "th_contour": th["DATA_MW_TH_CONTOUR"],
        "th_foreground": th["DATA_MW_TH_FOREGROUND"],
        "th_distance": th["DATA_MW_TH_DISTANCE"],
    }
    args = _wizard_parser().parse_args(["--out", "x.yaml", "--workflow", "instance"])
    assert args.th_binary == th["DATA_MW_TH_BINARY_MASK"]
    assert args.th_distance == th["DATA_MW_TH_DISTANCE"]


def test_galaxy_form_workflows_are_the_wizards() -> None:
    tool = ET.parse(ROOT / "biapy.xml").getroot()
    select = next(p for p in tool.iter("param") if p.get("name") == "type"
                  and any(o.get("value") == "instance" for o in p.iter("option")))
    assert {o.get("value") for o in select.iter("option")} == set(wizard.PROBLEM_TYPES)
    assert set(wizard.PROBLEM_TYPES.values()) == set(schema.PROBLEM_TYPES)


@pytest.mark.parametrize("channels", schema.GUIDED_LEGACY_CHANNELS)
def test_every_guided_choice_loads_decodes_and_runs(channels: str) -> None:
    cfg = load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", f"{IS}DATA_CHANNELS={channels}"])
    names = cfg.get(IS + "DATA_CHANNELS")
    assert names == schema.legacy_channels_as_list(channels)
    assert parse_channels(names).names == tuple(names)
    assert unimplemented(cfg) == []


def test_config_and_decoder_agree_on_every_channel_name() -> None:
    """What the config accepts for the watershed, the decoder decodes, and the other way round
    (BCP loads and decodes; the synapse strings are refused before any image)."""
    understood = SEED_LOW | SEED_HIGH | set(HVZ) | {"M", "A"}
    assert understood == set(schema.IMPLEMENTED_WATERSHED_CHANNELS)
    assert understood <= set(schema.INSTANCE_CHANNELS)
    for name in schema.INSTANCE_CHANNELS:
        cfg = load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", f"{IS}DATA_CHANNELS=[{name}]"])
        refused = unimplemented(cfg)
        channels = parse_channels([name])
        if refused:  # auxiliary channels, or a flow/embedding part alone: not decodable alone
            assert name not in schema.IMPLEMENTED_WATERSHED_CHANNELS, name
        else:
            try:  # a lone channel runs unless the watershed has no default for it
                check_process(channels, cfg)
            except ConfigError as error:
                assert "no default watershed" in str(error), name
    bcp = load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", f"{IS}DATA_CHANNELS=BCP"])
    assert unimplemented(bcp) == [] and bcp.get(IS + "DATA_CHANNELS") == ["F", "C", "P"]
    cfg = load_config(None, ["PROBLEM.TYPE=INSTANCE_SEG", f"{IS}DATA_CHANNELS=BF"])
    assert unimplemented(cfg)


def test_allowed_values_come_from_the_vocabulary() -> None:
    assert schema.CHOICES[IS + "INSTANCE_CREATION_PROCESS"] == (
        "", "watershed", "agglomeration", "stardist", "embeddings", "gradient-flow")
    assert set(schema.ELEMENT_CHOICES[IS + "DATA_CHANNELS"]) >= {
        "F", "B", "P", "C", "M", "D", "Db", "Dc", "Dn", "R", "T", "A", "Gv", "Gh", "Gz",
        "E_offset", "E_sigma", "E_seediness"}
    with pytest.raises(ConfigError, match="allowed values"):
        load_config(None, [f"{IS}INSTANCE_CREATION_PROCESS=cellpose"])
    assert schema.creation_process(["Db", "R"]) == "stardist"
    assert schema.creation_process(["F", "Gv", "Gh"]) == "gradient-flow"
    assert schema.creation_process(["E_offset", "E_sigma", "E_seediness"]) == "embeddings"
    assert schema.creation_process(["A"]) == "agglomeration"
    assert schema.creation_process(["F", "C"]) == "watershed"


# ------------------------------------------------------------------ one helper each


def test_iou_of_two_empty_masks_is_biapys_zero() -> None:
    empty = np.zeros((4, 4), bool)
    assert binary_iou(empty, empty) == 0.0
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert binary_iou(a, b) == pytest.approx(4 / 12)


def test_otsu_is_scikit_images() -> None:
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.2, 0.05, 4000), rng.normal(0.8, 0.1, 2000)]).astype(np.float32)
    assert otsu(x) == pytest.approx(float(threshold_otsu(x)), abs=1e-6)
    assert otsu(np.full(10, 0.7, np.float32)) == 0.5


def test_resolution_parser() -> None:
    assert voxel_spacing((-1,), 3) == (1.0, 1.0, 1.0)
    assert voxel_spacing(None, 2) == (1.0, 1.0)
    assert voxel_spacing((5, 0.867, 0.867), 3) == (5.0, 0.867, 0.867)
    with pytest.raises(ConfigError, match="DATA.TEST.RESOLUTION"):
        voxel_spacing((1, 1), 3)
    with pytest.raises(ConfigError, match="positive"):
        voxel_spacing((0, 1), 2)


def test_label_and_class_dtypes() -> None:
    assert label_dtype(65535) == np.uint16 and label_dtype(65536) == np.uint32
    assert class_dtype(255) == np.uint8 and class_dtype(256) == np.uint16

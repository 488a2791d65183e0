"""Property test: random, garbled and truncated configurations and model packages end in exit
0, 2 or 3 with a one-paragraph message, never exit 1 or a traceback, and publish nothing on
failure."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

from biapy_runner.cli import main
from biapy_runner.config.load import LEAVES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "test-data"
IMAGE = TEST_DATA / "dsb_nuclei.tif"
REAL_CONFIGS = [
    TEST_DATA / "semantic_nuclei.yaml",
    TEST_DATA / "galaxy_semantic.yaml",
    REPO / "tests" / "data" / "configs" / "training-material__biapy__conf_cartocell_swam.yaml",
    REPO / "tests" / "data" / "configs" / "tools-iuc__tools_biapy__test-data__example.yaml",
]
MODEL = TEST_DATA / "intensity2d.zip"  # small and quick to run when a garbling leaves it valid

#: BIAPY_FUZZ_SCALE=50 runs 50 times more examples, with a fresh random seed (a bug hunt); the
#: default is a quick, repeatable sample.
SCALE = int(os.environ.get("BIAPY_FUZZ_SCALE", "1"))
SETTINGS = settings(
    max_examples=40 * SCALE, deadline=None, derandomize=SCALE == 1,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------- random YAML

KEYS = st.sampled_from([
    "PROBLEM", "TYPE", "NDIM", "DATA", "TEST", "TRAIN", "MODEL", "BMZ", "SOURCE",
    "SOURCE_MODEL_ID", "PATCH_SIZE", "PADDING", "OVERLAP", "ENABLE", "AUGMENTATION", "FULL_IMG",
    "SYSTEM", "NUM_CPUS", "INSTANCE_SEG", "DATA_CHANNELS", "NORMALIZATION", "POST_PROCESSING",
    "LOAD_GT", "PATH", "<<",
]) | st.text(max_size=12).map(json.dumps)
SCALARS = st.sampled_from([
    "true", "no", "~", "null", "1.E-4", ".inf", "-.nan", "0x1F", "'(256, 256, 1)'", "(16, 16)",
    "[1, 2, 3]", "{A: 1, A: 2}", "SEMANTIC_SEG", "INSTANCE_SEG", "3D", "2D", "bmz", "!!binary aGk=",
    "2001-12-14", "&anchor 1", "*anchor", "!!python/object:os.system", "'" , "\"\\xff\"", "|",
    "9" * 4400, "1e999", "(" * 50, "-1", "0",
]) | st.integers(-(10**30), 10**30).map(str) | st.text(max_size=20).map(json.dumps)


def _render(node: object, indent: str, tab: bool) -> list[str]:
    """Block-style YAML lines of a nested (mapping = list of pairs, sequence = tuple) node."""
    pad = "\t" if tab else "  "
    if isinstance(node, list):
        lines = []
        for key, value in node:
            if isinstance(value, str):
                lines.append(f"{indent}{key}: {value}")
            else:
                lines.append(f"{indent}{key}:")
                lines.extend(_render(value, indent + pad, tab))
        return lines
    if isinstance(node, tuple):
        return [f"{indent}- {item if isinstance(item, str) else json.dumps(str(item))}"
                for item in node]
    return [f"{indent}{node}"]


NODES = st.recursive(
    SCALARS,
    lambda inner: st.lists(st.tuples(KEYS, inner), max_size=5) | st.tuples(inner, inner),
    max_leaves=25,
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> bytes:
    """Random YAML: nesting, types, repeated keys, tabs, huge numbers, and some raw bytes."""
    root = draw(st.lists(st.tuples(KEYS, NODES), max_size=6))
    text = "\n".join(_render(root, "", draw(st.booleans()))) + "\n"
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    return data


@st.composite
def known_key_documents(draw: st.DrawFn) -> bytes:
    """Real BiaPy keys (nested as sections) with random values, some of them repeated."""
    keys = draw(st.lists(st.sampled_from(sorted(LEAVES)), min_size=1, max_size=6))
    tree: list = []
    for dotted in keys:
        node = tree
        *sections, leaf = dotted.split(".")
        for name in sections:
            found = next((v for k, v in node if k == name and isinstance(v, list)), None)
            if found is None or draw(st.integers(0, 9)) == 0:  # sometimes a second block
                found = []
                node.append((name, found))
            node = found
        node.append((leaf, draw(SCALARS)))
    return ("\n".join(_render(tree, "", False)) + "\n").encode("utf-8", "surrogatepass")


@st.composite
def truncated_configs(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(REAL_CONFIGS)).read_bytes()
    return data[: draw(st.integers(0, len(data)))]


CONFIGS = (
    yaml_documents() | known_key_documents() | truncated_configs() | st.binary(max_size=300)
)


def _main(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


def _assert_contract(code: int, err: str, out: Path) -> None:
    assert code in (0, 2, 3), err
    assert "Traceback" not in err, err
    if code != 0:
        assert "ERROR:" in err
        assert not out.exists() or list(out.iterdir()) == []


@SETTINGS
@given(CONFIGS)
def test_any_config_file_ends_in_a_user_error_or_success(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config, out = Path(tmp) / "cfg.yaml", Path(tmp) / "out"
        config.write_bytes(data)
        # a missing image: a config that passes every check stops there, before any model
        code, err = _main(["run", "--config", str(config), "--images", str(Path(tmp) / "x.tif"),
                           "--out", str(out), "--threads", "1"])
    _assert_contract(code, err, out)
    assert code != 0


# ----------------------------------------------------------------------- garbled model packages


@st.composite
def garbled_packages(draw: st.DrawFn) -> bytes:
    """A real package truncated, with flipped or inserted bytes, or replaced by random bytes."""
    data = bytearray(MODEL.read_bytes())
    how = draw(st.sampled_from(["truncate", "flip", "insert", "random"]))
    if how == "random":
        return draw(st.binary(max_size=2000))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    at = draw(st.integers(0, len(data) - 1))
    if how == "insert":
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:])
    for offset in draw(st.lists(st.integers(0, 64), min_size=1, max_size=4)):
        data[min(at + offset, len(data) - 1)] ^= draw(st.integers(1, 255))
    return bytes(data)


@settings(SETTINGS, max_examples=6 * SCALE)  # each one loads a model
@given(garbled_packages())
def test_any_garbled_model_package_ends_in_a_model_error_or_success(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model, out = Path(tmp) / "model.zip", Path(tmp) / "out"
        model.write_bytes(data)
        code, err = _main(["run", "--config", str(TEST_DATA / "semantic_nuclei.yaml"),
                           "--images", str(IMAGE), "--model", str(model), "--out", str(out),
                           "--threads", "1"])
        _assert_contract(code, err, out)

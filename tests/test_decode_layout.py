"""Where each named channel lies in a raw prediction (decode/layout.py)."""

from __future__ import annotations

import pytest
from biapy_runner.config.load import load_config
from biapy_runner.decode.layout import channel_slices, extra_opts, spacing
from biapy_runner.errors import ConfigError


def _widths(slices: dict[str, slice]) -> dict[str, tuple[int, int]]:
    return {k: (s.start, s.stop) for k, s in slices.items()}


def test_configured_names_take_their_widths() -> None:
    emb = _widths(channel_slices(["E_offset", "E_sigma", "E_seediness"], 7, 3))
    assert emb == {"E_offset": (0, 3), "E_sigma": (3, 6), "E_seediness": (6, 7)}
    assert _widths(channel_slices(["E"], 5, 2)) == {
        "E_offset": (0, 2),
        "E_sigma": (2, 4),
        "E_seediness": (4, 5),
    }
    assert _widths(channel_slices(["Db", "R"], 33, 2)) == {"Db": (0, 1), "R": (1, 33)}
    assert _widths(channel_slices(["A"], 6, 3)) == {"A": (0, 6)}
    assert _widths(channel_slices(["F", "Gv", "Gh", "Gz"], 4, 3))["Gz"] == (3, 4)


def test_one_name_per_output_channel() -> None:
    names = ["E_offset", "E_offset", "E_sigma", "E_sigma", "E_seediness"]
    assert _widths(channel_slices(names, 5, 2))["E_sigma"] == (2, 4)
    assert _widths(channel_slices(["Db"] + ["R"] * 8, 9, 2)) == {"Db": (0, 1), "R": (1, 9)}


@pytest.mark.parametrize(
    ("names", "n_raw", "ndim"),
    [
        (["F", "Gv", "Gh"], 4, 2),  # one channel too many
        (["E_offset", "E_sigma", "E_seediness"], 5, 3),  # 3D needs 7
        (["R", "A"], 10, 3),  # two open widths
        (["Db", "R"], 1, 2),  # no ray left
        (["F", "F", "Gv"], 2, 2),  # a repeated name that is not a run of its channels
    ],
)
def test_names_that_do_not_fit_are_refused(names: list[str], n_raw: int, ndim: int) -> None:
    with pytest.raises(ConfigError, match="does not describe the model's"):
        channel_slices(names, n_raw, ndim)


def test_extra_options_and_spacing() -> None:
    cfg = load_config(
        None,
        [
            "PROBLEM.NDIM=3D",
            "DATA.TEST.RESOLUTION=(2, 0.5, 0.5)",
            "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS=[{R: {nrays: 64}}]",
        ],
    )
    assert extra_opts(cfg, "R") == {"nrays": 64} and extra_opts(cfg, "A") == {}
    assert spacing(cfg, 3) == (2.0, 0.5, 0.5)
    assert spacing(load_config(None, []), 2) == (1.0, 1.0)

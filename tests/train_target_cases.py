"""Label images and channel sets of the instance training-target parity test.

``tests/data/biapy371_train_targets.npz`` holds, per case, what BiaPy 3.7.1's own
``labels_into_channels`` (biapy/data/pre_processing.py) returns for these labels, channels and
(fully spelled) per-channel options, channel first. It was made by a scratch script outside the
repository that executes the function definitions of BiaPy's sdist with the ``edt`` package;
nothing of BiaPy is imported by the runner or the tests (see tests/data/README.md).
"""

from __future__ import annotations

import numpy as np
from known_labels import blobs

RING = np.zeros((32, 32), dtype=np.int32)
RING[2:30, 2:30] = blobs(
    (28, 28),
    [(7, 7), (7, 17), (20, 8), (19, 20), (12, 12)],
    [(5, 5), (4, 6), (6, 4), (6, 6), (3, 3)],
)
RING[22:25, 23:26][RING[22:25, 23:26] == 4] = 0  # a hole inside object 4
LABELS = {
    "2d": RING,
    "3d": blobs(
        (10, 24, 24), [(4, 7, 7), (5, 8, 16), (5, 17, 12)], [(4, 5, 5), (4, 5, 6), (4, 6, 6)]
    ),
}
FB = {"erosion": 0, "dilation": 0}
P = {"type": "centroid", "skeleton_mode": "full", "dilation": 1, "erosion": 0}
#: case -> (labels, channels as BiaPy's mode list, per-channel options); ``I`` (the labels) is
#: appended where BiaPy's check_configuration appends it (channels recomputed after augmentation)
CASES: dict[str, tuple[str, list[str], dict]] = {
    "fbc_2d": ("2d", ["F", "B", "C"], {"F": FB, "B": FB, "C": {"mode": "thick"}}),
    "fbc_3d": ("3d", ["F", "B", "C"], {"F": FB, "B": FB, "C": {"mode": "thick"}}),
    "dense_m_2d": ("2d", ["F", "C", "M"], {"F": FB, "C": {"mode": "dense"}, "M": {}}),
    "inner_3d": ("3d", ["F", "C"], {"F": FB, "C": {"mode": "inner"}}),
    "f_eroded_2d": ("2d", ["F", "C"], {"F": {"erosion": 1, "dilation": 0}, "C": {"mode": "thick"}}),
    "f_dilated_3d": ("3d", ["F"], {"F": {"erosion": 0, "dilation": [0, 1, 1]}}),
    "p_2d": ("2d", ["F", "P"], {"F": FB, "P": P}),
    "p_3d": ("3d", ["P"], {"P": dict(P, dilation=[1, 2, 2])}),
    "db_norm_2d": (
        "2d",
        ["Db"],
        {"Db": {"val_type": "norm", "act": "sigmoid", "mask_values": True}},
    ),
    "db_raw_3d": ("3d", ["Db", "I"], {"Db": {"val_type": "raw", "act": "", "mask_values": True}}),
    "db_bins_2d": (
        "2d",
        ["Db"],
        {"Db": {"val_type": "discretize", "act": "", "mask_values": True}},
    ),
    "dc_2d": ("2d", ["Dc"], {"Dc": {"type": "centroid", "norm": True, "mask_values": True}}),
    "dc_raw_3d": (
        "3d",
        ["Dc", "I"],
        {"Dc": {"type": "centroid", "norm": False, "mask_values": True}},
    ),
    "dc_skeleton_2d": (
        "2d",
        ["Dc"],
        {"Dc": {"type": "skeleton", "norm": True, "mask_values": True}},
    ),
    "dn_2d": (
        "2d",
        ["Dn"],
        {"Dn": {"closing_size": 3, "norm": True, "mask_values": True, "decline_power": 3}},
    ),
    "dn_raw_2d": (
        "2d",
        ["Dn", "I"],
        {"Dn": {"closing_size": 0, "norm": False, "mask_values": True, "decline_power": 2}},
    ),
    "dn_3d": (
        "3d",
        ["Dn"],
        {"Dn": {"closing_size": 3, "norm": True, "mask_values": True, "decline_power": 3}},
    ),
    "d_2d": ("2d", ["F", "D"], {"F": FB, "D": {"act": "tanh"}}),
    "d_3d": ("3d", ["D"], {"D": {"act": "tanh"}}),
    "hv_2d": (
        "2d",
        ["H", "V", "I"],
        {"H": {"norm": True, "act": "linear"}, "V": {"norm": True, "act": "linear"}},
    ),
    "hv_raw_2d": (
        "2d",
        ["V", "H", "I"],
        {"H": {"norm": False, "act": "linear"}, "V": {"norm": False, "act": "linear"}},
    ),
    "hvz_3d": (
        "3d",
        ["F", "H", "V", "Z", "I"],
        {"F": FB, **{c: {"norm": True, "act": "linear"} for c in "HVZ"}},
    ),
    "t_2d": ("2d", ["F", "T"], {"F": FB, "T": {"thickness": 2}}),
    "t_3d": ("3d", ["T"], {"T": {"thickness": 2}}),
    "r_2d": (
        "2d",
        ["Db", "R", "I"],
        {
            "Db": {"val_type": "norm", "act": "sigmoid", "mask_values": False},
            "R": {"nrays": 8, "mask_values": True},
        },
    ),
    "r_3d": ("3d", ["R", "I"], {"R": {"nrays": 12, "mask_values": True}}),
    "flows_2d": (
        "2d",
        ["F", "Gv", "Gh", "I"],
        {"F": FB, "Gv": {"gradient_type": "cellpose"}, "Gh": {"gradient_type": "cellpose"}},
    ),
    "omnipose_2d": (
        "2d",
        ["Db", "Gv", "Gh", "I"],
        {
            "Db": {"val_type": "omnipose", "act": "", "mask_values": False},
            **{c: {"gradient_type": "omnipose"} for c in ("Gv", "Gh")},
        },
    ),
    "omnipose_3d": (
        "3d",
        ["Db", "Gz", "Gv", "Gh", "I"],
        {
            "Db": {"val_type": "omnipose", "act": "", "mask_values": False},
            **{c: {"gradient_type": "omnipose"} for c in ("Gz", "Gv", "Gh")},
        },
    ),
    "we_f_2d": ("2d", ["F", "C", "We"], {"F": FB, "C": {"mode": "thick"}}),
    "we_labels_2d": ("2d", ["C", "We"], {"C": {"mode": "thick"}}),
    "we_labels_3d": (
        "3d",
        ["Db", "We"],
        {"Db": {"val_type": "norm", "act": "sigmoid", "mask_values": True}},
    ),
}

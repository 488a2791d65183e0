"""BiaPy's configuration vocabulary, as data: the key tree, defaults, names and allowed values.

This module is the single source of truth for BiaPy's vocabulary in the runner: the config
checker, the decoders, ``make-config`` and the Galaxy form's choices all read it (and
``tests/test_vocabulary.py`` fails when one of them drifts).

``DEFAULTS`` is BiaPy 3.7.1's complete key tree (585 keys, read from BiaPy's ``config.py``), with
BiaPy's defaults; paths are relative placeholders. Older names of BiaPy 3.x releases are in
``ALIASES`` (plain renames) and ``biapy_runner.config.convert`` (conversions of value or shape, as
BiaPy's own converter does them). The type of each default is the type a value must have (tuples
accept BiaPy's ``"(1, 2)"`` strings, floats accept ``"1.E-4"``); ``FLEXIBLE`` lists keys that accept
more than one type, ``CHOICES`` / ``ELEMENT_CHOICES`` the allowed values, ``TRAINING_ONLY`` the keys
inference ignores and ``NOT_IMPLEMENTED`` the keys that change inference results in BiaPy but that
this runner does not implement (an error when set away from the default).
"""

from __future__ import annotations

from typing import Any

#: BiaPy releases whose configuration files this runner reads (3.0-3.3 share 3.4's keys)
SUPPORTED_BIAPY_VERSIONS = "3.0 to 3.7.1"

PROBLEM_TYPES = (
    "SEMANTIC_SEG",
    "INSTANCE_SEG",
    "DETECTION",
    "DENOISING",
    "SUPER_RESOLUTION",
    "SELF_SUPERVISED",
    "CLASSIFICATION",
    "IMAGE_TO_IMAGE",
)

# --------------------------------------------------------------------------------------------
# instance vocabulary (BiaPy 3.7): channel names, legacy spellings, creation processes
# --------------------------------------------------------------------------------------------

#: channel names of PROBLEM.INSTANCE_SEG.DATA_CHANNELS (3.7 list form, TYPE "regular"), with
#: what each one holds (BiaPy 3.7.1's config.py and check_configuration)
INSTANCE_CHANNEL_MEANINGS: dict[str, str] = {
    "F": "foreground (each instance, binary)",
    "B": "background (everything outside the instances, binary)",
    "P": "central part (centroid or skeleton, binary or heatmap)",
    "C": "contour (binary)",
    "M": "whole foreground mask (CartoCell legacy, with F and C, 3D only)",
    "H": "horizontal distance to the centroid (HoVer-Net, signed)",
    "V": "vertical distance to the centroid (HoVer-Net, signed)",
    "Z": "depth distance to the centroid (HoVer-Net, signed, 3D only)",
    "Gv": "flow field, y component (Cellpose/Omnipose)",
    "Gh": "flow field, x component (Cellpose/Omnipose)",
    "Gz": "flow field, z component (Cellpose/Omnipose, 3D only)",
    "Db": "distance to the boundary (inside the instances; high at the centre)",
    "Dc": "distance to the centre (low at the centre)",
    "Dn": "distance to the closest neighbour",
    "D": "signed distance (positive inside, negative outside, tanh-normalised)",
    "R": "radial distances along fixed rays (StarDist); nrays channels",
    "T": "touching area between instances",
    "A": "affinities, one (z, y, x) triple per offset (alone, 3D only)",
    "E": "embeddings (alone; expands to E_offset, E_sigma, E_seediness)",
    "E_offset": "spatial embedding offsets (EmbedSeg), one channel per spatial axis",
    "E_sigma": "embedding clustering bandwidth (EmbedSeg), one channel per spatial axis",
    "E_seediness": "seediness map (EmbedSeg), one channel",
    "We": "weight map (added by BiaPy for training only)",
    "I": "raw labels (added by BiaPy for training only, never a model output)",
}
#: every 3.7 list-form channel name, in BiaPy's order
INSTANCE_CHANNELS: tuple[str, ...] = tuple(INSTANCE_CHANNEL_MEANINGS)
#: channel names of PROBLEM.INSTANCE_SEG.TYPE "synapses"
SYNAPSE_CHANNELS: tuple[str, ...] = ("F_pre", "F_post", "H", "V", "Z")
#: channels BiaPy adds by itself for training; never model outputs
AUXILIARY_CHANNELS: tuple[str, ...] = ("We", "I")

#: string form of DATA_CHANNELS (BiaPy < 3.7): the string -> its legacy channel tokens
LEGACY_CHANNEL_SETS: dict[str, tuple[str, ...]] = {
    "B": ("B",),
    "C": ("C",),
    "BC": ("B", "C"),
    "BCM": ("B", "C", "M"),
    "BCD": ("B", "C", "D"),
    "BCDv2": ("B", "C", "Dv2"),
    "BD": ("B", "D"),
    "BDv2": ("B", "Dv2"),
    "BP": ("B", "P"),
    "BCP": ("B", "C", "P"),
    "Dv2": ("Dv2",),
    "A": ("A",),
}
#: the older channel strings the Galaxy form's guided mode offers after BiaPy 3.7's sets
#: (``GUIDED_INSTANCE_CHANNELS``), in the form's order
GUIDED_LEGACY_CHANNELS: tuple[str, ...] = (
    "BC",
    "BCM",
    "BCD",
    "BCDv2",
    "BD",
    "BDv2",
    "BP",
    "Dv2",
    "B",
    "C",
)
#: legacy token -> 3.7 list name (BiaPy's converter; the other tokens keep their name). Legacy
#: "B" (instance body) is 3.7 "F"; legacy "D" (distance to the boundary) is "Db"; legacy "Dv2"
#: (distance also over the background) is the signed distance "D".
LEGACY_TO_LIST: dict[str, str] = {"B": "F", "D": "Db", "Dv2": "D"}
#: string forms of the synapse channels (BiaPy < 3.7): "B" pre/post sites, "BF" pre sites + flows
LEGACY_SYNAPSE_CHANNEL_SETS: tuple[str, ...] = ("B", "BF")
#: every accepted string form (instances and synapses)
INSTANCE_CHANNEL_STRINGS: tuple[str, ...] = tuple(
    dict.fromkeys((*LEGACY_CHANNEL_SETS, *LEGACY_SYNAPSE_CHANNEL_SETS))
)


def legacy_channels_as_list(value: str) -> list[str]:
    """The 3.7 list form of a legacy DATA_CHANNELS string (``"BCDv2"`` -> ``["F", "C", "D"]``).

    Parameters
    ----------
    value : str
        A key of ``LEGACY_CHANNEL_SETS``.

    Returns
    -------
    list of str
        The channel names BiaPy 3.7 uses for the same model outputs, in the same order.
    """
    return [LEGACY_TO_LIST.get(token, token) for token in LEGACY_CHANNEL_SETS[value]]


#: values of PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS ("" = chosen from the channels)
INSTANCE_CREATION_PROCESSES: tuple[str, ...] = (
    "watershed",
    "agglomeration",
    "stardist",
    "embeddings",
    "gradient-flow",
)
#: the channel that selects a creation process when INSTANCE_CREATION_PROCESS is "" (first
#: match wins; none matches: "watershed")
CREATION_PROCESS_BY_CHANNEL: tuple[tuple[str, str], ...] = (
    ("R", "stardist"),
    ("Gv", "gradient-flow"),
    ("E_offset", "embeddings"),
    ("E", "embeddings"),
    ("A", "agglomeration"),
)
#: channels each creation process accepts in BiaPy 3.7.1 (check_configuration)
CREATION_PROCESS_CHANNELS: dict[str, frozenset[str]] = {
    "watershed": frozenset(
        {"F", "B", "P", "C", "M", "H", "V", "Z", "Db", "Dc", "Dn", "D", "T", "A"}
    ),
    "agglomeration": frozenset({"A"}),
    "stardist": frozenset({"Db", "R"}),
    "embeddings": frozenset({"E", "E_offset", "E_sigma", "E_seediness"}),
    "gradient-flow": frozenset({"F", "Db", "Gv", "Gh", "Gz"}),
}


def creation_process(channels: list[str] | tuple[str, ...], configured: str = "") -> str:
    """The instance creation process BiaPy uses for ``channels`` (3.7 list names).

    Parameters
    ----------
    channels : sequence of str
        DATA_CHANNELS in list form.
    configured : str
        PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS ("" = choose from the channels).

    Returns
    -------
    str
        One of ``INSTANCE_CREATION_PROCESSES``.
    """
    if configured:
        return configured
    for channel, process in CREATION_PROCESS_BY_CHANNEL:
        if channel in channels:
            return process
    return "watershed"


#: BiaPy 3.7's watershed defaults per channel set (``check_configuration``): seed channels,
#: topographic surface, growth-mask channels. Other sets need the WATERSHED keys set.
WATERSHED_DEFAULTS: dict[frozenset[str], tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    frozenset(k.split()): (tuple(s.split()), t, tuple(g.split()))
    for k, s, t, g in (
        ("C", "C", "C", "C"),
        ("F", "F", "F", "F"),
        ("F C", "F C", "F", "F"),
        ("F P", "P", "F", "F"),
        ("F D", "F D", "F", "F"),
        ("F Dc", "F Dc", "F", "F"),
        ("F Db", "F Db", "F", "F"),
        ("F Dn", "F Dn", "F", "F"),
        ("F V H", "F V H", "F", "F"),
        ("Db V H", "Db V H", "Db", "Db"),
        ("Dc V H", "Dc V H", "Dc", "Dc"),
        ("D V H", "D V H", "D", "D"),
        ("F C M", "F C", "F", "F"),
        ("F Z V H", "F Z V H", "F", "F"),
        ("Db Z V H", "Db Z V H", "Db", "Db"),
        ("Dc Z V H", "Dc Z V H", "Dc", "Dc"),
        ("D Z V H", "D Z V H", "D", "D"),
        ("F C Dc", "F C Dc", "F", "F"),
        ("F C Db", "F C Db", "F", "F"),
        ("F C D", "F C D", "F", "F"),
        ("A", "A", "A", "A"),
        ("Dc", "Dc", "Dc", "Dc"),
        ("Db", "Db", "Db", "Db"),
    )
}
#: channel sets the guided mode (make-config, the Galaxy form) offers, in model-output order,
#: with the process that decodes them: every set with a BiaPy watershed default, then the other
#: processes' channel sets
GUIDED_INSTANCE_CHANNELS: tuple[tuple[tuple[str, ...], str], ...] = (
    *(
        (channels, "watershed")
        for channels in (
            ("F", "C"),
            ("F", "C", "M"),
            ("F", "P"),
            ("F", "Db"),
            ("F", "Dc"),
            ("F", "Dn"),
            ("F", "D"),
            ("F", "C", "Db"),
            ("F", "C", "Dc"),
            ("F", "C", "D"),
            ("F", "V", "H"),
            ("F", "Z", "V", "H"),
            ("Db", "V", "H"),
            ("F",),
            ("C",),
            ("Db",),
            ("Dc",),
        )
    ),
    (("Db", "R"), "stardist"),
    (("F", "Gv", "Gh"), "gradient-flow"),
    (("F", "Gz", "Gv", "Gh"), "gradient-flow"),
    (("E_offset", "E_sigma", "E_seediness"), "embeddings"),
    (("A",), "agglomeration"),
)


#: the channels whose model output is a probability (binary targets)
BINARY_CHANNELS: frozenset[str] = frozenset({"F", "B", "P", "C", "M", "T"})
#: allowed values of WATERSHED.SEED_CHANNELS_THRESH / GROWTH_MASK_CHANNELS_THRESH items
AUTO_THRESHOLD = "auto"
#: number of StarDist rays when DATA_CHANNELS_EXTRA_OPTS does not set ``nrays``: by spatial ndim
STARDIST_DEFAULT_RAYS: dict[int, int] = {2: 32, 3: 96}
#: TEST.POST_PROCESSING.INSTANCE_REFINEMENT.OPERATIONS
INSTANCE_REFINEMENT_OPERATIONS: tuple[str, ...] = (
    "dilation",
    "erosion",
    "fill_holes",
    "clear_border",
    "remove_small_objects",
    "remove_big_objects",
)


# --------------------------------------------------------------------------------------------
# BiaPy 3.7.1's key tree with its defaults (section by section, in config.py's order)
# --------------------------------------------------------------------------------------------


def _zarr_multiple_data() -> dict[str, Any]:
    """Raw and GT from one Zarr/H5 file: the keys each DATA split repeats."""
    return {
        "INPUT_ZARR_MULTIPLE_DATA": False,
        "INPUT_ZARR_MULTIPLE_DATA_RAW_PATH": "",
        "INPUT_ZARR_MULTIPLE_DATA_GT_PATH": "",
        "INPUT_ZARR_MULTIPLE_DATA_ID_PATH": "annotations.ids",
        "INPUT_ZARR_MULTIPLE_DATA_PARTNERS_PATH": "annotations.presynaptic_site.partners",
        "INPUT_ZARR_MULTIPLE_DATA_LOCATIONS_PATH": "annotations.locations",
        "INPUT_ZARR_MULTIPLE_DATA_RESOLUTION_PATH": "volumes.raw",
    }


def _tiles_and_axes() -> dict[str, Any]:
    """Overlap, padding, resolution and axes orders: the keys each DATA split repeats."""
    return {
        "OVERLAP": (0, 0),
        "PADDING": (0, 0),
        "RESOLUTION": (-1,),
        "INPUT_IMG_AXES_ORDER": "TZCYX",
        "INPUT_MASK_AXES_ORDER": "TZCYX",
    }


def _filter_samples() -> dict[str, Any]:
    """Filtering samples by their properties: the section each DATA split repeats."""
    return {"ENABLE": False, "PROPS": [], "VALUES": [], "SIGNS": [], "NORM_BEFORE": False}


_SYSTEM = {
    "NUM_CPUS": -1,
    "NUM_WORKERS": -1,
    "NUM_GPUS": 0,
    "DEVICE": "cpu",
    "SEED": 0,
    "PIN_MEM": True,
}

_PROBLEM = {
    "PRINT_OLD_KEY_CHANGES": True,
    "TYPE": "SEMANTIC_SEG",
    "NDIM": "2D",
    "SEMANTIC_SEG": {
        "IGNORE_CLASS_ID": 0,
    },
    "INSTANCE_SEG": {
        "TYPE": "regular",
        "DATA_CHANNELS": ["B", "C"],
        "DATA_CHANNELS_EXTRA_OPTS": [{}],
        "DATA_CHANNELS_LOSSES": [],
        "CLASS_REBALANCE_WITHIN_CHANNELS": True,
        "CHANNELS_PER_HEAD_INFO": [],
        "SEPARATED_DECODERS_PER_HEAD": False,
        "SEPARATED_DECODERS_DIVIDE_FEATURE_MAPS": False,
        "DATA_CHANNEL_WEIGHTS": (1, 1),
        "BORDER_EXTRA_WEIGHTS": "",
        "INSTANCE_CREATION_PROCESS": "",
        "WATERSHED": {
            "SEED_CHANNELS": [],
            "SEED_CHANNELS_THRESH": [],
            "TOPOGRAPHIC_SURFACE_CHANNEL": "",
            "GROWTH_MASK_CHANNELS": [],
            "GROWTH_MASK_CHANNELS_THRESH": [],
            "SEED_MORPH_SEQUENCE": [],
            "SEED_MORPH_RADIUS": [],
            "ERODE_AND_DILATE_GROWTH_MASK": False,
            "FORE_EROSION_RADIUS": 5,
            "FORE_DILATION_RADIUS": 5,
            "DATA_CHECK_MW": False,
            "DATA_REMOVE_SMALL_OBJ_BEFORE": 10,
            "DATA_REMOVE_BEFORE_MW": False,
            "BY_2D_SLICES": False,
        },
        "AGGLOMERATION": {
            "FRAGMENT_SEED_TH": 0.9,
            "FRAGMENT_GROWTH_TH": 0.1,
            "MERGE_TH": 0.5,
            "MERGE_QUANTILE": 50.0,
            "MIN_EDGE_VOXELS": 5,
        },
        "STARDIST": {
            "PROB_THRESH": 0.4,
            "NMS_IOU_THRESH": 0.3,
            "GRID": [],
        },
        "CELLPOSE": {
            "FG_THRESH": 0.5,
            "FLOW_THRESHOLD": 0.4,
            "N_STEPS": 200,
            "DIAMETER": 0.0,
            "DIAM_MEAN": 30.0,
            "SCALE_RANGE": 0.5,
            "TEST_DOUBLE_INFERENCE": True,
        },
        "OMNIPOSE": {
            "MASK_THRESHOLD": 0.0,
            "FLOW_THRESHOLD": 0.4,
            "NITER": 0,
        },
        "EMBEDSEG": {
            "FG_THRESH": 0.5,
            "SEED_THRESH": 0.9,
            "MIN_MASK_SUM": 0,
            "MIN_UNCLUSTERED_SUM": 0,
            "GRID_SIZE": -1,
        },
        "SYNAPSES": {
            "POINT_CREATION_FUNCTION": "peak_local_max",
            "PEAK_LOCAL_MAX_MIN_DISTANCE": 1,
            "TH_TYPE": "auto",
            "MIN_TH_TO_BE_PEAK": 0.2,
            "EXCLUDE_BORDER": False,
            "BLOB_LOG_MIN_SIGMA": 5,
            "BLOB_LOG_MAX_SIGMA": 10,
            "BLOB_LOG_NUM_SIGMA": 2,
            "REMOVE_CLOSE_PRE_POINTS_RADIUS": 0,
            "REMOVE_CLOSE_POST_POINTS_RADIUS": 0,
            "REMOVE_CLOSE_POINTS_RADIUS_BY_MASK": False,
        },
    },
    "DETECTION": {
        "CENTRAL_POINT_DILATION": [2],
        "CHECK_POINTS_CREATED": True,
        "DATA_CHECK_MW": False,
        "SEPARATED_DECODERS_PER_HEAD": False,
        "SEPARATED_DECODERS_DIVIDE_FEATURE_MAPS": False,
        "CLASS_REBALANCE_WITHIN_CHANNELS": True,
        "DATA_CHANNEL_WEIGHTS": (1, 1),
    },
    "DENOISING": {
        "N2V_PERC_PIX": 0.198,
        "N2V_MANIPULATOR": "uniform_withCP",
        "N2V_NEIGHBORHOOD_RADIUS": 5,
        "N2V_STRUCTMASK": False,
        "LOAD_GT_DATA": False,
    },
    "SUPER_RESOLUTION": {
        "UPSCALING": (),
    },
    "SELF_SUPERVISED": {
        "PRETEXT_TASK": "crappify",
        "RESIZING_FACTOR": 4,
        "NOISE": 0.2,
    },
    "IMAGE_TO_IMAGE": {
        "CHANNELS_PER_HEAD_INFO": [],
        "SEPARATED_DECODERS_PER_HEAD": False,
        "SEPARATED_DECODERS_DIVIDE_FEATURE_MAPS": False,
        "OUTPUT_CHANNELS": 1,
        "MULTIPLE_RAW_ONE_TARGET_LOADER": False,
        "OUTPUT_CHANNEL_ACT": [],
        "MEMBRANE_REPAIR": {
            "ENABLE": False,
            "SOURCE_CHANNELS": ["membrane", "raw"],
            "DERIVED_CHANNELS": ["skeleton_dt", "hessian_blob", "meijering"],
            "DERIVED_CHANNELS_EXTRA_OPTS": [{}],
            "DATA_CHANNELS": ["A", "I"],
            "DATA_CHANNELS_EXTRA_OPTS": [{}],
            "POSTPROCESS": {
                "METHOD": "agglomeration",
                "FRAGMENT_SEED_TH": 0.9,
                "FRAGMENT_GROWTH_TH": 0.1,
                "MERGE_TH": 0.5,
                "MERGE_QUANTILE": 50.0,
                "MIN_EDGE_VOXELS": 5,
            },
            "GAP_AUG": {
                "ENABLE": False,
                "PROB": 0.5,
                "LENGTH_RANGE": (0.3, 1.0),
                "THICKNESS_RANGE": (4, 9),
                "N_LINES": (1, 3),
            },
            "BRIDGE_AUG": {
                "ENABLE": False,
                "PROB": 0.3,
                "LENGTH_RANGE": (0.3, 1.0),
                "THICKNESS_RANGE": (4, 9),
                "N_LINES": (1, 3),
            },
            "ARTIFACT_AUG": {
                "ENABLE": False,
                "PROB": 0.1,
                "BAND_PROB": 0.5,
                "BAND_THICKNESS_RANGE": (50, 70),
                "BLOB_SIZE_RANGE": (0.1, 0.3),
                "BLOB_N_RANGE": (1, 3),
            },
            "SKELETON_PERTURB_AUG": {
                "ENABLE": False,
                "PROB": 0.3,
                "RADIUS_RANGE": (1, 2),
            },
            "SLICE_DROPOUT_AUG": {
                "ENABLE": False,
                "PROB": 0.3,
            },
        },
    },
}

_DATA = {
    "CHECK_GENERATORS": False,
    "PATCH_SIZE": (256, 256, 1),
    "N_CLASSES": 2,
    "REFLECT_TO_COMPLETE_SHAPE": True,
    "FORCE_RGB": False,
    "FILTER_BY_IMAGE": False,
    "SAVE_FILTERED_IMAGES": False,
    "SAVE_FILTERED_IMAGES_NUM": 3,
    "RESOLUTION_NORM": {
        "ENABLE": False,
        "TARGET_RESOLUTION": (-1.0, -1.0, -1.0),
    },
    "NORMALIZATION": {
        "PERC_CLIP": {
            "ENABLE": False,
            "LOWER_PERC": -1.0,
            "UPPER_PERC": -1.0,
            "LOWER_VALUE": [-1.0],
            "UPPER_VALUE": [-1.0],
        },
        "TYPE": "zero_mean_unit_variance",
        "ZERO_MEAN_UNIT_VAR": {
            "MEAN_VAL": [-1.0],
            "STD_VAL": [-1.0],
        },
        "TARGET": {
            "ENABLE": False,
            "TYPE": "",
            "PERC_CLIP": {
                "ENABLE": False,
                "LOWER_VALUE": [-1.0],
                "UPPER_VALUE": [-1.0],
            },
            "ZERO_MEAN_UNIT_VAR": {
                "MEAN_VAL": [-1.0],
                "STD_VAL": [-1.0],
            },
        },
    },
    "TRAIN": {
        "CHECK_DATA": True,
        "IN_MEMORY": True,
        "PATH": "user_data/train/x",
        "GT_PATH": "user_data/train/y",
        **_zarr_multiple_data(),
        "INSTANCE_CHANNELS_MASK_DIR": "user_data/train/y_BC",
        "DETECTION_MASK_DIR": "user_data/train/y_detection_masks",
        "SSL_SOURCE_DIR": "user_data/train/x_ssl_source",
        "EXTRACT_RANDOM_PATCH": False,
        "PROBABILITY_MAP": False,
        "W_FOREGROUND": 0.94,
        "W_BACKGROUND": 0.06,
        "REPLICATE": 0,
        **_tiles_and_axes(),
        "FILTER_SAMPLES": _filter_samples(),
    },
    "VAL": {
        "DIST_EVAL": True,
        "FROM_TRAIN": True,
        "CROSS_VAL": False,
        "CROSS_VAL_NFOLD": 5,
        "CROSS_VAL_FOLD": 1,
        "SPLIT_TRAIN": 0.1,
        "RANDOM": True,
        "IN_MEMORY": True,
        "PATH": "user_data/val/x",
        "GT_PATH": "user_data/val/y",
        **_zarr_multiple_data(),
        "INSTANCE_CHANNELS_MASK_DIR": "user_data/val/y_BC",
        "DETECTION_MASK_DIR": "user_data/val/y_detection_masks",
        "SSL_SOURCE_DIR": "user_data/val/x_ssl_source",
        **_tiles_and_axes(),
        "FILTER_SAMPLES": _filter_samples(),
    },
    "TEST": {
        "CHECK_DATA": True,
        "IN_MEMORY": False,
        "LOAD_GT": False,
        "USE_VAL_AS_TEST": False,
        "PATH": "user_data/test/x",
        "GT_PATH": "user_data/test/y",
        "INSTANCE_CHANNELS_MASK_DIR": "user_data/test/y_BC",
        "DETECTION_MASK_DIR": "user_data/test/y_detection_masks",
        "SSL_SOURCE_DIR": "user_data/test/x_ssl_source",
        "OVERLAP": (0, 0),
        "PADDING": (0, 0),
        "MEDIAN_PADDING": False,
        "ROI_MASK": {
            "ENABLE": False,
            "PATH": "",
            "AXES_ORDER": "",
        },
        "RESOLUTION": (-1,),
        "INPUT_IMG_AXES_ORDER": "TZCYX",
        "INPUT_MASK_AXES_ORDER": "TZCYX",
        **_zarr_multiple_data(),
        "FILTER_SAMPLES": _filter_samples(),
    },
    "PREPROCESS": {
        "TRAIN": False,
        "VAL": False,
        "TEST": False,
        "RESIZE": {
            "ENABLE": False,
            "OUTPUT_SHAPE": (512, 512),
            "ORDER": 1,
            "MODE": "reflect",
            "CVAL": 0.0,
            "CLIP": True,
            "PRESERVE_RANGE": True,
            "ANTI_ALIASING": False,
        },
        "ZOOM": {
            "ENABLE": False,
            "ZOOM_FACTOR": [1, 1, 1, 1, 1],
        },
        "GAUSSIAN_BLUR": {
            "ENABLE": False,
            "SIGMA": 1,
            "MODE": "nearest",
            "CHANNEL_AXIS": None,
        },
        "MEDIAN_BLUR": {
            "ENABLE": False,
            "KERNEL_SIZE": (3, 3, 1),
        },
        "MATCH_HISTOGRAM": {
            "ENABLE": False,
            "REFERENCE_PATH": "user_data/test/x",
        },
        "CLAHE": {
            "ENABLE": False,
            "KERNEL_SIZE": None,
            "CLIP_LIMIT": 0.01,
        },
        "CANNY": {
            "ENABLE": False,
            "LOW_THRESHOLD": None,
            "HIGH_THRESHOLD": None,
        },
    },
}

_AUGMENTOR = {
    "ENABLE": False,
    "ZOOM_PROB": 0.5,
    "RANDOM_ROT_PROB": 0.5,
    "ROT90_PROB": 0.5,
    "SHEAR_PROB": 0.5,
    "SHIFT_PROB": 0.5,
    "VFLIP_PROB": 0.5,
    "HFLIP_PROB": 0.5,
    "ZFLIP_PROB": 0.5,
    "ELASTIC_PROB": 0.5,
    "G_BLUR_PROB": 0.5,
    "MEDIAN_BLUR_PROB": 0.5,
    "MOTION_BLUR_PROB": 0.5,
    "GAMMA_CONTRAST_PROB": 0.5,
    "BRIGHTNESS_PROB": 0.5,
    "CONTRAST_PROB": 0.5,
    "DROPOUT_PROB": 0.5,
    "CUTOUT_PROB": 0.5,
    "CUTBLUR_PROB": 0.5,
    "CUTMIX_PROB": 0.5,
    "CUTNOISE_PROB": 0.5,
    "MISALIGNMENT_PROB": 0.5,
    "MISSING_SECTIONS_PROB": 0.5,
    "GRAYSCALE_PROB": 0.5,
    "CHANNEL_SHUFFLE_PROB": 0.5,
    "GRIDMASK_PROB": 0.5,
    "GAUSSIAN_NOISE_PROB": 0.5,
    "POISSON_NOISE_PROB": 0.5,
    "SALT_PROB": 0.5,
    "PEPPER_PROB": 0.5,
    "SALT_AND_PEPPER_PROB": 0.5,
    "AUG_SAMPLES": True,
    "DRAW_GRID": True,
    "AUG_NUM_SAMPLES": 10,
    "SHUFFLE_TRAIN_DATA_EACH_EPOCH": True,
    "SHUFFLE_VAL_DATA_EACH_EPOCH": False,
    "ROT90": False,
    "RANDOM_ROT": False,
    "RANDOM_ROT_RANGE": (-180, 180),
    "SHEAR": False,
    "SHEAR_RANGE": (-20, 20),
    "ZOOM": False,
    "ZOOM_RANGE": (0.5, 1.5),
    "ZOOM_IN_Z": False,
    "SHIFT": False,
    "SHIFT_RANGE": (0.1, 0.2),
    "AFFINE_MODE": "reflect",
    "VFLIP": False,
    "HFLIP": False,
    "ZFLIP": False,
    "ELASTIC": False,
    "E_ALPHA": (12, 16),
    "E_SIGMA": 4,
    "E_MODE": "constant",
    "G_BLUR": False,
    "G_SIGMA": (1.0, 2.0),
    "MEDIAN_BLUR": False,
    "MB_KERNEL": (3, 7),
    "MOTION_BLUR": False,
    "MOTB_K_RANGE": (8, 12),
    "GAMMA_CONTRAST": False,
    "GC_GAMMA": (1.25, 1.75),
    "BRIGHTNESS": False,
    "BRIGHTNESS_FACTOR": (-0.1, 0.1),
    "CONTRAST": False,
    "CONTRAST_FACTOR": (-0.1, 0.1),
    "DROPOUT": False,
    "DROP_RANGE": (0, 0.2),
    "CUTOUT": False,
    "COUT_NB_ITERATIONS": (1, 3),
    "COUT_SIZE": (0.05, 0.3),
    "COUT_CVAL": 0.0,
    "COUT_APPLY_TO_MASK": False,
    "CUTBLUR": False,
    "CBLUR_SIZE": (0.2, 0.4),
    "CBLUR_DOWN_RANGE": (2, 8),
    "CBLUR_INSIDE": True,
    "CUTMIX": False,
    "CMIX_SIZE": (0.2, 0.4),
    "CUTNOISE": False,
    "CNOISE_SCALE": (0.05, 0.1),
    "CNOISE_NB_ITERATIONS": (1, 3),
    "CNOISE_SIZE": (0.2, 0.4),
    "MISALIGNMENT": False,
    "MS_DISPLACEMENT": 16,
    "MS_ROTATE_RATIO": 0.5,
    "MISSING_SECTIONS": False,
    "MISSP_CHANNEL_PB": 0.5,
    "MISSP_ITERATIONS": (10, 30),
    "GRAYSCALE": False,
    "CHANNEL_SHUFFLE": False,
    "GRIDMASK": False,
    "GRID_RATIO": 0.6,
    "GRID_D_RANGE": (0.4, 1),
    "GRID_ROTATE": 1.0,
    "GRID_INVERT": False,
    "GAUSSIAN_NOISE": False,
    "GAUSSIAN_NOISE_MEAN": 0.0,
    "GAUSSIAN_NOISE_VAR": 0.05,
    "GAUSSIAN_NOISE_USE_INPUT_IMG_MEAN_AND_VAR": False,
    "POISSON_NOISE": False,
    "SALT": False,
    "SALT_AMOUNT": 0.05,
    "PEPPER": False,
    "PEPPER_AMOUNT": 0.05,
    "SALT_AND_PEPPER": False,
    "SALT_AND_PEPPER_AMOUNT": 0.05,
    "SALT_AND_PEPPER_PROP": 0.5,
}

_MODEL = {
    "SOURCE": "biapy",
    "ARCHITECTURE": "unet",
    "FEATURE_MAPS": [16, 32, 64, 128, 256],
    "DROPOUT_VALUES": [0.0, 0.0, 0.0, 0.0, 0.0],
    "NORMALIZATION": "in",
    "KERNEL_SIZE": 3,
    "UPSAMPLE_LAYER": "convtranspose",
    "ACTIVATION": "elu",
    "Z_DOWN": [0, 0, 0, 0],
    "YX_DOWN": [0, 0, 0, 0],
    "ISOTROPY": [True, True, True, True, True],
    "LARGER_IO": False,
    "CONV_LAYERS": [2, 2, 2, 2, 2],
    "CONV_BLOCK_ORDER": "conv_norm_act",
    "CONVNEXT_SD_PROB": 0.1,
    "CONVNEXT_LAYER_SCALE": 1e-06,
    "CONVNEXT_STEM_K_SIZE": 2,
    "UNETR_VIT_MODEL": "custom",
    "UNETR_VIT_HIDD_MULT": -1,
    "UNETR_VIT_NUM_FILTERS": 16,
    "UNET_SR_UPSAMPLE_POSITION": "pre",
    "VIT_MODEL": "custom",
    "VIT_PRETRAINED_WEIGHTS": "",
    "VIT_TOKEN_SIZE": 16,
    "VIT_EMBED_DIM": 768,
    "VIT_NUM_LAYERS": 12,
    "VIT_NUM_HEADS": 12,
    "VIT_MLP_RATIO": 4.0,
    "VIT_NORM_EPS": 1e-06,
    "MAE_DEC_HIDDEN_SIZE": 512,
    "MAE_DEC_NUM_LAYERS": 8,
    "MAE_DEC_NUM_HEADS": 16,
    "MAE_DEC_MLP_DIMS": 2048,
    "MAE_MASK_TYPE": "grid",
    "MAE_MASK_RATIO": 0.5,
    "RCAN_RG_BLOCK_NUM": 10,
    "RCAN_RCAB_BLOCK_NUM": 20,
    "RCAN_CONV_FILTERS": 16,
    "RCAN_REDUCTION_RATIO": 16,
    "RCAN_UPSCALING_LAYER": True,
    "HRNET": {
        "VARIANT": "W48",
        "Z_DOWN": [0, 0, 0],
        "YX_DOWN": [0, 0, 0],
        "BLOCK_TYPE": "BASIC",
        "HEAD_TYPE": "FCN",
        "NUM_STAGES": 3,
        "NUM_MODULES": [1, 4, 3],
        "NUM_BRANCHES": [2, 3, 4],
        "NUM_BLOCKS": [[4, 4], [4, 4, 4], [4, 4, 4, 4]],
        "NUM_CHANNELS": [[18, 36], [18, 36, 72], [18, 36, 72, 144]],
    },
    "STUNET": {
        "VARIANT": "base",
        "PRETRAINED": False,
        "DEPTH": [1, 1, 1, 1, 1, 1],
        "DIMS": [32, 64, 128, 256, 512, 512],
        "POOL_OP_KERNEL_SIZES": [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1]],
        "CONV_KERNEL_SIZES": [[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    },
    "NAFNET": {
        "MIDDLE_BLK_NUM": 12,
        "ENC_BLK_NUMS": [2, 2, 4, 8],
        "DEC_BLK_NUMS": [2, 2, 2, 2],
        "DW_EXPAND": 2,
        "FFN_EXPAND": 2,
        "ARCHITECTURE_D": "patchgan",
        "PATCHGAN": {
            "BASE_FILTERS": 64,
        },
        "GENERATOR_BACKBONE": "nafnet",
    },
    "LOAD_CHECKPOINT": False,
    "ITEMS_TO_LOAD_FROM_CHECKPOINT": ["weights", "norm", "model_arch"],
    "LOAD_CHECKPOINT_EPOCH": "best_on_val",
    "OUT_CHECKPOINT_FORMAT": "pth",
    "SKIP_UNMATCHED_LAYERS": False,
    "SAVE_CKPT_FREQ": -1,
    "FREEZE_LAYERS_MATCHING": [],
    "BMZ": {
        "SOURCE_MODEL_ID": "",
        "EXPORT": {
            "ENABLE": False,
            "MODEL_NAME": "",
            "DESCRIPTION": "",
            "AUTHORS": [],
            "LICENSE": "CC-BY-4.0",
            "DOCUMENTATION": "",
            "TAGS": [],
            "CITE": [],
            "DATASET_INFO": [{}],
            "MODEL_VERSION": "0.1.0",
            "REUSE_BMZ_CONFIG": False,
        },
    },
    "TORCHVISION_MODEL_NAME": "",
}

_LOSS = {
    "TYPE": [],
    "WEIGHTS": [],
    "CLASS_REBALANCE": "none",
    "CLASS_WEIGHTS": [],
    "IGNORE_INDEX": -1,
    "CONTRAST": {
        "ENABLE": False,
        "MEMORY_SIZE": 5000,
        "PROJ_DIM": 256,
        "PIXEL_UPD_FREQ": 10,
    },
    "GAN": {
        "R1_GAMMA": 0.0,
        "ADAPTIVE_GAN_WEIGHT": False,
    },
}

_TRAIN = {
    "ENABLE": False,
    "VERBOSE": False,
    "OPTIMIZER": ["SGD"],
    "LR": [0.0001],
    "W_DECAY": 0.02,
    "OPT_BETAS": [[0.9, 0.999]],
    "BATCH_SIZE": 2,
    "EPOCHS": 360,
    "PATIENCE": -1,
    "METRICS": [],
    "GRADIENT_CLIP_NORM": 0.0,
    "CHECKPOINT_MONITOR": "val_loss",
    "SAVE_TRAIN_PREDS_FREQ": -1,
    "SAVE_TRAIN_PREDS_NUM_SAMPLES": 1,
    "SAVE_TRAIN_PREDS_SHOW": False,
    "LR_SCHEDULER": {
        "NAME": "",
        "MIN_LR": [-1.0],
        "REDUCEONPLATEAU_FACTOR": 0.5,
        "REDUCEONPLATEAU_PATIENCE": -1,
        "WARMUP_COSINE_DECAY_EPOCHS": -1,
        "COSINE_DECAY_FRACTION": -1.0,
    },
}

_TEST = {
    "ENABLE": False,
    "REDUCE_MEMORY": False,
    "METRICS_IN_CPU": False,
    "SAVE_MODEL_RAW_OUTPUT": True,
    "VERBOSE": True,
    "AUGMENTATION": False,
    "AUGMENTATION_MODE": "mean",
    "AUGMENTATION_GROUP": "auto",
    "ANALIZE_2D_IMGS_AS_3D_STACK": False,
    "REUSE_PREDICTIONS": False,
    "FULL_IMG": False,
    "METRICS": [],
    "EVAL_BORDER_CROP": [],
    "MATCHING_STATS": True,
    "MATCHING_STATS_THS": [0.3, 0.5, 0.75],
    "MATCHING_STATS_THS_COLORED_IMG": [],
    "MATCHING_STATS_BY_IMAGE": True,
    "BY_CHUNKS": {
        "ENABLE": False,
        "SAVE_OUT_TIF": False,
        "FLUSH_EACH": 100,
        "Z_START": -1,
        "Z_END": -1,
        "WRITE_RAW_PREDICTIONS": False,
        "PHASES": ["prediction", "instance_creation", "instance_merging"],
        "WORKFLOW_PROCESS": {
            "ENABLE": True,
            "TYPE": "chunk_by_chunk",
            "PATCHES_PER_TILE": (1, 1, 1),
            "INSTANCE_SEG_MERGE_IOU_TH": 0.3,
        },
    },
    "DET_POINT_CREATION_FUNCTION": "peak_local_max",
    "DET_PEAK_LOCAL_MAX_MIN_DISTANCE": 1,
    "DET_TH_TYPE": "manual",
    "DET_MIN_TH_TO_BE_PEAK": 0.2,
    "DET_EXCLUDE_BORDER": False,
    "DET_BLOB_LOG_MIN_SIGMA": 5,
    "DET_BLOB_LOG_MAX_SIGMA": 10,
    "DET_BLOB_LOG_NUM_SIGMA": 2,
    "DET_TOLERANCE": 10,
    "POST_PROCESSING": {
        "MEDIAN_FILTER": False,
        "MEDIAN_FILTER_AXIS": [],
        "MEDIAN_FILTER_SIZE": [],
        "INSTANCE_REFINEMENT": {
            "ENABLE": False,
            "OPERATIONS": [],
            "VALUES": [],
        },
        "MEASURE_PROPERTIES": {
            "ENABLE": False,
            "EXTRA_PROPS": [],
            "REMOVE_BY_PROPERTIES": {
                "ENABLE": False,
                "PROPS": [],
                "VALUES": [],
                "SIGNS": [],
            },
        },
        "VORONOI_ON_MASK": False,
        "VORONOI_TH": 0.0,
        "REPARE_LARGE_BLOBS_SIZE": -1,
        "REMOVE_CLOSE_POINTS": False,
        "REMOVE_CLOSE_POINTS_RADIUS": 0,
        "DET_WATERSHED": False,
        "DET_WATERSHED_FIRST_DILATION": [-1, -1],
        "DET_WATERSHED_DONUTS_CLASSES": [-1],
        "DET_WATERSHED_DONUTS_PATCH": [13, 120, 120],
        "DET_WATERSHED_DONUTS_NUCLEUS_DIAMETER": 30,
    },
}

_PATHS = {
    "RESULT_DIR": {
        "PATH": "results",
        "PER_IMAGE": "results/per_image",
        "PER_IMAGE_BIN": "results/per_image_binarized",
        "PER_IMAGE_INSTANCES": "results/per_image_instances",
        "PER_IMAGE_POST_PROCESSING": "results/per_image_post_processing",
        "FULL_IMAGE": "results/full_image",
        "FULL_IMAGE_BIN": "results/full_image_binarized",
        "FULL_IMAGE_INSTANCES": "results/full_image_instances",
        "FULL_IMAGE_POST_PROCESSING": "results/full_image_post_processing",
        "AS_3D_STACK": "results/as_3d_stack",
        "AS_3D_STACK_BIN": "results/as_3d_stack_binarized",
        "AS_3D_STACK_POST_PROCESSING": "results/as_3d_stack_post_processing",
        "DET_LOCAL_MAX_COORDS_CHECK": "results/per_image_local_max_check",
        "DET_LOCAL_MAX_COORDS_CHECK_POST_PROCESSING": "results/per_image_local_max_check_post_processing",
        "DET_ASSOC_POINTS": "results/point_associations",
        "INST_ASSOC_POINTS": "results/instance_associations",
    },
    "BMZ_EXPORT_PATH": "results/BMZ_files",
    "PROFILER": "results/profiler",
    "CHARTS": "results/charts",
    "TRAIN_PRED_SAMPLES": "results/train_pred_samples",
    "DA_SAMPLES": "results/aug",
    "GEN_CHECKS": "results/gen_check",
    "GEN_MASK_CHECKS": "results/gen_mask_check",
    "TRAIN_INSTANCE_CHANNELS_CHECK": "results/train_BC_instance_channels",
    "VAL_INSTANCE_CHANNELS_CHECK": "results/val_BC_instance_channels",
    "TEST_INSTANCE_CHANNELS_CHECK": "results/test_BC_instance_channels",
    "CHECKPOINT": "checkpoints",
    "CHECKPOINT_FILE": "",
    "PROB_MAP_DIR": "prob_map",
    "PROB_MAP_FILENAME": "prob_map.npy",
    "WATERSHED_DIR": "results/watershed",
    "MAE_OUT_DIR": "results/MAE_checks",
    "FIL_SAMPLES_DIR": "results/filtering_information",
}

_LOG = {
    "LOG_DIR": "train_logs",
    "TENSORBOARD_LOG_DIR": "results/tensorboard",
    "LOG_FILE_PREFIX": "",
    "CHART_CREATION_FREQ": 5,
}


# --------------------------------------------------------------------------------------------
# keys the runner accepts beyond 3.7.1's tree
# --------------------------------------------------------------------------------------------

#: the runner's own keys, and the BiaPy < 3.7 keys it still reads (no 3.7.1 equivalent)
_RUNNER_KEYS: dict[str, Any] = {
    "PROBLEM": {
        "INSTANCE_SEG": {
            # BiaPy < 3.6.6: find_boundaries mode of the C channel's target (per-channel IoU)
            "DATA_CONTOUR_MODE": "thick",
        },
    },
    # BiaPy 3.7 made True the default; the runner keeps 3.6's zero padding until its tiling
    # follows BiaPy's rule for images smaller than the patch (README: "Differences")
    "DATA": {"REFLECT_TO_COMPLETE_SHAPE": False},
    # restoration workflows: "float32", "input_cast" or "input_rescale"
    "TEST": {"OUTPUT_DTYPE": "float32"},
    # derived by BiaPy from DATA.TEST.GT_PATH; written into the configurations it saves
    "PATHS": {"TEST_FULL_GT_H5": "user_data/test/y/h5"},
}


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the nested ``extra`` merged in (new dicts; neither argument changes)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


#: the whole key tree with BiaPy's defaults
DEFAULTS: dict[str, Any] = _merged(
    {
        "SYSTEM": _SYSTEM,
        "PROBLEM": _PROBLEM,
        "DATA": _DATA,
        "AUGMENTOR": _AUGMENTOR,
        "MODEL": _MODEL,
        "LOSS": _LOSS,
        "TRAIN": _TRAIN,
        "TEST": _TEST,
        "PATHS": _PATHS,
        "LOG": _LOG,
    },
    _RUNNER_KEYS,
)

_WS = "PROBLEM.INSTANCE_SEG.WATERSHED"
_PP = "TEST.POST_PROCESSING"

#: older BiaPy 3.x names (dotted key or section) -> their 3.7.1 names, where BiaPy's converter
#: only renames (the value is kept). Conversions of value or shape are in config/convert.py.
ALIASES: dict[str, str] = {
    "MODEL.N_CLASSES": "DATA.N_CLASSES",
    "DATA.TRAIN.MASK_PATH": "DATA.TRAIN.GT_PATH",
    "DATA.VAL.MASK_PATH": "DATA.VAL.GT_PATH",
    "DATA.TEST.MASK_PATH": "DATA.TEST.GT_PATH",
    "MODEL.BMZ.SOURCE_MODEL_DOI": "MODEL.BMZ.SOURCE_MODEL_ID",
    "PROBLEM.INSTANCE_SEG.ERODE_AND_DILATE_FOREGROUND": f"{_WS}.ERODE_AND_DILATE_GROWTH_MASK",
    "PROBLEM.INSTANCE_SEG.ERODE_AND_DILATE_GROWTH_MASK": f"{_WS}.ERODE_AND_DILATE_GROWTH_MASK",
    "PROBLEM.INSTANCE_SEG.SEED_MORPH_SEQUENCE": f"{_WS}.SEED_MORPH_SEQUENCE",
    "PROBLEM.INSTANCE_SEG.SEED_MORPH_RADIUS": f"{_WS}.SEED_MORPH_RADIUS",
    "PROBLEM.INSTANCE_SEG.FORE_EROSION_RADIUS": f"{_WS}.FORE_EROSION_RADIUS",
    "PROBLEM.INSTANCE_SEG.FORE_DILATION_RADIUS": f"{_WS}.FORE_DILATION_RADIUS",
    "PROBLEM.INSTANCE_SEG.DATA_CHECK_MW": f"{_WS}.DATA_CHECK_MW",
    "PROBLEM.INSTANCE_SEG.DATA_REMOVE_SMALL_OBJ_BEFORE": f"{_WS}.DATA_REMOVE_SMALL_OBJ_BEFORE",
    "PROBLEM.INSTANCE_SEG.DATA_REMOVE_BEFORE_MW": f"{_WS}.DATA_REMOVE_BEFORE_MW",
    "PROBLEM.INSTANCE_SEG.WATERSHED_BY_2D_SLICES": f"{_WS}.BY_2D_SLICES",
    "DATA.NORMALIZATION.PERC_LOWER": "DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC",
    "DATA.NORMALIZATION.PERC_UPPER": "DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC",
    "DATA.EXTRACT_RANDOM_PATCH": "DATA.TRAIN.EXTRACT_RANDOM_PATCH",
    "DATA.PROBABILITY_MAP": "DATA.TRAIN.PROBABILITY_MAP",
    "DATA.W_FOREGROUND": "DATA.TRAIN.W_FOREGROUND",
    "DATA.W_BACKGROUND": "DATA.TRAIN.W_BACKGROUND",
    **{
        f"TEST.BY_CHUNKS.{key}": f"DATA.TEST.{key}"
        for key in (
            "INPUT_IMG_AXES_ORDER",
            "INPUT_MASK_AXES_ORDER",
            "INPUT_ZARR_MULTIPLE_DATA",
            "INPUT_ZARR_MULTIPLE_DATA_RAW_PATH",
            "INPUT_ZARR_MULTIPLE_DATA_GT_PATH",
            "INPUT_ZARR_MULTIPLE_DATA_ID_PATH",
            "INPUT_ZARR_MULTIPLE_DATA_PARTNERS_PATH",
            "INPUT_ZARR_MULTIPLE_DATA_LOCATIONS_PATH",
            "INPUT_ZARR_MULTIPLE_DATA_RESOLUTION_PATH",
        )
    },
    "TEST.DET_IGNORE_POINTS_OUTSIDE_BOX": "TEST.EVAL_BORDER_CROP",
    f"{_PP}.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.SIGN": f"{_PP}.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.SIGNS",
    "MODEL.CONVNEXT_LAYERS": "MODEL.CONV_LAYERS",
    "MODEL.UNETR_DEC_ACTIVATION": "MODEL.ACTIVATION",
    "MODEL.UNETR_DEC_KERNEL_SIZE": "MODEL.KERNEL_SIZE",
}

#: older keys BiaPy's converter deletes (their value has no 3.7.1 place); dropped with a note
DROPPED: tuple[str, ...] = (
    "TEST.EVALUATE",
    "TRAIN.ACCUM_ITER",
    "DATA.VAL.BINARY_MASKS",
    "DATA.TEST.ARGMAX_TO_OUTPUT",
    "DATA.NORMALIZATION.MEASURE_BY",
    "DATA.NORMALIZATION.APPLICATION_MODE",
    "DATA.NORMALIZATION.CUSTOM_MODE",
    "DATA.TRAIN.INSTANCE_CHANNELS_DIR",
    "DATA.VAL.INSTANCE_CHANNELS_DIR",
    "DATA.TEST.INSTANCE_CHANNELS_DIR",
    "DATA.TRAIN.MINIMUM_FOREGROUND_PER",
    "AUGMENTOR.DA_PROB",
    "AUGMENTOR.BRIGHTNESS_MODE",
    "AUGMENTOR.CONTRAST_MODE",
    "AUGMENTOR.BRIGHTNESS_EM",
    "AUGMENTOR.BRIGHTNESS_EM_FACTOR",
    "AUGMENTOR.BRIGHTNESS_EM_MODE",
    "AUGMENTOR.CONTRAST_EM",
    "AUGMENTOR.CONTRAST_EM_FACTOR",
    "AUGMENTOR.CONTRAST_EM_MODE",
    "MODEL.LAST_ACTIVATION",
    "MODEL.BATCH_NORMALIZATION",
    "MODEL.LOAD_MODEL_FROM_CHECKPOINT",
    "MODEL.LOAD_CHECKPOINT_ONLY_WEIGHTS",
    "TEST.BY_CHUNKS.FORMAT",
    "TEST.BY_CHUNKS.WORKFLOW_PROCESS.INSTANCE_SEG_HALO",
    "PROBLEM.INSTANCE_SEG.DISTANCE_CHANNEL_MASK",
    "PROBLEM.INSTANCE_SEG.DATA_MW_OPTIMIZE_THS",
    "PROBLEM.INSTANCE_SEG.SYNAPSES.NORMALIZE_DISTANCES",
    "PROBLEM.INSTANCE_SEG.SYNAPSES.POSTSITE_DILATION",
    "PROBLEM.INSTANCE_SEG.SYNAPSES.POSTSITE_DILATION_DISTANCE_CHANNELS",
    "PATHS.MEAN_INFO_FILE",
    "PATHS.STD_INFO_FILE",
    "PATHS.LWR_X_FILE",
    "PATHS.UPR_X_FILE",
    "PATHS.LWR_Y_FILE",
    "PATHS.UPR_Y_FILE",
    "PATHS.RESULT_DIR.BMZ_BUILD",
)

#: the watershed thresholds of BiaPy < 3.6.6 (DATA_MW_TH_TYPE "manual"): old key -> the channels
#: (first present wins) whose seed threshold it becomes, as BiaPy's converter does it
LEGACY_SEED_THRESHOLDS: dict[str, tuple[str, ...]] = {
    "DATA_MW_TH_BINARY_MASK": ("F",),
    "DATA_MW_TH_CONTOUR": ("C",),
    "DATA_MW_TH_DISTANCE": ("Dc", "D", "Db"),
    "DATA_MW_TH_POINTS": ("P",),
}
#: ... and the one that becomes the growth-mask threshold of F
LEGACY_GROWTH_THRESHOLD = "DATA_MW_TH_FOREGROUND"
#: BiaPy 3.4-3.6's defaults of those thresholds (the guided mode's manual values start there)
LEGACY_THRESHOLD_DEFAULTS: dict[str, float] = {
    "DATA_MW_TH_BINARY_MASK": 0.5,
    "DATA_MW_TH_CONTOUR": 0.1,
    "DATA_MW_TH_FOREGROUND": 0.3,
    "DATA_MW_TH_DISTANCE": 1.0,
    "DATA_MW_TH_POINTS": 0.5,
}

#: keys whose value may take several types (tried in order); "any" accepts everything
FLEXIBLE: dict[str, tuple[str, ...]] = {
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS": ("list", "str"),
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS": ("any",),
    "PROBLEM.INSTANCE_SEG.DATA_CHANNEL_WEIGHTS": ("tuple",),
    "PROBLEM.INSTANCE_SEG.CHANNELS_PER_HEAD_INFO": ("anylist",),
    f"{_WS}.SEED_CHANNELS_THRESH": ("anylist",),
    f"{_WS}.GROWTH_MASK_CHANNELS_THRESH": ("anylist",),
    f"{_WS}.GROWTH_MASK_CHANNELS": ("list", "str"),
    f"{_WS}.TOPOGRAPHIC_SURFACE_CHANNEL": ("str", "list"),
    f"{_WS}.DATA_REMOVE_SMALL_OBJ_BEFORE": ("int", "float"),
    f"{_WS}.SEED_MORPH_RADIUS": ("anylist",),
    "PROBLEM.INSTANCE_SEG.STARDIST.GRID": ("anylist",),
    "PROBLEM.INSTANCE_SEG.AGGLOMERATION.MERGE_QUANTILE": ("float",),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.BLOB_LOG_MIN_SIGMA": ("int", "float", "list"),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.BLOB_LOG_MAX_SIGMA": ("int", "float", "list"),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.REMOVE_CLOSE_PRE_POINTS_RADIUS": ("int", "float"),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.REMOVE_CLOSE_POST_POINTS_RADIUS": ("int", "float"),
    "PROBLEM.DETECTION.CENTRAL_POINT_DILATION": ("list", "int"),
    "PROBLEM.SELF_SUPERVISED.RESIZING_FACTOR": ("int", "float"),
    "PROBLEM.SUPER_RESOLUTION.UPSCALING": ("tuple",),
    "DATA.TEST.RESOLUTION": ("tuple",),
    "DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC": ("float", "list"),
    "DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC": ("float", "list"),
    "DATA.NORMALIZATION.PERC_CLIP.LOWER_VALUE": ("list", "float"),
    "DATA.NORMALIZATION.PERC_CLIP.UPPER_VALUE": ("list", "float"),
    "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL": ("list", "float"),
    "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL": ("list", "float"),
    "DATA.TEST.FILTER_SAMPLES.PROPS": ("anylist",),
    "DATA.TEST.FILTER_SAMPLES.VALUES": ("anylist",),
    "DATA.TEST.FILTER_SAMPLES.SIGNS": ("anylist",),
    "TEST.DET_MIN_TH_TO_BE_PEAK": ("float", "list"),
    "TEST.DET_TOLERANCE": ("int", "float", "list"),
    "TEST.DET_BLOB_LOG_MIN_SIGMA": ("int", "float", "list"),
    "TEST.DET_BLOB_LOG_MAX_SIGMA": ("int", "float", "list"),
    "TEST.EVAL_BORDER_CROP": ("anylist",),
    "TEST.BY_CHUNKS.WORKFLOW_PROCESS.PATCHES_PER_TILE": ("tuple",),
    f"{_PP}.REMOVE_CLOSE_POINTS_RADIUS": ("int", "float", "list"),
    f"{_PP}.DET_WATERSHED_FIRST_DILATION": ("anylist",),
    f"{_PP}.DET_WATERSHED_DONUTS_PATCH": ("anylist",),
    f"{_PP}.REPARE_LARGE_BLOBS_SIZE": ("int", "float"),
    f"{_PP}.VORONOI_TH": ("float",),
    f"{_PP}.MEDIAN_FILTER_SIZE": ("anylist",),
    f"{_PP}.INSTANCE_REFINEMENT.VALUES": ("anylist",),
    f"{_PP}.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.PROPS": ("anylist",),
    f"{_PP}.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.VALUES": ("anylist",),
    f"{_PP}.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.SIGNS": ("anylist",),
    "MODEL.BMZ.SOURCE_MODEL_ID": ("str",),
    "DATA.PREPROCESS.GAUSSIAN_BLUR.SIGMA": ("int", "float", "list"),
    "DATA.PREPROCESS.CLAHE.KERNEL_SIZE": ("any",),
    "DATA.PREPROCESS.CANNY.LOW_THRESHOLD": ("any",),
    "DATA.PREPROCESS.CANNY.HIGH_THRESHOLD": ("any",),
    "DATA.PREPROCESS.GAUSSIAN_BLUR.CHANNEL_AXIS": ("any",),
    "DATA.RESOLUTION_NORM.TARGET_RESOLUTION": ("tuple",),
}

#: allowed values of string keys
CHOICES: dict[str, tuple[str, ...]] = {
    "PROBLEM.TYPE": PROBLEM_TYPES,
    "PROBLEM.NDIM": ("2D", "3D"),
    "PROBLEM.INSTANCE_SEG.TYPE": ("regular", "synapses"),
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS": INSTANCE_CHANNEL_STRINGS,
    "PROBLEM.INSTANCE_SEG.DATA_CONTOUR_MODE": ("thick", "inner", "outer", "subpixel", "dense"),
    "PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS": ("", *INSTANCE_CREATION_PROCESSES),
    "PROBLEM.SELF_SUPERVISED.PRETEXT_TASK": ("crappify", "masking"),
    "MODEL.SOURCE": ("biapy", "bmz", "torchvision"),
    "DATA.NORMALIZATION.TYPE": ("div", "scale_range", "zero_mean_unit_variance", ""),
    "TEST.AUGMENTATION_MODE": ("mean", "min", "max"),
    "TEST.AUGMENTATION_GROUP": ("auto", "full", "flips", "none"),
    "TEST.OUTPUT_DTYPE": ("float32", "input_cast", "input_rescale"),
    "TEST.DET_POINT_CREATION_FUNCTION": ("peak_local_max", "blob_log"),
    "TEST.DET_TH_TYPE": ("auto", "manual", "relative", "relative_by_patch"),
    "TEST.BY_CHUNKS.WORKFLOW_PROCESS.TYPE": ("chunk_by_chunk", "entire_pred"),
}

#: allowed items of list keys
ELEMENT_CHOICES: dict[str, tuple[str, ...]] = {
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS": (*INSTANCE_CHANNELS, *SYNAPSE_CHANNELS),
    f"{_WS}.SEED_MORPH_SEQUENCE": ("dilate", "erode"),
    f"{_WS}.SEED_CHANNELS": INSTANCE_CHANNELS,
    f"{_WS}.GROWTH_MASK_CHANNELS": INSTANCE_CHANNELS,
    f"{_PP}.INSTANCE_REFINEMENT.OPERATIONS": INSTANCE_REFINEMENT_OPERATIONS,
    f"{_PP}.MEDIAN_FILTER_AXIS": ("xy", "yx", "zy", "yz", "zx", "xz", "z"),
}

#: dotted keys or sections that only matter to training (or to building a model from BiaPy's
#: own checkpoints, which the BioImage.IO package replaces): accepted, listed once, not used.
#: ``USED_FOR_INFERENCE`` names the exceptions inside these sections.
TRAINING_ONLY: tuple[str, ...] = (
    "TRAIN",
    "AUGMENTOR",
    "LOSS",
    "LOG",
    "MODEL",
    "DATA.TRAIN",
    "DATA.VAL",
    "DATA.PREPROCESS.TRAIN",
    "DATA.PREPROCESS.VAL",
    "DATA.CHECK_GENERATORS",
    "DATA.NORMALIZATION.TARGET",
    "PROBLEM.DENOISING.N2V_PERC_PIX",
    "PROBLEM.DENOISING.N2V_MANIPULATOR",
    "PROBLEM.DENOISING.N2V_NEIGHBORHOOD_RADIUS",
    "PROBLEM.DENOISING.N2V_STRUCTMASK",
    "PROBLEM.DETECTION.CENTRAL_POINT_DILATION",
    "PROBLEM.DETECTION.CHECK_POINTS_CREATED",
    "PROBLEM.DETECTION.SEPARATED_DECODERS_PER_HEAD",
    "PROBLEM.DETECTION.SEPARATED_DECODERS_DIVIDE_FEATURE_MAPS",
    "PROBLEM.DETECTION.CLASS_REBALANCE_WITHIN_CHANNELS",
    "PROBLEM.DETECTION.DATA_CHANNEL_WEIGHTS",
    "PROBLEM.INSTANCE_SEG.DATA_CHANNEL_WEIGHTS",
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_LOSSES",
    "PROBLEM.INSTANCE_SEG.BORDER_EXTRA_WEIGHTS",
    "PROBLEM.INSTANCE_SEG.CLASS_REBALANCE_WITHIN_CHANNELS",
    "PROBLEM.INSTANCE_SEG.CHANNELS_PER_HEAD_INFO",
    "PROBLEM.INSTANCE_SEG.SEPARATED_DECODERS_PER_HEAD",
    "PROBLEM.INSTANCE_SEG.SEPARATED_DECODERS_DIVIDE_FEATURE_MAPS",
    "PROBLEM.INSTANCE_SEG.CELLPOSE.SCALE_RANGE",
    "PROBLEM.IMAGE_TO_IMAGE.CHANNELS_PER_HEAD_INFO",
    "PROBLEM.IMAGE_TO_IMAGE.SEPARATED_DECODERS_PER_HEAD",
    "PROBLEM.IMAGE_TO_IMAGE.SEPARATED_DECODERS_DIVIDE_FEATURE_MAPS",
    "PROBLEM.IMAGE_TO_IMAGE.MULTIPLE_RAW_ONE_TARGET_LOADER",
    "PROBLEM.IMAGE_TO_IMAGE.MEMBRANE_REPAIR.GAP_AUG",
    "PROBLEM.IMAGE_TO_IMAGE.MEMBRANE_REPAIR.BRIDGE_AUG",
    "PROBLEM.IMAGE_TO_IMAGE.MEMBRANE_REPAIR.ARTIFACT_AUG",
    "PROBLEM.IMAGE_TO_IMAGE.MEMBRANE_REPAIR.SKELETON_PERTURB_AUG",
    "PROBLEM.IMAGE_TO_IMAGE.MEMBRANE_REPAIR.SLICE_DROPOUT_AUG",
)
#: keys inside ``TRAINING_ONLY`` sections that inference does use
USED_FOR_INFERENCE: tuple[str, ...] = ("MODEL.SOURCE", "MODEL.BMZ.SOURCE_MODEL_ID")

#: keys that change inference results in BiaPy but that this runner does not implement: key ->
#: (values the runner implements, what the key does). Any other value is an error at run time
#: (the configuration still loads, so that it can be inspected and converted).
NOT_IMPLEMENTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "DATA.PREPROCESS.TEST": ((False,), "pre-processing of the test images (resize, blur, CLAHE...)"),
    "DATA.RESOLUTION_NORM.ENABLE": ((False,), "rescaling the images to a target resolution"),
    "DATA.TEST.ROI_MASK.ENABLE": ((False,), "restricting the results to a region-of-interest mask"),
    "DATA.TEST.FILTER_SAMPLES.ENABLE": ((False,), "skipping test images by their properties"),
    "DATA.FILTER_BY_IMAGE": ((False,), "filtering samples by whole-image properties"),
    "DATA.FORCE_RGB": ((False,), "converting the images to RGB"),
    "DATA.TEST.MEDIAN_PADDING": ((False,), "padding the test images with their median"),
    "TEST.AUGMENTATION_GROUP": (("auto", "full"), "a smaller set of test-time augmentations"),
    "TEST.EVAL_BORDER_CROP": (([],), "ignoring a border of the image in the metrics"),
    f"{_PP}.MEASURE_PROPERTIES.EXTRA_PROPS": (([],), "extra per-object measurements"),
    f"{_PP}.DET_WATERSHED_DONUTS_CLASSES": (([-1],), "the detection watershed's donut classes"),
    "PROBLEM.INSTANCE_SEG.CELLPOSE.DIAMETER": ((0.0, 0), "rescaling the images to a cell diameter"),
    "PROBLEM.IMAGE_TO_IMAGE.MEMBRANE_REPAIR.ENABLE": ((False,), "membrane repair post-processing"),
}
#: MODEL.ARCHITECTURE values the runner builds (MODEL.SOURCE: biapy checkpoints, training)
IMPLEMENTED_ARCHITECTURES: tuple[str, ...] = (
    "unet", "resunet", "seunet", "attention_unet", "resunet_se", "resunet++", "multiresunet",
    "unext_v1", "unext_v2", "simple_cnn",
)
#: MODEL.ARCHITECTURE values BiaPy builds only for PROBLEM.TYPE CLASSIFICATION (and the one the
#: runner builds among them)
CLASSIFIER_ARCHITECTURES: tuple[str, ...] = ("simple_cnn", "vit") + tuple(
    f"efficientnet_b{i}" for i in range(8)
)
#: BiaPy architectures built from a library the runner does not depend on: name prefix ->
#: (library, what BiaPy takes from it)
THIRD_PARTY_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "efficientnet": ("torchvision", "the EfficientNet network and its ImageNet weights"),
    "vit": ("timm", "its VisionTransformer class, which BiaPy's ViT extends"),
}
#: MODEL.* values of BiaPy's that the runner's architectures do not build: key -> (refused
#: value, why)
UNBUILT_MODEL_OPTIONS: dict[str, tuple[Any, str]] = {
    "MODEL.NORMALIZATION": ("gn", "group normalisation, which BiaPy 3.7.1 cannot build either"),
    "LOSS.CONTRAST.ENABLE": (True, "the contrastive projection head"),
}
#: INSTANCE_CREATION_PROCESS values the runner decodes (others are refused at run time)
IMPLEMENTED_CREATION_PROCESSES: tuple[str, ...] = INSTANCE_CREATION_PROCESSES
#: channels the runner's marker-controlled watershed decodes
IMPLEMENTED_WATERSHED_CHANNELS: frozenset[str] = CREATION_PROCESS_CHANNELS["watershed"]
#: INSTANCE_REFINEMENT operations the runner applies
IMPLEMENTED_REFINEMENT_OPERATIONS: tuple[str, ...] = INSTANCE_REFINEMENT_OPERATIONS

#: optimizers and learning-rate schedulers the runner trains with (TRAIN.OPTIMIZER,
#: TRAIN.LR_SCHEDULER.NAME; "" = a constant learning rate)
TRAINING_OPTIMIZERS: tuple[str, ...] = ("SGD", "ADAM", "ADAMW")
TRAINING_SCHEDULERS: tuple[str, ...] = ("", "reduceonplateau", "warmupcosine", "onecycle")
#: keys that change BiaPy's training but that the runner's training does not implement: key ->
#: (values it implements, what the key does); checked only when TRAIN.ENABLE is set
TRAINING_NOT_IMPLEMENTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "DATA.TRAIN.INPUT_ZARR_MULTIPLE_DATA": ((False,), "raw and GT read from one Zarr/H5 file"),
    "DATA.VAL.INPUT_ZARR_MULTIPLE_DATA": ((False,), "raw and GT read from one Zarr/H5 file"),
    "DATA.TRAIN.FILTER_SAMPLES.ENABLE": ((False,), "skipping training samples by their properties"),
    "DATA.VAL.FILTER_SAMPLES.ENABLE": ((False,), "skipping validation samples by their properties"),
    "DATA.PREPROCESS.TRAIN": ((False,), "pre-processing of the training images"),
    "DATA.PREPROCESS.VAL": ((False,), "pre-processing of the validation images"),
    "DATA.VAL.CROSS_VAL": ((False,), "cross-validation folds"),
    "DATA.NORMALIZATION.TARGET.ENABLE": ((False,), "a normalisation of its own for the targets"),
    "MODEL.OUT_CHECKPOINT_FORMAT": (("pth",), "safetensors checkpoints"),
    "MODEL.SKIP_UNMATCHED_LAYERS": ((False,), "loading a checkpoint whose layers differ"),
    "MODEL.FREEZE_LAYERS_MATCHING": (([],), "freezing layers during training"),
    "TRAIN.CHECKPOINT_MONITOR": (("val_loss",), "choosing the best checkpoint by a metric"),
}
#: AUGMENTOR transforms training implements (``train/augment.py``), each with its probability and
#: options: the flag -> its other keys
IMPLEMENTED_AUGMENTATIONS: dict[str, tuple[str, ...]] = {
    "VFLIP": ("VFLIP_PROB",),
    "HFLIP": ("HFLIP_PROB",),
    "ZFLIP": ("ZFLIP_PROB",),
    "ROT90": ("ROT90_PROB",),
    "RANDOM_ROT": ("RANDOM_ROT_PROB", "RANDOM_ROT_RANGE", "AFFINE_MODE"),
    "ZOOM": ("ZOOM_PROB", "ZOOM_RANGE", "ZOOM_IN_Z", "AFFINE_MODE"),
    "SHIFT": ("SHIFT_PROB", "SHIFT_RANGE", "AFFINE_MODE"),
    "ELASTIC": ("ELASTIC_PROB", "E_ALPHA", "E_SIGMA", "E_MODE"),
    "BRIGHTNESS": ("BRIGHTNESS_PROB", "BRIGHTNESS_FACTOR"),
    "CONTRAST": ("CONTRAST_PROB", "CONTRAST_FACTOR"),
    "GAMMA_CONTRAST": ("GAMMA_CONTRAST_PROB", "GC_GAMMA"),
    "G_BLUR": ("G_BLUR_PROB", "G_SIGMA"),
    "MEDIAN_BLUR": ("MEDIAN_BLUR_PROB", "MB_KERNEL"),
    "GAUSSIAN_NOISE": (
        "GAUSSIAN_NOISE_PROB",
        "GAUSSIAN_NOISE_MEAN",
        "GAUSSIAN_NOISE_VAR",
        "GAUSSIAN_NOISE_USE_INPUT_IMG_MEAN_AND_VAR",
    ),
    "POISSON_NOISE": ("POISSON_NOISE_PROB",),
    "SALT": ("SALT_PROB", "SALT_AMOUNT"),
    "PEPPER": ("PEPPER_PROB", "PEPPER_AMOUNT"),
    "SALT_AND_PEPPER": ("SALT_AND_PEPPER_PROB", "SALT_AND_PEPPER_AMOUNT", "SALT_AND_PEPPER_PROP"),
    "MISSING_SECTIONS": ("MISSING_SECTIONS_PROB", "MISSP_CHANNEL_PB", "MISSP_ITERATIONS"),
    "DROPOUT": ("DROPOUT_PROB", "DROP_RANGE"),
    "GRAYSCALE": ("GRAYSCALE_PROB",),
    "CHANNEL_SHUFFLE": ("CHANNEL_SHUFFLE_PROB",),
}
#: AUGMENTOR keys that do not change the trained model (BiaPy's saved augmentation samples) or
#: that the training loop honours (shuffling)
AUGMENTOR_OTHER_KEYS: tuple[str, ...] = (
    "ENABLE",
    "AUG_SAMPLES",
    "DRAW_GRID",
    "AUG_NUM_SAMPLES",
    "SHUFFLE_TRAIN_DATA_EACH_EPOCH",
    "SHUFFLE_VAL_DATA_EACH_EPOCH",
)
#: instance channels training builds targets for (``train/instance_targets.py``; ``We`` and ``I``
#: are BiaPy's auxiliary channels, accepted as saved BiaPy configurations list them)
TRAINABLE_INSTANCE_CHANNELS: tuple[str, ...] = (
    "F", "B", "C", "M", "P", "Db", "Dc", "Dn", "D", "H", "V", "Z", "T", "R", "Gv", "Gh", "Gz",
    "We", "I",
)
#: PROBLEM.INSTANCE_SEG.DATA_CHANNELS_LOSSES entries training implements
TRAINING_CHANNEL_LOSSES: tuple[str, ...] = ("bce", "ce", "l1", "mae", "mse")
#: LOSS.TYPE entries training implements per PROBLEM.TYPE (``train/losses.py``; instance
#: segmentation and detection have per-channel losses of their own: BiaPy ignores LOSS.TYPE)
TRAINING_LOSSES: dict[str, tuple[str, ...]] = {
    "SEMANTIC_SEG": ("CE", "DICE"),
    "DENOISING": ("MSE",),
    "SUPER_RESOLUTION": ("MAE", "MSE", "CHARBONNIER", "PCC"),
    "SELF_SUPERVISED": ("MAE", "MSE", "CHARBONNIER", "PCC"),
    "IMAGE_TO_IMAGE": ("MAE", "MSE", "CHARBONNIER", "PCC"),
    "CLASSIFICATION": ("CE",),
}

"""BiaPy 3.x configuration keys with their default values, as data.

``DEFAULTS`` is the key tree every user YAML is merged onto: the union of the keys BiaPy 3.x
releases accept (newest names; older names are in ``ALIASES``). The type of each default is the
type a value must have (tuples accept BiaPy's ``"(1, 2)"`` strings, floats accept ``"1.E-4"``);
``FLEXIBLE`` lists keys that accept more than one type, ``CHOICES`` / ``ELEMENT_CHOICES`` the
allowed values of inference keys, ``TRAINING_ONLY`` the keys inference ignores.
Defaults follow BiaPy's documented defaults; paths are relative placeholders.
"""

from __future__ import annotations

from typing import Any

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


#: marker-controlled watershed: direction in which each channel means "inside an object"
#: (``>``: high inside, ``<``: low inside)
WATERSHED_CHANNEL_DIRECTIONS: dict[str, str] = {
    "F": ">",
    "P": ">",
    "M": ">",
    "Db": ">",
    "D": ">",
    "B": "<",
    "C": "<",
    "Dc": "<",
}
#: the channels whose model output is a probability (binary targets)
BINARY_CHANNELS: frozenset[str] = frozenset({"F", "B", "P", "C", "M", "T"})
#: legacy (string form) tokens whose output is a probability
LEGACY_BINARY_CHANNELS: frozenset[str] = frozenset({"B", "C", "M", "P"})
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


def _filter_samples() -> dict[str, Any]:
    return {"ENABLE": False, "PROPS": [], "VALUES": [], "SIGNS": [], "NORM_BEFORE": False}


def _zarr_multiple_data() -> dict[str, Any]:
    return {
        "INPUT_ZARR_MULTIPLE_DATA": False,
        "INPUT_ZARR_MULTIPLE_DATA_RAW_PATH": "",
        "INPUT_ZARR_MULTIPLE_DATA_GT_PATH": "",
        "INPUT_ZARR_MULTIPLE_DATA_ID_PATH": "annotations.ids",
        "INPUT_ZARR_MULTIPLE_DATA_PARTNERS_PATH": "annotations.presynaptic_site.partners",
        "INPUT_ZARR_MULTIPLE_DATA_LOCATIONS_PATH": "annotations.locations",
        "INPUT_ZARR_MULTIPLE_DATA_RESOLUTION_PATH": "volumes.raw",
    }


def _split_paths(split: str) -> dict[str, Any]:
    """Per-split (train/val/test) data keys common to the three DATA subsections."""
    return {
        "IN_MEMORY": True,
        "PATH": f"user_data/{split}/x",
        "GT_PATH": f"user_data/{split}/y",
        **_zarr_multiple_data(),
        "INSTANCE_CHANNELS_DIR": f"user_data/{split}/x_BC",
        "INSTANCE_CHANNELS_MASK_DIR": f"user_data/{split}/y_BC",
        "DETECTION_MASK_DIR": f"user_data/{split}/y_detection_masks",
        "SSL_SOURCE_DIR": f"user_data/{split}/x_ssl_source",
        "OVERLAP": (0, 0),
        "PADDING": (0, 0),
        "RESOLUTION": (-1,),
        "INPUT_IMG_AXES_ORDER": "TZCYX",
        "INPUT_MASK_AXES_ORDER": "TZCYX",
        "FILTER_SAMPLES": _filter_samples(),
    }


def _hrnet(z_down: bool, stages: dict[str, tuple[int, int, list[int], list[int], str]]) -> dict:
    """One HRNet preset: stage name -> (modules, branches, blocks, channels, block type)."""
    tree: dict[str, Any] = {"Z_DOWN": z_down}
    for stage, (modules, branches, blocks, channels, block) in stages.items():
        tree[stage] = {
            "NUM_MODULES": modules,
            "NUM_BRANCHES": branches,
            "NUM_BLOCKS": blocks,
            "NUM_CHANNELS": channels,
            "BLOCK": block,
        }
    return tree


def _hrnet_width(width: int) -> dict[str, Any]:
    w = width
    return _hrnet(
        True,
        {
            "STAGE2": (1, 2, [4, 4], [w, 2 * w], "BASIC"),
            "STAGE3": (4, 3, [4, 4, 4], [w, 2 * w, 4 * w], "BASIC"),
            "STAGE4": (3, 4, [4, 4, 4, 4], [w, 2 * w, 4 * w, 8 * w], "BASIC"),
        },
    )


_SYSTEM = {
    "NUM_CPUS": -1,  # -1: all CPUs
    "NUM_WORKERS": -1,
    "NUM_GPUS": 0,
    "DEVICE": "cpu",
    "SEED": 0,
    "PIN_MEM": True,
}

_WATERSHED = {
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
}

_INSTANCE_SEG = {
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
    # BiaPy < 3.6.6 (converted onto WATERSHED.* and the list form; see config/convert.py)
    "DISTANCE_CHANNEL_MASK": True,
    "DATA_CONTOUR_MODE": "thick",
    "DATA_MW_TH_TYPE": "auto",
    "DATA_MW_TH_BINARY_MASK": 0.5,
    "DATA_MW_TH_CONTOUR": 0.1,
    "DATA_MW_TH_FOREGROUND": 0.3,
    "DATA_MW_TH_DISTANCE": 1.0,
    "DATA_MW_TH_POINTS": 0.5,
    "DATA_MW_OPTIMIZE_THS": False,
    "WATERSHED": _WATERSHED,
    "AGGLOMERATION": {
        "FRAGMENT_SEED_TH": 0.9,
        "FRAGMENT_GROWTH_TH": 0.1,
        "MERGE_TH": 0.5,
        "MERGE_QUANTILE": 50.0,
        "MIN_EDGE_VOXELS": 5,
    },
    "STARDIST": {"PROB_THRESH": 0.4, "NMS_IOU_THRESH": 0.3, "GRID": []},
    "CELLPOSE": {
        "FG_THRESH": 0.5,
        "FLOW_THRESHOLD": 0.4,
        "N_STEPS": 200,
        "DIAMETER": 0.0,
        "DIAM_MEAN": 30.0,
        "SCALE_RANGE": 0.5,
        "TEST_DOUBLE_INFERENCE": True,
    },
    "OMNIPOSE": {"MASK_THRESHOLD": 0.0, "FLOW_THRESHOLD": 0.4, "NITER": 0},
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
}

_PROBLEM = {
    "PRINT_OLD_KEY_CHANGES": True,
    "TYPE": "SEMANTIC_SEG",
    "NDIM": "2D",
    "SEMANTIC_SEG": {"IGNORE_CLASS_ID": 0},
    "INSTANCE_SEG": _INSTANCE_SEG,
    "DETECTION": {
        "CENTRAL_POINT_DILATION": [2],
        "CHECK_POINTS_CREATED": True,
        "DATA_CHECK_MW": False,
    },
    "DENOISING": {
        "N2V_PERC_PIX": 0.198,
        "N2V_MANIPULATOR": "uniform_withCP",
        "N2V_NEIGHBORHOOD_RADIUS": 5,
        "N2V_STRUCTMASK": False,
        "LOAD_GT_DATA": False,
    },
    "SUPER_RESOLUTION": {"UPSCALING": ()},
    "SELF_SUPERVISED": {"PRETEXT_TASK": "crappify", "RESIZING_FACTOR": 4, "NOISE": 0.2},
    "IMAGE_TO_IMAGE": {"MULTIPLE_RAW_ONE_TARGET_LOADER": False},
}

_PREPROCESS = {
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
    "ZOOM": {"ENABLE": False, "ZOOM_FACTOR": [1, 1, 1, 1, 1]},
    "GAUSSIAN_BLUR": {"ENABLE": False, "SIGMA": 1, "MODE": "nearest", "CHANNEL_AXIS": None},
    "MEDIAN_BLUR": {"ENABLE": False, "KERNEL_SIZE": (3, 3, 1)},
    "MATCH_HISTOGRAM": {"ENABLE": False, "REFERENCE_PATH": "user_data/test/x"},
    "CLAHE": {"ENABLE": False, "KERNEL_SIZE": None, "CLIP_LIMIT": 0.01},
    "CANNY": {"ENABLE": False, "LOW_THRESHOLD": None, "HIGH_THRESHOLD": None},
}

_DATA = {
    "CHECK_GENERATORS": False,
    "PATCH_SIZE": (256, 256, 1),
    "N_CLASSES": 2,
    "EXTRACT_RANDOM_PATCH": False,
    "PROBABILITY_MAP": False,
    "W_FOREGROUND": 0.94,
    "W_BACKGROUND": 0.06,
    "REFLECT_TO_COMPLETE_SHAPE": False,
    "FORCE_RGB": False,
    "FILTER_BY_IMAGE": False,
    "SAVE_FILTERED_IMAGES": False,
    "SAVE_FILTERED_IMAGES_NUM": 3,
    "NORMALIZATION": {
        "TYPE": "zero_mean_unit_variance",
        "MEASURE_BY": "image",
        "PERC_CLIP": {
            "ENABLE": False,
            "LOWER_PERC": -1.0,
            "UPPER_PERC": -1.0,
            "LOWER_VALUE": -1.0,
            "UPPER_VALUE": -1.0,
        },
        "ZERO_MEAN_UNIT_VAR": {"MEAN_VAL": -1.0, "STD_VAL": -1.0},
    },
    "TRAIN": {
        "CHECK_DATA": True,
        **_split_paths("train"),
        "REPLICATE": 0,
        "MINIMUM_FOREGROUND_PER": -1.0,
    },
    "PREPROCESS": _PREPROCESS,
    "TEST": {
        "CHECK_DATA": True,
        **_split_paths("test"),
        "IN_MEMORY": False,
        "LOAD_GT": False,
        "USE_VAL_AS_TEST": False,
        "MEDIAN_PADDING": False,
        "BINARY_MASKS": "user_data/test/bin_mask",
        "ARGMAX_TO_OUTPUT": True,
    },
    "VAL": {
        "DIST_EVAL": True,
        "FROM_TRAIN": True,
        "CROSS_VAL": False,
        "CROSS_VAL_NFOLD": 5,
        "CROSS_VAL_FOLD": 1,
        "SPLIT_TRAIN": 0.1,
        "RANDOM": True,
        **_split_paths("val"),
        "BINARY_MASKS": "user_data/val/bin_mask",
    },
}

_AUGMENTOR = {
    "ENABLE": False,
    "DA_PROB": 0.5,
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
    "ZOOM_RANGE": (0.8, 1.2),
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
    "BRIGHTNESS_MODE": "3D",
    "CONTRAST": False,
    "CONTRAST_FACTOR": (-0.1, 0.1),
    "CONTRAST_MODE": "3D",
    "BRIGHTNESS_EM": False,
    "BRIGHTNESS_EM_FACTOR": (-0.1, 0.1),
    "BRIGHTNESS_EM_MODE": "3D",
    "CONTRAST_EM": False,
    "CONTRAST_EM_FACTOR": (-0.1, 0.1),
    "CONTRAST_EM_MODE": "3D",
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
    "ARCHITECTURE": "unet",
    "FEATURE_MAPS": [16, 32, 64, 128, 256],
    "DROPOUT_VALUES": [0.0, 0.0, 0.0, 0.0, 0.0],
    "NORMALIZATION": "bn",
    "BATCH_NORMALIZATION": True,
    "KERNEL_SIZE": 3,
    "UPSAMPLE_LAYER": "convtranspose",
    "ACTIVATION": "ELU",
    "LAST_ACTIVATION": "sigmoid",
    "Z_DOWN": [0, 0, 0, 0],
    "ISOTROPY": [True, True, True, True, True],
    "LARGER_IO": False,
    "LOAD_CHECKPOINT": False,
    "LOAD_CHECKPOINT_ONLY_WEIGHTS": True,
    "LOAD_CHECKPOINT_EPOCH": "best_on_val",
    "LOAD_MODEL_FROM_CHECKPOINT": True,
    "OUT_CHECKPOINT_FORMAT": "pth",
    "SKIP_UNMATCHED_LAYERS": False,
    "SAVE_CKPT_FREQ": -1,
    "CONVNEXT_LAYERS": [2, 2, 2, 2, 2],
    "CONVNEXT_SD_PROB": 0.1,
    "CONVNEXT_LAYER_SCALE": 1e-6,
    "CONVNEXT_STEM_K_SIZE": 2,
    "VIT_MODEL": "custom",
    "VIT_TOKEN_SIZE": 16,
    "VIT_EMBED_DIM": 768,
    "VIT_NUM_LAYERS": 12,
    "VIT_NUM_HEADS": 12,
    "VIT_MLP_RATIO": 4.0,
    "VIT_NORM_EPS": 1e-6,
    "MAE_DEC_HIDDEN_SIZE": 512,
    "MAE_DEC_NUM_LAYERS": 8,
    "MAE_DEC_NUM_HEADS": 16,
    "MAE_DEC_MLP_DIMS": 2048,
    "MAE_MASK_TYPE": "grid",
    "MAE_MASK_RATIO": 0.5,
    "UNETR_VIT_HIDD_MULT": 3,
    "UNETR_VIT_NUM_FILTERS": 16,
    "UNETR_DEC_ACTIVATION": "relu",
    "UNETR_DEC_KERNEL_SIZE": 3,
    "UNET_SR_UPSAMPLE_POSITION": "pre",
    "RCAN_RG_BLOCK_NUM": 10,
    "RCAN_RCAB_BLOCK_NUM": 20,
    "RCAN_CONV_FILTERS": 16,
    "RCAN_REDUCTION_RATIO": 16,
    "RCAN_UPSCALING_LAYER": True,
    "HRNET_64": _hrnet_width(64),
    "HRNET_48": _hrnet_width(48),
    "HRNET_32": _hrnet_width(32),
    "HRNET_18": _hrnet_width(18),
    "HRNET2X_20": _hrnet(
        True,
        {
            "STAGE1": (1, 2, [4, 4], [32, 64], "BOTTLENECK"),
            "STAGE2": (1, 3, [4, 4, 4], [20, 40, 80], "BASIC"),
            "STAGE3": (4, 4, [4, 4, 4, 4], [20, 40, 80, 160], "BASIC"),
            "STAGE4": (3, 5, [4, 4, 4, 4, 4], [20, 40, 80, 160, 320], "BASIC"),
        },
    ),
}

_LOSS = {
    "TYPE": "",
    "WEIGHTS": [0.66, 0.34],
    "CLASS_REBALANCE": False,
    "IGNORE_INDEX": -1,
    "CONTRAST": {"ENABLE": False, "MEMORY_SIZE": 5000, "PROJ_DIM": 256, "PIXEL_UPD_FREQ": 10},
}

_TRAIN = {
    "ENABLE": False,
    "VERBOSE": False,
    "OPTIMIZER": "SGD",
    "LR": 1.0e-4,
    "W_DECAY": 0.02,
    "OPT_BETAS": (0.9, 0.999),
    "BATCH_SIZE": 2,
    "ACCUM_ITER": 1,
    "EPOCHS": 360,
    "PATIENCE": -1,
    "METRICS": [],
    "LR_SCHEDULER": {
        "NAME": "",
        "MIN_LR": -1.0,
        "REDUCEONPLATEAU_FACTOR": 0.5,
        "REDUCEONPLATEAU_PATIENCE": -1,
        "WARMUP_COSINE_DECAY_EPOCHS": -1,
    },
    "CHECKPOINT_MONITOR": "val_loss",
}

_POST_PROCESSING = {
    "MEDIAN_FILTER": False,
    "MEDIAN_FILTER_AXIS": [],
    "MEDIAN_FILTER_SIZE": [],
    "YZ_FILTERING": False,
    "YZ_FILTERING_SIZE": 5,
    "Z_FILTERING": False,
    "Z_FILTERING_SIZE": 5,
    "APPLY_MASK": False,
    "MEASURE_PROPERTIES": {
        "ENABLE": False,
        "REMOVE_BY_PROPERTIES": {"ENABLE": False, "PROPS": [], "VALUES": [], "SIGNS": []},
    },
    "VORONOI_ON_MASK": False,
    "VORONOI_TH": 0.0,
    "REPARE_LARGE_BLOBS_SIZE": -1,
    "CLEAR_BORDER": False,
    "FILL_HOLES": False,
    "REMOVE_CLOSE_POINTS": False,
    "REMOVE_CLOSE_POINTS_RADIUS": 0,
    "DET_WATERSHED": False,
    "DET_WATERSHED_FIRST_DILATION": [-1, -1],
    "DET_WATERSHED_DONUTS_CLASSES": [-1],
    "DET_WATERSHED_DONUTS_PATCH": [13, 120, 120],
    "DET_WATERSHED_DONUTS_NUCLEUS_DIAMETER": 30,
}

_TEST = {
    "ENABLE": False,
    "REDUCE_MEMORY": False,
    "BY_CHUNKS": {
        "ENABLE": False,
        "FORMAT": "H5",
        "SAVE_OUT_TIF": False,
        "FLUSH_EACH": 100,
        "INPUT_IMG_AXES_ORDER": "TZCYX",
        "INPUT_MASK_AXES_ORDER": "TZCYX",
        **_zarr_multiple_data(),
        "WORKFLOW_PROCESS": {"ENABLE": True, "TYPE": "chunk_by_chunk"},
    },
    "VERBOSE": True,
    "AUGMENTATION": False,
    "AUGMENTATION_MODE": "mean",
    "EVALUATE": True,
    "ANALIZE_2D_IMGS_AS_3D_STACK": False,
    "REUSE_PREDICTIONS": False,
    "FULL_IMG": False,
    # runner key (restoration workflows): "float32", "input_cast" or "input_rescale"
    "OUTPUT_DTYPE": "float32",
    "METRICS": [],
    "MATCHING_STATS": True,
    "MATCHING_STATS_THS": [0.3, 0.5, 0.75],
    "MATCHING_STATS_THS_COLORED_IMG": [],
    "DET_POINT_CREATION_FUNCTION": "peak_local_max",
    "DET_PEAK_LOCAL_MAX_MIN_DISTANCE": 1,
    "DET_TH_TYPE": "manual",
    "DET_MIN_TH_TO_BE_PEAK": 0.2,
    "DET_EXCLUDE_BORDER": False,
    "DET_BLOB_LOG_MIN_SIGMA": 5,
    "DET_BLOB_LOG_MAX_SIGMA": 10,
    "DET_BLOB_LOG_NUM_SIGMA": 2,
    "DET_TOLERANCE": 10,
    "DET_IGNORE_POINTS_OUTSIDE_BOX": [],
    "POST_PROCESSING": _POST_PROCESSING,
}

_RESULT_DIR = "results"

_PATHS = {
    "RESULT_DIR": {
        "PATH": _RESULT_DIR,
        "PER_IMAGE": f"{_RESULT_DIR}/per_image",
        "PER_IMAGE_BIN": f"{_RESULT_DIR}/per_image_binarized",
        "PER_IMAGE_INSTANCES": f"{_RESULT_DIR}/per_image_instances",
        "PER_IMAGE_POST_PROCESSING": f"{_RESULT_DIR}/per_image_post_processing",
        "FULL_IMAGE": f"{_RESULT_DIR}/full_image",
        "FULL_IMAGE_BIN": f"{_RESULT_DIR}/full_image_binarized",
        "FULL_IMAGE_INSTANCES": f"{_RESULT_DIR}/full_image_instances",
        "FULL_IMAGE_POST_PROCESSING": f"{_RESULT_DIR}/full_image_post_processing",
        "AS_3D_STACK": f"{_RESULT_DIR}/as_3d_stack",
        "AS_3D_STACK_BIN": f"{_RESULT_DIR}/as_3d_stack_binarized",
        "AS_3D_STACK_POST_PROCESSING": f"{_RESULT_DIR}/as_3d_stack_post_processing",
        "DET_LOCAL_MAX_COORDS_CHECK": f"{_RESULT_DIR}/per_image_local_max_check",
        "DET_LOCAL_MAX_COORDS_CHECK_POST_PROCESSING": f"{_RESULT_DIR}/per_image_local_max_check_post_processing",
        "DET_ASSOC_POINTS": f"{_RESULT_DIR}/point_associations",
        "INST_ASSOC_POINTS": f"{_RESULT_DIR}/instance_associations",
    },
    "BMZ_EXPORT_PATH": f"{_RESULT_DIR}/BMZ_files",
    "PROFILER": f"{_RESULT_DIR}/profiler",
    "CHARTS": f"{_RESULT_DIR}/charts",
    "DA_SAMPLES": f"{_RESULT_DIR}/aug",
    "GEN_CHECKS": f"{_RESULT_DIR}/gen_check",
    "GEN_MASK_CHECKS": f"{_RESULT_DIR}/gen_mask_check",
    "TRAIN_INSTANCE_CHANNELS_CHECK": f"{_RESULT_DIR}/train_BC_instance_channels",
    "VAL_INSTANCE_CHANNELS_CHECK": f"{_RESULT_DIR}/val_BC_instance_channels",
    "TEST_INSTANCE_CHANNELS_CHECK": f"{_RESULT_DIR}/test_BC_instance_channels",
    "TEST_FULL_GT_H5": "user_data/test/y/h5",
    "CHECKPOINT": "checkpoints",
    "CHECKPOINT_FILE": "",
    "PROB_MAP_DIR": "prob_map",
    "PROB_MAP_FILENAME": "prob_map.npy",
    "WATERSHED_DIR": f"{_RESULT_DIR}/watershed",
    "MEAN_INFO_FILE": "checkpoints/normalization_mean_value.npy",
    "STD_INFO_FILE": "checkpoints/normalization_std_value.npy",
    "MAE_OUT_DIR": f"{_RESULT_DIR}/MAE_checks",
    "FIL_SAMPLES_DIR": f"{_RESULT_DIR}/filtering_information",
}

_LOG = {
    "LOG_DIR": "train_logs",
    "TENSORBOARD_LOG_DIR": f"{_RESULT_DIR}/tensorboard",
    "LOG_FILE_PREFIX": "",
    "CHART_CREATION_FREQ": 5,
}

#: the whole key tree with BiaPy's defaults
DEFAULTS: dict[str, Any] = {
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
}

_WS = "PROBLEM.INSTANCE_SEG.WATERSHED"

#: older BiaPy 3.x names (dotted, key or section) -> current names; both are accepted
ALIASES: dict[str, str] = {
    "MODEL.N_CLASSES": "DATA.N_CLASSES",
    "DATA.TRAIN.MASK_PATH": "DATA.TRAIN.GT_PATH",
    "DATA.VAL.MASK_PATH": "DATA.VAL.GT_PATH",
    "DATA.TEST.MASK_PATH": "DATA.TEST.GT_PATH",
    "TEST.STATS.FULL_IMG": "TEST.FULL_IMG",
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
    "DATA.NORMALIZATION.CUSTOM_MEAN": "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL",
    "DATA.NORMALIZATION.CUSTOM_STD": "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL",
    "DATA.NORMALIZATION.PERC_LOWER": "DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC",
    "DATA.NORMALIZATION.PERC_UPPER": "DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC",
    "DATA.NORMALIZATION.APPLICATION_MODE": "DATA.NORMALIZATION.MEASURE_BY",
    "TEST.POST_PROCESSING.REMOVE_BY_PROPERTIES": "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES",
    "TEST.POST_PROCESSING.REMOVE_BY_PROPERTIES_VALUES": "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.VALUES",
    "TEST.POST_PROCESSING.REMOVE_BY_PROPERTIES_SIGN": "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.SIGNS",
    "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.SIGN": "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES.SIGNS",
}

#: sections that older releases wrote as a single value: section -> the sub-key it sets
SCALAR_SECTIONS: dict[str, str] = {
    "DATA.NORMALIZATION.PERC_CLIP": "ENABLE",
    "TEST.POST_PROCESSING.MEASURE_PROPERTIES.REMOVE_BY_PROPERTIES": "PROPS",
}

#: keys whose value may take several types (tried in order); "any" accepts everything
FLEXIBLE: dict[str, tuple[str, ...]] = {
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS": ("str", "list"),
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_EXTRA_OPTS": ("any",),
    "PROBLEM.INSTANCE_SEG.DATA_CHANNEL_WEIGHTS": ("tuple",),
    "PROBLEM.INSTANCE_SEG.WATERSHED.GROWTH_MASK_CHANNELS": ("list", "str"),
    "PROBLEM.INSTANCE_SEG.WATERSHED.TOPOGRAPHIC_SURFACE_CHANNEL": ("str", "list"),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.BLOB_LOG_MIN_SIGMA": ("int", "float", "list"),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.BLOB_LOG_MAX_SIGMA": ("int", "float", "list"),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.REMOVE_CLOSE_PRE_POINTS_RADIUS": ("int", "float"),
    "PROBLEM.INSTANCE_SEG.SYNAPSES.REMOVE_CLOSE_POST_POINTS_RADIUS": ("int", "float"),
    "PROBLEM.INSTANCE_SEG.WATERSHED.DATA_REMOVE_SMALL_OBJ_BEFORE": ("int", "float"),
    "PROBLEM.INSTANCE_SEG.WATERSHED.SEED_CHANNELS_THRESH": ("anylist",),
    "PROBLEM.INSTANCE_SEG.WATERSHED.GROWTH_MASK_CHANNELS_THRESH": ("anylist",),
    "PROBLEM.DETECTION.CENTRAL_POINT_DILATION": ("list", "int"),
    "PROBLEM.SELF_SUPERVISED.RESIZING_FACTOR": ("int", "float"),
    "DATA.TEST.RESOLUTION": ("tuple",),
    "TEST.DET_MIN_TH_TO_BE_PEAK": ("float", "list"),
    "TEST.DET_TOLERANCE": ("int", "float", "list"),
    "TEST.DET_BLOB_LOG_MIN_SIGMA": ("int", "float", "list"),
    "TEST.DET_BLOB_LOG_MAX_SIGMA": ("int", "float", "list"),
    "TEST.DET_IGNORE_POINTS_OUTSIDE_BOX": ("list",),
    "TEST.POST_PROCESSING.REMOVE_CLOSE_POINTS_RADIUS": ("int", "float", "list"),
    "TEST.POST_PROCESSING.DET_WATERSHED_FIRST_DILATION": ("anylist",),
    "TEST.POST_PROCESSING.REPARE_LARGE_BLOBS_SIZE": ("int", "float"),
    "TEST.POST_PROCESSING.VORONOI_TH": ("float",),
    "TEST.POST_PROCESSING.MEDIAN_FILTER_SIZE": ("anylist",),
    "MODEL.BMZ.SOURCE_MODEL_ID": ("str",),
    "MODEL.DROPOUT_VALUES": ("anylist",),
    "DATA.PREPROCESS.GAUSSIAN_BLUR.SIGMA": ("int", "float", "list"),
    "DATA.PREPROCESS.CLAHE.KERNEL_SIZE": ("any",),
}

#: allowed values of string keys
CHOICES: dict[str, tuple[str, ...]] = {
    "PROBLEM.TYPE": PROBLEM_TYPES,
    "PROBLEM.NDIM": ("2D", "3D"),
    "PROBLEM.INSTANCE_SEG.TYPE": ("regular", "synapses"),
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS": INSTANCE_CHANNEL_STRINGS,
    "PROBLEM.INSTANCE_SEG.DATA_MW_TH_TYPE": ("auto", "manual"),
    "PROBLEM.INSTANCE_SEG.DATA_CONTOUR_MODE": ("thick", "inner", "outer", "subpixel", "dense"),
    "PROBLEM.INSTANCE_SEG.INSTANCE_CREATION_PROCESS": ("", *INSTANCE_CREATION_PROCESSES),
    "PROBLEM.SELF_SUPERVISED.PRETEXT_TASK": ("crappify", "masking"),
    "MODEL.SOURCE": ("biapy", "bmz", "torchvision"),
    "DATA.NORMALIZATION.TYPE": ("div", "scale_range", "zero_mean_unit_variance", "custom", ""),
    "DATA.NORMALIZATION.MEASURE_BY": ("image", "patch", "dataset"),
    "TEST.AUGMENTATION_MODE": ("mean", "min", "max"),
    "TEST.OUTPUT_DTYPE": ("float32", "input_cast", "input_rescale"),
    "TEST.DET_POINT_CREATION_FUNCTION": ("peak_local_max", "blob_log"),
    "TEST.DET_TH_TYPE": ("auto", "manual", "relative", "relative_by_patch"),
    "TEST.BY_CHUNKS.FORMAT": ("H5", "Zarr", "h5", "zarr"),
    "TEST.BY_CHUNKS.WORKFLOW_PROCESS.TYPE": ("chunk_by_chunk", "entire_pred"),
}

#: allowed items of list keys
ELEMENT_CHOICES: dict[str, tuple[str, ...]] = {
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS": (*INSTANCE_CHANNELS, *SYNAPSE_CHANNELS),
    "PROBLEM.INSTANCE_SEG.WATERSHED.SEED_MORPH_SEQUENCE": ("dilate", "erode"),
    "PROBLEM.INSTANCE_SEG.WATERSHED.SEED_CHANNELS": INSTANCE_CHANNELS,
    "PROBLEM.INSTANCE_SEG.WATERSHED.GROWTH_MASK_CHANNELS": INSTANCE_CHANNELS,
    "TEST.POST_PROCESSING.INSTANCE_REFINEMENT.OPERATIONS": INSTANCE_REFINEMENT_OPERATIONS,
    "TEST.POST_PROCESSING.MEDIAN_FILTER_AXIS": ("xy", "yx", "zy", "yz", "zx", "xz", "z"),
}

#: dotted keys or sections that only matter to training: accepted, listed once, not used
TRAINING_ONLY: tuple[str, ...] = (
    "TRAIN",
    "AUGMENTOR",
    "LOSS",
    "LOG",
    "DATA.TRAIN",
    "DATA.VAL",
    "DATA.PREPROCESS.TRAIN",
    "DATA.PREPROCESS.VAL",
    "DATA.CHECK_GENERATORS",
    "DATA.EXTRACT_RANDOM_PATCH",
    "DATA.PROBABILITY_MAP",
    "DATA.W_FOREGROUND",
    "DATA.W_BACKGROUND",
    "PROBLEM.DENOISING.N2V_PERC_PIX",
    "PROBLEM.DENOISING.N2V_MANIPULATOR",
    "PROBLEM.DENOISING.N2V_NEIGHBORHOOD_RADIUS",
    "PROBLEM.DENOISING.N2V_STRUCTMASK",
    "PROBLEM.INSTANCE_SEG.DATA_CHANNEL_WEIGHTS",
    "PROBLEM.INSTANCE_SEG.DATA_CHANNELS_LOSSES",
    "PROBLEM.INSTANCE_SEG.BORDER_EXTRA_WEIGHTS",
    "PROBLEM.INSTANCE_SEG.DISTANCE_CHANNEL_MASK",
    "PROBLEM.INSTANCE_SEG.DATA_MW_OPTIMIZE_THS",
    "MODEL.SAVE_CKPT_FREQ",
    "MODEL.OUT_CHECKPOINT_FORMAT",
    "MODEL.LOAD_CHECKPOINT_ONLY_WEIGHTS",
    "MODEL.BMZ.EXPORT",
)

"""BiaPy's architectures by ``MODEL.ARCHITECTURE`` name, built from a configuration.

:func:`build_model` builds the network BiaPy 3.7.1's ``build_model`` builds for the same
configuration (same class, same arguments, hence the same parameter names: BiaPy's ``.pth``
state dicts load with ``strict=True``); :func:`output_channels` names each output channel and
its activation by BiaPy's rules per workflow; :func:`architecture_source` gives the
self-contained source file, class name and arguments that rebuild the network (what a
BioImage.IO package ships). The networks themselves are in :mod:`.nets` (torch only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biapy_runner.config.load import Config
from biapy_runner.config.schema import IMPLEMENTED_ARCHITECTURES, legacy_channels_as_list
from biapy_runner.errors import ConfigError

#: MODEL.ARCHITECTURE -> class of :mod:`.nets` (BiaPy's class names)
CLASSES: dict[str, str] = {
    "unet": "U_Net",
    "resunet": "ResUNet",
    "seunet": "SE_U_Net",
    "attention_unet": "Attention_U_Net",
    "resunet_se": "ResUNet_SE",
    "resunet++": "ResUNetPlusPlus",
    "multiresunet": "MultiResUnet",
    "unext_v1": "U_NeXt_V1",
    "unext_v2": "U_NeXt_V2",
    "simple_cnn": "simple_CNN",
}
#: U-Net options that BiaPy does not pass to the ConvNeXt-based U-NeXt (its blocks fix them)
_NOT_FOR_UNEXT = ("activation", "drop_values", "normalization", "k_size", "larger_io",
                  "conv_block_order")
_IS = "PROBLEM.INSTANCE_SEG."
#: instance channels BiaPy predicts with a sigmoid (trained with BCE on logits)
_BINARY = ("B", "F", "P", "C", "T", "M", "F_pre", "F_post", "F_cleft")
#: instance distance-like channels: linear with a regression loss, else sigmoid
_REGRESSION = ("Dc", "Dn", "Z", "V", "H")
_REGRESSION_LOSSES = ("mse", "l1", "mae")


def _ndim(cfg: Config) -> int:
    return 3 if cfg.get("PROBLEM.NDIM") == "3D" else 2


def _architecture(cfg: Config) -> str:
    name = str(cfg.get("MODEL.ARCHITECTURE")).lower()
    if name not in CLASSES:
        raise ConfigError(
            f"MODEL.ARCHITECTURE {cfg.get('MODEL.ARCHITECTURE')!r} is not implemented by this "
            f"runner; use one of {', '.join(IMPLEMENTED_ARCHITECTURES)}."
        )
    return name


def _extra(cfg: Config, channel: str) -> dict[str, Any]:
    opts = cfg.get(_IS + "DATA_CHANNELS_EXTRA_OPTS") or [{}]
    first = opts[0] if isinstance(opts, (list, tuple)) and opts else {}
    value = first.get(channel, {}) if isinstance(first, dict) else {}
    return dict(value or {})


def instance_channel_list(cfg: Config) -> list[str]:
    """``PROBLEM.INSTANCE_SEG.DATA_CHANNELS`` in BiaPy 3.7's list form (a legacy string such as
    ``"BC"`` converted)."""
    channels = cfg.get(_IS + "DATA_CHANNELS")
    if isinstance(channels, str):
        return legacy_channels_as_list(channels)
    return [str(c) for c in channels]


def _instance_channel(cfg: Config, name: str, loss: str | None, ndim: int) -> list[tuple[str, str]]:
    """The output channels one DATA_CHANNELS entry expands to, with their activation."""
    opts = _extra(cfg, name)
    regression = loss is None or loss in _REGRESSION_LOSSES  # BiaPy's default losses: l1
    if name in _BINARY:
        return [(name, "sigmoid")]
    if name in _REGRESSION or name == "Db" and opts.get("val_type", "norm") != "discretize":
        act = opts.get("act", "")
        if not regression or act == "sigmoid":
            return [(name, "sigmoid")]
        return [(name, "tanh" if act == "tanh" and name != "Db" else "linear")]
    if name == "Db":
        return [(name, "softmax")] * 11  # 10 distance bins + background
    if name in ("Gv", "Gh", "Gz"):
        return [(name, "linear")]
    if name == "D":
        return [(name, str(opts.get("act", "tanh")))]
    if name == "A":
        offsets = [opts.get(f"{axis}_affinities", [1]) for axis in "zyx"]
        return [(name, "sigmoid")] * (3 * len(offsets[0]))
    if name == "R":
        return [(name, "linear")] * int(opts.get("nrays", 32 if ndim == 2 else 96))
    if name == "E_offset":
        return [(name, "tanh")] * ndim
    if name == "E_sigma":
        return [(name, "linear")] * ndim
    if name == "E_seediness":
        return [(name, "sigmoid")]
    raise ConfigError(f"{_IS}DATA_CHANNELS: unknown channel {name!r}.")


def _classes(cfg: Config) -> list[tuple[str, str]]:
    return [(f"class{i}", "softmax") for i in range(int(cfg.get("DATA.N_CLASSES")))]


def output_channels(cfg: Config) -> list[tuple[str, str]]:
    """Each output channel of the network for this workflow: ``(name, activation)``, in order.

    The activation is the one BiaPy applies to the pre-activation output at inference
    (``sigmoid``, ``softmax`` over the run of softmax channels, ``tanh`` or ``linear``); BiaPy
    trains the sigmoid and softmax channels on logits (BCE / CE), except ``E_seediness``.

    Parameters
    ----------
    cfg : Config
        PROBLEM.TYPE, PROBLEM.NDIM, DATA.N_CLASSES, DATA.PATCH_SIZE and the workflow's keys
        (instance DATA_CHANNELS and their options, IMAGE_TO_IMAGE.OUTPUT_CHANNELS...).

    Returns
    -------
    list of (str, str)
        E.g. ``[("F", "sigmoid"), ("C", "sigmoid")]`` for instance channels F, C; one
        ``("foreground", "sigmoid")`` for binary semantic segmentation, ``("class<i>",
        "softmax")`` per class otherwise; for CLASSIFICATION ``("class<i>", "linear")``, the
        classifier's output being its own softmax's (BiaPy applies a second softmax at
        inference, which keeps the predicted class but flattens the probabilities).
    """
    problem = str(cfg.get("PROBLEM.TYPE"))
    n_classes = int(cfg.get("DATA.N_CLASSES"))
    if problem == "SEMANTIC_SEG":
        return [("foreground", "sigmoid")] if n_classes <= 2 else _classes(cfg)
    if problem == "INSTANCE_SEG":
        ndim = _ndim(cfg)
        losses = list(cfg.get(_IS + "DATA_CHANNELS_LOSSES") or [])
        out = []
        for i, name in enumerate(instance_channel_list(cfg)):
            if name in ("We", "I"):
                continue
            out += _instance_channel(cfg, name, losses[i] if i < len(losses) else None, ndim)
        return out + (_classes(cfg) if n_classes > 2 else [])
    if problem == "DETECTION":
        return [("points", "sigmoid")] + (_classes(cfg) if n_classes > 2 else [])
    if problem in ("DENOISING", "SUPER_RESOLUTION", "SELF_SUPERVISED"):
        return [(f"channel{i}", "linear") for i in range(int(cfg.get("DATA.PATCH_SIZE")[-1]))]
    if problem == "IMAGE_TO_IMAGE":
        n = int(cfg.get("PROBLEM.IMAGE_TO_IMAGE.OUTPUT_CHANNELS"))
        acts = list(cfg.get("PROBLEM.IMAGE_TO_IMAGE.OUTPUT_CHANNEL_ACT") or ["linear"] * n)
        if len(acts) != n:
            raise ConfigError(
                "PROBLEM.IMAGE_TO_IMAGE.OUTPUT_CHANNEL_ACT needs one activation per output "
                f"channel ({n}, PROBLEM.IMAGE_TO_IMAGE.OUTPUT_CHANNELS), got {acts}."
            )
        return [(f"channel{i}", str(a).lower().removeprefix("ce_")) for i, a in enumerate(acts)]
    if problem == "CLASSIFICATION":  # simple_CNN ends with its own softmax: probabilities
        return [(f"class{i}", "linear") for i in range(n_classes)]
    raise ConfigError(f"PROBLEM.TYPE {problem}: no architecture of this runner predicts it.")


def _heads(cfg: Config, channels: list[tuple[str, str]]) -> tuple[list[int], list[str]]:
    """BiaPy's output heads: channels per head and each head's info (``"class"`` for the
    classification head)."""
    problem = str(cfg.get("PROBLEM.TYPE"))
    n_classes = int(cfg.get("DATA.N_CLASSES"))
    with_class = problem in ("INSTANCE_SEG", "DETECTION") and n_classes > 2
    main = len(channels) - (n_classes if with_class else 0)
    per_head: list[int] = []
    if problem in ("INSTANCE_SEG", "IMAGE_TO_IMAGE"):
        per_head = [int(n) for n in cfg.get(f"PROBLEM.{problem}.CHANNELS_PER_HEAD_INFO") or []]
    if per_head and sum(per_head) != main:
        raise ConfigError(
            f"PROBLEM.{problem}.CHANNELS_PER_HEAD_INFO {per_head} must add up to the "
            f"{main} output channels of the configured channels."
        )
    per_head = per_head or [main]
    names = [n for n, _ in channels]
    infos, start = [], 0
    for i, count in enumerate(per_head):  # BiaPy's output_channel_info ("class": class head)
        if problem == "INSTANCE_SEG":
            infos.append("+".join(names[start:start + count]))
        else:
            infos.append("points" if problem == "DETECTION" else f"pred{i}")
        start += count
    if with_class:
        per_head.append(n_classes)
        infos.append("class")
    return per_head, infos


def _head_activations(cfg: Config, channels: list[tuple[str, str]]) -> list[str]:
    """BiaPy's ``head_activations`` strings (``ce_`` for what its losses take as logits)."""
    acts = []
    for name, act in channels:
        logits = act in ("sigmoid", "softmax") and name != "E_seediness"
        acts.append(f"ce_{act}" if logits else act)
    return acts


def _per_level(values: Any, count: int, default: int) -> list[int]:
    """BiaPy's check_configuration: all zeros mean ``default`` on every level."""
    values = [int(v) for v in values]
    return [default] * count if all(v == 0 for v in values) else values


def _model_kwargs(cfg: Config, name: str, in_channels: int, heads: list[int], infos: list[str],
                  acts: list[str]) -> dict[str, Any]:
    """The keyword arguments BiaPy's ``build_model`` passes to the class (plain lists)."""
    ndim = _ndim(cfg)
    problem = str(cfg.get("PROBLEM.TYPE"))
    patch = [int(v) for v in cfg.get("DATA.PATCH_SIZE")]
    patch[-1] = in_channels
    if name == "simple_cnn":
        return dict(image_shape=patch, activation=str(cfg.get("MODEL.ACTIVATION")).lower(),
                    n_classes=sum(heads))
    feature_maps = [int(v) for v in cfg.get("MODEL.FEATURE_MAPS")]
    levels = 4 if name == "multiresunet" else len(feature_maps) - 1
    z_down = _per_level(cfg.get("MODEL.Z_DOWN"), levels, 2)
    common: dict[str, Any] = {
        "output_channels": heads, "output_channel_info": infos, "head_activations": acts,
        "explicit_activations": False, "contrast": bool(cfg.get("LOSS.CONTRAST.ENABLE")),
        "contrast_proj_dim": int(cfg.get("LOSS.CONTRAST.PROJ_DIM")), "return_one_tensor": False,
    }
    if problem == "SUPER_RESOLUTION":
        common["upsampling_factor"] = [int(v) for v in cfg.get("PROBLEM.SUPER_RESOLUTION.UPSCALING")]
        common["upsampling_position"] = str(cfg.get("MODEL.UNET_SR_UPSAMPLE_POSITION"))
    if name == "multiresunet":
        return dict(input_channels=in_channels, ndim=ndim, alpha=1.67, z_down=z_down, **common)
    dropout = [float(v) for v in cfg.get("MODEL.DROPOUT_VALUES")]
    if len(dropout) != len(feature_maps) and all(v == 0 for v in dropout):
        dropout = [0.0] * len(feature_maps)
    isotropy = cfg.get("MODEL.ISOTROPY")
    isotropy = [bool(v) for v in isotropy] if isinstance(isotropy, (list, tuple)) else bool(isotropy)
    if isinstance(isotropy, list) and all(isotropy):
        isotropy = [True] * len(feature_maps)
    conv_layers = [int(v) for v in cfg.get("MODEL.CONV_LAYERS")] or [2]
    if len(conv_layers) != len(feature_maps) and len(set(conv_layers)) == 1:
        conv_layers = conv_layers[:1] * len(feature_maps)
    separated = False
    divide = False
    if problem in ("INSTANCE_SEG", "DETECTION", "IMAGE_TO_IMAGE"):
        separated = bool(cfg.get(f"PROBLEM.{problem}.SEPARATED_DECODERS_PER_HEAD"))
        divide = separated and bool(cfg.get(f"PROBLEM.{problem}.SEPARATED_DECODERS_DIVIDE_FEATURE_MAPS"))
    kwargs = dict(
        image_shape=patch, activation=str(cfg.get("MODEL.ACTIVATION")).lower(),
        feature_maps=feature_maps, drop_values=dropout,
        normalization=str(cfg.get("MODEL.NORMALIZATION")), k_size=int(cfg.get("MODEL.KERNEL_SIZE")),
        upsample_layer=str(cfg.get("MODEL.UPSAMPLE_LAYER")),
        yx_down=_per_level(cfg.get("MODEL.YX_DOWN"), levels, 2), z_down=z_down,
        separated_decoders=separated, divide_decoder_feature_maps=divide, isotropy=isotropy,
        larger_io=bool(cfg.get("MODEL.LARGER_IO")), conv_layers=conv_layers,
        conv_block_order=str(cfg.get("MODEL.CONV_BLOCK_ORDER")), **common,
    )
    if name.startswith("unext"):
        for key in _NOT_FOR_UNEXT:
            del kwargs[key]
        kwargs["cn_layers"] = kwargs.pop("conv_layers")
        kwargs["stochastic_depth_prob"] = float(cfg.get("MODEL.CONVNEXT_SD_PROB"))
        kwargs["stem_k_size"] = int(cfg.get("MODEL.CONVNEXT_STEM_K_SIZE"))
        if name == "unext_v1":
            kwargs["layer_scale"] = float(cfg.get("MODEL.CONVNEXT_LAYER_SCALE"))
    return kwargs


def architecture_source(
    cfg: Config, in_channels: int | None = None, out_channels: int | None = None
) -> tuple[Path, str, dict[str, Any]]:
    """The self-contained source file (torch and stdlib only), class name and keyword
    arguments that rebuild the network of :func:`build_model` (what a BioImage.IO package's
    ``pytorch_state_dict`` weights name).

    Parameters
    ----------
    cfg : Config
        MODEL.* (architecture and its options), PROBLEM.*, DATA.PATCH_SIZE, DATA.N_CLASSES.
    in_channels, out_channels : int, optional
        Override the input channels (default: DATA.PATCH_SIZE's last value) and the output
        channels (default: :func:`output_channels`; a different number makes one head).

    Returns
    -------
    (Path, str, dict)
        The source file, the class name in it and its keyword arguments (plain lists, numbers,
        strings and booleans).
    """
    from biapy_runner.models.architectures import nets

    name = _architecture(cfg)
    channels = output_channels(cfg)
    if out_channels is not None and out_channels != len(channels):
        channels = [(f"channel{i}", "linear") for i in range(out_channels)]
        heads, infos = [out_channels], ["pred0"]
    else:
        heads, infos = _heads(cfg, channels)
    n_in = int(cfg.get("DATA.PATCH_SIZE")[-1]) if in_channels is None else int(in_channels)
    kwargs = _model_kwargs(cfg, name, n_in, heads, infos, _head_activations(cfg, channels))
    return Path(nets.__file__), CLASSES[name], kwargs


def build_model(cfg: Config, in_channels: int | None = None, out_channels: int | None = None) -> Any:
    """The network BiaPy builds for ``cfg`` (MODEL.ARCHITECTURE, PROBLEM.NDIM and BiaPy's
    MODEL.* options), freshly initialised as BiaPy initialises it.

    Parameters
    ----------
    cfg : Config
        The configuration (see :func:`architecture_source`).
    in_channels, out_channels : int, optional
        Overrides of the input and output channels.

    Returns
    -------
    torch.nn.Module
        Its forward returns BiaPy's pre-activation output ``(B, C, *spatial)`` (a dict
        ``{"pred", "class"}`` when a classification head is configured).

    Raises
    ------
    ConfigError
        An architecture or option that is not implemented, or inconsistent sizes.
    """
    from biapy_runner.models.architectures import nets

    _, class_name, kwargs = architecture_source(cfg, in_channels, out_channels)
    try:
        return getattr(nets, class_name)(**kwargs)
    except (ValueError, IndexError, TypeError, RuntimeError) as err:
        raise ConfigError(
            f"Cannot build MODEL.ARCHITECTURE {cfg.get('MODEL.ARCHITECTURE')!r} from the "
            f"configuration's MODEL.* options: {err}. Check that MODEL.FEATURE_MAPS, "
            "DROPOUT_VALUES, Z_DOWN, YX_DOWN, ISOTROPY and CONV_LAYERS have matching lengths."
        ) from err

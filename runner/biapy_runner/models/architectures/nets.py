"""BiaPy's convolutional architectures (2D and 3D), with BiaPy's parameter names.

This file is self-contained (torch and the standard library only): it is the architecture
source a BioImage.IO package ships, so it must not import the runner. Every module below
registers its sub-modules under the attribute names and in the order BiaPy 3.7.1's modules do
(parameter-free layers such as activations included, since they shift the indices of a
``nn.Sequential``), so BiaPy's ``.pth`` state dicts load with ``strict=True`` and give the same
outputs. The classes take BiaPy's constructor arguments, so a BiaPy-exported package's
``kwargs`` build the same network.

U-Net family (``U_Net``, ``SE_U_Net``, ``Attention_U_Net``, ``ResUNet``, ``ResUNet_SE``): one
skeleton (:class:`UNetFamily`) whose subclasses choose the encoder/decoder blocks.
``ResUNetPlusPlus`` and ``MultiResUnet`` have their own layouts.

Forward passes return the pre-activation output (BiaPy's ``explicit_activations=False``): one
tensor, or a dict ``{"pred": ..., "class": ...}`` when a classification head is present; with
``explicit_activations=True`` (what BiaPy exports) the heads' activations are applied.
"""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(inplace=True),
    "elu": lambda: nn.ELU(alpha=1.0, inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1),
    "linear": nn.Identity,
    "softplus": nn.Softplus,
    "none": nn.Identity,
}
NORMALIZATIONS = ("bn", "sync_bn", "in", "gn", "none")


def activation_layer(name: str) -> nn.Module:
    """The activation module called ``name`` (BiaPy's names: relu, elu, tanh, ...)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def norm_layer(norm: str, channels: int, ndim: int) -> nn.Module:
    """BiaPy's normalisation layer: batch (``bn``, ``sync_bn``), instance (``in``, affine),
    group (``gn``: 8 groups in 3D, 16 in 2D) or none (identity)."""
    if norm not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {norm!r}; one of {NORMALIZATIONS}")
    if norm in ("bn", "sync_bn"):
        return (nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d)(channels, momentum=0.1)
    if norm == "in":
        return (nn.InstanceNorm3d if ndim == 3 else nn.InstanceNorm2d)(
            channels, affine=True, momentum=0.1
        )
    if norm == "gn":
        return nn.GroupNorm(num_channels=channels, num_groups=8 if ndim == 3 else 16)
    return nn.Identity()


def _ndim(conv: type) -> int:
    return 3 if conv is nn.Conv3d else 2


def _layers(ndim: int) -> tuple[type, type, type]:
    if ndim == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d
    return nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d


def _pool_size(ndim: int, z: int, yx: int) -> tuple[int, ...]:
    return (z, yx, yx) if ndim == 3 else (yx, yx)


def _kernel(ndim: int, k: int, isotropic: bool) -> tuple[int, ...]:
    if ndim == 3:
        return (k, k, k) if isotropic else (1, k, k)
    return (k, k)


def _sr_upsampling(ndim: int, channels: int, factor, position: str, where: str):
    """BiaPy's super-resolution upsampling (a transposed convolution by ``factor``) when
    ``position`` is ``where`` (``pre``: on the input, ``post``: on the features), else None."""
    if len(factor) > 0 and position == where:
        return _layers(ndim)[1](channels, channels, kernel_size=factor, stride=factor)
    return None


class SqExBlock(nn.Module):
    """Squeeze-and-excitation: channel weights from the global average (reduction ``r``)."""

    def __init__(self, c: int, r: int = 16, ndim: int = 2) -> None:
        super().__init__()
        self.ndim = ndim
        self.squeeze = nn.AdaptiveAvgPool2d(1) if ndim == 2 else nn.AdaptiveAvgPool3d(1)
        self.excitation = nn.Sequential(
            nn.Linear(c, c // r, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(c // r, c, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs, c = x.shape[0], x.shape[1]
        y = self.excitation(self.squeeze(x).view(bs, c))
        return x * y.view(bs, c, *([1] * self.ndim)).expand_as(x)


class ConvBlock(nn.Module):
    """``nconvs`` convolutions, each conv -> norm -> act (or norm -> act -> conv with
    ``order="norm_act_conv"``), then dropout and an optional squeeze-and-excitation."""

    def __init__(
        self, conv, in_size, out_size, k_size, padding="same", stride=1, bias=True, act=None,
        norm="none", dropout=0, se_block=False, nconvs=1, order="conv_norm_act",
    ) -> None:
        super().__init__()
        if nconvs < 1:
            raise ValueError(f"'nconvs' must be >= 1, but {nconvs} was given")
        if order not in ("conv_norm_act", "norm_act_conv"):
            raise ValueError(f"'order' must be 'conv_norm_act' or 'norm_act_conv', not {order!r}")
        self.order = order
        if nconvs > 1:
            self.block = nn.Sequential(*[
                ConvBlock(
                    conv, in_size if i == 0 else out_size, out_size, k_size,
                    padding=padding if i == 0 else "same", stride=stride if i == 0 else 1,
                    bias=bias, act=act, norm=norm, dropout=dropout, se_block=se_block,
                    order=order,
                )
                for i in range(nconvs)
            ])
            return
        ndim = _ndim(conv)
        layer = conv(in_size, out_size, kernel_size=k_size, padding=padding, stride=stride,
                     bias=bias)
        pre = order == "norm_act_conv"
        block: list[nn.Module] = [] if pre else [layer]
        if norm != "none":
            block.append(norm_layer(norm, in_size if pre else out_size, ndim))
        if act:
            block.append(activation_layer(act))
        if pre:
            block.append(layer)
        if dropout > 0:
            block.append(nn.Dropout(dropout))
        if se_block:
            block.append(SqExBlock(out_size, ndim=ndim))
        self.block = nn.Sequential(*block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class AttentionBlock(nn.Module):
    """Attention U-Net's gate on a skip connection (as in BiaPy, ``w_x`` has no normalisation:
    BiaPy appends it to ``w_g``'s list after building ``w_g``, so it is never used)."""

    def __init__(self, conv, in_size, out_size, norm="none", in_size_bridge=None) -> None:
        super().__init__()
        ndim = _ndim(conv)
        in_size_bridge = in_size if in_size_bridge is None else in_size_bridge
        w_g: list[nn.Module] = [conv(in_size, out_size, kernel_size=1, stride=1, padding=0)]
        if norm != "none":
            w_g.append(norm_layer(norm, out_size, ndim))
        self.w_g = nn.Sequential(*w_g)
        self.w_x = nn.Sequential(conv(in_size_bridge, out_size, kernel_size=1, stride=1, padding=0))
        psi: list[nn.Module] = [conv(out_size, 1, kernel_size=1, stride=1, padding=0)]
        if norm != "none":
            psi.append(norm_layer(norm, 1, ndim))
        psi.append(nn.Sigmoid())
        self.psi = nn.Sequential(*psi)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.psi(self.relu(self.w_g(g) + self.w_x(x))) * x


class UpBlock(nn.Module):
    """Decoder level: upsample (transposed conv, or interpolation + 1x1 conv), norm, act, an
    optional attention gate on the skip connection, concatenation and a :class:`ConvBlock`."""

    def __init__(
        self, ndim, convtranspose, in_size, out_size, z_down, up_mode, conv, k_size, yx_down=2,
        act=None, norm="none", dropout=0, attention_gate=False, se_block=False, nconvs=2,
        order="conv_norm_act", in_size_bridge=None,
    ) -> None:
        super().__init__()
        self.ndim = ndim
        in_size_bridge = out_size if in_size_bridge is None else in_size_bridge
        size = _pool_size(ndim, z_down, yx_down)
        block: list[nn.Module] = []
        if up_mode == "convtranspose":
            block.append(convtranspose(in_size, out_size, kernel_size=size, stride=size))
        elif up_mode == "upsampling":
            block.append(nn.Upsample(mode="bilinear" if ndim == 2 else "trilinear",
                                     scale_factor=size))
            block.append(conv(in_size, out_size, kernel_size=1))
        if norm != "none":
            block.append(norm_layer(norm, out_size, ndim))
        if act is not None:
            block.append(activation_layer(act))
        self.up = nn.Sequential(*block)
        self.attention_gate = (
            AttentionBlock(conv, out_size, out_size // 2, norm=norm, in_size_bridge=in_size_bridge)
            if attention_gate else None
        )
        self.conv_block = ConvBlock(
            conv, out_size + in_size_bridge, out_size, k_size, act=act, norm=norm,
            dropout=dropout, se_block=se_block, nconvs=nconvs, order=order,
        )

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        if self.attention_gate is not None:
            bridge = self.attention_gate(up, bridge)
        return self.conv_block(torch.cat([up, bridge], 1))


class ResConvBlock(nn.Module):
    """Residual block: ``nconvs`` convolutions plus a (1x1 or ``skip_k_size``) shortcut, with
    BiaPy's pre-activation of non-first blocks, optional extra input convolution and SE."""

    def __init__(
        self, conv, in_size, out_size, k_size, act=None, norm="none", dropout=0, skip_k_size=1,
        skip_norm="none", first_block=False, se_block=False, extra_conv=False, nconvs=2,
        order="conv_norm_act",
    ) -> None:
        super().__init__()
        if nconvs < 1:
            raise ValueError(f"'nconvs' must be >= 1, but {nconvs} was given")
        self.order = order
        ndim = _ndim(conv)

        def unit(i: int, o: int, **kw) -> ConvBlock:
            return ConvBlock(conv, i, o, k_size, **kw)

        options = {"act": act, "norm": norm, "dropout": dropout}
        if order == "norm_act_conv":
            self.pre_conv = (
                nn.Sequential(unit(in_size, out_size, order=order, **options))
                if extra_conv else None
            )
            main_in = out_size if extra_conv else in_size
            main = [unit(main_in, out_size, order=order, **options)]
            main += [unit(out_size, out_size, order=order, **options) for _ in range(nconvs - 1)]
        else:
            preact: list[nn.Module] = []
            if not first_block:
                if norm != "none":
                    preact.append(norm_layer(norm, in_size, ndim))
                if act is not None:
                    preact.append(activation_layer(act))
            if extra_conv:
                self.pre_conv = nn.Sequential(*preact, unit(in_size, out_size, **options))
                main = []
                main_in = out_size
            else:
                self.pre_conv = None
                main = preact
                main_in = in_size
            main.append(unit(main_in, out_size, **options))
            main += [unit(out_size, out_size, **options) for _ in range(max(0, nconvs - 2))]
            if nconvs >= 2:
                main.append(unit(out_size, out_size))
        self.block = nn.Sequential(*main)
        if extra_conv:
            self.shortcut: nn.Module = nn.Identity()
        else:
            shortcut: list[nn.Module] = [conv(in_size, out_size, kernel_size=skip_k_size,
                                              padding="same")]
            if skip_norm != "none":
                shortcut.append(norm_layer(skip_norm, out_size, ndim))
            self.shortcut = nn.Sequential(*shortcut)
        self.se_block = SqExBlock(out_size, ndim=ndim) if se_block else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_conv is not None:
            x = self.pre_conv(x)
        return self.se_block(self.block(x) + self.shortcut(x))


class ResUpBlock(nn.Module):
    """Residual decoder level: upsample (keeping the channels), concatenate, :class:`ResConvBlock`."""

    def __init__(
        self, ndim, convtranspose, in_size, out_size, in_size_bridge, z_down, up_mode, conv,
        k_size, yx_down=2, act=None, norm="none", skip_k_size=1, skip_norm="none", dropout=0,
        se_block=False, extra_conv=False, nconvs=2, order="conv_norm_act",
    ) -> None:
        super().__init__()
        self.ndim = ndim
        size = _pool_size(ndim, z_down, yx_down)
        if up_mode == "convtranspose":
            self.up: nn.Module = convtranspose(in_size, in_size, kernel_size=size, stride=size)
        else:
            self.up = nn.Upsample(mode="bilinear" if ndim == 2 else "trilinear", scale_factor=size)
        self.conv_block = ResConvBlock(
            conv, in_size + in_size_bridge, out_size, k_size, act=act, norm=norm, dropout=dropout,
            skip_k_size=skip_k_size, skip_norm=skip_norm, se_block=se_block,
            extra_conv=extra_conv, nconvs=nconvs, order=order,
        )

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], 1))


def init_weights(model: nn.Module) -> None:
    """BiaPy's initialisation: Xavier-uniform convolution and linear weights, zero biases
    (a ``bbox_heatmap`` head's bias at -4.59), LayerNorm at identity."""
    info = getattr(model, "output_channel_info", [""])
    heads = getattr(model, "heads", None)
    heatmap = None
    if info and "bbox_heatmap" in info and heads is not None and len(heads) > 0:
        heatmap = heads[info.index("bbox_heatmap")]

    def apply(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, -4.59 if m is heatmap else 0)
        elif isinstance(m, nn.LayerNorm):
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
            if m.weight is not None:
                nn.init.constant_(m.weight, 1.0)

    model.apply(apply)


def _activation_lists(activations, channel_info, output_channels):
    """BiaPy's ``prepare_activation_layers``: one activation per output channel (``ce_``
    dropped), stopping at the first softmax (which then covers its whole group)."""
    per_channel = [info for info, n in zip(channel_info, output_channels) for _ in range(n)]
    outs, classes = [], []
    for name, info in zip(activations, per_channel):
        name = name.lower().removeprefix("ce_")
        (classes if "class" in info else outs).append(activation_layer(name))
        if "softmax" in name:
            break
    return nn.ModuleList(outs), (nn.ModuleList(classes) if classes else None)


class _Heads(nn.Module):
    """What every architecture shares after its features: the output heads (1x1 convolutions
    ``heads``), the optional explicit activations and BiaPy's output dict."""

    def _setup_heads(
        self, ndim, features, output_channels, output_channel_info, explicit_activations,
        head_activations, return_one_tensor, contrast,
    ) -> None:
        if len(output_channels) == 0:
            raise ValueError("'output_channels' needs to has at least one value")
        if contrast:
            raise ValueError("the contrastive head (LOSS.CONTRAST.ENABLE) is not implemented")
        self.output_channels = list(output_channels)
        self.output_channel_info = list(output_channel_info)
        self.return_class = "class" in self.output_channel_info
        self.contrast = False
        self.explicit_activations = explicit_activations
        self.return_one_tensor = return_one_tensor
        if explicit_activations:
            self.head_activations, self.class_head_activations = _activation_lists(
                head_activations, self.output_channel_info, self.output_channels
            )
        conv = _layers(ndim)[0]
        self.heads = nn.Sequential(*[
            conv(features, n, kernel_size=1, padding="same") for n in self.output_channels
        ])

    def _end(self, feats: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        """The large-kernel output layers and super-resolution upsampling (when the network
        has them), then :meth:`_outputs`."""
        if getattr(self, "conv_out", None) is not None:
            feats = [layer(f) for layer, f in zip(self.conv_out, feats)]
        if self.post_upsampling is not None:
            feats[0] = self.post_upsampling(feats[0])
        return self._outputs(feats)

    def _outputs(self, feats: list[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        outs, class_outs = [], []
        for i, head in enumerate(self.heads):
            y = head(feats[i] if len(feats) > 1 else feats[0])
            (class_outs if "class" in self.output_channel_info[i] else outs).append(y)
        pred = torch.cat(outs, dim=1)
        if self.explicit_activations:
            if len(self.head_activations) == 1:
                pred = self.head_activations[0](pred)
            else:
                for i, act in enumerate(self.head_activations):
                    pred[:, i:i + 1] = act(pred[:, i:i + 1])
            if self.return_class and self.class_head_activations is not None:
                for i, act in enumerate(self.class_head_activations):
                    class_outs[i] = act(class_outs[i])
        if not self.return_class:
            return pred
        if self.return_one_tensor:
            labels = torch.argmax(torch.cat(class_outs, dim=1), dim=1).unsqueeze(1)
            return torch.cat((pred, labels), dim=1)
        return {"pred": pred, "class": torch.cat(class_outs, dim=1)}


def decoder_feature_maps(feature_maps, num_decoders, divide):
    """Feature maps of each decoder (divided among separated decoders when asked)."""
    if num_decoders <= 1 or not divide:
        return list(feature_maps)
    return [max(1, x // num_decoders) for x in feature_maps]


class _EncoderDecoder(_Heads):
    """What BiaPy's U-Net-like networks share around their levels: the super-resolution
    upsampling before (``pre_upsampling``) or after (``post_upsampling``) the network, the
    large-kernel input and output layers (``conv_in``, ``conv_out``) and the heads."""

    def _stem(self, depth, image_shape, feature_maps, k_size, yx_down, z_down, isotropy,
              options, upsampling_factor, upsampling_position, larger_io):
        """Set ``ndim``, ``depth`` and the layers before the encoder (``options``: activation,
        normalisation, block order); returns the encoder's input width, the isotropy per
        level and the block options."""
        self.depth = depth
        self.z_down, self.yx_down = z_down, yx_down
        self.ndim = ndim = 3 if len(image_shape) == 4 else 2
        if isinstance(isotropy, bool):
            isotropy = [isotropy] * len(feature_maps)
        activation, normalization, order = options
        common = {"act": activation.lower(), "norm": normalization, "order": order}
        conv = _layers(ndim)[0]
        self.pre_upsampling = _sr_upsampling(ndim, image_shape[-1], upsampling_factor,
                                             upsampling_position, "pre")
        self.down_path = nn.ModuleList()
        self.mpooling_layers = nn.ModuleList()
        self.conv_in = None
        if not larger_io:
            return image_shape[-1], isotropy, common
        self.conv_in = ConvBlock(conv, image_shape[-1], feature_maps[0],
                                 _kernel(ndim, k_size + 2, isotropy[0]), **common)
        return feature_maps[0], isotropy, common

    def _tail(self, width, k_size, isotropy, upsampling_factor, upsampling_position, larger_io,
              common, heads) -> None:
        """The layers after the decoders (``width`` channels each) and the heads (``heads``:
        the arguments of :meth:`_setup_heads` after the width)."""
        conv = _layers(self.ndim)[0]
        self.conv_out = None
        if larger_io:
            self.conv_out = nn.ModuleList([
                ConvBlock(conv, width, width, _kernel(self.ndim, k_size + 2, isotropy[0]), **common)
                for _ in range(self.num_decoders)
            ])
        self.post_upsampling = _sr_upsampling(self.ndim, width, upsampling_factor,
                                              upsampling_position, "post")
        self._setup_heads(self.ndim, width, *heads)
        init_weights(self)

    def _begin(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_upsampling is not None:
            x = self.pre_upsampling(x)
        return x if self.conv_in is None else self.conv_in(x)



class UNetFamily(_EncoderDecoder):
    """The U-Net skeleton BiaPy's U-Net variants share: optional large-kernel input/output
    layers, ``len(feature_maps) - 1`` encoder levels with max pooling, a bottleneck, one or
    several decoders, super-resolution upsampling before or after, and the heads. Subclasses
    choose the blocks with the class attributes below."""

    residual = False  # ResConvBlock/ResUpBlock instead of ConvBlock/UpBlock
    squeeze_excite = False  # SE blocks in the encoder, bottleneck and decoder
    attention = False  # attention gates on the skip connections
    extra_conv = False  # (residual) an extra convolution before each residual block

    def __init__(
        self, image_shape=(256, 256, 1), activation="ELU", feature_maps=(32, 64, 128, 256),
        drop_values=(0.1, 0.1, 0.1, 0.1), normalization="none", k_size=3,
        upsample_layer="convtranspose", yx_down=(2, 2, 2, 2), z_down=(2, 2, 2, 2),
        output_channels=(1,), separated_decoders=False, divide_decoder_feature_maps=False,
        output_channel_info=("F",), explicit_activations=False, head_activations=("ce_sigmoid",),
        upsampling_factor=(), upsampling_position="pre", isotropy=False, larger_io=True,
        conv_layers=(2, 2, 2, 2, 2), contrast=False, contrast_proj_dim=256,
        return_one_tensor=False, conv_block_order="conv_norm_act",
    ) -> None:
        super().__init__()
        sr = (upsampling_factor, upsampling_position)
        in_channels, isotropy, common = self._stem(
            len(feature_maps) - 1, image_shape, feature_maps, k_size, yx_down, z_down, isotropy,
            (activation, normalization, conv_block_order), *sr, larger_io,
        )
        ndim = self.ndim
        conv, convtranspose, pooling = _layers(ndim)
        for i in range(self.depth):
            self.down_path.append(self._encoder_block(
                conv, in_channels, feature_maps[i], _kernel(ndim, k_size, isotropy[i]),
                dropout=drop_values[i], nconvs=conv_layers[i], first=i == 0, **common,
            ))
            self.mpooling_layers.append(pooling(_pool_size(ndim, z_down[i], yx_down[i])))
            in_channels = feature_maps[i]
        self.bottleneck = self._encoder_block(
            conv, in_channels, feature_maps[-1], _kernel(ndim, k_size, isotropy[-1]),
            dropout=drop_values[-1], nconvs=conv_layers[-1], first=False, **common,
        )
        self.num_decoders = len(output_channels) if separated_decoders else 1
        dec = decoder_feature_maps(feature_maps, self.num_decoders, divide_decoder_feature_maps)
        self.up_paths = nn.ModuleList([nn.ModuleList() for _ in range(self.num_decoders)])
        for path in self.up_paths:
            in_channels = feature_maps[-1]
            for i in range(self.depth - 1, -1, -1):
                path.append(self._decoder_block(
                    ndim=ndim, convtranspose=convtranspose, in_size=in_channels,
                    out_size=dec[i], in_size_bridge=feature_maps[i], z_down=z_down[i],
                    yx_down=yx_down[i], up_mode=upsample_layer, conv=conv,
                    k_size=_kernel(ndim, k_size, isotropy[i]), dropout=drop_values[i],
                    nconvs=conv_layers[i], **common,
                ))
                in_channels = dec[i]
        self._tail(dec[0], k_size, isotropy, *sr, larger_io, common, (
            output_channels, output_channel_info, explicit_activations, head_activations,
            return_one_tensor, contrast))

    def _encoder_block(self, conv, in_size, out_size, k_size, *, first, order, **kw) -> nn.Module:
        if self.residual:
            return ResConvBlock(conv, in_size, out_size, k_size, first_block=first,
                                se_block=self.squeeze_excite, extra_conv=self.extra_conv,
                                order=order, **kw)
        return ConvBlock(conv, in_size, out_size, k_size, se_block=self.squeeze_excite,
                         order=order, **kw)

    def _decoder_block(self, **kw) -> nn.Module:
        if self.residual:
            return ResUpBlock(se_block=self.squeeze_excite, extra_conv=self.extra_conv, **kw)
        return UpBlock(se_block=self.squeeze_excite, attention_gate=self.attention, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        x = self._begin(x)
        blocks = []
        for down, pool in zip(self.down_path, self.mpooling_layers):
            x = down(x)
            blocks.append(x)
            x = pool(x)
        bottom = self.bottleneck(x)
        feats = []
        for path in self.up_paths:
            x = bottom
            for i, up in enumerate(path):
                x = up(x, blocks[-i - 1])
            feats.append(x)
        return self._end(feats)


class U_Net(UNetFamily):
    """BiaPy's ``unet``."""


class SE_U_Net(UNetFamily):
    """BiaPy's ``seunet``: squeeze-and-excitation after every convolution."""

    squeeze_excite = True


class Attention_U_Net(UNetFamily):
    """BiaPy's ``attention_unet``: attention gates on the skip connections."""

    attention = True


class ResUNet(UNetFamily):
    """BiaPy's ``resunet``: residual blocks."""

    residual = True


class ResUNet_SE(UNetFamily):
    """BiaPy's ``resunet_se``: residual blocks with an extra input convolution and SE."""

    residual = True
    squeeze_excite = True

    def __init__(self, *args, extra_conv: bool = True, **kwargs) -> None:
        self.extra_conv = extra_conv
        super().__init__(*args, **kwargs)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: three dilated 3x3 convolutions (rates 6, 12, 18), each
    ReLU then norm, concatenated and merged by a 1x1 convolution."""

    def __init__(self, conv, in_dims, out_dims, norm="none", rate=(6, 12, 18)) -> None:
        super().__init__()
        for i, r in enumerate(rate, start=1):
            block: list[nn.Module] = [conv(in_dims, out_dims, 3, stride=1, padding=r, dilation=r),
                                      nn.ReLU(inplace=True)]
            if norm != "none":
                block.append(norm_layer(norm, out_dims, _ndim(conv)))
            setattr(self, f"aspp_block{i}", nn.Sequential(*block))
        self.n_rates = len(rate)
        self.output = conv(len(rate) * out_dims, out_dims, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [getattr(self, f"aspp_block{i}")(x) for i in range(1, self.n_rates + 1)]
        return self.output(torch.cat(parts, dim=1))


class ResUNetPlusPlus_AttentionBlock(nn.Module):
    """ResUNet++'s attention: the (pooled) encoder features gate the decoder features."""

    def __init__(self, conv, maxpool, input_encoder, input_decoder, output_dim, z_down=2,
                 yx_down=2, norm="none") -> None:
        super().__init__()
        ndim = _ndim(conv)

        def normed(channels: int, *layers: nn.Module) -> nn.Sequential:
            pre = [norm_layer(norm, channels, ndim)] if norm != "none" else []
            return nn.Sequential(*pre, nn.ReLU(), *layers)

        self.conv_encoder = normed(
            input_encoder, conv(input_encoder, output_dim, 3, padding=1),
            maxpool(_pool_size(ndim, z_down, yx_down)),
        )
        self.conv_decoder = normed(input_decoder, conv(input_decoder, output_dim, 3, padding=1))
        self.conv_attn = normed(output_dim, conv(output_dim, 1, 1))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        out = self.conv_attn(self.conv_encoder(x1) + self.conv_decoder(x2))
        return out * x2


class ResUNetPlusPlus(_EncoderDecoder):
    """BiaPy's ``resunet++``: residual encoder with SE, ASPP bridge and output, attention
    before each decoder level."""

    def __init__(
        self, image_shape=(256, 256, 1), activation="ELU", feature_maps=(32, 64, 128, 256),
        drop_values=(0.1, 0.1, 0.1, 0.1), normalization="none", k_size=3,
        upsample_layer="convtranspose", z_down=(2, 2, 2, 2), yx_down=(2, 2, 2, 2),
        output_channels=(1,), separated_decoders=False, divide_decoder_feature_maps=False,
        output_channel_info=("F",), explicit_activations=False, head_activations=("ce_sigmoid",),
        upsampling_factor=(), upsampling_position="pre", isotropy=False, larger_io=True,
        conv_layers=(2, 2, 2, 2, 2), conv_block_order="conv_norm_act", contrast=False,
        contrast_proj_dim=256, return_one_tensor=False,
    ) -> None:
        super().__init__()
        sr = (upsampling_factor, upsampling_position)
        in_channels, isotropy, common = self._stem(
            len(feature_maps) - 2, image_shape, feature_maps, k_size, yx_down, z_down, isotropy,
            (activation, normalization, conv_block_order), *sr, larger_io,
        )
        ndim = self.ndim
        conv, convtranspose, pooling = _layers(ndim)
        self.sqex_blocks = nn.ModuleList()
        for level in range(self.depth + 1):
            i = max(level - 1, 0)  # BiaPy sizes level n >= 1 with the settings of level n - 1
            kernel = _kernel(ndim, k_size, isotropy[i])
            self.down_path.append(ResConvBlock(
                conv, in_channels, feature_maps[level], kernel, dropout=drop_values[i],
                skip_k_size=kernel, skip_norm=normalization, first_block=level == 0,
                nconvs=conv_layers[level], **common,
            ))
            if level == 0:
                self.sqex_blocks.append(SqExBlock(feature_maps[0], ndim=ndim))
            self.mpooling_layers.append(pooling(_pool_size(ndim, z_down[level], yx_down[level])))
            in_channels = feature_maps[level]
            if 0 < level < self.depth:
                self.sqex_blocks.append(SqExBlock(in_channels, ndim=ndim))
        self.sqex_blocks.append(None)
        self.aspp_bridge = ASPP(conv, in_channels, feature_maps[-1], norm=normalization)
        self.num_decoders = len(output_channels) if separated_decoders else 1
        dec = decoder_feature_maps(feature_maps, self.num_decoders, divide_decoder_feature_maps)
        self.up_paths = nn.ModuleList([nn.ModuleList() for _ in range(self.num_decoders)])
        self.attentions = nn.ModuleList([nn.ModuleList() for _ in range(self.num_decoders)])
        for path, attentions in zip(self.up_paths, self.attentions):
            in_channels = feature_maps[-1]
            for i in range(self.depth - 1, -1, -1):
                kernel = _kernel(ndim, k_size, isotropy[i])
                attentions.append(ResUNetPlusPlus_AttentionBlock(
                    conv, pooling, feature_maps[i], in_channels, in_channels, norm=normalization,
                    z_down=z_down[i + 1], yx_down=yx_down[i + 1],
                ))
                path.append(ResUpBlock(
                    ndim, convtranspose, in_channels, dec[i + 1], feature_maps[i], z_down[i + 1],
                    upsample_layer, conv, kernel, yx_down=yx_down[i + 1],
                    dropout=drop_values[i + 2], skip_k_size=kernel, skip_norm=normalization,
                    nconvs=conv_layers[i + 1], **common,
                ))
                in_channels = dec[i + 1]
        self.aspp_out = nn.ModuleList([
            ASPP(conv, dec[1], dec[0], norm=normalization) for _ in range(self.num_decoders)
        ])
        self._tail(dec[0], k_size, isotropy, *sr, larger_io, common, (
            output_channels, output_channel_info, explicit_activations, head_activations,
            return_one_tensor, contrast))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        x = self._begin(x)
        blocks = []
        last = len(self.down_path) - 1
        for i, (down, sqex, pool) in enumerate(
            zip(self.down_path, self.sqex_blocks, self.mpooling_layers)
        ):
            x = down(x)
            if i < last:
                x = sqex(x)
            if i != 0:
                x = pool(x)
            blocks.append(x)
        bottom = self.aspp_bridge(x)
        feats = []
        for path, attentions, aspp in zip(self.up_paths, self.attentions, self.aspp_out):
            x = bottom
            for i, (att, up) in enumerate(zip(attentions, path)):
                x = att(blocks[-i - 2], x)
                x = up(x, blocks[-i - 2])
            feats.append(aspp(x))
        return self._end(feats)


class Conv_batchnorm(nn.Module):
    """MultiResUNet's convolution + batch norm (+ ReLU)."""

    def __init__(self, conv, batchnorm, num_in_filters, num_out_filters, kernel_size, stride=1,
                 activation="relu") -> None:
        super().__init__()
        self.activation = activation
        self.conv1 = conv(in_channels=num_in_filters, out_channels=num_out_filters,
                          kernel_size=kernel_size, stride=stride, padding="same")
        self.batchnorm = batchnorm(num_out_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(self.conv1(x))
        return torch.nn.functional.relu(x) if self.activation == "relu" else x


def _multires_width(filters: int, alpha: float) -> tuple[int, int, int]:
    w = filters * alpha
    return int(w * 0.167), int(w * 0.333), int(w * 0.5)


class Multiresblock(nn.Module):
    """MultiResUNet's block: three chained 3x3 convolutions concatenated, plus a 1x1 shortcut."""

    def __init__(self, conv, batchnorm, num_in_channels, num_filters, alpha=1.67) -> None:
        super().__init__()
        self.alpha = alpha
        self.W = num_filters * alpha
        c3, c5, c7 = _multires_width(num_filters, alpha)
        out = c3 + c5 + c7
        self.shortcut = Conv_batchnorm(conv, batchnorm, num_in_channels, out, 1, activation="None")
        self.conv_3x3 = Conv_batchnorm(conv, batchnorm, num_in_channels, c3, 3)
        self.conv_5x5 = Conv_batchnorm(conv, batchnorm, c3, c5, 3)
        self.conv_7x7 = Conv_batchnorm(conv, batchnorm, c5, c7, 3)
        self.batch_norm1 = batchnorm(out)
        self.batch_norm2 = batchnorm(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv_3x3(x)
        b = self.conv_5x5(a)
        c = self.conv_7x7(b)
        y = self.batch_norm1(torch.cat([a, b, c], dim=1)) + self.shortcut(x)
        return torch.nn.functional.relu(self.batch_norm2(y))


class Respath(nn.Module):
    """MultiResUNet's residual path on a skip connection (``respath_length`` steps)."""

    def __init__(self, conv, batchnorm, num_in_filters, num_out_filters, respath_length) -> None:
        super().__init__()
        self.respath_length = respath_length
        self.shortcuts = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i in range(respath_length):
            width = num_in_filters if i == 0 else num_out_filters
            self.shortcuts.append(Conv_batchnorm(conv, batchnorm, width, num_out_filters, 1,
                                                 activation="None"))
            self.convs.append(Conv_batchnorm(conv, batchnorm, width, num_out_filters, 3))
            self.bns.append(batchnorm(num_out_filters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = torch.nn.functional.relu
        for short, conv, bn in zip(self.shortcuts, self.convs, self.bns):
            shortcut = short(x)
            x = relu(bn(conv(x)))
            x = relu(bn(x + shortcut))
        return x


class MultiResUnet(_Heads):
    """BiaPy's ``multiresunet`` (fixed widths from 32 filters, ``alpha`` 1.67, four levels)."""

    def __init__(
        self, ndim, input_channels, alpha=1.67, z_down=(2, 2, 2, 2), output_channels=(1,),
        output_channel_info=("F",), explicit_activations=False, head_activations=("ce_sigmoid",),
        upsampling_factor=(), upsampling_position="pre", contrast=False, contrast_proj_dim=256,
        return_one_tensor=False,
    ) -> None:
        super().__init__()
        self.ndim = ndim
        self.alpha = alpha
        conv, convtranspose, _ = _layers(ndim)
        batchnorm = nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d
        pooling = nn.MaxPool3d if ndim == 3 else nn.MaxPool2d
        self.pre_upsampling = _sr_upsampling(ndim, input_channels, upsampling_factor,
                                             upsampling_position, "pre")
        width = input_channels
        for level in range(1, 6):  # encoder 1-4 with their res paths, bottleneck 5
            filters = 32 * 2 ** (level - 1)
            setattr(self, f"multiresblock{level}",
                    Multiresblock(conv, batchnorm, width, filters, alpha))
            width = sum(_multires_width(filters, alpha))
            setattr(self, f"in_filters{level}", width)
            if level < 5:
                setattr(self, f"pool{level}",
                        pooling(_pool_size(ndim, z_down[level - 1], 2)))
                setattr(self, f"respath{level}",
                        Respath(conv, batchnorm, width, filters, respath_length=5 - level))
        for level in range(6, 10):  # decoder
            filters = 32 * 2 ** (9 - level)
            size = _pool_size(ndim, z_down[9 - level], 2)
            setattr(self, f"upsample{level}",
                    convtranspose(width, filters, kernel_size=size, stride=size))
            setattr(self, f"concat_filters{level - 5}", filters * 2)
            setattr(self, f"multiresblock{level}",
                    Multiresblock(conv, batchnorm, filters * 2, filters, alpha))
            width = sum(_multires_width(filters, alpha))
            setattr(self, f"in_filters{level}", width)
        self.post_upsampling = _sr_upsampling(ndim, width, upsampling_factor,
                                              upsampling_position, "post")
        self._setup_heads(ndim, width, output_channels, output_channel_info,
                          explicit_activations, head_activations, return_one_tensor, contrast)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.pre_upsampling is not None:
            x = self.pre_upsampling(x)
        skips = []
        for level in range(1, 5):
            x = getattr(self, f"multiresblock{level}")(x)
            skips.append(getattr(self, f"respath{level}")(x))
            x = getattr(self, f"pool{level}")(x)
        x = self.multiresblock5(x)
        for level in range(6, 10):
            up = getattr(self, f"upsample{level}")(x)
            x = getattr(self, f"multiresblock{level}")(torch.cat([up, skips[9 - level]], dim=1))
        return self._end([x])


class Permute(nn.Module):
    """Reorders the axes (channels last around a LayerNorm, and back)."""

    def __init__(self, dims) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


def _channels_last(ndim: int) -> tuple[Permute, Permute]:
    if ndim == 3:
        return Permute([0, 2, 3, 4, 1]), Permute([0, 4, 1, 2, 3])
    return Permute([0, 2, 3, 1]), Permute([0, 3, 1, 2])


def _channel_norm(ndim: int, channels: int) -> list[nn.Module]:
    """LayerNorm over the channels of a channel-first tensor (permuted around it)."""
    to_last, to_first = _channels_last(ndim)
    return [to_last, nn.LayerNorm(channels), to_first]


class StochasticDepth(nn.Module):
    """Drops whole samples of a residual branch with probability ``p`` while training."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(survival)
        return x * (noise / survival if survival > 0 else noise)


class GRN(nn.Module):
    """ConvNeXt V2's global response normalisation (channels last; BiaPy's norm over the first
    two spatial axes)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-06)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 convolution, LayerNorm, 4x MLP (with GRN in V2), layer
    scale (V1), stochastic depth, residual."""

    def __init__(self, ndim, conv, dim, version, layer_scale=1e-06, stochastic_depth_prob=0.0,
                 k_size=(7, 7)) -> None:
        super().__init__()
        to_last, to_first = _channels_last(ndim)
        pad = (0, 3, 3) if ndim == 3 and k_size[0] == 1 else (3,) * ndim
        mlp: list[nn.Module] = [nn.Linear(dim, 4 * dim), nn.GELU()]
        if version == 2:
            mlp.append(GRN(4 * dim))
        self.block = nn.Sequential(
            conv(dim, dim, kernel_size=k_size, padding=pad, groups=dim, bias=True), to_last,
            nn.LayerNorm(dim, eps=1e-06), *mlp, nn.Linear(4 * dim, dim), to_first,
        )
        if version == 1:
            scale = torch.ones((dim,) + (1,) * ndim) * layer_scale
            self.layer_scale = nn.Parameter(scale) if layer_scale > 0 else None
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if getattr(self, "layer_scale", None) is not None:
            result = self.layer_scale * result
        return x + self.stochastic_depth(result)


class UpConvNeXtBlock(nn.Module):
    """U-NeXt decoder level: LayerNorm and upsampling, concatenation, 1x1 convolution, ConvNeXt
    blocks."""

    def __init__(self, ndim, convtranspose, in_size, out_size, z_down, up_mode, conv, version,
                 yx_down=2, cn_layers=1, sd_probs=(0.0,), layer_scale=1e-06, k_size=(7, 7),
                 in_size_bridge=None) -> None:
        super().__init__()
        self.ndim = ndim
        in_size_bridge = out_size if in_size_bridge is None else in_size_bridge
        size = _pool_size(ndim, z_down, yx_down)
        block: list[nn.Module] = [nn.Sequential(*_channel_norm(ndim, in_size))]
        if up_mode == "convtranspose":
            block.append(convtranspose(in_size, out_size, kernel_size=size, stride=size))
        else:
            block.append(nn.Upsample(mode="bilinear" if ndim == 2 else "trilinear",
                                     scale_factor=size))
            block.append(conv(in_size, out_size, kernel_size=1))
        self.up = nn.Sequential(*block)
        self.attention_gate = None
        self.conv_block = ConvBlock(conv, out_size + in_size_bridge, out_size, k_size=1)
        self.cn_block = nn.Sequential(*[
            ConvNeXtBlock(ndim, conv, out_size, version, layer_scale, sd_probs[i], k_size=k_size)
            for i in reversed(range(cn_layers))
        ])

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.cn_block(self.conv_block(torch.cat([self.up(x), bridge], 1)))


class _UNeXt(_Heads):
    """BiaPy's U-NeXt (ConvNeXt blocks in a U-Net): a patchifying stem, LayerNorm + strided
    convolution downsampling, ConvNeXt stages, and a transposed-convolution head."""

    version = 1

    def __init__(
        self, image_shape=(256, 256, 1), feature_maps=(32, 64, 128, 256),
        upsample_layer="convtranspose", z_down=(2, 2, 2, 2), yx_down=(2, 2, 2, 2),
        output_channels=(1,), separated_decoders=False, divide_decoder_feature_maps=False,
        output_channel_info=("F",), explicit_activations=False, head_activations=("ce_sigmoid",),
        upsampling_factor=(), upsampling_position="pre", stochastic_depth_prob=0.1,
        layer_scale=1e-06, cn_layers=(2, 2, 2, 2), isotropy=True, stem_k_size=2, contrast=False,
        contrast_proj_dim=256, return_one_tensor=False,
    ) -> None:
        super().__init__()
        self.depth = len(feature_maps) - 1
        self.ndim = ndim = 3 if len(image_shape) == 4 else 2
        self.z_down, self.yx_down = z_down, yx_down
        if isinstance(isotropy, bool):
            isotropy = [isotropy] * len(feature_maps)
        conv, convtranspose, _ = _layers(ndim)
        self.pre_upsampling = _sr_upsampling(ndim, image_shape[-1], upsampling_factor,
                                             upsampling_position, "pre")
        z_factor = int(max(z_down[0] / stem_k_size, 1))
        stem = (stem_k_size * z_factor, stem_k_size, stem_k_size) if ndim == 3 else (
            stem_k_size, stem_k_size)
        self.down_path = nn.ModuleList([nn.Sequential(
            conv(image_shape[-1], feature_maps[0], kernel_size=stem, stride=stem),
            *_channel_norm(ndim, feature_maps[0]),
        )])
        self.downsample_layers = nn.ModuleList()
        kernel = (7,) * ndim  # as in BiaPy, once anisotropic, every later level stays so
        total = sum(cn_layers)
        block_id = 0
        sd_probs = []

        def stage(dim: int, count: int) -> nn.Sequential:
            nonlocal block_id
            blocks, probs = [], []
            for _ in range(count):
                probs.append(stochastic_depth_prob * block_id / (total - 1.0))
                blocks.append(ConvNeXtBlock(ndim, conv, dim, self.version, layer_scale,
                                            probs[-1], k_size=kernel))
                block_id += 1
            sd_probs.append(probs)
            return nn.Sequential(*blocks)

        for i in range(self.depth):
            if not isotropy[i] and ndim == 3:
                kernel = (1, 7, 7)
            self.down_path.append(stage(feature_maps[i], cn_layers[i]))
            size = _pool_size(ndim, z_down[i], yx_down[i])
            self.downsample_layers.append(nn.Sequential(
                *_channel_norm(ndim, feature_maps[i]),
                conv(feature_maps[i], feature_maps[i + 1], kernel_size=size, stride=size),
            ))
        if not isotropy[-1] and ndim == 3:
            kernel = (1, 7, 7)
        self.bottleneck = stage(feature_maps[-1], cn_layers[-1])
        self.num_decoders = len(output_channels) if separated_decoders else 1
        dec = decoder_feature_maps(feature_maps, self.num_decoders, divide_decoder_feature_maps)
        self.up_paths = nn.ModuleList([nn.ModuleList() for _ in range(self.num_decoders)])
        for path in self.up_paths:
            in_channels = feature_maps[-1]
            for i in range(self.depth - 1, -1, -1):
                if not isotropy[i] and ndim == 3:
                    kernel = (1, 7, 7)
                path.append(UpConvNeXtBlock(
                    ndim, convtranspose, in_channels, dec[i], z_down[i], upsample_layer, conv,
                    self.version, yx_down=yx_down[i], cn_layers=cn_layers[i],
                    sd_probs=sd_probs[i], layer_scale=layer_scale, k_size=kernel,
                    in_size_bridge=feature_maps[i],
                ))
                in_channels = dec[i]
            path.append(nn.Sequential(
                convtranspose(dec[0], dec[0], kernel_size=stem, stride=stem),
                *_channel_norm(ndim, dec[0]),
            ))
        self.post_upsampling = _sr_upsampling(ndim, dec[0], upsampling_factor,
                                              upsampling_position, "post")
        self._setup_heads(ndim, dec[0], output_channels, output_channel_info,
                          explicit_activations, head_activations, return_one_tensor, contrast)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.pre_upsampling is not None:
            x = self.pre_upsampling(x)
        x = self.down_path[0](x)
        blocks = []
        for down, pool in zip(self.down_path[1:], self.downsample_layers):
            x = down(x)
            blocks.append(x)
            x = pool(x)
        bottom = self.bottleneck(x)
        feats = []
        for path in self.up_paths:
            x = bottom
            for i, up in enumerate(path[:-1]):
                x = up(x, blocks[-i - 1])
            feats.append(path[-1](x))
        return self._end(feats)


class U_NeXt_V1(_UNeXt):
    """BiaPy's ``unext_v1`` (ConvNeXt V1 blocks with layer scale)."""


class U_NeXt_V2(_UNeXt):
    """BiaPy's ``unext_v2`` (ConvNeXt V2 blocks with GRN, no layer scale)."""

    version = 2

    def __init__(self, *args, **kwargs) -> None:
        kwargs.pop("layer_scale", None)
        super().__init__(*args, **kwargs)


class simple_CNN(nn.Module):
    """BiaPy's classifier ``simple_cnn`` (2D or 3D by ``image_shape``'s length).

    Two convolutional blocks (32 then 64 features: 3x3, 3x3, 5x5 convolutions, a 2x max
    pooling, batch normalisation, dropout 0.4), then ``heads``: flatten, dropout 0.5, a linear
    layer to ``n_classes`` and a softmax, so the output ``(B, n_classes)`` is already class
    probabilities. The linear layer's size fixes the input size to ``image_shape``
    (``(y, x, channels)`` or ``(z, y, x, channels)``). As in BiaPy, one activation module is
    shared by every block; in the second block it comes before the normalisation.
    """

    def __init__(self, image_shape, activation: str = "ReLU", n_classes: int = 2) -> None:
        super().__init__()
        self.ndim = 3 if len(image_shape) == 4 else 2
        conv, _, pool = _layers(self.ndim)
        norm = nn.BatchNorm3d if self.ndim == 3 else nn.BatchNorm2d
        act = activation_layer(str(activation).lower())
        first, second = 32, 64
        self.block1 = nn.Sequential(
            conv(image_shape[-1], first, kernel_size=3, padding="same"), norm(first), act,
            conv(first, first, kernel_size=3, padding="same"), norm(first), act,
            conv(first, first, kernel_size=5, padding="same"), pool(2), norm(first), act,
            nn.Dropout(0.4),
        )
        self.block2 = nn.Sequential(
            conv(first, second, kernel_size=3, padding="same"), act, norm(second),
            conv(second, second, kernel_size=3, padding="same"), act, norm(second),
            conv(second, second, kernel_size=5, padding="same"), pool(2), act, norm(second),
            nn.Dropout(0.4),
        )
        features = second
        for size in image_shape[:-1]:
            features *= int(size) // 4
        self.heads = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(features, n_classes), nn.Softmax(dim=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, n_classes)`` of ``x`` ``(B, C, *image_shape[:-1])``."""
        return self.heads(self.block2(self.block1(x)))

"""Generators and discriminators of CycleGAN (Zhu et al. 2017) and pix2pix (Isola et al. 2017).

Plain ``nn.Module``s: no device handling, no training logic. Build them with
:func:`build_generator` / :func:`build_discriminator` from a config dataclass, which is
also what checkpoints store, so a checkpoint alone can rebuild its networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from cyclegan.models.blur import BlurDownsample, BlurUpsample
from cyclegan.models.layers import InstanceNorm2d, ReflectionPad2d, fast_layout

Norm = Literal["instance", "batch", "none"]
Upsample = Literal["transpose", "resize_conv", "antialias"]
Init = Literal["normal", "xavier"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator.

    ``resnet`` with ``n_blocks=9`` is the published CycleGAN generator for 256 px
    (``n_blocks=6`` for 128 px). ``unet`` with ``n_downs=8`` is pix2pix's ``unet_256``
    (``n_downs=7``: ``unet_128``); the input side must be divisible by ``2**n_downs``.
    ``upsample="resize_conv"`` replaces transposed convolutions by nearest-neighbour
    upsampling + 3x3 convolution, which avoids checkerboard artifacts (Odena et al. 2016).
    ``antialias`` (ResNet only) downsamples by stride-1 convolution + binomial blur, and
    ``upsample="antialias"`` upsamples by blur + 3x3 convolution (:mod:`cyclegan.models.blur`):
    the CUT authors' defaults (their ``--no_antialias`` / ``--no_antialias_up`` turn them off).
    """

    arch: Literal["resnet", "unet"] = "resnet"
    ngf: int = 64
    n_blocks: int = 9
    n_downs: int = 8
    norm: Norm = "instance"
    dropout: bool = False
    upsample: Upsample = "transpose"
    antialias: bool = False


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a discriminator.

    ``patch`` is the 70x70 PatchGAN for ``n_layers=3``; ``pixel`` is the 1x1 PixelGAN.
    ``antialias``: each stride-2 convolution of the PatchGAN becomes stride 1 + a binomial
    blur-and-subsample (the CUT authors' default).
    """

    arch: Literal["patch", "pixel"] = "patch"
    ndf: int = 64
    n_layers: int = 3
    norm: Norm = "instance"
    antialias: bool = False


def _norm(norm: Norm, channels: int) -> nn.Module:
    # Instance norm without affine parameters and running statistics, as published.
    if norm == "instance":
        return InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    return nn.Identity()


def _conv_bias(norm: Norm) -> bool:
    # Batch norm's mean subtraction cancels a bias; instance norm here has no shift, so the bias stays.
    return norm != "batch"


def _upsample(in_ch: int, out_ch: int, *, kind: Upsample, kernel: int, bias: bool) -> nn.Module:
    """Double the spatial size: ``kernel`` is the transposed convolution's kernel (3 or 4)."""
    if kind == "transpose":
        if kernel == 3:
            return nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=bias)
        return nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=bias)
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        ReflectionPad2d(1),
        nn.Conv2d(in_ch, out_ch, 3, bias=bias),
    )


class ResnetBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), reflection padded."""

    def __init__(self, channels: int, *, norm: Norm, dropout: bool) -> None:
        super().__init__()
        self.channels = channels
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   _norm(norm, channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), _norm(norm, channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al. (2016) style generator: c7s1-ngf, d2ngf, d4ngf, R4ngf x n_blocks, u2ngf, ungf, c7s1-out.

    Input and output are (N, C, H, W) in [-1, 1]; H and W must be multiples of 4. Antialiased,
    the layers are laid out as in the CUT authors' ResnetGenerator (a blur after each downsampling
    convolution, before each upsampling one): their layer numbers and files apply unchanged.
    """

    stride = 4  # total downsampling: inputs must be divisible by this

    def __init__(
        self, input_nc: int, output_nc: int, *, ngf: int = 64, n_blocks: int = 9,
        norm: Norm = "instance", dropout: bool = False, upsample: Upsample = "transpose", antialias: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        self.input_nc = input_nc
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [
            ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(True),
        ]
        self.down_convs: list[int] = []  # layer numbers of the downsampling convolutions
        for mult in (1, 2):  # downsample twice: ngf -> 2ngf -> 4ngf
            self.down_convs.append(len(layers))
            stride = 1 if antialias else 2
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=stride, padding=1, bias=bias),
                _norm(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
            if antialias:
                layers.append(BlurDownsample(ngf * mult * 2))
        self.first_block = len(layers)
        layers += [ResnetBlock(ngf * 4, norm=norm, dropout=dropout) for _ in range(n_blocks)]
        for mult in (4, 2):  # upsample twice: 4ngf -> 2ngf -> ngf
            if upsample == "antialias":
                up = [BlurUpsample(ngf * mult), nn.Conv2d(ngf * mult, ngf * mult // 2, 3, padding=1, bias=bias)]
            else:
                up = [_upsample(ngf * mult, ngf * mult // 2, kind=upsample, kernel=3, bias=bias)]
            layers += [*up, _norm(norm, ngf * mult // 2), nn.ReLU(True)]
        layers += [ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.n_blocks = n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(fast_layout(x))

    def default_feature_layers(self) -> list[int]:
        """The layers PatchNCE reads by default: the padded input, both downsampling convolutions,
        the first residual block and the fifth (the last when there are fewer).

        For ResNet-9 with antialiasing these are the CUT authors' 0, 4, 8, 12, 16; without it,
        0, 4, 7, 10, 14: the same features, found where this layout puts them.
        """
        blocks = sorted({1, min(5, self.n_blocks)}) if self.n_blocks else []
        return [0, *self.down_convs, *(self.first_block + b - 1 for b in blocks)]

    def feature_channels(self, layers: list[int]) -> list[int]:
        """Channels of each layer's output in :meth:`encode`, from the architecture alone."""
        return [_channels_after(self.model[: i + 1], self.input_nc) for i in layers]

    def encode(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
        """The outputs of the given layers of ``self.model`` (ascending), computing no further
        than the last: (N, C, H, W) -> [(N, C_l, H_l, W_l) for each layer l]."""
        return self.forward_features(x, layers, until=layers[-1] + 1)[1]

    def forward_features(self, x: torch.Tensor, layers: list[int], *, until: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """G(x) (or layer ``until - 1``'s output) and the features :meth:`encode` gives, from one pass."""
        feats, x = [], fast_layout(x)
        for i, layer in enumerate(self.model[:until]):
            x = layer(x)
            if i in layers:
                feats.append(x)
        return x, feats


def _channels_after(layers: nn.Sequential, input_nc: int) -> int:
    """Channels out of ``layers``: those of their last convolution (or the input's when there is none)."""
    channels = input_nc
    for module in layers.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            channels = module.out_channels
    return channels


class UnetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, and a skip connection around them.

    Shapes for an input (N, outer, H, W): inner levels see (N, inner, H/2, W/2); the
    block returns (N, 2*outer, H, W) (skip concatenated) or, outermost, (N, out, H, W).
    """

    def __init__(
        self, outer_nc: int, inner_nc: int, *, input_nc: int | None = None, submodule: nn.Module | None = None,
        outermost: bool = False, norm: Norm = "instance", dropout: bool = False, upsample: Upsample = "transpose",
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = _conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        down_conv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        up_in = inner_nc if submodule is None else inner_nc * 2  # innermost has no skip below it
        if outermost:
            down = [down_conv]
            up = [nn.ReLU(True), _upsample(up_in, outer_nc, kind=upsample, kernel=4, bias=True), nn.Tanh()]
        elif submodule is None:  # innermost: no norm on the 1x1 bottleneck
            down = [nn.LeakyReLU(0.2, True), down_conv]
            up = [nn.ReLU(True), _upsample(up_in, outer_nc, kind=upsample, kernel=4, bias=bias), _norm(norm, outer_nc)]
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv, _norm(norm, inner_nc)]
            up = [nn.ReLU(True), _upsample(up_in, outer_nc, kind=upsample, kernel=4, bias=bias), _norm(norm, outer_nc)]
            if dropout:
                up.append(nn.Dropout(0.5))
        middle = [] if submodule is None else [submodule]
        self.model = nn.Sequential(*down, *middle, *up)
        self.n_down, self.inner_nc = len(down), inner_nc  # model[:n_down]: the way down; model[n_down]: the inner levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net with ``n_downs`` downsamplings (8: ``unet_256``, 7: ``unet_128``)."""

    def __init__(
        self, input_nc: int, output_nc: int, *, n_downs: int = 8, ngf: int = 64,
        norm: Norm = "instance", dropout: bool = False, upsample: Upsample = "transpose",
    ) -> None:
        super().__init__()
        if n_downs < 5:
            raise ValueError(f"a U-Net needs n_downs >= 5, got {n_downs}")
        self.stride = 2**n_downs
        kw = dict(norm=norm, upsample=upsample)
        block = UnetBlock(ngf * 8, ngf * 8, **kw)
        for _ in range(n_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block, dropout=dropout, **kw)
        for mult in (4, 2, 1):
            block = UnetBlock(ngf * mult, ngf * mult * 2, submodule=block, **kw)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, **kw)
        self.input_nc, self.n_downs = input_nc, n_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # Feature layers of a U-Net: 0 is the input, k the output of the k-th downsampling convolution.
    def default_feature_layers(self) -> list[int]:
        """The input and the first four downsampling convolutions (ngf to 8 ngf channels)."""
        return [0, 1, 2, 3, 4]

    def feature_channels(self, layers: list[int]) -> list[int]:
        return [self.input_nc if k == 0 else self._level(k).inner_nc for k in layers]

    def _level(self, k: int) -> UnetBlock:
        """The block whose downsampling convolution is the k-th (1-based)."""
        block = self.model
        for _ in range(k - 1):
            block = block.model[block.n_down]
        return block

    def encode(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
        """(N, C, H, W) -> the features at ``layers`` (ascending), computing no further than the last."""
        if layers[-1] > self.n_downs:
            raise ValueError(f"a U-Net with {self.n_downs} downsamplings has feature layers 0-{self.n_downs}, not {layers[-1]}")
        feats = [x] if 0 in layers else []
        for k in range(1, layers[-1] + 1):
            for module in self._level(k).model[: self._level(k).n_down]:
                x = module(x)
                if isinstance(module, nn.Conv2d) and k in layers:
                    feats.append(x)
        return feats


class PatchDiscriminator(nn.Module):
    """PatchGAN: classifies overlapping patches (70x70 for ``n_layers=3``) as real or fake.

    (N, C, H, W) -> (N, 1, H', W') of unnormalised scores, one per patch.
    """

    def __init__(self, input_nc: int, *, ndf: int = 64, n_layers: int = 3, norm: Norm = "instance",
                 antialias: bool = False) -> None:
        super().__init__()
        bias = _conv_bias(norm)
        stride = 1 if antialias else 2  # antialiased: stride-1 convolutions, a blur subsamples after each
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=stride, padding=1), nn.LeakyReLU(0.2, True)]
        if antialias:
            layers.append(BlurDownsample(ndf))
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            down = n < n_layers  # the last block keeps the resolution
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2 if down and not antialias else 1, padding=1, bias=bias),
                _norm(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
            if down and antialias:
                layers.append(BlurDownsample(ndf * mult))
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(fast_layout(x))


class PixelDiscriminator(nn.Module):
    """1x1 PixelGAN: judges each pixel's colour alone. (N, C, H, W) -> (N, 1, H, W)."""

    def __init__(self, input_nc: int, *, ndf: int = 64, norm: Norm = "instance") -> None:
        super().__init__()
        bias = _conv_bias(norm)
        self.model = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            _norm(norm, ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def samples_independent(net: nn.Module) -> bool:
    """Whether each sample's output depends on that sample alone (no batch norm).

    Then several calls of ``net`` can run as one call on their concatenation, with the
    same result: fewer, larger kernels, the same arithmetic.
    """
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


# Batching pays on a GPU, and on a CPU only for small images: measured on 2 cores, three
# ResNet-9 passes (forward + backward) at 64 px took 0.25 s batched vs 0.27 s apart, at
# 128 px the same, at 256 px 4.5-5.3 s batched vs 3.9 s apart (the batch outgrows the caches).
_CPU_BATCH_MAX_PIXELS = 128 * 128


def batching_pays(x: torch.Tensor) -> bool:
    return x.is_cuda or x.shape[-2] * x.shape[-1] <= _CPU_BATCH_MAX_PIXELS


def call_batched(net: nn.Module, *inputs: torch.Tensor, together: bool) -> tuple[torch.Tensor, ...]:
    """``tuple(net(x) for x in inputs)``, computed in one call when ``together``, the shapes
    allow, and batching is faster on this device at this size."""
    x = inputs[0]
    if together and batching_pays(x) and len({x.shape for x in inputs}) == 1:
        return net(torch.cat(inputs)).split(x.shape[0])
    return tuple(net(x) for x in inputs)


def init_weights(net: nn.Module, *, gain: float = 0.02, kind: Init = "normal") -> nn.Module:
    """Published initialisation: conv and linear weights ~ N(0, gain) (CycleGAN) or Xavier-normal
    with that gain (CUT's default), biases 0, batch-norm scales ~ N(1, gain)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            else:
                nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def build_generator(config: GeneratorConfig, *, input_nc: int, output_nc: int) -> nn.Module:
    """The generator ``config`` describes, freshly initialised by the caller (see :func:`init_weights`)."""
    common = dict(ngf=config.ngf, norm=config.norm, dropout=config.dropout, upsample=config.upsample)
    if config.arch == "resnet":
        return ResnetGenerator(input_nc, output_nc, n_blocks=config.n_blocks, antialias=config.antialias, **common)
    if config.antialias or config.upsample == "antialias":
        raise ValueError("antialiased sampling is built for the ResNet generator only; "
                         "set generator.antialias: false and generator.upsample: transpose or resize_conv")
    return UnetGenerator(input_nc, output_nc, n_downs=config.n_downs, **common)


def build_discriminator(config: DiscriminatorConfig, *, input_nc: int) -> nn.Module:
    if config.arch == "patch":
        return PatchDiscriminator(input_nc, ndf=config.ndf, n_layers=config.n_layers, norm=config.norm,
                                  antialias=config.antialias)
    if config.antialias:
        raise ValueError("the pixel discriminator has nothing to antialias (no downsampling); set discriminator.antialias: false")
    return PixelDiscriminator(input_nc, ndf=config.ndf, norm=config.norm)

"""Antialiased resampling (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019),
as the CUT authors' networks use it by default (Park et al. 2020).

A strided convolution samples before it smooths, so a feature map shifted by one pixel gives
a different output; here the convolution runs at stride 1 and a fixed binomial blur does the
subsampling. Both modules keep the blur as a ``filt`` buffer of shape (C, 1, k, k), the name
and layout of the authors' files, so their state dicts load as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.models.layers import ReflectionPad2d, ReplicationPad2d

# Rows of Pascal's triangle: the 1-D binomial filters by size.
_BINOMIAL = {3: (1.0, 2.0, 1.0), 4: (1.0, 3.0, 3.0, 1.0)}


def binomial_filter(size: int) -> torch.Tensor:
    """The (size, size) binomial filter, normalised to sum 1: outer product of a row of Pascal's triangle."""
    a = torch.tensor(_BINOMIAL[size], dtype=torch.float64)
    f = a[:, None] * a[None, :]
    return (f / f.sum()).float()


def _in_float32_on_cpu(blur: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``blur(x)``, computed in float32 when x is bf16 or fp16 on the CPU, returned in x's dtype.

    oneDNN's depthwise convolutions are slow in bf16: forward and backward of the blurs of an
    antialiased ResNet-9 at 64 px took 2-4x as long in bf16 as in float32 with both casts
    (2 cores, ``bench/train_step.py``'s machine); float32 is also the more exact of the two.
    """
    if x.device.type != "cpu" or x.dtype == torch.float32:
        return blur(x)
    with torch.autocast("cpu", enabled=False):  # or autocast would cast the convolution back to bf16
        return blur(x.float()).to(x.dtype)


class BlurDownsample(nn.Module):
    """Blur with [1, 2, 1] x [1, 2, 1] / 16, then keep every second pixel: (N, C, H, W) -> (N, C, H/2, W/2).

    Reflection padding of 1 on each side, as published.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))
        self.pad = ReflectionPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._blur(x)
        return self._eager(x)

    @torch.jit.unused
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        return _in_float32_on_cpu(self._blur, x)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt.to(x.dtype), stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """Zero-insert to twice the size, then blur with [1, 3, 3, 1] x [1, 3, 3, 1] / 64 (x4 to keep the
    mean): (N, C, H, W) -> (N, C, 2H, 2W). Replication padding of 1, as published."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(4)[None, None].repeat(channels, 1, 1, 1) * 4)
        self.pad = ReplicationPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._blur(x)
        return self._eager(x)

    @torch.jit.unused
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        return _in_float32_on_cpu(self._blur, x)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        # (H + 2 - 1) * 2 - 2 * 2 + 4 = 2H + 2 rows; dropping the first and the last leaves 2H.
        y = F.conv_transpose2d(self.pad(x), self.filt.to(x.dtype), stride=2, padding=2, groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]

"""Antialiased resampling (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019),
as the CUT authors' networks use it by default (Park et al. 2020).

A strided convolution samples before it smooths, so a feature map shifted by one pixel gives
a different output; here the convolution runs at stride 1 and a fixed binomial blur does the
subsampling. Both modules keep the blur as a ``filt`` buffer of shape (C, 1, k, k), the name
and layout of the authors' files, so their state dicts load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Rows of Pascal's triangle: the 1-D binomial filters by size.
_BINOMIAL = {3: (1.0, 2.0, 1.0), 4: (1.0, 3.0, 3.0, 1.0)}


def binomial_filter(size: int) -> torch.Tensor:
    """The (size, size) binomial filter, normalised to sum 1: outer product of a row of Pascal's triangle."""
    a = torch.tensor(_BINOMIAL[size], dtype=torch.float64)
    f = a[:, None] * a[None, :]
    return (f / f.sum()).float()


class BlurDownsample(nn.Module):
    """Blur with [1, 2, 1] x [1, 2, 1] / 16, then keep every second pixel: (N, C, H, W) -> (N, C, H/2, W/2).

    Reflection padding of 1 on each side, as published.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt.to(x.dtype), stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """Zero-insert to twice the size, then blur with [1, 3, 3, 1] x [1, 3, 3, 1] / 64 (x4 to keep the
    mean): (N, C, H, W) -> (N, C, 2H, 2W). Replication padding of 1, as published."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(4)[None, None].repeat(channels, 1, 1, 1) * 4)
        self.pad = nn.ReplicationPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (H + 2 - 1) * 2 - 2 * 2 + 4 = 2H + 2 rows; dropping the first and the last leaves 2H.
        y = F.conv_transpose2d(self.pad(x), self.filt.to(x.dtype), stride=2, padding=2, groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]

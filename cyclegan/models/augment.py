"""Differentiable augmentation of what the discriminators see (DiffAugment, Zhao et al. 2020).

With a few hundred training images a discriminator soon tells real from fake by details of
the particular images it has seen, and the generator chases those. DiffAugment applies the
same kind of random, differentiable transformation to every discriminator input, real and
fake, in the discriminator's update and in the generator's, so that D cannot win by them and
G is not pushed to reproduce them (the fakes' gradients pass through the transformation).

Operations (the paper's, on images in [-1, 1], drawn independently per image):
    color        brightness + U(-0.5, 0.5); saturation x U(0, 2) around the pixel's grey;
                 contrast x U(0.5, 1.5) around the image mean
    translation  shift by up to 1/8 of each side; pixels shifted in are white (the paper
                 fills with 0; white adds no edge on white-background art)
    cutout       a square of half each side set to 0, at a random centre

Measured on Noto -> OpenMoji emoji (docs/fast_recipe.md), all three at the same time per iteration,
seeds 0 and 1: KID 0.062/0.067 -> 0.060/0.064, layout_corr 0.83/0.82 -> 0.87/0.86, cycle RMSE
30.4/30.0 -> 27.5/27.5.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

DiffAugmentOp = Literal["color", "translation", "cutout"]


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One draw per image, (N, 1, 1, 1), in [low, high)."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


def color(x: torch.Tensor) -> torch.Tensor:
    x = x + _uniform(x, -0.5, 0.5)  # brightness
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * _uniform(x, 0.0, 2.0) + grey  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean  # contrast


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    b, y, xx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                              torch.arange(w, device=x.device), indexing="ij")
    # Index into a copy padded by one white pixel: every source index past the edge lands on it.
    y = (y + dy + 1).clamp(0, h + 1)
    xx = (xx + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1], value=1.0).permute(0, 2, 3, 1)  # (N, H+2, W+2, C)
    return padded[b, y, xx].permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    b, y, xx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                              torch.arange(cw, device=x.device), indexing="ij")
    mask = torch.ones(n, h, w, device=x.device, dtype=x.dtype)
    mask[b, (y + cy - ch // 2).clamp(0, h - 1), (xx + cx - cw // 2).clamp(0, w - 1)] = 0
    return x * mask.unsqueeze(1)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment(nn.Module):
    """Applies ``ops`` in the order color, translation, cutout while training; the identity in
    eval mode (validation, samples) and when ``ops`` is empty. No parameters: checkpoints are
    the same with or without it."""

    def __init__(self, ops: tuple[DiffAugmentOp, ...] | list[DiffAugmentOp] = ()) -> None:
        super().__init__()
        unknown = set(ops) - _OPS.keys()
        if unknown:
            raise ValueError(f"unknown DiffAugment operation(s) {sorted(unknown)}; choose from {list(_OPS)}")
        self.ops = tuple(op for op in _OPS if op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        for op in self.ops:
            x = _OPS[op](x)
        return x

    def extra_repr(self) -> str:
        return ", ".join(self.ops) or "off"

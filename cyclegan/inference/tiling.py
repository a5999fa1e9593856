"""Translating images too large for one forward pass, in overlapping tiles.

Instance norm normalises every feature map by its own mean and variance, so a tile run
on its own is normalised by the tile's statistics and comes out brighter or darker than
its neighbours. Here the statistics of the whole image are recorded first, on a copy
downscaled to at most ``stats_size`` pixels on its long side (exact when the image is
already that small), and every tile is then normalised with them. Tiles overlap and are
blended with a raised-cosine window so that their borders, where the convolutions saw
padding instead of neighbours, fade out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflection padding of (N, C, H, W) by any amount.

    ``F.pad`` reflects at most size - 1 pixels at a time, so large pads (a 256-stride
    U-Net on a small image) are done in several rounds; a 1-pixel side is replicated.
    """
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b = min(top, h - 1), min(bottom, h - 1)
        l, r = min(left, w - 1), min(right, w - 1)
        if (h == 1 and (top or bottom)) or (w == 1 and (left or right)):
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, (l, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return x


class NormStats:
    """Records the statistics of a generator's instance-norm layers on one pass and imposes them on later ones.

    Only ``InstanceNorm2d`` layers without running statistics (ours) are touched; batch
    norm in eval mode and no norm already treat tiles like the whole image.
    """

    def __init__(self, net: nn.Module) -> None:
        self.layers = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d) and not m.track_running_stats]
        self.stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mode: str | None = None

    def _hook(self, module: nn.InstanceNorm2d, inputs: tuple[torch.Tensor], output: torch.Tensor):
        x = inputs[0]
        if self.mode == "record":
            var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)  # (N, C, 1, 1)
            self.stats[module] = (mean, var)
            return None
        mean, var = self.stats[module]
        y = (x.float() - mean) * torch.rsqrt(var + module.eps)
        if module.affine:
            y = y * module.weight[None, :, None, None] + module.bias[None, :, None, None]
        return y.to(output.dtype)

    @contextmanager
    def _hooked(self, mode: str) -> Iterator[None]:
        self.mode = mode
        handles = [m.register_forward_hook(self._hook) for m in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self.mode = None

    def recording(self):
        return self._hooked("record")

    def imposing(self):
        if len(self.stats) != len(self.layers):
            raise RuntimeError("NormStats.imposing() before a recording pass")
        return self._hooked("impose")


def _window(length: int, overlap: int, *, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blending weights of a tile: a raised-cosine ramp over ``overlap`` pixels on sides that have a neighbour.

    The ramp never reaches 0, so every pixel keeps a positive total weight.
    """
    w = torch.ones(length)
    n = min(overlap, length)
    if n > 0:
        ramp = (1 - torch.cos(math.pi * (torch.arange(n) + 0.5) / n)) / 2
        if ramp_start:
            w[:n] = torch.minimum(w[:n], ramp)
        if ramp_end:
            w[-n:] = torch.minimum(w[-n:], ramp.flip(0))
    return w


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]  # the last tile ends at the border (a multiple of the stride too)


def tiled_forward(
    net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int, overlap: int, stride: int,
    stats: NormStats | None = None, stats_size: int = 2048, batch_size: int = 4,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Translate one image (1, C, H, W), H and W multiples of ``stride``, tile by tile; returns (1, C_out, H, W) on the CPU.

    ``tile`` and ``overlap`` are rounded to multiples of ``stride``. With ``stats`` (the
    generator's :class:`NormStats`), instance-norm statistics come from a whole-image pass
    at most ``stats_size`` pixels long; without, each tile uses its own (naive tiling).
    """
    _, _, H, W = x.shape
    tile = max(stride, tile // stride * stride)
    overlap = min(round_up(overlap, stride), tile - stride)
    if stats is not None:
        scale = min(1.0, stats_size / max(H, W))
        small = x
        if scale < 1:  # statistics of a downscaled copy: per-channel means and variances barely depend on scale
            size = (max(stride, round_up(int(H * scale), stride)), max(stride, round_up(int(W * scale), stride)))
            small = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        with stats.recording():
            net(small.to(device))
    ys = [(y0, min(tile, H)) for y0 in _starts(H, tile, tile - overlap)]
    xs = [(x0, min(tile, W)) for x0 in _starts(W, tile, tile - overlap)]
    boxes = [(y0, th, x0, tw) for y0, th in ys for x0, tw in xs]
    out = weight = None
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        # Tiles of one image share a size except where the image is smaller than a tile, which is then alone.
        crops = torch.cat([x[:, :, y0 : y0 + th, x0 : x0 + tw] for y0, th, x0, tw in chunk])
        if stats is not None:
            with stats.imposing():
                y = net(crops.to(device))
        else:
            y = net(crops.to(device))
        y = y.float().cpu()
        if out is None:
            out = torch.zeros(1, y.shape[1], H, W)
            weight = torch.zeros(1, 1, H, W)
        for (y0, th, x0, tw), tile_out in zip(chunk, y):
            wy = _window(th, overlap, ramp_start=y0 > 0, ramp_end=y0 + th < H)
            wx = _window(tw, overlap, ramp_start=x0 > 0, ramp_end=x0 + tw < W)
            w = wy[:, None] * wx[None, :]  # (th, tw)
            out[0, :, y0 : y0 + th, x0 : x0 + tw] += tile_out * w
            weight[0, 0, y0 : y0 + th, x0 : x0 + tw] += w
    return out / weight

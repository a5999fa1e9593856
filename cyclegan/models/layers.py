"""Layers that keep bf16 training on the CPU in the formats its kernels are fast in.

- Padding in the input's dtype. CPU autocast runs ``reflection_pad2d`` and ``replication_pad2d``
  in float32 (they are on its float32 list), so under bf16-mixed every padded convolution cast
  its bf16 input to float32 and the padded result back, and the backward pass the same again,
  for the same values (padding only copies them). These layers switch autocast off around the
  padding alone.
- Channels-last feature maps for one large image under bf16 autocast on the CPU
  (:func:`fast_layout`). oneDNN's bf16 convolutions work channels-last and converted every NCHW
  input and output: at 256 px a fifth of CycleGAN's iteration went to those copies.
- Instance norm that keeps that layout (:class:`InstanceNorm2d`).

With autocast off (float32 training, export, TorchScript) all of them are torch's layers exactly,
and their state dicts are torch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReflectionPad2d(nn.ReflectionPad2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.pad(x, self.padding, "reflect")
        return self._eager(x)

    @torch.jit.unused
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        return _without_autocast(super().forward, x)


class ReplicationPad2d(nn.ReplicationPad2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.pad(x, self.padding, "replicate")
        return self._eager(x)

    @torch.jit.unused
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        return _without_autocast(super().forward, x)


def _without_autocast(pad, x: torch.Tensor) -> torch.Tensor:
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return pad(x)
    return pad(x)


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` that keeps a channels-last image channels-last.

    ``F.instance_norm`` normalises (N, C, H, W) as batch norm over (1, N*C, H, W), a reshape that
    copies a channels-last tensor into NCHW and back. For one image the two are the same
    statistics (per channel over H x W), so without affine parameters or running statistics a
    channels-last (1, C, H, W) goes to batch norm directly, in its own layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._apply_instance_norm(x)
        return self._eager(x)

    @torch.jit.unused
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 4 and x.shape[0] == 1 and not self.affine and not self.track_running_stats
                and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            return F.batch_norm(x, None, None, training=True, momentum=0.0, eps=self.eps)
        return super().forward(x)


# Measured with bench/train_step.py: at 64 px channels-last made CycleGAN's and FastCUT's bf16
# iterations 4-8% slower (their single-image calls are small), at 256 px 1.3x faster.
_CHANNELS_LAST_MIN_PIXELS = 128 * 128


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last layout where that is faster: one image (N = 1) larger than 128 x 128
    under bf16 autocast on the CPU. Elsewhere ``x`` as it is: batched calls (channels-last instance
    norm copies when N > 1), small images, float32 (kept bit for bit as published), and GPUs (not
    measured yet)."""
    if torch.jit.is_scripting():
        return x
    return _fast_layout(x)


@torch.jit.unused
def _fast_layout(x: torch.Tensor) -> torch.Tensor:
    if (x.dim() == 4 and x.shape[0] == 1 and x.shape[2] * x.shape[3] > _CHANNELS_LAST_MIN_PIXELS
            and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16):
        return x.contiguous(memory_format=torch.channels_last)
    return x

"""Padding layers that pad in their input's dtype under autocast.

CPU autocast runs ``reflection_pad2d`` and ``replication_pad2d`` in float32 (they are on its
float32 list), so under bf16-mixed every padded convolution cast its bf16 input to float32 and
the padded result back to bf16, and the backward pass the same again: four casts of a feature map
per convolution, for the same values (padding only copies them). These layers switch autocast off
around the padding alone; with autocast off (float32 training, export, TorchScript) they are
``nn.ReflectionPad2d`` / ``nn.ReplicationPad2d`` exactly, and their state dicts are empty as before.
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

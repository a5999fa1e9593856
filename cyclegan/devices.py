"""Speed defaults per device, chosen by measurement (bench/translate.py, bench/train_step.py):
whether the hardware computes bf16 natively, and how many images a conversion batch holds.

Measured on a 2-core Xeon with AVX-512 BF16 and AMX (the numbers are in the README):
- a CPU converts 256 px and larger images fastest one at a time (a batch only adds memory
  traffic once one image keeps the cores busy), but small ones in batches: at 64 px a batch of
  8 runs 3.6x the images per second of batch 1 (per-call overhead dominates there). The
  limit is a pixel budget, 8 images of 64x64; sizes in between are interpolated, not measured;
- bf16 autocast runs the ResNet generator about 2x faster than fp32 where the CPU has
  AVX-512 BF16 or AMX, and slower than fp32 where bf16 is emulated (plain AVX-512/AVX2),
  hence detection rather than a guess;
- a GPU wants batches (here up to 8, about one megapixel: beyond that it is already busy, so the
  converter caps any batch there, one of a chosen ``--batch-size`` too).

Also the one place where a ``--device`` name becomes a device (:func:`resolve_device`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

import torch

from cyclegan.errors import TranslateError

Precision = Literal["auto", "32", "bf16"]
MAX_BATCH = 8  # the most images in one forward pass on any device
# Pixels per forward pass, two different limits:
# - a ceiling for every conversion batch, one of a chosen --batch-size too: beyond about a megapixel a
#   GPU is already busy, and on a CPU a larger batch only costs memory;
# - the default budget, the fastest measured per device (used when no --batch-size is given): a
#   GPU fills the ceiling, a CPU goes one image at a time beyond 8 images of 64x64.
MAX_BATCH_PIXELS = 1024 * 1024
GPU_BATCH_PIXELS = MAX_BATCH_PIXELS
CPU_BATCH_PIXELS = 8 * 64 * 64


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity (taskset, a container's cpuset), not the machine's count,
    so that loaders do not start more workers than there are cores for them (torch warns, and they thrash)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def resolve_device(device: torch.device | str | None, *, must_exist: bool = True) -> torch.device:
    """The device ``--device`` names; None: CUDA if available, else the CPU.

    A name torch does not know is a usage error, in one line; so is a CUDA device on a machine
    without CUDA, unless ``must_exist`` is False: the speed defaults below answer questions about
    a device (how large a batch suits a GPU?) that need no GPU to answer.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise TranslateError(f"unknown device {device!r} (try cpu, cuda, cuda:1)") from None
    if must_exist and resolved.type == "cuda" and not torch.cuda.is_available():
        raise TranslateError(f"--device {device}: CUDA is not available here")
    return resolved


@functools.lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """True if this CPU has bf16 arithmetic in hardware (AVX-512 BF16 or AMX-BF16).

    oneDNN's own ``_is_mkldnn_bf16_supported`` also says yes on any AVX-512 CPU, where it
    emulates bf16 and runs slower than fp32, so the instruction-set flags decide.
    """
    try:
        caps = torch.cpu.get_capabilities()  # torch >= 2.6: cpuinfo's view of the instruction sets
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    except (AttributeError, RuntimeError):
        pass
    try:  # Linux without that API
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device | str | None = None) -> bool:
    """Whether ``device`` (None: CUDA if available, else the CPU) computes bf16 natively."""
    device = resolve_device(device, must_exist=False)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_bf16()
    return False


def inference_precision(precision: Precision, device: torch.device | str | None = None) -> Literal["32", "bf16"]:
    """``auto``: bf16 where the device has it natively, else 32; 32 and bf16 stay as given."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "32"
    return precision


def training_precision(accelerator: str | None = "auto") -> str:
    """The Lightning precision ``cyclegan fit`` uses when none is given: bf16-mixed where native, else 32-true."""
    if accelerator in (None, "auto"):
        device = None
    elif accelerator in ("gpu", "cuda"):
        device = "cuda"
    elif accelerator == "cpu":
        device = "cpu"
    else:  # mps, tpu, a custom accelerator object: leave Lightning's default
        return "32-true"
    if device == "cuda" and not torch.cuda.is_available():
        return "32-true"  # Lightning reports the missing GPU itself
    return "bf16-mixed" if native_bf16(device) else "32-true"


def default_batch_size(device: torch.device | str | None = None, image_size: tuple[int, int] | int | None = None) -> int:
    """Images per forward pass for conversion and evaluation when ``--batch-size`` is not given:
    up to :data:`MAX_BATCH`, as many as fit the device's default pixel budget (at least one).
    ``image_size`` (H, W) or a side; None: the largest batch for any size."""
    if image_size is None:
        return MAX_BATCH
    budget = CPU_BATCH_PIXELS if resolve_device(device, must_exist=False).type == "cpu" else GPU_BATCH_PIXELS
    return max(1, min(MAX_BATCH, budget // _pixels(image_size)))


def capped_batch_size(batch_size: int, image_size: tuple[int, int] | int) -> int:
    """A batch size the user chose (``--batch-size``), lowered so that one batch of ``image_size``
    (H, W) images stays within :data:`MAX_BATCH_PIXELS` (at least one image)."""
    return max(1, min(batch_size, MAX_BATCH_PIXELS // _pixels(image_size)))


def _pixels(image_size: tuple[int, int] | int) -> int:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return max(1, h * w)

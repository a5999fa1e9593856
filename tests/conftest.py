from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    # Never reach W&B from tests, and keep its settings out of the user's home.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".wandb-config"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def write_images(folder: Path, n: int, *, size=(40, 40), mode="RGB", seed=0, prefix="img", ext="png") -> list[Path]:
    """``n`` smooth random images (so a translator has something to learn) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        im = Image.fromarray(low).resize(size, Image.BICUBIC).convert(mode)
        path = folder / f"{prefix}{i:03d}.{ext}"
        im.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    """A dataset root with trainA/trainB/testA/testB of small images."""
    root = tmp_path / "data"
    write_images(root / "trainA", 6, seed=1)
    write_images(root / "trainB", 5, seed=2)
    write_images(root / "testA", 2, seed=3)
    write_images(root / "testB", 2, seed=4)
    return root


class WrittenOutInstanceNorm(torch.nn.Module):
    """Instance norm by its definition: (x - mean) / sqrt(var + eps) per image and channel."""

    def forward(self, x):
        mean, var = x.mean((2, 3), keepdim=True), x.var((2, 3), keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5)


def with_written_out_instance_norms(model):
    """A copy of ``model`` whose instance norms are :class:`WrittenOutInstanceNorm`."""
    import copy

    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.InstanceNorm2d):
                setattr(module, name, WrittenOutInstanceNorm())
    return model

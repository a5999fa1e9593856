"""History of generated images (Shrivastava et al. 2017), as used by CycleGAN.

Updating the discriminators with fakes from the last ``size`` generator outputs instead
of only the newest ones reduces oscillation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class ImagePool:
    """Stores up to ``size`` generated images and mixes them into what D sees.

    :meth:`query` takes a batch (N, C, H, W) and returns a batch of the same shape. For
    each image: while the pool holds fewer than ``size`` images, it is stored and returned
    as is. Once full, with probability 1/2 it is returned as is; otherwise a uniformly
    chosen stored image is returned and replaced by it. ``size=0`` disables the pool.

    The pool has its own random generator so that its draws are reproducible and its
    state (images and generator) round-trips through :meth:`state_dict`.
    """

    def __init__(self, size: int = 50, *, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []  # each (C, H, W), detached
        self._rng = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        self._rng.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        if self.images and self.images[0].device != images.device:  # e.g. restored on the CPU: move once
            self.images = [im.to(images.device) for im in self.images]
        if self.images and self.images[0].shape[-2:] != images.shape[-2:]:
            # A run resumed at another image size (progressive resizing, a changed crop_size): the
            # history keeps its images, resampled once to the new size, rather than failing to stack.
            # (float32: antialiased resampling has no bf16 kernel on the CPU)
            self.images = [F.interpolate(im[None].float(), size=images.shape[-2:], mode="bilinear",
                                         antialias=True)[0].to(im.dtype) for im in self.images]
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(_finite_copy(image))
                out.append(image)
            elif torch.rand((), generator=self._rng).item() > 0.5:
                i = int(torch.randint(self.size, (), generator=self._rng))
                out.append(self.images[i])
                self.images[i] = _finite_copy(image)
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [im.cpu() for im in self.images], "rng": self._rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore images (on the CPU; :meth:`query` moves them to the fakes' device once) and generator."""
        if state["size"] != self.size:
            raise ValueError(f"pool size mismatch: checkpoint has {state['size']}, this model {self.size}")
        self.images = list(state["images"])
        self._rng.set_state(state["rng"])


def _finite_copy(image: torch.Tensor) -> torch.Tensor:
    """A copy to keep: NaN -> 0, +-inf -> +-1 (finite images unchanged). Where the non-finite guard
    decides on the device, a skipped iteration's fakes still reach the pool; a NaN kept there
    would make D's loss NaN whenever it is drawn, for many iterations."""
    return torch.nan_to_num(image, nan=0.0, posinf=1.0, neginf=-1.0)


class Pools:
    """A model's pools by domain name ("a": fakes of A for D_A, "b": fakes of B for D_B),
    saved, restored and reseeded together.

    Each pool is seeded from torch's RNG, in the order named, so that ``seed_everything``
    makes them reproducible.
    """

    def __init__(self, size: int, *names: str) -> None:
        self.by_name = {name: ImagePool(size, seed=int(torch.randint(2**62, ()))) for name in names}

    def __getitem__(self, name: str) -> ImagePool:
        return self.by_name[name]

    def reseed(self, seed: int) -> None:
        """Seed pool i (0-based, in the order named) with ``seed + 1000 * (i + 1)``."""
        for i, pool in enumerate(self.by_name.values()):
            pool.reseed(seed + 1000 * (i + 1))

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {name: pool.state_dict() for name, pool in self.by_name.items()}

    def load_state_dict(self, state: dict[str, dict[str, Any]]) -> None:
        for name, pool in self.by_name.items():
            pool.load_state_dict(state[name])

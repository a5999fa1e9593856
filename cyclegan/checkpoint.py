"""Everything about checkpoint files that needs no Lightning: the entries we add, finding the
one to resume, reading them back once, and rebuilding generators from them. (Writing them,
atomically and as ``last.ckpt``, is done by Lightning callbacks in :mod:`cyclegan.callbacks`.)

What the models add to a checkpoint (pools, translator metadata) is written by
:func:`cyclegan.training.save_training_state`; the keys are named there.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .errors import CheckpointError
from .networks import GeneratorConfig, build_generator
from .pretrained import resolve
from .published import is_state_dict, single_generator

Direction = Literal["a2b", "b2a"]
# Entries this project adds to a Lightning checkpoint.
WANDB_RUN_ID = "wandb_run_id"  # the W&B run that a resumed fit continues
IMAGE_POOLS = "image_pools"  # Pools.state_dict(): {"a": ..., "b": ...}
TRANSLATOR = "translator"  # translator_meta(): enough to rebuild the generators


def translator_meta(module: Any, *, directions: dict[str, str]) -> dict[str, Any]:
    """What a checkpoint needs to rebuild its generators without the training config.

    ``directions`` maps "a2b"/"b2a" to the attribute holding that generator.
    """
    hp = module.hparams
    return {
        "kind": module.kind,
        "generator": asdict(module.generator_config),
        "input_nc": hp.input_nc,
        "output_nc": hp.output_nc,
        "directions": directions,
    }


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks: names the exact weights behind a result."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_state_dict(module: nn.Module) -> str:
    """Hex SHA-256 of a module's tensors (names and bytes): names weights that have no file."""
    digest = hashlib.sha256()
    for name, t in module.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint of ours, or a bare generator state dict in the authors' layout
    (tell them apart with :func:`cyclegan.published.is_state_dict`), onto the CPU, once."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(e)}") from None
    if is_state_dict(checkpoint):
        return checkpoint
    if not isinstance(checkpoint, dict) or TRANSLATOR not in checkpoint:
        raise CheckpointError(f"{path} is not a cyclegan training checkpoint (no 'translator' entry)")
    return checkpoint


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint of ours onto the CPU, tensors and plain data only."""
    checkpoint = read_model_file(path)
    if is_state_dict(checkpoint):
        raise CheckpointError(f"{path} is a bare state dict (the authors' layout), not a cyclegan training checkpoint")
    return checkpoint


def load_generator(ckpt_path: str | os.PathLike, direction: Direction = "a2b") -> nn.Module:
    """The trained generator for ``direction`` as an ``nn.Module`` in eval mode, on the CPU.

    It maps (N, C, H, W) tensors in [-1, 1] to the other domain; H and W must be multiples
    of the generator's stride (4 for ResNet generators). Method-1 checkpoints have only "a2b".
    ``ckpt_path`` may also be a generator file of the authors' code (``latest_net_G_A.pth``:
    one generator, "a2b" only) or ``pretrained:NAME`` (see :mod:`cyclegan.pretrained`).
    """
    ckpt_path = resolve(ckpt_path)
    checkpoint = read_model_file(ckpt_path)
    if is_state_dict(checkpoint):
        return single_generator(checkpoint, ckpt_path, direction)[0]
    return generator_from_checkpoint(checkpoint, direction, path=ckpt_path)


def generator_from_checkpoint(checkpoint: dict[str, Any], direction: Direction = "a2b", *,
                              path: str | os.PathLike = "checkpoint") -> nn.Module:
    """The ``direction`` generator of a checkpoint read by :func:`read_checkpoint`, in eval mode, on the CPU;
    ``path`` names it in the error for a direction it lacks."""
    meta = checkpoint[TRANSLATOR]
    if direction not in meta["directions"]:
        have = ", ".join(meta["directions"])
        raise CheckpointError(f"{path}: a {meta['kind']} checkpoint has no '{direction}' generator (it has: {have})")
    in_nc, out_nc = meta["input_nc"], meta["output_nc"]
    if direction == "b2a":
        in_nc, out_nc = out_nc, in_nc
    net = build_generator(GeneratorConfig(**meta["generator"]), input_nc=in_nc, output_nc=out_nc)
    prefix = meta["directions"][direction] + "."
    net.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    return net.eval()


def find_last_checkpoint(root: str | os.PathLike, dirpath: str | None = None) -> Path:
    """``--ckpt_path last``: the newest last.ckpt under ``root``, preferring those in ``dirpath``."""
    candidates = sorted(Path(root).glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if dirpath:
        candidates = [p for p in candidates if p.parent == Path(dirpath)] or candidates
    if not candidates:
        raise CheckpointError(f"--ckpt_path last: no last.ckpt under {root}")
    return candidates[-1]


def wandb_run_id(path: str | os.PathLike) -> str | None:
    """The W&B run a checkpoint was written by (None if it has none), checking that the file is there."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:  # memory-mapped: only the few bytes of the run id are read now
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(WANDB_RUN_ID)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(e)}") from None

"""Everything about checkpoint files that needs no Lightning: the entries we add, finding the
one to resume, reading them back once, and rebuilding generators from them. (Writing them,
atomically and as ``last.ckpt``, is done by Lightning callbacks in :mod:`cyclegan.training.callbacks`.)

What the models add to a checkpoint (pools, translator metadata) is named and written in
:mod:`cyclegan.training.state` (which needs no Lightning either).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cyclegan.errors import CheckpointError, first_line
from cyclegan.models.networks import GeneratorConfig, build_generator
from cyclegan.training.state import TRANSLATOR, WANDB_RUN_ID
from cyclegan.inference.remote import resolve
from cyclegan.inference.hub import is_model_folder, load_folder
from cyclegan.inference.authors import is_state_dict, load_file, single_generator

Direction = Literal["a2b", "b2a"]


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


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint of ours, or a bare generator state dict in the authors' layout
    (tell them apart with :func:`cyclegan.inference.authors.is_state_dict`), onto the CPU, once."""
    checkpoint = load_file(path, what="checkpoint")
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


def load_generator(ckpt_path: str | os.PathLike, direction: Direction | None = None) -> nn.Module:
    """The trained generator for ``direction`` as an ``nn.Module`` in eval mode, on the CPU.

    It maps (N, C, H, W) tensors in [-1, 1] to the other domain; H and W must be multiples
    of the generator's stride (4 for ResNet generators). Method-1 checkpoints have only "a2b".
    ``ckpt_path`` may also be a generator file of the authors' code (``latest_net_G_A.pth``:
    one generator, "a2b" only), ``pretrained:NAME`` (see :mod:`cyclegan.inference.pretrained`),
    a model folder from ``cyclegan export --format hf`` (one generator), ``hf:ORG/NAME[@REVISION]``
    or ``wandb:ENTITY/PROJECT/NAME:ALIAS`` (see :mod:`cyclegan.inference.remote`).
    ``direction`` None: "a2b", or a model folder's own.
    """
    ckpt_path = resolve(ckpt_path)
    if is_model_folder(ckpt_path):
        return load_folder(ckpt_path, direction)[0]
    checkpoint = read_model_file(ckpt_path)
    if is_state_dict(checkpoint):
        return single_generator(checkpoint, ckpt_path, direction)[0]
    return generator_from_checkpoint(checkpoint, direction or "a2b", path=ckpt_path)


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
    try:
        config = GeneratorConfig(**meta["generator"])
    except (TypeError, ValueError) as e:  # written by another version of cyclegan, or edited
        raise CheckpointError(f"{path}: generator settings this version cannot build ({e})") from None
    net = build_generator(config, input_nc=in_nc, output_nc=out_nc)
    prefix = meta["directions"][direction] + "."
    net.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    return net.eval()


def _peek(path: Path) -> dict[str, Any]:
    """The checkpoint memory-mapped: entries are read only when touched (the run id, the kind)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line(e)}") from None
    if not isinstance(checkpoint, dict) or TRANSLATOR not in checkpoint:
        raise CheckpointError(f"{path} is not a cyclegan training checkpoint (no 'translator' entry)")
    return checkpoint


def checkpoint_kind(path: str | os.PathLike) -> str:
    """The model kind a checkpoint was trained as (``cyclegan``, ``method1``)."""
    return _peek(Path(path))[TRANSLATOR]["kind"]


def find_last_checkpoint(root: str | os.PathLike, dirpath: str | None = None, *, kind: str | None = None) -> Path:
    """``--ckpt_path last``: the newest last.ckpt under ``root`` of model ``kind`` (any kind when None),
    preferring those in ``dirpath``. Old run folders count too: the kind is read from each file."""
    candidates = sorted(Path(root).glob("**/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    if dirpath:
        candidates = [p for p in candidates if p.parent == Path(dirpath)] or candidates
    others: list[str] = []
    for path in candidates:
        try:
            found = checkpoint_kind(path)
        except CheckpointError:
            continue  # a foreign or damaged file is no candidate
        if kind is None or found == kind:
            return path
        others.append(found)
    where = f"under {root}" + (f" (found {len(others)} of another kind: {', '.join(sorted(set(others)))})" if others else "")
    raise CheckpointError(f"--ckpt_path last: no {kind + ' ' if kind else ''}last.ckpt {where}")


def wandb_run_id(path: str | os.PathLike) -> str | None:
    """The W&B run a checkpoint was written by (None if it has none), checking that the file is there."""
    return _peek(Path(path)).get(WANDB_RUN_ID)


def check_kind(path: str | os.PathLike, kind: str) -> None:
    """Refuse, in one line, a checkpoint of another model kind than the one about to be trained."""
    found = checkpoint_kind(path)
    if found != kind:
        raise CheckpointError(f"{path} is a {found} checkpoint, but this fit trains {kind}: "
                              f"resume it with the config it was trained with (configs/{found}.yaml)")


def check_network_settings(path: str | os.PathLike, settings: dict[str, dict[str, Any]]) -> None:
    """Refuse, in one line, a checkpoint whose networks were built with other settings than
    ``settings`` ({"generator": {...}, "discriminator": {...}} of the config about to train):
    its tensors would not fit (and Lightning would otherwise quietly take the checkpoint's)."""
    saved = _peek(Path(path)).get("hyper_parameters", {})
    for net, wanted in settings.items():
        for key, value in (wanted or {}).items():
            if isinstance(saved.get(net), dict) and key in saved[net] and saved[net][key] != value:
                raise CheckpointError(f"{path} does not fit the model: it was trained with {net}.{key} = "
                                      f"{saved[net][key]!r}, the config says {value!r} (resume with the settings "
                                      "of the run it comes from)")


def settings_kept_on_resume(path: str | os.PathLike, settings: dict[str, Any]) -> list[str]:
    """The scalar model settings where ``settings`` (the config about to resume) differs from the
    checkpoint's, as ``"lr 0.0002 (the config says 0.0004)"``: resuming keeps the checkpoint's."""
    saved = _peek(Path(path)).get("hyper_parameters", {})
    plain = lambda v: list(v) if isinstance(v, (tuple, list)) else v  # noqa: E731 - YAML gives lists, Python tuples
    return [f"{key} {saved[key]!r} (the config says {value!r})" for key, value in settings.items()
            if key in saved and not isinstance(value, dict) and plain(saved[key]) != plain(value)]


def check_fits(path: str | os.PathLike, kind: str, state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse, in one line, a checkpoint that the model about to be trained cannot load: another
    kind, or other tensor names or shapes (another --config than the run it comes from)."""
    check_kind(path, kind)
    checkpoint = _peek(Path(path))
    saved = {k: tuple(v.shape) for k, v in checkpoint.get("state_dict", {}).items()}
    wanted = {k: tuple(v.shape) for k, v in state_dict.items()}
    differ = sorted(k for k in saved.keys() & wanted.keys() if saved[k] != wanted[k])
    missing, unexpected = sorted(wanted.keys() - saved.keys()), sorted(saved.keys() - wanted.keys())
    if differ:
        raise CheckpointError(f"{path} does not fit the model: {len(differ)} tensors differ in shape, e.g. {differ[0]} "
                              f"is {list(saved[differ[0]])} there and {list(wanted[differ[0]])} here "
                              "(resume with the same model settings as the run it comes from)")
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise CheckpointError(f"{path} does not fit the model: {len(missing)} tensors missing, {len(unexpected)} "
                              f"unexpected, e.g. {first} (resume with the same model settings as the run it comes from)")

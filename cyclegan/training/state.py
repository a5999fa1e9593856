"""What a training checkpoint holds beside Lightning's own entries, and how it comes back.

Lightning saves weights, optimizers, schedulers and loop progress. For an exact resume
and for inference without the training config, the models add (in ``on_save_checkpoint``):

    image_pools   rank 0's image pools (what older code reads)
    rank_states   every rank's RNG states, and the pools of ranks 1 and up
    translator    enough to rebuild the generators (:func:`translator_meta`)
    batches_trained  training batches so far, skipped updates included (the logging cadence)
    wandb_run_id  the W&B run that a resumed fit continues (written by the CLI's run summary)

No Lightning here: :mod:`cyclegan.inference.checkpoints` reads these keys to load a
generator, and converting a folder must not import Lightning.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from cyclegan.errors import warn
from cyclegan.models.image_pool import Pools

WANDB_RUN_ID = "wandb_run_id"
IMAGE_POOLS = "image_pools"
RANK_STATES = "rank_states"
TRANSLATOR = "translator"
BATCHES_TRAINED = "batches_trained"


def translator_meta(module: Any) -> dict[str, Any]:
    """What a checkpoint needs to rebuild the generators of ``module`` (a
    :class:`~cyclegan.training.base.TranslationModel`) without the training config."""
    hp = module.hparams
    return {
        "kind": module.kind,
        "generator": asdict(module.generator_config),
        "input_nc": hp.input_nc,
        "output_nc": hp.output_nc,
        "directions": dict(module.directions),
    }


def save_training_state(checkpoint: dict[str, Any], module: Any, pools: Pools) -> None:
    """Add the image pools, every rank's random state and the translator metadata to a
    checkpoint being written (on every rank at once, as Lightning saves; rank 0 writes it)."""
    own = {"rng": rng_states(), "pools": pools.state_dict() if module.global_rank > 0 else None}
    states = gather_to_rank_zero(module, own)
    checkpoint[IMAGE_POOLS] = pools.state_dict()
    checkpoint[RANK_STATES] = {"world_size": len(states), "rng": [s["rng"] for s in states],
                               "pools": [s["pools"] for s in states]}
    checkpoint[TRANSLATOR] = translator_meta(module)


def load_pools(checkpoint: Mapping[str, Any], pools: Pools) -> Any:
    """Restore rank 0's image pools now (checkpoints from before pools were saved have none);
    return the per-rank states (``None`` in older checkpoints) for :func:`restore_rank_state`
    at fit start: restoring the global RNG here would also hit ``load_from_checkpoint`` callers."""
    if IMAGE_POOLS in checkpoint:
        pools.load_state_dict(checkpoint[IMAGE_POOLS])
    return checkpoint.get(RANK_STATES)


def attached_trainer(module: Any) -> Any:
    """The module's Trainer, or None outside one (Lightning's ``module.trainer`` raises then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def gather_to_rank_zero(module: Any, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on rank 0 (others get ``[obj]``: they write nothing)."""
    trainer = attached_trainer(module)
    world = trainer.world_size if trainer is not None else 1
    if world == 1 or not torch.distributed.is_initialized():
        return [obj]
    out = [None] * world if module.global_rank == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out if out is not None else [obj]


def restore_rank_state(pools: Pools, saved: Mapping[str, Any], *, world: int, rank: int) -> bool:
    """Put this rank's saved RNG states (and, for ranks > 0, pools) back; False if the world size
    changed, after saying in one line what cannot be restored."""
    if saved["world_size"] != world:
        warn(f"warning: the checkpoint was written by {saved['world_size']} process(es), this run has "
             f"{world}: the random states of each process and the image pools of processes other than "
             "the first cannot be restored (the data continues at the same place); continuing")
        return False
    if rank > 0:
        pools.load_state_dict(saved["pools"][rank])
    set_rng_states(saved["rng"][rank])
    return True


def rng_states() -> dict[str, Any]:
    """The global torch (CPU and CUDA), numpy and Python RNG states, as tensors and plain
    data only (checkpoints load with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        # This process's device only: reading all would create a CUDA context on every GPU.
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(internal), "gauss": py_gauss},
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))

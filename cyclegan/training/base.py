"""What both translators share, by import: optimizers and LR schedule, step counting, the
non-finite guard, per-rank seeds, checkpoint state and the log keys every model writes.

Each LightningModule keeps its own ``training_step``; the pieces here are the lines that
would otherwise stand twice, so that changing the checkpoint or pool format is one edit.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities import rank_zero_only
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from cyclegan.inference.checkpoints import IMAGE_POOLS, TRANSLATOR, translator_meta
from cyclegan.errors import NonFiniteLossError
from cyclegan.models.image_pool import Pools
from cyclegan.models.losses import DiscriminatorLoss
from cyclegan.models.networks import DiscriminatorConfig, GeneratorConfig

_log = logging.getLogger("cyclegan")


@rank_zero_only
def warn(message: str) -> None:
    """A warning the user can act on (a skipped update or file, a state that cannot come back):
    shown even while the CLI quiets Lightning's own info lines; once, from rank 0."""
    _log.warning(message)

# Checkpoint entries beside Lightning's own (read back by cyclegan.inference.checkpoints).
RANK_STATES = "rank_states"  # per-rank RNG states and pools, for an exact resume (save_training_state)
# Key of training_step's output: {discriminator name: patch accuracy}, read by TrainingHealth.
D_ACCURACY = "d_accuracy"


# ---------------------------------------------------------------------------- construction
def network_configs(
    generator: GeneratorConfig | Mapping[str, Any], discriminator: DiscriminatorConfig | Mapping[str, Any],
) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    """Typed configs from either typed ones or the plain dicts a saved config or checkpoint holds."""
    return (
        generator if isinstance(generator, GeneratorConfig) else GeneratorConfig(**generator),
        discriminator if isinstance(discriminator, DiscriminatorConfig) else DiscriminatorConfig(**discriminator),
    )


def store_network_configs(module: pl.LightningModule, generator: GeneratorConfig,
                          discriminator: DiscriminatorConfig) -> None:
    """After ``save_hyperparameters``: plain dicts in the checkpoint, so it loads with
    ``torch.load(weights_only=True)``; manual optimization (one G and one D update per step)."""
    module.hparams.update(generator=asdict(generator), discriminator=asdict(discriminator))
    module.automatic_optimization = False
    module.generator_config = generator


def compile_in_place(*nets: nn.Module) -> None:
    """``torch.compile`` each network in place: parameter names, and so checkpoints, stay the same."""
    for net in nets:
        net.compile()


# ---------------------------------------------------------------------------- optimizers
def linear_decay(*, n_epochs: int, n_epochs_decay: int):
    """LR factor for 0-based epoch k: 1 for k < n_epochs, then 1 - (k + 1 - n_epochs) / (n_epochs_decay + 1).

    The published rule (with ``epoch_count=1``): the last epoch trains at
    1 / (n_epochs_decay + 1) of the base rate, and the rate reaches 0 as it ends. Epochs
    beyond n_epochs + n_epochs_decay stay at 0 (the published code never runs them;
    a negative rate would climb the loss).
    """

    def factor(epoch: int) -> float:
        return max(0.0, 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1))

    return factor


def _adam(params: Iterable[torch.nn.Parameter], *, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has one: the same update, computed in
    one pass over all parameters (13 ms instead of 43 ms per step for CycleGAN's 28 M on 2 CPU cores)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except RuntimeError:  # older torch, or a device without the fused kernel
        return torch.optim.Adam(params, lr=lr, betas=betas)


def adam_with_linear_decay(
    generator_params: Iterable[torch.nn.Parameter], discriminator_params: Iterable[torch.nn.Parameter],
    hparams: Mapping[str, Any],
) -> tuple[list[torch.optim.Optimizer], list[LambdaLR]]:
    """One Adam for all generators and one for all discriminators, each with the linear-decay
    schedule; ``hparams`` gives lr, beta1, beta2, n_epochs and n_epochs_decay, and may give lr_d."""
    betas = (hparams["beta1"], hparams["beta2"])
    opt_g = _adam(generator_params, lr=hparams["lr"], betas=betas)
    # lr_d: the discriminators' own LR (two time-scale update rule, Heusel et al. 2017); None: lr.
    lr_d = hparams.get("lr_d")
    opt_d = _adam(discriminator_params, lr=hparams["lr"] if lr_d is None else lr_d, betas=betas)
    factor = linear_decay(n_epochs=hparams["n_epochs"], n_epochs_decay=hparams["n_epochs_decay"])
    return [opt_g, opt_d], [LambdaLR(opt_g, factor), LambdaLR(opt_d, factor)]


def set_epoch(module: pl.LightningModule) -> None:
    """Put every LR scheduler at the trainer's current epoch (a no-op when already there),
    plus the model's ``start_epoch`` when it has one (a run carried on from elsewhere).

    Called before every training batch rather than stepping at epoch ends: Lightning runs
    epoch-end hooks when ``max_steps`` stops it mid-epoch and skips the epoch-start hook
    when it resumes one, so counting hook calls drifts across a stop and resume, while
    ``current_epoch`` is restored from the checkpoint. (On resume this steps the schedulers
    before any optimizer step; torch's warning about that is silenced by the CLI.)
    """
    epoch = module.current_epoch + module.hparams.get("start_epoch", 0)
    schedulers = module.lr_schedulers()
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        if scheduler.last_epoch != epoch:
            scheduler.last_epoch = epoch - 1
            scheduler.step()  # last_epoch = epoch; lr = base_lr * factor(epoch)


def count_iterations_not_optimizer_steps(opt_d: LightningOptimizer) -> None:
    """Make ``trainer.global_step`` count training iterations (one G and one D update).

    With manual optimization Lightning counts every ``optimizer.step()``, so two optimizers
    would double ``global_step`` and halve ``max_steps`` (Lightning issue #17958). The
    discriminator optimizer's step hooks only do that bookkeeping (and profiling), so they
    are silenced; the generator step still counts. Lightning re-installs the hooks before
    every batch, so call this at the start of each training step.
    """
    opt_d._on_before_step = opt_d._on_after_step = lambda: None


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """L2 norm of all gradients together: a generator whose gradient vanishes stops learning."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else torch.zeros(())


def offset_seeds_per_rank(module: pl.LightningModule, pools: Pools) -> None:
    """Give each DDP process its own random stream (pool decisions, dropout), or, when resuming,
    give each its own saved one back (see :func:`load_training_state`). Called at fit start.

    Every rank starts from the same seed (so the networks start identical); without an
    offset, all ranks would make the same pool choices. (The data's randomness has its own
    seeds per item, see :class:`cyclegan.data.datamodule.EpochSampler`.)
    """
    resumed = getattr(module, "_resume_rank_states", None)
    module._resume_rank_states = None
    if resumed is not None and restore_rank_state(module, pools, resumed):
        return
    if module.trainer.world_size > 1:
        torch.manual_seed(torch.initial_seed() + module.global_rank)
        pools.reseed(torch.initial_seed())


# ---------------------------------------------------------------------------- non-finite guard
class NonFiniteGuard:
    """Skips updates whose losses are not finite, and gives up after ``patience`` in a row.

    One bad batch (a NaN from an unlucky crop, a bf16 overflow) should cost an iteration,
    not the run; many in a row mean training has diverged and should stop with a name.
    """

    def __init__(self, patience: int = 5) -> None:
        self.patience = patience
        self.in_a_row = 0
        self.skipped = 0

    def finite(self, module: pl.LightningModule, losses: Mapping[str, torch.Tensor]) -> bool:
        """True if every loss is finite; otherwise count the skip, or raise after ``patience``."""
        ok = bool(torch.stack([v.detach().float() for v in losses.values()]).isfinite().all())  # one device sync
        if module.trainer.world_size > 1:  # every rank must skip (or not) together, or DDP's all-reduce hangs
            ok = module.trainer.strategy.reduce_boolean_decision(ok, all=True)
        if ok:
            return True
        self.skipped += 1
        self.in_a_row += 1
        bad = next((k for k, v in losses.items() if not torch.isfinite(v)), None)
        what = f"{bad} was {losses[bad].item()}" if bad else "a loss on another DDP rank was not finite"
        if self.in_a_row >= self.patience:
            last = [c.last_model_path for c in module.trainer.checkpoint_callbacks if c.last_model_path]
            raise NonFiniteLossError(
                f"training stopped: {what} for {self.in_a_row} iterations in a row "
                f"(at step {module.global_step}); last good checkpoint: {last[0] if last else 'none written yet'}"
            )
        warn(f"warning: {what} at step {module.global_step}; skipping this update")
        return False

    def step_done(self) -> None:
        self.in_a_row = 0


# ---------------------------------------------------------------------------- logging
def discriminator_logs(name: str, d: DiscriminatorLoss) -> dict[str, torch.Tensor]:
    """``train/loss_d_<name>`` and D's mean score on real and on pooled fake images, and its patch accuracy."""
    return {
        f"train/loss_d_{name}": d.loss.detach(), f"train/d_{name}_real": d.score_real,
        f"train/d_{name}_fake": d.score_fake, f"train/d_{name}_acc": d.accuracy,
    }


def logs_due(module: pl.LightningModule) -> bool:
    """Whether this iteration's logs reach a logger: every ``log_every_n_steps``-th iteration
    (and the last), by Lightning's own rule. Other iterations skip building ~20 values
    (about 5 ms a step through ``log_dict``, plus the gradient norm); the progress bar then
    shows the values of the last logged iteration."""
    trainer = module._trainer
    if trainer is None:  # a step called outside a Trainer
        return True
    return trainer._logger_connector.should_update_logs


def log_training_step(
    module: pl.LightningModule, logs: dict[str, torch.Tensor], *, opt_g: LightningOptimizer,
    opt_d: LightningOptimizer, generator_params: Iterable[torch.nn.Parameter], guard: NonFiniteGuard,
    loss_g: torch.Tensor, loss_d: torch.Tensor, batch_size: int,
) -> None:
    """Log one iteration: the model's own terms (``logs``) and what every model logs (G's
    gradient norm, both learning rates, skipped updates); ``loss_g``, ``loss_d`` on the progress bar.
    The generator gradients are still those of this iteration's update (D's backward leaves them alone)."""
    module.log_dict({
        **logs, "train/grad_norm_g": grad_norm(generator_params),
        "train/lr_g": opt_g.param_groups[0]["lr"], "train/lr_d": opt_d.param_groups[0]["lr"],
        "train/skipped_updates": float(guard.skipped),
    }, on_step=True, on_epoch=False, batch_size=batch_size)
    module.log_dict({"loss_g": loss_g, "loss_d": loss_d}, prog_bar=True, logger=False, batch_size=batch_size)


# ---------------------------------------------------------------------------- checkpoint state
def save_training_state(checkpoint: dict[str, Any], module: pl.LightningModule, pools: Pools, *,
                        directions: dict[str, str]) -> None:
    """Add the image pools, every rank's random state and the translator metadata to a
    checkpoint being written (on every rank at once, as Lightning saves; rank 0 writes it).

    ``image_pools`` holds rank 0's pools (what older code reads); ``rank_states`` the
    global RNG states of every rank and the pools of ranks 1 and up.
    """
    own = {"rng": rng_states(), "pools": pools.state_dict() if module.global_rank > 0 else None}
    states = gather_to_rank_zero(module, own)
    checkpoint[IMAGE_POOLS] = pools.state_dict()
    checkpoint[RANK_STATES] = {"world_size": len(states), "rng": [s["rng"] for s in states],
                               "pools": [s["pools"] for s in states]}
    checkpoint[TRANSLATOR] = translator_meta(module, directions=directions)


def load_training_state(checkpoint: dict[str, Any], pools: Pools, module: pl.LightningModule | None = None) -> None:
    """Restore rank 0's image pools now (checkpoints from before pools were saved have none)
    and keep the per-rank states for fit start, where :func:`offset_seeds_per_rank` applies
    them: restoring the global RNG here would also hit ``load_from_checkpoint`` callers."""
    if IMAGE_POOLS in checkpoint:
        pools.load_state_dict(checkpoint[IMAGE_POOLS])
    if module is not None:
        module._resume_rank_states = checkpoint.get(RANK_STATES)  # None in older checkpoints: resume as before


def gather_to_rank_zero(module: pl.LightningModule, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on rank 0 (others get ``[obj]``: they write nothing)."""
    world = module.trainer.world_size if module._trainer is not None else 1
    if world == 1 or not torch.distributed.is_initialized():
        return [obj]
    out = [None] * world if module.global_rank == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out if out is not None else [obj]


def restore_rank_state(module: pl.LightningModule, pools: Pools, saved: dict[str, Any]) -> bool:
    """Put this rank's saved RNG states (and, for ranks > 0, pools) back; False if the world size
    changed, after saying in one line what cannot be restored."""
    world, rank = module.trainer.world_size, module.global_rank
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

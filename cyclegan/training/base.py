"""The LightningModule every translator stands on: optimizers and the LR schedule, step
counting, logging cadence, the non-finite guard, per-rank seeds and the checkpoint state.

A model (:class:`~cyclegan.training.cycle_gan.CycleGAN`, :class:`~cyclegan.training.method1.Method1`)
builds its networks and writes its losses and its ``training_step``; everything else is here.
Only public Lightning APIs are used (tests/test_architecture.py holds that).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from cyclegan.models.augment import DiffAugment, DiffAugmentOp
from cyclegan.models.image_pool import Pools
from cyclegan.models.losses import DiscriminatorLoss, GanMode
from cyclegan.models.networks import DiscriminatorConfig, GeneratorConfig
from cyclegan.training import state
from cyclegan.training import lightning_internals
from cyclegan.training.guard import NonFiniteGuard

# Key of training_step's output: {discriminator name: patch accuracy}, read by TrainingHealth.
D_ACCURACY = "d_accuracy"


def network_configs(
    generator: GeneratorConfig | Mapping[str, Any], discriminator: DiscriminatorConfig | Mapping[str, Any],
) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    """Typed configs from either typed ones or the plain dicts a saved config or checkpoint holds."""
    return (
        generator if isinstance(generator, GeneratorConfig) else GeneratorConfig(**generator),
        discriminator if isinstance(discriminator, DiscriminatorConfig) else DiscriminatorConfig(**discriminator),
    )


class TranslationModel(pl.LightningModule):
    """Shared by every translator: the settings every model has (below), optimizers and the LR
    schedule, the non-finite guard, logging and the checkpoint state.

    A model takes its own settings and passes the rest on (LightningCLI offers both sets as
    ``--model.init_args.*``, following ``**kwargs`` to this signature)::

        def __init__(self, *, lambda_x: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.G_AB = ...; self.D_B = ...             # its networks (weights drawn first)
            self.setup_training(generators=[self.G_AB], discriminators=[self.D_B], pools=("b",))

    and its ``training_step`` updates the generators with ``opt_g.step()`` and the
    discriminators with :meth:`step_discriminators`, so that ``global_step`` counts iterations.

    Args:
        generator, discriminator: architectures (every generator and discriminator of the model).
        gan_mode: adversarial objective, see :mod:`cyclegan.models.losses`.
        lambda_gp: gradient-penalty weight (``wgangp`` only).
        pool_size: generated images kept for discriminator updates; 0 disables the pool.
        lr, beta1, beta2: Adam settings for all networks.
        lr_d: the discriminators' LR when it should differ from ``lr`` (two time-scale update
            rule, Heusel et al. 2017); ``None``, the default, uses ``lr`` as published.
        n_epochs, n_epochs_decay: epochs at constant LR, then epochs of linear decay to 0.
        init_gain: standard deviation of the N(0, gain) weight initialisation.
        input_nc, output_nc: channels of domains A and B (linked to the data module by the CLI).
        compile: ``torch.compile`` the networks (first iterations are slow while it compiles).
        max_nonfinite: iterations in a row with a NaN/inf loss (each skipped) before training stops.
        diff_augment: random differentiable transformations of every discriminator input while
            training (``color``, ``translation``, ``cutout``; see :mod:`cyclegan.models.augment`): for
            datasets of a few hundred images. Off (``()``) by default, as published.
    """

    kind: ClassVar[str]  # "cyclegan", "method1": run folders, checkpoint checks, W&B tags
    directions: ClassVar[dict[str, str]]  # "a2b"/"b2a" -> the attribute holding that generator

    # ------------------------------------------------------------------------ construction
    def __init__(
        self,
        *,
        generator: GeneratorConfig = GeneratorConfig(),
        discriminator: DiscriminatorConfig = DiscriminatorConfig(),
        gan_mode: GanMode = "lsgan",
        lambda_gp: float = 10.0,
        pool_size: int = 50,
        lr: float = 2e-4,
        lr_d: float | None = None,
        beta1: float = 0.5,
        beta2: float = 0.999,
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        init_gain: float = 0.02,
        input_nc: int = 3,
        output_nc: int = 3,
        compile: bool = False,
        max_nonfinite: int = 5,
        diff_augment: tuple[DiffAugmentOp, ...] = (),
    ) -> None:
        super().__init__()
        generator, discriminator = network_configs(generator, discriminator)
        # Lightning reads the arguments of every __init__ on the way here: this one's and the model's.
        self.save_hyperparameters()
        # Plain dicts in the checkpoint, so that it loads with torch.load(weights_only=True).
        self.hparams.update(generator=asdict(generator), discriminator=asdict(discriminator))
        self.generator_config, self.discriminator_config = generator, discriminator
        self.automatic_optimization = False  # one G and one D update per step, by hand

    def setup_training(self, *, generators: list[nn.Module], discriminators: list[nn.Module],
                       pools: tuple[str, ...], auxiliary: list[nn.Module] = ()) -> None:
        """The discriminators' augmentation, the guard and the image pools (named by the domain
        of the fakes they hold). Called after the networks are built: the pools draw their
        seeds from torch's RNG after the weights, so a seed gives the same run as before.
        ``auxiliary`` networks (CUT's projection heads) train with the generators' optimizer."""
        hp = self.hparams
        self._generators, self._discriminators = list(generators), list(discriminators)
        self._auxiliary = list(auxiliary)
        self.augment = DiffAugment(hp.diff_augment)  # what the discriminators see while training
        self.guard = NonFiniteGuard(patience=hp.max_nonfinite)
        self.pools = Pools(hp.pool_size, *pools)
        self._resume_rank_states: Mapping[str, Any] | None = None
        self.batches_trained = 0  # training batches so far, this one included (checkpointed)

    def configure_model(self) -> None:
        if self.hparams.compile:  # in place: parameter names, and so checkpoints, stay the same
            for net in [*self._generators, *self._discriminators]:
                net.compile()

    def forward(self, real_a: torch.Tensor) -> torch.Tensor:
        """A -> B translation, (N, C_a, H, W) -> (N, C_b, H, W), both in [-1, 1]."""
        return self._generators[0](real_a)

    # ------------------------------------------------------------------------ optimizers
    def configure_optimizers(self):
        return adam_with_linear_decay(
            itertools.chain.from_iterable(g.parameters() for g in [*self._generators, *self._auxiliary]),
            itertools.chain.from_iterable(d.parameters() for d in self._discriminators),
            self.hparams,
        )

    def step_discriminators(self, opt_d: LightningOptimizer) -> None:
        """``opt_d.step()`` without counting it in ``global_step``.

        With manual optimization Lightning counts every ``LightningOptimizer.step()``, so a G and
        a D update would count two steps and halve ``max_steps`` (Lightning issue #17958).
        The strategy's public ``optimizer_step`` is what ``LightningOptimizer.step`` calls between
        its two counting hooks: the same update (precision plugin, closure, hooks), uncounted.
        """
        self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=_no_closure)

    def on_train_start(self) -> None:
        self.guard.choose(self.trainer, self.trainer.optimizers)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.batches_trained += 1
        set_epoch(self)
        self.guard.begin(self.device)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.guard.end(self, due=self.logs_due())  # deferred: read its counts on logging iterations only

    def on_train_end(self) -> None:
        self.guard.end(self, due=True)

    # ------------------------------------------------------------------------ logging
    def logs_due(self) -> bool:
        """Whether this iteration's logs reach a logger, by Lightning's rule: every
        ``log_every_n_steps``-th batch, and the last. Lightning counts batches here, not
        ``global_step`` (an iteration whose update was skipped counts), so :attr:`batches_trained`
        counts them too, this one included. Other iterations skip building ~20 values (about
        5 ms a step through ``log_dict``, plus the gradient norm); the progress bar then shows
        the values of the last logged iteration."""
        trainer = state.attached_trainer(self)
        if trainer is None:  # a step called outside a Trainer
            return True
        if trainer.log_every_n_steps == 0:
            return False
        return self.batches_trained % trainer.log_every_n_steps == 0 or trainer.should_stop

    def log_training_step(self, logs: dict[str, torch.Tensor], *, opt_g: LightningOptimizer,
                          opt_d: LightningOptimizer, loss_g: torch.Tensor, loss_d: torch.Tensor,
                          batch_size: int) -> None:
        """Log one iteration: the model's own terms (``logs``) and what every model logs (G's
        gradient norm, both learning rates, skipped updates); ``loss_g``, ``loss_d`` on the progress bar.
        The generator gradients are still those of this iteration's update (D's backward leaves them alone)."""
        self.log_dict({
            **logs, "train/grad_norm_g": grad_norm(p for g in self._generators for p in g.parameters()),
            "train/lr_g": opt_g.param_groups[0]["lr"], "train/lr_d": opt_d.param_groups[0]["lr"],
            "train/skipped_updates": self.guard.skipped_so_far(),
        }, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log_dict({"loss_g": loss_g, "loss_d": loss_d}, prog_bar=True, logger=False, batch_size=batch_size)

    # ------------------------------------------------------------------------ checkpoint state
    def on_fit_start(self) -> None:
        """Give each DDP process its own random stream (pool decisions, dropout), or, when
        resuming, give each its own saved one back. Every rank starts from the same seed (so the
        networks start identical); without an offset, all ranks would make the same pool choices.
        (The data's randomness has its own seeds per item, see :class:`cyclegan.data.datamodule.EpochSampler`.)"""
        if self.trainer.ckpt_path is None:  # a new run, also of weights from load_from_checkpoint: count afresh
            self.batches_trained = 0
        saved, self._resume_rank_states = self._resume_rank_states, None
        world, rank = self.trainer.world_size, self.global_rank
        if saved is not None and state.restore_rank_state(self.pools, saved, world=world, rank=rank):
            return
        if world > 1:
            torch.manual_seed(torch.initial_seed() + rank)
            self.pools.reseed(torch.initial_seed())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state.save_training_state(checkpoint, self, self.pools)
        checkpoint[state.BATCHES_TRAINED] = self.batches_trained

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resume_rank_states = state.load_pools(checkpoint, self.pools)
        saved = checkpoint.get(state.BATCHES_TRAINED)
        self.batches_trained = saved if saved is not None else lightning_internals.batches_trained(checkpoint)


def _no_closure() -> None:
    """The closure of a manual-optimization step: backward has already run."""


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


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """L2 norm of all gradients together: a generator whose gradient vanishes stops learning."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else torch.zeros(())


def discriminator_logs(name: str, d: DiscriminatorLoss) -> dict[str, torch.Tensor]:
    """``train/loss_d_<name>`` and D's mean score on real and on pooled fake images, and its patch accuracy."""
    return {
        f"train/loss_d_{name}": d.loss.detach(), f"train/d_{name}_real": d.score_real,
        f"train/d_{name}_fake": d.score_fake, f"train/d_{name}_acc": d.accuracy,
    }

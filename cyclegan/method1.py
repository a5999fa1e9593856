"""Method 1: the one-generator baseline, G_AB against D_B with the adversarial loss only.

It is CycleGAN without G_BA, D_A and the cycle and identity terms: same networks, pool,
optimizer and schedule, so the two compare. Nothing ties G_AB(a) to a, so it learns
to produce plausible B images that may have lost the content of the input.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch

from .checkpoint import translator_meta
from .image_pool import ImagePool
from .losses import GanMode, discriminator_loss, gan_loss
from .networks import (
    DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator, init_weights, samples_independent,
)
from .optim import (
    NonFiniteGuard, adam_with_linear_decay, count_iterations_not_optimizer_steps, grad_norm, offset_seeds_per_rank,
    set_epoch,
)


class Method1(pl.LightningModule):
    """L_G = L_GAN(G_AB, D_B); L_D = 0.5 * (L(D_B(b), 1) + L(D_B(pool(G_AB(a))), 0)).

    Arguments mean what they mean for :class:`cyclegan.CycleGAN`.
    """

    kind = "method1"

    def __init__(
        self,
        *,
        generator: GeneratorConfig = GeneratorConfig(),
        discriminator: DiscriminatorConfig = DiscriminatorConfig(),
        gan_mode: GanMode = "lsgan",
        lambda_gp: float = 10.0,
        pool_size: int = 50,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        init_gain: float = 0.02,
        input_nc: int = 3,
        output_nc: int = 3,
        compile: bool = False,
        max_nonfinite: int = 5,
    ) -> None:
        super().__init__()
        generator, discriminator = GeneratorConfig(**generator) if isinstance(generator, dict) else generator, (
            DiscriminatorConfig(**discriminator) if isinstance(discriminator, dict) else discriminator
        )
        self.save_hyperparameters()
        self.hparams.update(generator=asdict(generator), discriminator=asdict(discriminator))
        self.automatic_optimization = False
        self.generator_config = generator

        self.G_AB = init_weights(build_generator(generator, input_nc=input_nc, output_nc=output_nc), gain=init_gain)
        self.D_B = init_weights(build_discriminator(discriminator, input_nc=output_nc), gain=init_gain)
        self.guard = NonFiniteGuard(patience=max_nonfinite)
        self._d_batchable = samples_independent(self.D_B)
        self.pool_b = ImagePool(pool_size, seed=int(torch.randint(2**62, ())))

    def configure_model(self) -> None:
        if self.hparams.compile:  # in place: parameter names, and so checkpoints, stay the same
            for net in (self.G_AB, self.D_B):
                net.compile()

    def forward(self, real_a: torch.Tensor) -> torch.Tensor:
        return self.G_AB(real_a)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        real_a, real_b = batch["A"], batch["B"]  # (N, C, H, W) each, in [-1, 1]
        opt_g, opt_d = self.optimizers()
        count_iterations_not_optimizer_steps(opt_d)

        with self.toggled_optimizer(opt_g):  # D_B frozen
            fake_b = self.G_AB(real_a)
            loss_g = gan_loss(self.D_B(fake_b), True, mode=self.hparams.gan_mode)
            if not self.guard.finite(self, {"loss_g_adv_ab": loss_g}):
                return
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            g_norm = grad_norm(self.G_AB.parameters())
            opt_g.step()

        with self.toggled_optimizer(opt_d):
            d_b = discriminator_loss(self.D_B, real_b, self.pool_b.query(fake_b),
                                     mode=self.hparams.gan_mode, lambda_gp=self.hparams.lambda_gp,
                                     together=self._d_batchable)
            if self.guard.finite(self, {"loss_d_b": d_b.loss}):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_b.loss)
                opt_d.step()
                self.guard.step_done()

        n = real_a.shape[0]
        self.log_dict({
            "train/loss_g": loss_g.detach(), "train/loss_g_adv_ab": loss_g.detach(), "train/loss_d_b": d_b.loss.detach(),
            "train/d_b_real": d_b.score_real, "train/d_b_fake": d_b.score_fake, "train/d_b_acc": d_b.accuracy,
            "train/grad_norm_g": g_norm,
            "train/lr_g": opt_g.param_groups[0]["lr"], "train/lr_d": opt_d.param_groups[0]["lr"],
            "train/skipped_updates": float(self.guard.skipped),
        }, on_step=True, on_epoch=False, batch_size=n)
        self.log_dict({"loss_g": loss_g.detach(), "loss_d": d_b.loss.detach()}, prog_bar=True, logger=False, batch_size=n)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        fake_b = self.G_AB(batch["A"])
        self.log("val/loss_g_adv_ab", gan_loss(self.D_B(fake_b), True, mode=self.hparams.gan_mode),
                 on_epoch=True, batch_size=batch["A"].shape[0], sync_dist=True)

    @torch.no_grad()
    def sample_columns(self, real_a: torch.Tensor, real_b: torch.Tensor) -> list[torch.Tensor]:
        """Columns of the sample grid: a | G(a), each (N, C, H, W)."""
        return [real_a, self.G_AB(real_a)]

    def configure_optimizers(self):
        hp = self.hparams
        return adam_with_linear_decay(
            self.G_AB.parameters(), self.D_B.parameters(),
            lr=hp.lr, betas=(hp.beta1, hp.beta2), n_epochs=hp.n_epochs, n_epochs_decay=hp.n_epochs_decay,
        )

    def on_fit_start(self) -> None:
        offset_seeds_per_rank(self, self.pool_b)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        set_epoch(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["image_pools"] = {"b": self.pool_b.state_dict()}
        checkpoint["translator"] = translator_meta(self, directions={"a2b": "G_AB"})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "image_pools" in checkpoint:
            self.pool_b.load_state_dict(checkpoint["image_pools"]["b"])
